//! SSH errors, each naming the host, address and user, and what to do next.

use std::time::Duration;

/// What went wrong talking to a host.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Nothing listens on the port (yet).
    #[error("{host} ({user}@{address}:{port}): connection refused")]
    Refused {
        /// Machine name.
        host: String,
        /// Address.
        address: String,
        /// Port.
        port: u16,
        /// Login user.
        user: String,
    },
    /// No answer in time.
    #[error("{host} ({user}@{address}:{port}): no answer within {after:?} ({stage})")]
    Timeout {
        /// Machine name.
        host: String,
        /// Address.
        address: String,
        /// Port.
        port: u16,
        /// Login user.
        user: String,
        /// How long it waited.
        after: Duration,
        /// What it was doing.
        stage: &'static str,
    },
    /// The network or the SSH protocol failed.
    #[error("{host} ({user}@{address}:{port}): {cause}")]
    Connect {
        /// Machine name.
        host: String,
        /// Address.
        address: String,
        /// Port.
        port: u16,
        /// Login user.
        user: String,
        /// Why.
        cause: String,
    },
    /// The server refused every key.
    #[error("{host} ({user}@{address}:{port}): authentication failed ({method})")]
    AuthFailed {
        /// Machine name.
        host: String,
        /// Address.
        address: String,
        /// Port.
        port: u16,
        /// Login user.
        user: String,
        /// Which credentials were tried.
        method: String,
    },
    /// The host key differs from the recorded one: possibly an attack, possibly a rebuilt machine.
    #[error("{0}")]
    HostKeyChanged(Box<KeyChange>),
    /// Strict checking and no record of this host.
    #[error(
        "{host} ({address}:{port}): host key {offered} is not in {files} (host_key_policy: strict)"
    )]
    HostKeyUnknown {
        /// Machine name.
        host: String,
        /// Address.
        address: String,
        /// Port.
        port: u16,
        /// Fingerprint offered.
        offered: String,
        /// The known_hosts files searched.
        files: String,
    },
    /// A key file could not be used.
    #[error("cannot use SSH key {path}: {cause}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        cause: String,
    },
    /// A command ran past its timeout (the channel was closed).
    #[error("{host}: `{command}` did not finish within {after:?}")]
    CommandTimeout {
        /// Machine name.
        host: String,
        /// The command.
        command: String,
        /// The timeout.
        after: Duration,
    },
    /// The session broke while a command or transfer ran.
    #[error("{host}: connection lost during `{command}`: {cause}")]
    Lost {
        /// Machine name.
        host: String,
        /// The command or transfer.
        command: String,
        /// Why.
        cause: String,
        /// Whether the command may have started: false when the connection was lost before
        /// its channel was open or its request sent (trying again on a new connection is safe).
        started: bool,
    },
    /// A file transfer failed.
    #[error("{host}: {op} {path}: {cause}")]
    Transfer {
        /// Machine name.
        host: String,
        /// upload / download.
        op: &'static str,
        /// Remote path.
        path: String,
        /// Why.
        cause: String,
    },
}

/// A host key that differs from the one on record.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} ({address}:{port}): HOST KEY CHANGED — recorded {expected} ({file}:{line}), offered {offered}; refusing to connect"
)]
pub struct KeyChange {
    /// Machine name.
    pub host: String,
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Fingerprint on record.
    pub expected: String,
    /// Fingerprint offered now.
    pub offered: String,
    /// known_hosts file with the record.
    pub file: String,
    /// Its line.
    pub line: usize,
}

impl SshError {
    /// Worth retrying while a machine boots: refused, timed out, reset.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::Timeout { .. } | Self::Connect { .. }
        )
    }

    /// What to do about it.
    pub fn next_step(&self) -> &'static str {
        match self {
            Self::Refused { .. } => {
                "is sshd running and the port right? For local machines: `forgectl machines list`"
            }
            Self::Timeout { .. } | Self::CommandTimeout { .. } => {
                "is the machine up and reachable (bastion, firewall)? Raise ssh.connect_timeout / ssh.command_timeout if it is slow"
            }
            Self::Connect { .. } | Self::Lost { .. } => {
                "check the machine and the network, then run again: completed steps are skipped"
            }
            Self::AuthFailed { .. } => {
                "check ssh.user and ssh.key (or the keys in ssh-agent) and the host's authorized_keys"
            }
            Self::HostKeyChanged(_) => {
                "if the machine was rebuilt on purpose, delete the line named above from that known_hosts file; otherwise investigate"
            }
            Self::HostKeyUnknown { .. } => {
                "add the host to known_hosts (ssh-keyscan, then verify the fingerprint), or set ssh.host_key_policy: accept-new"
            }
            Self::Key { .. } => {
                "check the key path and, for an encrypted key, FORGECTL_SSH_PASSPHRASE"
            }
            Self::Transfer { .. } => "check free space and permissions on the host",
        }
    }
}
