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

use russh::keys::{self, PrivateKey};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
#[derive(Clone)]
pub enum Credentials {
    /// A private key, decoded once (see [`Credentials::from_key_file`]).
    Key {
        /// The key.
        key: Arc<PrivateKey>,
        /// Where it came from (for messages).
        source: PathBuf,
    },
    /// The keys of a running ssh-agent: its socket, or `SSH_AUTH_SOCK` when None.
    Agent {
        /// The agent's socket.
        socket: Option<PathBuf>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        match self {
            Self::Key { source, .. } => write!(f, "Key({})", source.display()),
            Self::Agent { socket } => write!(f, "Agent({socket:?})"),
        }
    }
}

impl Credentials {
    /// Reads a private key file (OpenSSH or PEM: ed25519, RSA, ECDSA). An encrypted key needs its
    /// passphrase: `passphrase`, else `FORGECTL_SSH_PASSPHRASE`, else a prompt on the terminal.
    /// Blocking (file and terminal I/O): call before or outside the async work.
    pub fn from_key_file(path: &Path, passphrase: Option<&str>) -> Result<Self, SshError> {
        let err = |cause: String| SshError::Key {
            path: path.display().to_string(),
            cause,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let from_env = std::env::var("FORGECTL_SSH_PASSPHRASE").ok();
        let given = passphrase.map(str::to_string).or(from_env);
        let key = match keys::decode_secret_key(&text, given.as_deref()) {
            Ok(k) => k,
            Err(keys::Error::KeyIsEncrypted)
                if given.is_none() && std::io::stdin().is_terminal() =>
            {
                let typed =
                    rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                        .map_err(|e| err(format!("cannot read the passphrase: {e}")))?;
                keys::decode_secret_key(&text, Some(&typed)).map_err(|e| err(e.to_string()))?
            }
            Err(keys::Error::KeyIsEncrypted) => {
                return Err(err(
                    "the key is encrypted: set FORGECTL_SSH_PASSPHRASE, run on a terminal to be asked, or use ssh-agent".into(),
                ));
            }
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(Self::Key {
            key: Arc::new(key),
            source: path.to_path_buf(),
        })
    }
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

/// An OpenSSH public key line reduced to `ALGORITHM BASE64` (its comment dropped), or why it is
/// not one: what reaches cloud-init and the Vagrantfile can then carry no other syntax.
pub fn openssh_public_key(text: &str) -> Result<String, String> {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut parts = line.split_whitespace();
    let (Some(algo), Some(data)) = (parts.next(), parts.next()) else {
        return Err("not an OpenSSH public key line (ALGORITHM BASE64 [COMMENT])".into());
    };
    let algo_ok = algo
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '@' | '.'));
    let data_ok = data
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    if !algo_ok || !data_ok {
        return Err(format!("`{algo} …` is not an OpenSSH public key"));
    }
    Ok(format!("{algo} {data}"))
}

#[cfg(test)]
mod tests {
    use super::{openssh_public_key, shell_quote};

    #[test]
    fn public_keys_lose_their_comment() {
        assert_eq!(
            openssh_public_key("ssh-ed25519 AAAAC3Nza+/= admin@host\n").unwrap(),
            "ssh-ed25519 AAAAC3Nza+/="
        );
        assert!(openssh_public_key("ssh-ed25519 AAAA\"; rm -rf /").is_err());
        assert!(openssh_public_key("").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/etc/etcd/etcd.env"), "/etc/etcd/etcd.env");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
