//! Carries out actions: machine creation and deletion through the provider, probes and commands
//! over SSH. The engine decides what runs; this decides how.

use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

mod dns_check;
mod etcd_rolling;
pub mod etcd_state;
mod kube_api;
pub mod kubeadm;
pub mod upgrade;
mod upgrade_skew;

use crate::etcd;
use crate::interrupt::Interrupt;
use crate::inventory::validate::resolve_path;
use crate::inventory::{Loaded, Machine, ProviderKind, Role};
use crate::own_executable::{self, OwnExecutable, Program};
use crate::pki;
use crate::plan::{Action, Op};
use crate::providers::local::{self, LocalError, LocalProvider};
use crate::ssh::{
    self, Credentials, Endpoint, HostKeyCheck, Pool, Session, Settings, SshError, shell_quote,
};
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
    /// Vagrant failed.
    #[error(transparent)]
    Vagrant(#[from] crate::providers::vagrant::VagrantError),
    /// The OpenStack provider failed.
    #[error(transparent)]
    OpenStack(#[from] crate::providers::openstack::OpenStackError),
    /// A template failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// A check of the cluster from a node failed (its text names host, what and why).
    #[error("{0}")]
    Check(String),
    /// A command failed on a host.
    #[error("{host}: `{command}` exited with {code}: {stderr}")]
    Command {
        /// Machine.
        host: String,
        /// The command.
        command: String,
        /// Its exit status (or the signal).
        code: String,
        /// The end of its error output.
        stderr: String,
    },
    /// The PKI could not be made.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// etcd did not become healthy.
    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),
    /// etcd did not become healthy; the members' own last log lines say why.
    #[error("{cause}{}", journal_text(.journal))]
    EtcdStuck {
        /// What the health check saw.
        cause: crate::etcd::EtcdError,
        /// Per member: the unit's state and the last lines of its journal.
        journal: Vec<(String, String)>,
    },
    /// The Kubernetes API refused or failed.
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
    /// etcd cannot go to the inventory's version from what its members run; nothing changed.
    #[error("etcd cannot go to the inventory's version, nothing was changed:\n{}", .0.iter().map(|p| format!("    - {p}")).collect::<Vec<_>>().join("\n"))]
    EtcdVersion(Vec<String>),
    /// A member would have to restart while the others lack quorum without it.
    #[error("{0}")]
    EtcdQuorum(String),
    /// The upgrade's preflight refused; nothing was changed.
    #[error("the upgrade cannot start, nothing was changed:\n{}", .0.iter().map(|p| format!("    - {p}")).collect::<Vec<_>>().join("\n"))]
    UpgradeRefused(Vec<String>),
    /// A node's upgrade stopped at a step.
    #[error("{node}: the upgrade stopped at {step}: {why}")]
    Upgrade {
        /// The node.
        node: String,
        /// The step.
        step: String,
        /// Why.
        why: String,
    },
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
            Self::Command { host, .. } => {
                format!(
                    "fix the cause on {host} (`forgectl exec --hosts {host} -- …` helps), then run again: finished steps are skipped"
                )
            }
            Self::Pki(_) => "check the state dir; certificates that exist are kept".into(),
            Self::Vagrant(_) => {
                "install vagrant and its provider plugin, or use the local provider to try forgectl"
                    .into()
            }
            Self::OpenStack(e) => e.next_step(),
            Self::Render(_) => "fix the template named above (or the --templates override)".into(),
            Self::Check(_) => "look at CoreDNS and kube-proxy (`forgectl status`), then run `forgectl up --only cluster-ready`".into(),
            Self::Kube(e) => e.next_step(),
            Self::EtcdQuorum(_) => {
                "bring the members named back (`forgectl etcd status`, `forgectl machines start NAME`), then run again".into()
            }
            Self::EtcdVersion(_) => {
                "set versions.etcd as said, then run again (`forgectl etcd status` shows what each member runs)".into()
            }
            Self::UpgradeRefused(_) => {
                "fix what is listed, then run `forgectl upgrade` again".into()
            }
            Self::Upgrade { node, .. } => format!(
                "fix the cause on {node}, then run `forgectl upgrade` again: nodes at the target are skipped, {node} is picked up where it stopped (docs/upgrade.md)"
            ),
            Self::Etcd(_) | Self::EtcdStuck { .. } => {
                "check the members with `forgectl exec --hosts etcd -- journalctl -u etcd -n 50`"
                    .into()
            }
        }
    }
}

/// How long the members may take to answer with a leader. Longer than the unit's own start
/// timeout (`TimeoutStartSec=90s`) plus its `RestartSec=5s`: a member whose first start hangs is
/// stopped and started again by systemd (`Restart=on-failure`) while forgectl still waits, and the
/// error, when it comes, is about a member that failed twice.
const ETCD_FORM_TIMEOUT: Duration = Duration::from_secs(150);

/// The members' journal lines, indented under the error.
fn journal_text(journal: &[(String, String)]) -> String {
    journal
        .iter()
        .map(|(host, text)| {
            let lines: String = text.lines().map(|l| format!("\n      {l}")).collect();
            format!("\n    {host}: etcd.service{lines}")
        })
        .collect()
}

/// What a probe learned about a host.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HostFacts {
    /// Machine name.
    pub host: String,
    /// PRETTY_NAME from os-release.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// `systemctl is-system-running`.
    pub systemd: String,
    /// The cgroup version processes see: 2 (unified) or 1 (legacy or hybrid).
    #[serde(default)]
    pub cgroup_version: u8,
    /// True when the host's processes may hold CAP_SYS_RESOURCE (false in machines whose own
    /// host lacks it): without it, nothing may lower an OOM score.
    #[serde(default)]
    pub cap_sys_resource: bool,
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
    mirror: tokio::sync::Mutex<Option<(Vec<String>, local::mirror::Server)>>,
    images: tokio::sync::Mutex<Option<(PathBuf, local::mirror::Server)>>,
    templates: Option<PathBuf>,
    kube: OnceCell<crate::kube::Kube>,
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
            mirror: tokio::sync::Mutex::new(None),
            images: tokio::sync::Mutex::new(None),
            templates: None,
            kube: OnceCell::new(),
        }
    }

    /// Uses the template overrides in `dir` (`--templates`) for what providers render.
    pub fn with_templates(mut self, dir: Option<PathBuf>) -> Self {
        self.templates = dir;
        self
    }

    fn templates(&self) -> Result<crate::render::Templates, ExecError> {
        Ok(crate::render::Templates::load(self.templates.as_deref())?)
    }

    /// True once the user asked to stop (Ctrl-C, SIGTERM).
    pub fn interrupted(&self) -> bool {
        self.interrupt.is_set()
    }

    /// Resolves when Ctrl-C or SIGTERM arrives.
    pub async fn interrupt_wait(&self) {
        self.interrupt.wait().await
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
            let text = std::fs::read_to_string(&public).map_err(|e| {
                ExecError::Unsupported(format!(
                    "cannot read the public key {} for ssh.key: {e}",
                    public.display()
                ))
            })?;
            return crate::ssh::openssh_public_key(&text).map_err(|e| {
                ExecError::Unsupported(format!("{} (for ssh.key): {e}", public.display()))
            });
        }
        if let Some(p) = self.state.read(CLUSTER_KEY_PUB)? {
            return crate::ssh::openssh_public_key(&String::from_utf8_lossy(&p))
                .map_err(|e| ExecError::Unsupported(format!("{CLUSTER_KEY_PUB}: {e}")));
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
        if self.inv.inventory.provider == ProviderKind::Openstack {
            return self.create_openstack().await;
        }
        if self.inv.inventory.provider == ProviderKind::Vagrant {
            let key = self.cluster_public_key()?;
            let templates = self.templates()?;
            crate::providers::vagrant::up(self.inv, &templates, self.state.path(), &key, names)
                .await?;
            return Ok(names.len());
        }
        let provider = self.local()?;
        let key = self.cluster_public_key()?;
        let machines = self.named(names);
        provider.ensure(&machines, &key, &self.interrupt).await?;
        Ok(machines.len())
    }

    /// Deletes the named machines (and the network when none is left); returns how many.
    pub async fn delete(&self, names: &[String]) -> Result<usize, ExecError> {
        if self.inv.inventory.provider == ProviderKind::Openstack {
            return self.delete_openstack(names).await;
        }
        if self.inv.inventory.provider == ProviderKind::Vagrant {
            let done = crate::providers::vagrant::destroy(self.inv, self.state.path()).await?;
            return Ok(if done { names.len() } else { 0 });
        }
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

    /// Makes whatever the cluster's OpenStack machines lack and records their addresses.
    async fn create_openstack(&self) -> Result<usize, ExecError> {
        use crate::providers::openstack::{OpenStack, RECORD};
        let key = self.cluster_public_key()?;
        let user_data = crate::providers::openstack::user_data(self.inv, &self.templates()?, &key)?;
        let cloud = OpenStack::connect(self.inv).await?;
        let report = cloud.ensure(&key, &user_data, &self.interrupt).await?;
        let json = serde_json::to_vec_pretty(&report.machines).unwrap_or_default();
        self.state.write_secret(RECORD, &json)?;
        if !self.quiet {
            for r in &report.machines {
                let volume = r
                    .volume
                    .as_ref()
                    .map(|v| {
                        format!(
                            ", {} GiB volume at {}",
                            v.size_gb,
                            v.device.as_deref().unwrap_or("(device unknown)")
                        )
                    })
                    .unwrap_or_default();
                let floating = r
                    .floating_address
                    .as_ref()
                    .map(|f| format!(", floating {f}"))
                    .unwrap_or_default();
                crate::errln!(
                    "  {}  server {} at {}{floating}{volume}",
                    r.machine,
                    r.server_name,
                    r.address.as_deref().unwrap_or("?")
                );
            }
        }
        Ok(report.created)
    }

    /// Deletes what forgectl made on OpenStack: all of it when `names` covers every machine
    /// that exists (or names none), else those machines' servers, ports, IPs and volumes.
    async fn delete_openstack(&self, names: &[String]) -> Result<usize, ExecError> {
        use crate::providers::openstack::{OpenStack, RECORD};
        let cloud = OpenStack::connect(self.inv).await?;
        let found = cloud.find().await?;
        let all = found
            .servers
            .iter()
            .all(|s| s.machine().is_some_and(|m| names.iter().any(|n| n == m)));
        let gone = cloud.destroy(&found, (!all).then_some(names)).await?;
        if all {
            let _ = std::fs::remove_file(self.state.path().join(RECORD));
        }
        Ok(gone)
    }

    /// The inventory's machines with these names, in inventory order.
    fn named(&self, names: &[String]) -> Vec<&Machine> {
        self.inv
            .machines
            .iter()
            .filter(|m| names.contains(&m.name))
            .collect()
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
        let machines = self.named(hosts);
        let eps = endpoints(self.inv, &machines);
        let pool = self.pool().await?;
        let script = ". /etc/os-release; echo \"$PRETTY_NAME\"; uname -r; \
             echo \"$(systemctl is-system-running)\"; stat -fc %T /sys/fs/cgroup; \
             grep '^CapBnd:' /proc/self/status | cut -f2";
        let results = pool
            .each_retrying(&eps, |s| async move { s.exec(script).await })
            .await;
        let mut facts = Vec::new();
        let mut failures = Vec::new();
        for r in results {
            match r.result {
                Ok(out) => {
                    let text = out.stdout_text();
                    let mut lines = text.lines();
                    let mut next = || lines.next().unwrap_or_default().trim().to_string();
                    facts.push(HostFacts {
                        host: r.host,
                        os: next(),
                        kernel: next(),
                        systemd: next(),
                        cgroup_version: if next() == "cgroup2fs" { 2 } else { 1 },
                        cap_sys_resource: u64::from_str_radix(&next(), 16)
                            .is_ok_and(|mask| mask & (1 << 24) != 0),
                    });
                }
                Err(e) => failures.push((r.host, e)),
            }
        }
        if !failures.is_empty() {
            return Err(ExecError::Hosts(failures));
        }
        // Hosts probed earlier and not now keep what was learned of them.
        let mut all: Vec<HostFacts> = self
            .state
            .read(crate::phases::FACTS_FILE)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        all.retain(|f| !facts.iter().any(|n| n.host == f.host));
        all.extend(facts.iter().cloned());
        all.sort_by(|a, b| a.host.cmp(&b.host));
        let json = serde_json::to_vec_pretty(&all).unwrap_or_default();
        self.state.write_secret(crate::phases::FACTS_FILE, &json)?;
        Ok(facts)
    }

    /// Re-issues every leaf certificate from the same CAs; returns how many.
    pub fn renew_pki(&self) -> Result<usize, ExecError> {
        Ok(pki::Pki::new(self.state)
            .renew(&self.etcd_pki_members())?
            .created
            .len())
    }

    fn etcd_pki_members(&self) -> Vec<pki::Member> {
        self.inv
            .with_role(Role::Etcd)
            .map(|m| pki::Member {
                name: m.name.clone(),
                addresses: m.address.into_iter().collect(),
            })
            .collect()
    }

    /// Makes the certificates that are missing for the etcd members; returns how many files.
    /// Never makes a new etcd or Kubernetes CA while the machines already have one (a lost
    /// state dir): that would lock forgectl, the API servers and the nodes out; `forgectl certs
    /// recover` brings them back.
    pub async fn ensure_pki(&self) -> Result<usize, ExecError> {
        let pki = pki::Pki::new(self.state);
        let refuse = |rel: &str, who: &str| {
            ExecError::Pki(pki::PkiError::Corrupt {
                path: pki.path(rel, "key").display().to_string(),
                cause: format!(
                    "missing from the state dir, but the {who} already have a CA; \
                     run `forgectl certs recover` instead of making a new one"
                ),
            })
        };
        if !pki.has_etcd_ca() && self.some_have(Role::Etcd, "/etc/etcd/pki/ca.crt").await? {
            return Err(refuse(pki::paths::ETCD_CA, "etcd members"));
        }
        if !pki.has_kube_ca()
            && self
                .some_have(Role::ControlPlane, "/etc/kubernetes/pki/ca.crt")
                .await?
        {
            return Err(refuse(pki::paths::KUBE_CA, "control planes"));
        }
        let mut made = pki.ensure(&self.etcd_pki_members())?.created.len();
        let front = &self.inv.inventory.ingress.tls_front;
        if self.inv.inventory.ingress.enabled && front.enabled && front.cert_file.is_none() {
            made += pki
                .ensure_tls_front(&self.inv.inventory.ingress.tool_domain)?
                .created
                .len();
        }
        if self.inv.inventory.platform.enabled {
            made += pki.ensure_platform()?.created.len();
        }
        Ok(made)
    }

    /// True when any reachable machine of `role` has the file `path`.
    async fn some_have(&self, role: Role, path: &str) -> Result<bool, ExecError> {
        let machines: Vec<&Machine> = self.inv.with_role(role).collect();
        if machines.is_empty() {
            return Ok(false);
        }
        if self.inv.inventory.provider == ProviderKind::Local && self.local()?.existing().is_empty()
        {
            return Ok(false);
        }
        let pool = self.pool().await?;
        let eps = endpoints(self.inv, &machines);
        let probe = format!("test -e {}", shell_quote(path));
        let results = pool
            .each_retrying(&eps, |s| {
                let probe = probe.clone();
                async move { s.exec(&probe).await }
            })
            .await;
        Ok(results
            .iter()
            .any(|r| r.result.as_ref().is_ok_and(|o| o.success())))
    }

    /// Reads the etcd CA back from the first etcd member that has it into the state dir.
    pub async fn recover_etcd_ca(&self) -> Result<String, ExecError> {
        self.recover_from(
            Role::Etcd,
            &[("/etc/etcd/pki/ca", pki::paths::ETCD_CA, true)],
        )
        .await
    }

    /// Reads the Kubernetes and front-proxy CAs and the service-account key pair back from the
    /// first control plane that has them (kubeadm's `/etc/kubernetes/pki`) into the state dir.
    pub async fn recover_cluster_cas(&self) -> Result<String, ExecError> {
        self.recover_from(
            Role::ControlPlane,
            &[
                ("/etc/kubernetes/pki/ca", pki::paths::KUBE_CA, true),
                (
                    "/etc/kubernetes/pki/front-proxy-ca",
                    pki::paths::FRONT_PROXY_CA,
                    true,
                ),
                ("/etc/kubernetes/pki/sa", pki::paths::SA, false),
            ],
        )
        .await
    }

    /// For each (remote path without extension, state-dir path, is a CA), copies the pair from
    /// the first machine of `role` that has all of them: a CA's `.crt` / `.key` (checked to
    /// belong together), else `.key` / `.pub`. Returns the machine's name.
    async fn recover_from(
        &self,
        role: Role,
        files: &[(&str, &str, bool)],
    ) -> Result<String, ExecError> {
        let machines: Vec<&Machine> = self.inv.with_role(role).collect();
        let pool = self.pool().await?;
        let mut tried = Vec::new();
        'hosts: for ep in endpoints(self.inv, &machines) {
            let s = match pool.session(&ep).await {
                Ok(s) => s,
                Err(e) => {
                    tried.push(format!("{}: {e}", ep.name));
                    continue;
                }
            };
            let mut got = Vec::new();
            for (remote, rel, is_ca) in files {
                let public = if *is_ca { "crt" } else { "pub" };
                match (
                    s.download(&format!("{remote}.{public}")).await,
                    s.download(&format!("{remote}.key")).await,
                ) {
                    (Ok(c), Ok(k)) => got.push((
                        *rel,
                        *is_ca,
                        String::from_utf8_lossy(&c).into_owned(),
                        String::from_utf8_lossy(&k).into_owned(),
                    )),
                    (Err(e), _) | (_, Err(e)) => {
                        tried.push(format!("{}: {e}", ep.name));
                        continue 'hosts;
                    }
                }
            }
            let p = pki::Pki::new(self.state);
            for (rel, is_ca, public, key) in got {
                if is_ca {
                    p.adopt_ca(rel, &public, &key)?;
                } else {
                    p.adopt_key_pair(rel, &public, &key)?;
                }
            }
            return Ok(ep.name.clone());
        }
        Err(ExecError::Unsupported(format!(
            "no {} machine gave back its keys: {}",
            role.as_str(),
            tried.join("; ")
        )))
    }

    /// forgectl's etcd client credentials and the members' client URLs.
    pub fn etcd_access(&self) -> Result<(etcd::Tls, Vec<(String, String)>), ExecError> {
        let p = pki::Pki::new(self.state);
        let read = |rel: &str, ext: &str| -> Result<String, ExecError> {
            p.read(rel, ext)?.ok_or_else(|| {
                etcd::EtcdError::NoCredentials(p.path(rel, ext).display().to_string()).into()
            })
        };
        let tls = etcd::Tls {
            ca: read(pki::paths::ETCD_CA, "crt")?,
            cert: read(pki::paths::FORGECTL_ETCD_CLIENT, "crt")?,
            key: read(pki::paths::FORGECTL_ETCD_CLIENT, "key")?,
        };
        Ok((tls, etcd::members(self.inv)))
    }

    /// Waits for every etcd member to answer over mTLS with a leader.
    pub async fn wait_etcd(&self) -> Result<Vec<etcd::MemberHealth>, ExecError> {
        self.wait_etcd_members(None).await
    }

    /// Waits for the named members (all of the inventory's when None) to answer with a leader.
    pub async fn wait_etcd_members(
        &self,
        only: Option<&[String]>,
    ) -> Result<Vec<etcd::MemberHealth>, ExecError> {
        let (tls, mut members) = self.etcd_access()?;
        if let Some(names) = only {
            members.retain(|(n, _)| names.contains(n));
        }
        match etcd::wait_healthy(&members, &tls, ETCD_FORM_TIMEOUT).await {
            Ok(h) => Ok(h),
            Err(cause) => {
                let names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
                let journal = self.etcd_journal(&names).await;
                Err(ExecError::EtcdStuck { cause, journal })
            }
        }
    }

    /// Each member's etcd unit state and its last journal lines (best effort: what cannot be read
    /// is left out), for an error that says why a member did not come up.
    pub(crate) async fn etcd_journal(&self, names: &[String]) -> Vec<(String, String)> {
        let Ok(pool) = self.pool().await else {
            return Vec::new();
        };
        let machines = self.named(names);
        let eps = endpoints(self.inv, &machines);
        let probe = "systemctl is-active etcd.service; systemctl show -p SubState,MainPID,NRestarts,ExecMainCode,ExecMainStatus,ActiveEnterTimestamp,InactiveExitTimestamp etcd.service | tr '\\n' ' '; echo; echo \"journald: $(systemctl is-active systemd-journald.service) $(systemctl show -p NRestarts --value systemd-journald.service) restart(s)\"; journalctl -u etcd.service -n 8 --no-pager -o cat 2>&1 | cut -c1-240; ps -eo pid,stat,wchan:28,etime,comm --no-headers | grep -E ' (etcd|systemd-journal)$' | sed 's/^/process: /' || true";
        let results = pool
            .each(&eps, |s| {
                let line = s.as_root(probe);
                // exec has the inventory's command timeout.
                async move { s.exec(&line).await }
            })
            .await;
        results
            .into_iter()
            .filter_map(|r| {
                let out = r.result.ok()?;
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (!text.is_empty()).then_some((r.host, text))
            })
            .collect()
    }

    /// The apt source line of the local package mirror serving `packages`, started on first use.
    async fn mirror_source(&self, packages: &[String]) -> Result<Option<String>, ExecError> {
        if self.inv.inventory.provider != ProviderKind::Local {
            return Ok(None);
        }
        let mut guard = self.mirror.lock().await;
        let serves = guard
            .as_ref()
            .is_some_and(|(p, _)| packages.iter().all(|x| p.contains(x)));
        if !serves {
            let mut all: Vec<String> = Vec::new();
            if let Some((served, server)) = guard.take() {
                // The new mirror takes the same port: the old one must have let go of it.
                server.shutdown().await;
                all = served;
            }
            all.extend(packages.iter().cloned());
            all.sort();
            all.dedup();
            let server = self.local()?.mirror(&all, &[]).await?;
            *guard = Some((all, server));
        }
        Ok(guard.as_ref().map(|(_, s)| s.apt_source()))
    }

    /// The base URL (ending in `/`) from which local machines download the image archives of
    /// `dir`, served on the bridge address from first use; None for other providers, whose hosts
    /// are sent each archive over SSH.
    async fn image_source(&self, dir: &Path) -> Result<Option<String>, ExecError> {
        if self.inv.inventory.provider != ProviderKind::Local {
            return Ok(None);
        }
        let mut guard = self.images.lock().await;
        if guard.as_ref().is_none_or(|(d, _)| d != dir) {
            let server = self.local()?.serve_dir(dir).await?;
            *guard = Some((dir.to_path_buf(), server));
        }
        Ok(guard.as_ref().map(|(_, s)| format!("http://{}/", s.addr)))
    }

    /// Runs uploads, commands and package installs on their hosts: each host's actions in order,
    /// hosts in parallel (bounded). Skips what is already done; returns how many actions changed
    /// something.
    pub async fn host_actions(&self, actions: &[&Action]) -> Result<usize, ExecError> {
        let mut by_host: Vec<(String, Vec<&Action>)> = Vec::new();
        for a in actions {
            let Some(h) = &a.host else { continue };
            match by_host.iter_mut().find(|(n, _)| n == h) {
                Some((_, list)) => list.push(a),
                None => by_host.push((h.clone(), vec![a])),
            }
        }
        // The mirror must serve before any host installs from it.
        let wanted: Vec<String> = actions
            .iter()
            .filter_map(|a| match &a.op {
                Op::InstallPackages { packages } => Some(packages.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let machines: Vec<&Machine> = by_host
            .iter()
            .filter_map(|(h, _)| self.inv.machines.iter().find(|m| &m.name == h))
            .collect();
        let eps = endpoints(self.inv, &machines);
        let pool = self.pool().await?;
        let source = if wanted.is_empty() {
            None
        } else {
            self.mirror_source_if_needed(&pool, &eps, &wanted).await?
        };
        // Release tarballs: forgectl downloads and verifies each once, then copies it to the hosts
        // (which need no route out).
        let mut tarballs: Vec<Fetched> = Vec::new();
        for a in actions {
            if let Op::InstallArtifact { artifact, .. } = &a.op
                && !tarballs.iter().any(|f| &f.name == artifact)
            {
                let art = crate::artifacts::list(&self.inv.inventory)
                    .into_iter()
                    .find(|x| &x.name == artifact)
                    .ok_or_else(|| {
                        ExecError::Unsupported(format!("no artifact named {artifact}"))
                    })?;
                let (data, _) = crate::artifacts::get_verified(&art)
                    .await
                    .map_err(|e| ExecError::Unsupported(format!("artifact {artifact}: {e}")))?;
                let sha256 = crate::plan::sha256_hex(&data);
                tarballs.push(Fetched {
                    name: artifact.clone(),
                    file: art.file.clone(),
                    single_binary: art.kind == crate::artifacts::Kind::Binary,
                    data,
                    sha256,
                });
            }
        }
        // Each program to install, located (and hashed, unless cached) once for every host.
        let mut own: Vec<(Program, OwnExecutable)> = Vec::new();
        for a in actions {
            if let Op::InstallOwn { program, .. } = a.op
                && !own.iter().any(|(p, _)| *p == program)
            {
                let located = OwnExecutable::locate(program)
                    .await
                    .map_err(|e| unusable_own(program, e))?;
                own.push((program, located));
            }
        }
        let image_dir = actions.iter().find_map(|a| match &a.op {
            Op::LoadImage { path, .. } => Path::new(path).parent().map(Path::to_path_buf),
            _ => None,
        });
        let images = match &image_dir {
            Some(d) => self.image_source(d).await?,
            None => None,
        };
        let (tarballs, own) = (&tarballs, &own);
        let by_host = &by_host;
        let source = &source;
        let images = &images;
        let results = pool
            .each(&eps, |s| async move {
                let name = s.endpoint().name.clone();
                let list = by_host
                    .iter()
                    .find(|(h, _)| *h == name)
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                let from = Sources {
                    apt: source.as_deref(),
                    images: images.as_deref(),
                    tarballs,
                    own,
                };
                Ok(host_run(&s, &list, &from).await)
            })
            .await;
        let mut changed = 0;
        let mut ssh_failures = Vec::new();
        for r in results {
            match r.result {
                Ok(Ok(n)) => changed += n,
                Ok(Err(e)) => return Err(e),
                Err(e) => ssh_failures.push((r.host, e)),
            }
        }
        if !ssh_failures.is_empty() {
            return Err(ExecError::Hosts(ssh_failures));
        }
        Ok(changed)
    }

    /// Starts the mirror only when some host lacks some of `packages`.
    async fn mirror_source_if_needed(
        &self,
        pool: &Pool,
        eps: &[Endpoint],
        packages: &[String],
    ) -> Result<Option<String>, ExecError> {
        let check = installed_check(packages);
        let results = pool
            .each_retrying(eps, |s| {
                let check = check.clone();
                async move { s.exec(&s.as_root(&check)).await }
            })
            .await;
        let all_there = results
            .iter()
            .all(|r| r.result.as_ref().is_ok_and(|o| o.success()));
        if all_there {
            return Ok(None);
        }
        self.mirror_source(packages).await
    }

    /// Closes SSH connections.
    pub async fn close(&self) {
        if let Some(p) = self.pool.get() {
            p.close().await;
        }
    }
}

fn unusable_own(program: Program, e: String) -> ExecError {
    ExecError::Unsupported(format!("cannot read this build's {}: {e}", program.name()))
}

/// A release artifact forgectl downloaded and verified once, to copy to the hosts.
struct Fetched {
    name: String,
    file: String,
    single_binary: bool,
    data: Vec<u8>,
    sha256: String,
}

/// A shell check that succeeds when every package is installed.
fn installed_check(packages: &[String]) -> String {
    packages
        .iter()
        .map(|p| {
            format!(
                "dpkg-query -W -f='${{Status}}' {} 2>/dev/null | grep -q 'install ok installed'",
                shell_quote(p)
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// A failed command, with the last lines of what it wrote: its standard error, and its standard
/// output too (kubeadm reports the phase it was in on standard output).
fn failed(host: &str, command: &str, out: &ssh::Output) -> ExecError {
    let last = |text: String| -> Vec<String> {
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(strip_ansi)
            .collect();
        lines[lines.len().saturating_sub(6)..].to_vec()
    };
    let mut parts = last(out.stderr_text());
    let said = last(out.stdout_text());
    if !said.is_empty() {
        parts.push("output:".into());
        parts.extend(said);
    }
    ExecError::Command {
        host: host.into(),
        command: command.into(),
        code: match (&out.exit_code, &out.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("signal {s}"),
            _ => "no status".into(),
        },
        stderr: parts.join(" | "),
    }
}

/// `line` without terminal colour sequences (kubeadm colours its preflight output).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a host's installs come from.
struct Sources<'a> {
    /// The package mirror's apt source line (local machines).
    apt: Option<&'a str>,
    /// Base URL of the image archives (local machines); else they are sent over SSH.
    images: Option<&'a str>,
    /// Release artifacts, downloaded and verified once.
    tarballs: &'a [Fetched],
    /// This build's programs.
    own: &'a [(Program, OwnExecutable)],
}

/// Loads one image archive into containerd on `s`'s host: fetched from `base` (the host machine's
/// image server) or sent over SSH, then imported and removed.
async fn load_image(
    s: &Session,
    base: Option<&str>,
    path: &str,
    file: &str,
) -> Result<(), ExecError> {
    let host = s.endpoint().name.clone();
    let ssh = |e: SshError| ExecError::Hosts(vec![(host.clone(), e)]);
    // containerd's own disk, not /tmp: archives are hundreds of megabytes.
    let tmp = format!("/var/lib/containerd/.forgectl-import-{file}");
    let q = shell_quote(&tmp);
    let fetch = match base {
        Some(b) => format!(
            "curl -fsS --max-time 300 -o {q} {} && ",
            shell_quote(&format!("{b}{file}"))
        ),
        None => {
            let data = tokio::fs::read(path).await.map_err(|e| {
                ExecError::Unsupported(format!("cannot read the image archive {path}: {e}"))
            })?;
            s.upload(&tmp, &data, 0o600, "root:root")
                .await
                .map_err(ssh)?;
            String::new()
        }
    };
    let script = format!("{fetch}ctr -n k8s.io images import {q}; rc=$?; rm -f {q}; exit $rc");
    let out = s.exec(&s.as_root(&script)).await.map_err(ssh)?;
    if !out.success() {
        return Err(failed(
            &host,
            &format!("ctr -n k8s.io images import {file}"),
            &out,
        ));
    }
    Ok(())
}

/// One host's actions in order. SSH errors end the host's work (reported by the caller); a
/// failing command is an `ExecError::Command`.
async fn host_run(
    s: &Session,
    actions: &[&Action],
    from: &Sources<'_>,
) -> Result<usize, ExecError> {
    let (source, tarballs, own) = (from.apt, from.tarballs, from.own);
    let host = s.endpoint().name.clone();
    let ssh = |e: SshError| ExecError::Hosts(vec![(host.clone(), e)]);
    // What every file to upload looks like now, in one round trip (checksum, mode, owner).
    let paths: Vec<&str> = actions
        .iter()
        .filter_map(|a| match &a.op {
            Op::Upload { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    let mut current: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    if !paths.is_empty() {
        let probe = paths
            .iter()
            .map(|p| {
                let q = shell_quote(p);
                format!(
                    "printf '%s|%s\\n' \"$(sha256sum -- {q} 2>/dev/null | cut -d' ' -f1)\" \"$(stat -c '%a %U:%G' -- {q} 2>/dev/null)\""
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let out = s.exec(&s.as_root(&probe)).await.map_err(ssh)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        current = paths
            .iter()
            .copied()
            .zip(text.lines().map(str::to_string))
            .collect();
    }
    let mut changed = 0;
    for a in actions {
        match &a.op {
            Op::Upload {
                path,
                mode,
                owner,
                content,
                sha256,
                ..
            } => {
                let want = format!("{sha256}|{mode:o} {owner}");
                if current.get(path.as_str()) == Some(&want) {
                    continue;
                }
                s.upload(path, content.as_bytes(), *mode, owner)
                    .await
                    .map_err(ssh)?;
                tracing::info!(host = %host, path = %path, "changed: uploaded");
                changed += 1;
            }
            Op::Run {
                command,
                unless,
                on_change,
            } => {
                let forced = *on_change && changed > 0;
                if !forced && let Some(u) = unless {
                    let out = s.exec(&s.as_root(u)).await.map_err(ssh)?;
                    if out.success() {
                        continue;
                    }
                }
                let out = s.exec(&s.as_root(command)).await.map_err(ssh)?;
                if !out.success() {
                    return Err(failed(&host, command, &out));
                }
                tracing::info!(host = %host, command = %command, forced, "changed: ran");
                changed += 1;
            }
            Op::InstallArtifact {
                artifact,
                binaries,
                dest,
                installed,
                ..
            } => {
                if s.exec(&s.as_root(installed)).await.map_err(ssh)?.success() {
                    continue;
                }
                let Some(f) = tarballs.iter().find(|f| &f.name == artifact) else {
                    continue;
                };
                let tmp = format!("/tmp/forgectl-{}", f.file);
                s.upload(&tmp, &f.data, 0o600, "root:root")
                    .await
                    .map_err(ssh)?;
                let dest = shell_quote(dest);
                let verify = format!(
                    "set -e; echo '{}  {tmp}' | sha256sum -c --quiet; install -d -m 0755 {dest}; ",
                    f.sha256
                );
                let script = match (f.single_binary, binaries.first()) {
                    (true, Some(b)) => format!(
                        "{verify}install -m 0755 {tmp} {dest}/{b}; rm -f {tmp}",
                        b = shell_quote(b)
                    ),
                    _ => {
                        let bins = binaries
                            .iter()
                            .map(|b| shell_quote(b))
                            .collect::<Vec<_>>()
                            .join(" ");
                        // Release tarballs nest their binaries differently (bin/, a versioned
                        // directory, or none): each is found by name.
                        format!(
                            "{verify}d=$(mktemp -d); tar -xzf {tmp} -C \"$d\"; \
                             for b in {bins}; do src=$(find \"$d\" -type f -name \"$b\" | head -n 1); \
                             test -n \"$src\" || {{ echo \"{file} has no $b\" >&2; exit 1; }}; \
                             install -m 0755 \"$src\" {dest}/$b; done; rm -rf \"$d\" {tmp}",
                            file = f.file
                        )
                    }
                };
                let out = s.exec(&s.as_root(&script)).await.map_err(ssh)?;
                if !out.success() {
                    return Err(failed(
                        &host,
                        &format!("install {artifact} from its release file"),
                        &out,
                    ));
                }
                let check = s.exec(&s.as_root(installed)).await.map_err(ssh)?;
                if !check.success() {
                    return Err(ExecError::Command {
                        host: host.clone(),
                        command: installed.clone(),
                        code: "check failed after install".into(),
                        stderr: format!(
                            "{} installed from {}, but it is not the version the inventory asks for",
                            binaries.join(", "),
                            f.file
                        ),
                    });
                }
                tracing::info!(host = %host, artifact = %artifact, "changed: installed");
                changed += 1;
            }
            Op::LoadImage {
                path,
                file,
                present,
                ..
            } => {
                if s.exec(&s.as_root(present)).await.map_err(ssh)?.success() {
                    continue;
                }
                load_image(s, from.images, path, file).await?;
                if !s.exec(&s.as_root(present)).await.map_err(ssh)?.success() {
                    return Err(ExecError::Command {
                        host: host.clone(),
                        command: format!("ctr -n k8s.io images import {file}"),
                        code: "check failed after import".into(),
                        stderr: format!(
                            "{file} was imported, but containerd does not list its content under every name it carries"
                        ),
                    });
                }
                tracing::info!(host = %host, file = %file, "changed: image loaded");
                changed += 1;
            }
            Op::InstallOwn { program, path } => {
                let Some((_, own)) = own.iter().find(|(p, _)| p == program) else {
                    continue;
                };
                let current = own_executable::host_is_current(path, &own.sha256);
                if s.exec(&s.as_root(&current)).await.map_err(ssh)?.success() {
                    continue;
                }
                let data = own.data().await.map_err(|e| unusable_own(*program, e))?;
                s.upload(path, data, 0o755, "root:root")
                    .await
                    .map_err(ssh)?;
                // Marked for the next run's quick check; a mark that fails only costs a hash then.
                let mark = own_executable::host_mark(path, &own.sha256);
                let _ = s.exec(&s.as_root(&mark)).await;
                tracing::info!(host = %host, path = %path, "changed: installed this build");
                changed += 1;
            }
            Op::InstallPackages { packages } => {
                let check = installed_check(packages);
                if s.exec(&s.as_root(&check)).await.map_err(ssh)?.success() {
                    continue;
                }
                let list = packages
                    .iter()
                    .map(|p| shell_quote(p))
                    .collect::<Vec<_>>()
                    .join(" ");
                // Packages must not start services with their default configuration (policy-rc.d).
                let mut script = String::from(
                    "set -e; printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; ",
                );
                if let Some(src) = source {
                    script.push_str(&format!(
                        "echo {} > /etc/apt/sources.list.d/forgectl.list; : > /etc/apt/sources.list; ",
                        shell_quote(src)
                    ));
                }
                script.push_str(&format!(
                    "apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {list} >/dev/null"
                ));
                let out = s
                    .exec_with(&s.as_root(&script), None, Duration::from_secs(600))
                    .await
                    .map_err(ssh)?;
                if !out.success() {
                    return Err(failed(&host, &format!("apt-get install {list}"), &out));
                }
                tracing::info!(host = %host, packages = %list, "changed: packages installed");
                changed += 1;
            }
            _ => {}
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::{ExecError, failed, journal_text};
    use crate::ssh::Output;

    /// A member that never became healthy shows its unit state and last log lines under the
    /// error, one block a member.
    #[test]
    fn stuck_members_show_their_journal() {
        let text = journal_text(&[(
            "etcd-2".to_string(),
            "activating\nfailed to listen on peer: bind: address already in use".to_string(),
        )]);
        assert_eq!(
            text,
            "\n    etcd-2: etcd.service\n      activating\n      failed to listen on peer: bind: address already in use"
        );
    }

    /// kubeadm says which phase it was in on standard output and why it failed on standard
    /// error: a failed command shows the end of both, without terminal colours.
    #[test]
    fn a_failure_shows_both_streams_without_colours() {
        let out = Output {
            exit_code: Some(1),
            signal: None,
            stdout: b"[certs] Using existing ca\n[wait-control-plane] Waiting for the kubelet\n\x1b[0;32menabled\x1b[0m\n".to_vec(),
            stderr: b"error: error execution phase wait-control-plane: timed out\n".to_vec(),
            duration: std::time::Duration::ZERO,
        };
        let ExecError::Command { stderr, code, .. } = failed("control-1", "kubeadm init", &out)
        else {
            panic!("not a command error");
        };
        assert_eq!(code, "1");
        assert_eq!(
            stderr,
            "error: error execution phase wait-control-plane: timed out | output: | \
             [certs] Using existing ca | [wait-control-plane] Waiting for the kubelet | enabled"
        );
    }
}
