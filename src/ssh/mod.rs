//! The SSH executor: one reused connection per host (russh, nodelay), at most 8 channels on it,
//! per-command timeouts, sudo for non-root users, uploads (SFTP + atomic rename) and downloads,
//! host-key checking against known_hosts (strict or accept-new), key-file or agent auth, a bastion.

mod error;
mod host_keys;
mod pool;
mod session;

pub use error::{KeyChange, SshError};
pub use host_keys::{HostKeyCheck, fingerprint};
pub use pool::{HostResult, Pool};
pub use session::{Output, Session};

use std::path::PathBuf;
use std::time::Duration;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Machine name (for messages).
    pub name: String,
    /// Address or host name.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Login user.
    pub user: String,
}

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A private key file; the passphrase of an encrypted key comes from FORGECTL_SSH_PASSPHRASE.
    KeyFile(PathBuf),
    /// The keys of the running ssh-agent (SSH_AUTH_SOCK).
    Agent,
}

/// Everything a connection needs besides the endpoint.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Authentication.
    pub credentials: Credentials,
    /// Host-key checking.
    pub host_keys: HostKeyCheck,
    /// Time allowed for one connection attempt (TCP + handshake + auth).
    pub connect_timeout: Duration,
    /// How long to keep retrying refused / timed-out connections (machines still booting).
    pub retry_for: Duration,
    /// Default time a command may run.
    pub command_timeout: Duration,
    /// Jump host, if any.
    pub bastion: Option<Endpoint>,
    /// Channels open at once on one connection (OpenSSH allows 10 sessions by default).
    pub max_channels: usize,
    /// Hosts worked on at once.
    pub host_concurrency: usize,
}

/// Most channels forgectl opens at once on one connection.
pub const MAX_CHANNELS: usize = 8;

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/etc/etcd/etcd.env"), "/etc/etcd/etcd.env");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
