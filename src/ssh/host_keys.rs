//! Host-key checking: known_hosts files first; new keys accepted only under `accept-new`, and then
//! recorded in the state dir; a changed key is always refused, showing both fingerprints.

use russh::keys::{self, HashAlg, PublicKey};
use std::path::PathBuf;
use std::sync::Mutex;

use super::error::KeyChange;
use super::{Endpoint, SshError};
use crate::inventory::model::HostKeyPolicy;

/// Where to look for host keys and what to do with new ones.
#[derive(Debug, Clone)]
pub struct HostKeyCheck {
    /// strict or accept-new.
    pub policy: HostKeyPolicy,
    /// known_hosts files to trust (e.g. ~/.ssh/known_hosts).
    pub trusted: Vec<PathBuf>,
    /// forgectl's own known_hosts in the state dir: trusted, and where new keys are recorded.
    pub recorded: PathBuf,
}

/// SHA256 fingerprint as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

static LEARN: Mutex<()> = Mutex::new(());

impl HostKeyCheck {
    /// Checks `key` for `ep` (blocking file I/O: call from spawn_blocking).
    pub fn verify(&self, ep: &Endpoint, key: &PublicKey) -> Result<(), SshError> {
        let files: Vec<&PathBuf> = self
            .trusted
            .iter()
            .chain(std::iter::once(&self.recorded))
            .collect();
        for file in &files {
            match keys::check_known_hosts_path(&ep.address, ep.port, key, file) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(keys::Error::KeyChanged { line }) => {
                    let expected =
                        keys::known_hosts::known_host_keys_path(&ep.address, ep.port, file)
                            .ok()
                            .and_then(|ks| ks.into_iter().find(|(l, _)| *l == line))
                            .map(|(_, k)| fingerprint(&k))
                            .unwrap_or_else(|| "(unreadable record)".into());
                    return Err(SshError::HostKeyChanged(Box::new(KeyChange {
                        host: ep.name.clone(),
                        address: ep.address.clone(),
                        port: ep.port,
                        expected,
                        offered: fingerprint(key),
                        file: file.display().to_string(),
                        line,
                    })));
                }
                // An unreadable or malformed file holds no usable record.
                Err(_) => {}
            }
        }
        match self.policy {
            HostKeyPolicy::AcceptNew => {
                let _guard = LEARN.lock().unwrap_or_else(|p| p.into_inner());
                keys::known_hosts::learn_known_hosts_path(&ep.address, ep.port, key, &self.recorded)
                    .map_err(|e| SshError::Connect {
                        host: ep.name.clone(),
                        address: ep.address.clone(),
                        port: ep.port,
                        user: ep.user.clone(),
                        cause: format!(
                            "cannot record the host key in {}: {e}",
                            self.recorded.display()
                        ),
                    })
            }
            HostKeyPolicy::Strict => Err(SshError::HostKeyUnknown {
                host: ep.name.clone(),
                address: ep.address.clone(),
                port: ep.port,
                offered: fingerprint(key),
                files: files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}
