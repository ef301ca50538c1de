//! Carries out actions: machine creation and deletion through the provider, probes and commands
//! over SSH. The engine decides what runs; this decides how.

use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

use crate::interrupt::Interrupt;
use crate::inventory::validate::resolve_path;
use crate::inventory::{Loaded, Machine, ProviderKind};
use crate::providers::local::{self, LocalError, LocalProvider};
use crate::ssh::{self, Credentials, Endpoint, HostKeyCheck, Pool, Settings, SshError};
use crate::state::{StateDir, StateError};

/// File names in the state dir.
pub const CLUSTER_KEY: &str = "id_ed25519";
/// The cluster key's public half.
pub const CLUSTER_KEY_PUB: &str = "id_ed25519.pub";

/// Why an action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The local provider failed.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// One or more hosts failed over SSH.
    #[error("{}", .0.iter().map(|(h, e)| format!("{h}: {e}")).collect::<Vec<_>>().join("; "))]
    Hosts(Vec<(String, SshError)>),
    /// The SSH settings are unusable (e.g. the key cannot be read).
    #[error(transparent)]
    Ssh(SshError),
    /// The state dir failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// This build cannot do it for this provider.
    #[error("{0}")]
    Unsupported(String),
}

impl ExecError {
    /// What to do next.
    pub fn next_step(&self) -> String {
        match self {
            Self::Local(LocalError::NotRoot) => {
                "run forgectl as root (sudo) for local machines".into()
            }
            Self::Local(LocalError::Boot { .. }) => {
                "read the console log named above; `forgectl down` removes the machines".into()
            }
            Self::Local(_) => {
                "fix the cause above and run again; `forgectl down` removes half-made machines"
                    .into()
            }
            Self::Hosts(list) => list
                .first()
                .map(|(_, e)| e.next_step().to_string())
                .unwrap_or_default(),
            Self::Ssh(e) => e.next_step().into(),
            Self::State(_) => "check the state dir and its permissions".into(),
            Self::Unsupported(_) => "see `forgectl plan` for what this build can do".into(),
        }
    }
}

/// What a probe learned about a host.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostFacts {
    /// Machine name.
    pub host: String,
    /// PRETTY_NAME from os-release.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// `systemctl is-system-running`.
    pub systemd: String,
}

/// SSH endpoints of `machines` (address, or the name when the address is not known yet).
pub fn endpoints(inv: &Loaded, machines: &[&Machine]) -> Vec<Endpoint> {
    machines
        .iter()
        .map(|m| Endpoint {
            name: m.name.clone(),
            address: m
                .address
                .map(|a| a.to_string())
                .unwrap_or_else(|| m.name.clone()),
            port: inv.inventory.ssh.port,
            user: inv.inventory.ssh.user.clone(),
        })
        .collect()
}

/// SSH settings from the inventory and the state dir (reads the private key, once).
pub fn ssh_settings(inv: &Loaded, state: &StateDir) -> Result<Settings, SshError> {
    let s = &inv.inventory.ssh;
    let credentials = match (&s.key, inv.inventory.provider) {
        (Some(k), _) => Credentials::from_key_file(&resolve_path(k, &inv.source.base_dir), None)?,
        (None, ProviderKind::Local) => {
            Credentials::from_key_file(&state.path().join(CLUSTER_KEY), None)?
        }
        (None, _) => Credentials::Agent { socket: None },
    };
    let mut trusted = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".ssh/known_hosts");
        if p.exists() {
            trusted.push(p);
        }
    }
    let bastion = s.bastion.as_ref().map(|b| Endpoint {
        name: format!("bastion {}", b.address),
        address: b.address.clone(),
        port: b.port,
        user: b.user.clone().unwrap_or_else(|| s.user.clone()),
    });
    Ok(Settings {
        credentials,
        host_keys: HostKeyCheck {
            policy: s.host_key_policy,
            trusted,
            recorded: state.path().join("known_hosts"),
        },
        connect_timeout: Duration::from_secs(u64::from(s.connect_timeout)),
        retry_for: Duration::from_secs(u64::from(s.connect_timeout)),
        command_timeout: Duration::from_secs(u64::from(s.command_timeout)),
        bastion,
        max_channels: ssh::MAX_CHANNELS,
        host_concurrency: s.concurrency as usize,
    })
}

/// Carries out actions for one cluster.
pub struct Executor<'a> {
    inv: &'a Loaded,
    state: &'a StateDir,
    quiet: bool,
    interrupt: Interrupt,
    pool: OnceCell<Arc<Pool>>,
}

impl<'a> Executor<'a> {
    /// An executor for `inv` keeping its state in `state`.
    pub fn new(inv: &'a Loaded, state: &'a StateDir, quiet: bool, interrupt: Interrupt) -> Self {
        Self {
            inv,
            state,
            quiet,
            interrupt,
            pool: OnceCell::new(),
        }
    }

    /// True once the user asked to stop (Ctrl-C, SIGTERM).
    pub fn interrupted(&self) -> bool {
        self.interrupt.is_set()
    }

    fn local(&self) -> Result<LocalProvider, ExecError> {
        match self.inv.inventory.provider {
            ProviderKind::Local => Ok(LocalProvider::new(self.inv, self.state.path(), self.quiet)),
            other => Err(ExecError::Unsupported(format!(
                "machines of the {} provider cannot be created or deleted by this build (issue #5)",
                other.key()
            ))),
        }
    }

    /// The cluster's SSH public key, made on first use (for providers that inject it).
    fn cluster_public_key(&self) -> Result<String, ExecError> {
        if let Some(k) = &self.inv.inventory.ssh.key {
            let private = resolve_path(k, &self.inv.source.base_dir);
            let public = PathBuf::from(format!("{}.pub", private.display()));
            return std::fs::read_to_string(&public).map_err(|e| {
                ExecError::Unsupported(format!(
                    "cannot read the public key {} for ssh.key: {e}",
                    public.display()
                ))
            });
        }
        if let Some(p) = self.state.read(CLUSTER_KEY_PUB)? {
            return Ok(String::from_utf8_lossy(&p).into_owned());
        }
        let (private, public) =
            local::new_ed25519(&format!("forgectl@{}", self.inv.inventory.name))?;
        self.state.write_secret(CLUSTER_KEY, private.as_bytes())?;
        self.state
            .write_secret(CLUSTER_KEY_PUB, public.as_bytes())?;
        Ok(public)
    }

    /// Creates (or starts) the named machines; returns how many.
    pub async fn create(&self, names: &[String]) -> Result<usize, ExecError> {
        let provider = self.local()?;
        let key = self.cluster_public_key()?;
        let machines: Vec<&Machine> = self
            .inv
            .machines
            .iter()
            .filter(|m| names.contains(&m.name))
            .collect();
        provider.ensure(&machines, &key, &self.interrupt).await?;
        Ok(machines.len())
    }

    /// Deletes the named machines (and the network when none is left); returns how many.
    pub async fn delete(&self, names: &[String]) -> Result<usize, ExecError> {
        let provider = self.local()?;
        let existing: BTreeSet<String> = provider.existing().into_iter().collect();
        let all_go = existing.iter().all(|n| names.contains(n));
        if all_go {
            provider.destroy().await;
        } else {
            for n in names {
                provider.remove(n).await;
            }
        }
        Ok(names.len())
    }

    /// The SSH pool, made on first use.
    pub async fn pool(&self) -> Result<Arc<Pool>, ExecError> {
        self.pool
            .get_or_try_init(|| async {
                let settings = ssh_settings(self.inv, self.state).map_err(ExecError::Ssh)?;
                Ok(Arc::new(Pool::new(settings)))
            })
            .await
            .cloned()
    }

    /// Reads OS, kernel and systemd state from each host over SSH.
    pub async fn probe(&self, hosts: &[String]) -> Result<Vec<HostFacts>, ExecError> {
        let machines: Vec<&Machine> = self
            .inv
            .machines
            .iter()
            .filter(|m| hosts.contains(&m.name))
            .collect();
        let eps = endpoints(self.inv, &machines);
        let pool = self.pool().await?;
        let script = ". /etc/os-release; echo \"$PRETTY_NAME\"; uname -r; systemctl is-system-running || true";
        let results = pool
            .each(&eps, |s| async move { s.exec(script).await })
            .await;
        let mut facts = Vec::new();
        let mut failures = Vec::new();
        for r in results {
            match r.result {
                Ok(out) => {
                    let text = out.stdout_text();
                    let mut lines = text.lines();
                    facts.push(HostFacts {
                        host: r.host,
                        os: lines.next().unwrap_or_default().to_string(),
                        kernel: lines.next().unwrap_or_default().to_string(),
                        systemd: lines.next().unwrap_or_default().to_string(),
                    });
                }
                Err(e) => failures.push((r.host, e)),
            }
        }
        if !failures.is_empty() {
            return Err(ExecError::Hosts(failures));
        }
        let json = serde_json::to_vec_pretty(&facts).unwrap_or_default();
        self.state.write_secret("facts.json", &json)?;
        Ok(facts)
    }

    /// Closes SSH connections.
    pub async fn close(&self) {
        if let Some(p) = self.pool.get() {
            p.close().await;
        }
    }
}
