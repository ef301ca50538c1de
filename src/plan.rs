//! Plans: what each phase would do on each host, as data. `plan`, `--dry-run`, `render` and `up`
//! all read the same plan, so they cannot drift apart.

use serde::Serialize;
use std::fmt::Write as _;

/// One thing to do, on a host or on the machine running forgectl.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// The machine it runs on; None for work forgectl does itself (cloud APIs, the Kubernetes API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What it does, for people.
    pub description: String,
    /// What exactly.
    pub op: Op,
}

/// The kinds of action the executor knows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// Write a file (atomically: temp file + rename) with this mode and owner.
    Upload {
        /// Absolute path on the host.
        path: String,
        /// Permission bits.
        mode: u32,
        /// `user:group`.
        owner: String,
        /// The template it was rendered from, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        /// The content (never printed; `plan` shows its size and checksum).
        #[serde(skip)]
        content: String,
        /// sha256 of the content, hex.
        sha256: String,
        /// Size in bytes.
        bytes: usize,
    },
    /// Run a shell command; `unless` is a command whose success means it is already done.
    Run {
        /// The command.
        command: String,
        /// Check that skips the command when it succeeds.
        #[serde(skip_serializing_if = "Option::is_none")]
        unless: Option<String>,
        /// Also run it when an earlier action of this phase changed something on this host (a
        /// restart after a configuration change), whatever `unless` says.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        on_change: bool,
    },
    /// Install Debian packages that are missing (from the local mirror for local machines).
    InstallPackages {
        /// Package names.
        packages: Vec<String>,
    },
    /// Install binaries from a release artifact (a tarball, or a single binary), verified against
    /// its published checksum, unless `installed` (a shell check) already succeeds.
    InstallArtifact {
        /// Artifact name (see `forgectl artifacts list`).
        artifact: String,
        /// Its version.
        version: String,
        /// Binaries to take from the tarball (for a single binary: the name it is installed as).
        binaries: Vec<String>,
        /// Where they go.
        dest: String,
        /// Shell check that succeeds when the right version is installed.
        installed: String,
    },
    /// Load a container image archive into containerd (namespace k8s.io) on the host, unless
    /// `present` (a shell check: the same content under every reference) already succeeds.
    LoadImage {
        /// The archive on this machine.
        path: String,
        /// Its file name.
        file: String,
        /// The references it carries.
        refs: Vec<String>,
        /// Its content digest.
        digest: String,
        /// Its size in bytes.
        size: u64,
        /// Shell check that succeeds when the node has it.
        present: String,
    },
    /// Copy one of this build's programs (forgectl itself, or toolctl beside it) to `path` on
    /// the host (0755 root), unless the file there is the same build (same sha256).
    InstallOwn {
        /// Which program.
        program: crate::own_executable::Program,
        /// Absolute path on the host.
        path: String,
    },
    /// Make the cluster's certificates that are missing (forgectl itself, in the state dir).
    EnsurePki,
    /// Wait until every etcd member answers over mTLS and the cluster has a leader.
    WaitEtcdHealthy,
    /// Save a snapshot of the etcd keyspace from a healthy member into the state dir's
    /// `backups/etcd-LABEL-TIME.db` (0600, checksum verified). When no member answers: an error
    /// if `required`, else a warning and nothing saved.
    SnapshotEtcd {
        /// Names the snapshot (`pre-upgrade`, `pre-reset`).
        label: String,
        /// Whether the run stops when no snapshot can be taken.
        required: bool,
    },
    /// Forget, in the state dir, how the etcd members first started (after every member's data
    /// was removed): the next run forms a new cluster.
    ForgetEtcdCluster,
    /// Create a machine through the provider (forgectl itself, no SSH).
    CreateMachine {
        /// The machine.
        machine: String,
        /// Its address, when known before creation.
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    /// Delete a machine and what the provider made for it.
    DeleteMachine {
        /// The machine.
        machine: String,
    },
    /// Connect over SSH and read the host's facts; changes nothing.
    Probe,
    /// Copy a file from the host into the cluster's state dir (the admin kubeconfig).
    FetchFile {
        /// Absolute path on the host.
        path: String,
        /// Path under the cluster's state dir.
        to: String,
    },
    /// Apply Kubernetes objects with server-side apply (forgectl's field manager), through the
    /// admin kubeconfig in the state dir.
    ApplyManifests {
        /// The template they were rendered from.
        template: String,
        /// Where `render` writes them (`cluster/manifests/NAME.yaml`).
        path: String,
        /// The multi-document YAML (never printed).
        #[serde(skip)]
        content: String,
        /// sha256 of the content, hex.
        sha256: String,
        /// How many objects.
        objects: usize,
    },
    /// Wait until a DaemonSet or Deployment rolled out (through the admin kubeconfig).
    WaitRollout {
        /// `DaemonSet` or `Deployment`.
        workload: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// How long at most, in seconds.
        timeout_s: u64,
    },
    /// Wait until every node of `nodes` is registered and Ready.
    WaitNodesReady {
        /// Node names.
        nodes: Vec<String>,
        /// How long at most, in seconds.
        timeout_s: u64,
    },
    /// Wait until every pod of `namespace` runs with its containers ready.
    WaitPodsRunning {
        /// The namespace.
        namespace: String,
        /// How long at most, in seconds.
        timeout_s: u64,
    },
    /// From the action's host, ask the cluster DNS at `server` (TCP) for `name` and expect
    /// `expect` among the addresses, until it does or `timeout_s` ends.
    CheckDns {
        /// The name asked for.
        name: String,
        /// The cluster DNS Service IP.
        server: String,
        /// The address it must answer.
        expect: String,
        /// How long at most, in seconds.
        timeout_s: u64,
    },
    /// Create or update the Secret `namespace/name` (key `cloud.conf`) with the cloud config of
    /// the Cinder CSI driver, made at run time from forgectl's own OpenStack credentials (never
    /// planned, printed or rendered).
    ApplyCloudConfig {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// `kubeadm join` with a bootstrap token made for it on `first` (the first control plane)
    /// and deleted afterwards, unless the host has joined. Control planes join one at a time,
    /// each waited for; workers join together.
    KubeadmJoin {
        /// Join as a control plane.
        control_plane: bool,
        /// The machine that makes and deletes the token.
        first: String,
        /// The JoinConfiguration, with `TOKEN_PLACEHOLDER` where the token goes (never printed).
        #[serde(skip)]
        config: String,
        /// sha256 of the configuration, hex.
        sha256: String,
    },
    /// Before etcd members are changed: each member that answers runs a version from which
    /// `target` is one minor release at most (etcd's upgrade rule), else nothing is changed.
    CheckEtcdVersions {
        /// The etcd version the inventory asks for.
        target: String,
    },
    /// Restart the action's etcd member unless it runs with its current configuration,
    /// certificates and binary (`current`, a shell check, succeeds). While the other members
    /// keep quorum without it, the restart is waited for and the cluster must be healthy again
    /// before the next member: a rolling restart. While the cluster forms, it is started in the
    /// background (members wait for each other).
    RestartEtcdMember {
        /// Shell check that succeeds when the member runs what is on disk.
        current: String,
    },
    /// Before a rolling upgrade changes anything: the version skew policy against what the
    /// cluster runs, every node registered and Ready, the control plane's pods running, the
    /// target's release files there and verified; then, when any node is behind, an etcd
    /// snapshot into the state dir (`backups/etcd-pre-upgrade-TIME.db`).
    UpgradePreflight {
        /// The Kubernetes version the control plane goes to.
        kubernetes: String,
        /// The kubelet version the nodes go to.
        kubelet: String,
        /// Every node of the inventory.
        nodes: Vec<String>,
        /// The etcd version the members go to (None when etcd comes from Debian's packages).
        #[serde(skip_serializing_if = "Option::is_none")]
        etcd: Option<String>,
    },
    /// Upgrade the action's node unless it runs the target already: kubeadm installed, cordon,
    /// drain through the Eviction API, `kubeadm upgrade apply` (the first control plane while
    /// the cluster is older) or `kubeadm upgrade node`, kubelet and kubectl installed, kubelet
    /// restarted, Ready at the target (a control plane's own pods too), uncordon. Nodes of one
    /// batch go together, batches one after the other.
    UpgradeNode {
        /// A control plane (its static pods are upgraded and waited for).
        control_plane: bool,
        /// The batch it belongs to (1-based).
        batch: usize,
        /// The Kubernetes version.
        kubernetes: String,
        /// The kubelet version.
        kubelet: String,
        /// How long the drain may take, in seconds.
        drain_timeout_s: u64,
        /// kubeadm preflight errors ignored on this node (the inventory's, and
        /// SystemVerification on cgroup v1 hosts, as at init and join).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        ignore_preflight: Vec<String>,
        /// Installs kubeadm at the target (before `kubeadm upgrade`).
        #[serde(skip)]
        kubeadm: Vec<Action>,
        /// kubelet, kubectl, crictl, kubelet's unit (after `kubeadm upgrade`).
        #[serde(skip)]
        packages: Vec<Action>,
    },
}

/// Where `render` puts manifests forgectl applies through the API (they go to no host).
pub const MANIFESTS_HOST: &str = "cluster";

/// What a JoinConfiguration holds in place of the bootstrap token until the join runs.
pub const TOKEN_PLACEHOLDER: &str = "@FORGECTL_BOOTSTRAP_TOKEN@";
/// Where the join configuration (with its token) lives on a node while kubeadm join runs.
pub const JOIN_CONFIG: &str = "/etc/kubernetes/forgectl/kubeadm-join.yaml";
/// The template of join configurations.
pub const JOIN_TEMPLATE: &str = "kube/kubeadm-join.yaml.tera";

/// A file an action puts on its host, as `render` shows it.
pub struct RenderedFile<'a> {
    /// Absolute path on the host.
    pub path: &'a str,
    /// Permission bits.
    pub mode: u32,
    /// The template, or None for certificates and keys from the state dir.
    pub template: Option<&'a str>,
    /// The content.
    pub content: &'a str,
    /// Its sha256, hex.
    pub sha256: &'a str,
}

impl Action {
    /// The file this action puts on its host, if it puts one (uploads, and join configurations
    /// with the token still a placeholder).
    pub fn rendered_file(&self) -> Option<RenderedFile<'_>> {
        match &self.op {
            Op::Upload {
                path,
                mode,
                template,
                content,
                sha256,
                ..
            } => Some(RenderedFile {
                path,
                mode: *mode,
                template: template.as_deref(),
                content,
                sha256,
            }),
            Op::ApplyManifests {
                template,
                path,
                content,
                sha256,
                ..
            } => Some(RenderedFile {
                path,
                mode: 0o644,
                template: Some(template),
                content,
                sha256,
            }),
            Op::KubeadmJoin { config, sha256, .. } => Some(RenderedFile {
                path: JOIN_CONFIG,
                mode: 0o600,
                template: Some(JOIN_TEMPLATE),
                content: config,
                sha256,
            }),
            _ => None,
        }
    }

    /// An upload of `content`, rendered from `template` if given, to `path` on `host`.
    pub fn upload_rendered(
        host: &str,
        path: &str,
        mode: u32,
        owner: &str,
        template: Option<&str>,
        content: String,
        why: &str,
    ) -> Self {
        let sha256 = sha256_hex(content.as_bytes());
        Self {
            host: Some(host.into()),
            description: why.into(),
            op: Op::Upload {
                path: path.into(),
                mode,
                owner: owner.into(),
                template: template.map(str::to_string),
                bytes: content.len(),
                content,
                sha256,
            },
        }
    }

    /// An action forgectl performs itself, about `host`.
    pub fn local(host: Option<&str>, op: Op, why: &str) -> Self {
        Self {
            host: host.map(str::to_string),
            description: why.into(),
            op,
        }
    }

    /// A command on `host`, skipped when `unless` succeeds.
    pub fn run(host: &str, command: &str, unless: Option<&str>, why: &str) -> Self {
        Self {
            host: Some(host.into()),
            description: why.into(),
            op: Op::Run {
                command: command.into(),
                unless: unless.map(str::to_string),
                on_change: false,
            },
        }
    }

    /// A command on `host` that runs when `unless` fails or an earlier action of the phase
    /// changed something on the host (restarts after configuration changes).
    pub fn run_on_change(host: &str, command: &str, unless: &str, why: &str) -> Self {
        Self {
            host: Some(host.into()),
            description: why.into(),
            op: Op::Run {
                command: command.into(),
                unless: Some(unless.into()),
                on_change: true,
            },
        }
    }
}

/// sha256 of `data` in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex_lower(&Sha256::digest(data))
}

/// `bytes` in lowercase hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// How far a phase is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Readiness {
    /// Plans and runs.
    Ready,
    /// Plans completely (its files can be rendered and reviewed), but running it needs a part
    /// forgectl does not have yet.
    PlanOnly {
        /// What is missing.
        missing: String,
    },
    /// Not built yet.
    NotImplemented {
        /// What will bring it.
        arrives_with: String,
    },
}

/// The plan of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhasePlan {
    /// Phase name.
    pub phase: String,
    /// What it does, for people.
    pub title: String,
    /// Whether it can run.
    pub readiness: Readiness,
    /// The machines it works on.
    pub hosts: Vec<String>,
    /// Its actions in order (empty when not implemented, or when everything is done).
    pub actions: Vec<Action>,
    /// Why there is nothing to do, when that is known without asking the hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole plan: a playbook's phases for one inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Cluster name.
    pub cluster: String,
    /// Playbook name.
    pub playbook: String,
    /// True when hosts were probed; false means this is the full intended plan.
    pub probed: bool,
    /// Phases in order.
    pub phases: Vec<PhasePlan>,
}

impl Plan {
    /// The first phase that cannot run, if any.
    pub fn first_blocked(&self) -> Option<&PhasePlan> {
        self.phases.iter().find(|p| p.readiness != Readiness::Ready)
    }

    /// Total number of actions.
    pub fn action_count(&self) -> usize {
        self.phases.iter().map(|p| p.actions.len()).sum()
    }

    /// The plan for people.
    pub fn to_text(&self, style: &crate::output::Style) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}Plan for cluster {} — playbook {}, {} phases{}",
            style.bold,
            self.cluster,
            self.playbook,
            self.phases.len(),
            style.reset
        );
        if !self.probed {
            let _ = writeln!(
                out,
                "Hosts not probed yet: this is the full intended plan; a run skips what is already done."
            );
        }
        out.push('\n');
        let width = self.phases.iter().map(|p| p.phase.len()).max().unwrap_or(0);
        for (i, p) in self.phases.iter().enumerate() {
            let state = match &p.readiness {
                Readiness::Ready if p.note.is_some() => format!(
                    "{}nothing to do{}: {}",
                    style.green,
                    style.reset,
                    p.note.as_deref().unwrap_or_default()
                ),
                Readiness::Ready if p.actions.is_empty() => {
                    format!("{}nothing to do{}", style.green, style.reset)
                }
                Readiness::Ready => format!(
                    "{}{} action(s){}",
                    style.green,
                    p.actions.len(),
                    style.reset
                ),
                Readiness::PlanOnly { missing } => format!(
                    "{}{} action(s), plan only{}: running needs {missing}",
                    style.yellow,
                    p.actions.len(),
                    style.reset
                ),
                Readiness::NotImplemented { arrives_with } => format!(
                    "{}not implemented yet{} (arrives with {arrives_with})",
                    style.red, style.reset
                ),
            };
            let hosts = if p.hosts.is_empty() {
                String::new()
            } else {
                format!(" [{}]", summarize_hosts(&p.hosts))
            };
            let _ = writeln!(
                out,
                "{:>2}. {}{:width$}{}  {}{hosts} — {state}",
                i + 1,
                style.bold,
                p.phase,
                style.reset,
                p.title
            );
            for a in &p.actions {
                let host = a.host.as_deref().unwrap_or("forgectl");
                let what = match &a.op {
                    Op::Upload {
                        path,
                        mode,
                        owner,
                        sha256,
                        bytes,
                        ..
                    } => format!(
                        "upload {path} ({mode:04o} {owner}, {bytes} B, sha256 {})",
                        &sha256[..12]
                    ),
                    Op::Run {
                        command,
                        unless,
                        on_change,
                    } => match (unless, on_change) {
                        (Some(u), true) => {
                            format!("run    {command}   (after a change, or unless: {u})")
                        }
                        (Some(u), false) => format!("run    {command}   (unless: {u})"),
                        (None, _) => format!("run    {command}"),
                    },
                    Op::InstallPackages { packages } => {
                        format!("install {} (if missing)", packages.join(" "))
                    }
                    Op::InstallArtifact {
                        artifact,
                        version,
                        binaries,
                        dest,
                        ..
                    } => format!(
                        "install {} from {artifact} {version} into {dest} (checksum verified)",
                        binaries.join(", ")
                    ),
                    Op::LoadImage {
                        file,
                        refs,
                        digest,
                        size,
                        ..
                    } => format!(
                        "load image {} from {file} ({:.1} MB, {}) into containerd (unless present)",
                        refs.join(", "),
                        *size as f64 / 1e6,
                        &digest[..digest.len().min(19)]
                    ),
                    Op::InstallOwn { program, path } => format!(
                        "install this build's {} as {path} (unless the same build is there)",
                        program.name()
                    ),
                    Op::EnsurePki => {
                        "make missing certificates and keys (state dir, 0600)".to_string()
                    }
                    Op::WaitEtcdHealthy => {
                        "wait for every etcd member to answer over mTLS, with a leader".to_string()
                    }
                    Op::SnapshotEtcd { label, required } => format!(
                        "snapshot etcd into the state dir as backups/etcd-{label}-TIME.db{}",
                        if *required {
                            " (the run stops if none can be taken)"
                        } else {
                            " (if a member answers)"
                        }
                    ),
                    Op::ForgetEtcdCluster => {
                        "forget the etcd members' first start (state dir etcd/bootstrap.json)"
                            .to_string()
                    }
                    Op::CreateMachine { machine, address } => match address {
                        Some(a) => format!("create machine {machine} ({a})"),
                        None => format!("create machine {machine}"),
                    },
                    Op::DeleteMachine { machine } => {
                        format!("delete machine {machine} and everything made for it")
                    }
                    Op::Probe => "probe  OS, kernel and systemd state over SSH".to_string(),
                    Op::ApplyManifests {
                        template,
                        objects,
                        sha256,
                        ..
                    } => format!(
                        "apply  {objects} object(s) from {template} (server-side apply, sha256 {})",
                        &sha256[..12]
                    ),
                    Op::WaitRollout {
                        workload,
                        namespace,
                        name,
                        timeout_s,
                    } => format!(
                        "wait   until {workload} {namespace}/{name} rolled out (at most {timeout_s} s)"
                    ),
                    Op::WaitNodesReady { nodes, timeout_s } => format!(
                        "wait   until {} node(s) are registered and Ready (at most {timeout_s} s)",
                        nodes.len()
                    ),
                    Op::WaitPodsRunning {
                        namespace,
                        timeout_s,
                    } => format!(
                        "wait   until every pod in {namespace} runs and is ready (at most {timeout_s} s)"
                    ),
                    Op::CheckDns {
                        name,
                        server,
                        expect,
                        ..
                    } => format!("dns    ask {server}:53 for {name}, expect {expect}"),
                    Op::ApplyCloudConfig { namespace, name } => format!(
                        "secret {namespace}/{name}: cloud.conf from forgectl's OpenStack credentials (never shown)"
                    ),
                    Op::FetchFile { path, to } => {
                        format!("fetch  {path} into the state dir as {to} (0600)")
                    }
                    Op::KubeadmJoin {
                        control_plane,
                        first,
                        sha256,
                        ..
                    } => format!(
                        "kubeadm join{} (JoinConfiguration sha256 {}; bootstrap token made on {first} for it, deleted after)",
                        if *control_plane {
                            " --control-plane"
                        } else {
                            ""
                        },
                        &sha256[..12]
                    ),
                    Op::CheckEtcdVersions { target } => format!(
                        "check  that every member that answers may go to etcd {target} (one minor release at a time, never back)"
                    ),
                    Op::RestartEtcdMember { .. } => "restart etcd when its files changed since it started: one member at a time, the cluster healthy again before the next (in the background while the cluster forms)".to_string(),
                    Op::UpgradePreflight {
                        kubernetes,
                        kubelet,
                        nodes,
                        ..
                    } => format!(
                        "check  the skew policy for v{kubernetes} (kubelet v{kubelet}), {} node(s) Ready, control-plane pods running, release files verified; then, if any node is behind, snapshot etcd into backups/etcd-pre-upgrade-TIME.db (the run stops if none can be taken)",
                        nodes.len()
                    ),
                    Op::UpgradeNode {
                        control_plane,
                        batch,
                        kubernetes,
                        kubelet,
                        drain_timeout_s,
                        ..
                    } => format!(
                        "upgrade to v{kubernetes}{} (batch {batch}): kubeadm v{kubernetes}, cordon, drain (PodDisruptionBudgets respected, at most {drain_timeout_s} s), {}, kubelet v{kubelet} + kubectl, restart kubelet, Ready at v{kubelet}{}, uncordon — skipped when already there",
                        if kubelet == kubernetes {
                            String::new()
                        } else {
                            format!(" (kubelet v{kubelet})")
                        },
                        if *control_plane {
                            "kubeadm upgrade apply (first control plane) or node"
                        } else {
                            "kubeadm upgrade node"
                        },
                        if *control_plane {
                            " with its control-plane pods"
                        } else {
                            ""
                        }
                    ),
                };
                let _ = writeln!(out, "      {}{host}{}  {what}", style.dim, style.reset);
            }
        }
        let blocked = self
            .phases
            .iter()
            .filter(|p| matches!(p.readiness, Readiness::NotImplemented { .. }))
            .count();
        let plan_only = self
            .phases
            .iter()
            .filter(|p| matches!(p.readiness, Readiness::PlanOnly { .. }))
            .count();
        let _ = writeln!(
            out,
            "\n{} action(s) in {} phase(s); {plan_only} phase(s) plan only, {blocked} not implemented yet.",
            self.action_count(),
            self.phases.len()
        );
        out
    }
}

/// `etcd-1, etcd-2, etcd-3` or `worker-1 … worker-40 (40 hosts)` for long lists.
fn summarize_hosts(hosts: &[String]) -> String {
    if hosts.len() <= 4 {
        hosts.join(", ")
    } else {
        format!(
            "{}, {} … {} ({} hosts)",
            hosts[0],
            hosts[1],
            hosts[hosts.len() - 1],
            hosts.len()
        )
    }
}
