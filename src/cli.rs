//! Command-line definitions (clap). Only the binary knows about clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Build and run a multi-tenant Kubernetes platform from one inventory file.
#[derive(Debug, Parser)]
#[command(
    name = "forgectl",
    version,
    about,
    long_about = "forgectl builds and runs a multi-tenant Kubernetes platform (like Wikimedia Toolforge) \
from one inventory file: machines, external etcd, kubeadm over SSH, Calico, nginx-ingress, storage and \
the tenant platform. Every command reads the inventory given with -f, or the embedded local default.",
    after_help = "Examples:\n  forgectl validate -f cluster.yaml\n  forgectl plan -f cluster.yaml\n  forgectl up -f cluster.yaml --yes\n  forgectl init --provider openstack mycluster/\n\nExit codes: 0 done, 1 failed, 2 invalid input (nothing changed), 3 stopped before a phase not implemented yet."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// More detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output: errors only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Text, env = "FORGECTL_OUTPUT")]
    pub output: OutputFormat,
    /// When to use colours (default: only on a terminal, and not with NO_COLOR).
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Base directory for cluster state [default: $XDG_STATE_HOME/forgectl or ~/.local/state/forgectl].
    #[arg(long, global = true, env = "FORGECTL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Inventory file [default: the embedded inventories/local/cluster.yaml].
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        value_name = "FILE",
        env = "FORGECTL_INVENTORY"
    )]
    pub file: Option<PathBuf>,
    /// Directory of template overrides (same relative paths as the embedded templates/).
    #[arg(long, global = true, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Provider {
    Local,
    Openstack,
    Vagrant,
    Static,
}

/// Playbook and phase selection.
#[derive(Debug, Args)]
pub struct PlaybookArgs {
    /// Playbook: a built-in name (cluster, scale, upgrade, reset, down) or a file.
    #[arg(long, value_name = "NAME|FILE", default_value = "cluster")]
    pub playbook: String,
    /// Run only these phases (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "PHASE,…")]
    pub only: Vec<String>,
    /// Stop after this phase.
    #[arg(long, value_name = "PHASE")]
    pub until: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an inventory: every problem at once, with file:line:col and how to fix it.
    #[command(
        after_help = "Examples:\n  forgectl validate -f cluster.yaml\n  forgectl validate -f cluster.yaml --output json\n\nExit code 2 when the inventory has errors (warnings alone exit 0)."
    )]
    Validate,
    /// Show the ordered phases and, per phase and host, the actions a run would take.
    #[command(
        after_help = "Examples:\n  forgectl plan -f cluster.yaml\n  forgectl plan -f cluster.yaml --playbook upgrade\n  forgectl plan -f cluster.yaml --only etcd,lb --output json"
    )]
    Plan {
        #[command(flatten)]
        playbook: PlaybookArgs,
    },
    /// Build the cluster, or converge it: plan, ask for approval, run phase by phase.
    #[command(
        after_help = "Examples:\n  forgectl up                      # the embedded local default\n  forgectl up -f cluster.yaml --dry-run\n  forgectl up -f cluster.yaml --yes --until etcd\n  forgectl up -f cluster.yaml --playbook scale --yes"
    )]
    Up {
        #[command(flatten)]
        playbook: PlaybookArgs,
        /// Approve the plan without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and stop; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete the machines and everything the provider created for the cluster.
    #[command(
        after_help = "Examples:\n  forgectl down -f cluster.yaml --dry-run\n  forgectl down -f cluster.yaml --yes"
    )]
    Down {
        /// Approve without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and stop; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take Kubernetes and etcd off the machines and keep the machines (the `reset` playbook).
    ///
    /// kubeadm reset and its leftovers on every node; etcd stopped, its data and certificates
    /// removed after a last snapshot into the state dir. Asks first unless --yes.
    #[command(
        after_help = "Examples:\n  forgectl reset -f cluster.yaml --dry-run   # what would be removed, host by host\n  forgectl reset -f cluster.yaml --yes\n\nA second run changes nothing. `forgectl up` builds the cluster again on the same machines."
    )]
    Reset {
        /// Approve without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and stop; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Roll the cluster to the inventory's versions, node by node (the `upgrade` playbook).
    ///
    /// Preflight first (skew policy, every node Ready, control-plane pods, release files and
    /// images, etcd members), then an etcd snapshot, then the etcd members one at a time when
    /// versions.etcd changed, then control planes one at a time and workers in batches of
    /// upgrade.max_unavailable: cordon, drain (PodDisruptionBudgets respected), kubeadm upgrade,
    /// kubelet and kubectl, Ready at the target, uncordon. Nodes at the target are skipped, so a
    /// stopped run resumes where it stopped.
    #[command(after_help = "Examples:
  forgectl upgrade -f cluster.yaml --dry-run   # the order and the gates
  forgectl upgrade -f cluster.yaml --yes

Set versions.kubernetes (one minor version at a time) before running it. The runbook: docs/upgrade.md.")]
    Upgrade {
        /// Approve without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the plan and stop; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write every file a run would push (configs, units, manifests) under DIR/HOST/PATH.
    #[command(
        after_help = "Examples:\n  forgectl render -f cluster.yaml --out rendered/\n  forgectl render -f cluster.yaml --out rendered/ --only etcd"
    )]
    Render {
        #[command(flatten)]
        playbook: PlaybookArgs,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a commented starting inventory to DIR/cluster.yaml.
    #[command(
        after_help = "Examples:\n  forgectl init mycluster/\n  forgectl init --provider openstack prod/"
    )]
    Init {
        /// Which provider the inventory is for.
        #[arg(long, value_enum, default_value_t = Provider::Local)]
        provider: Provider,
        /// Overwrite an existing cluster.yaml.
        #[arg(long)]
        force: bool,
        /// Directory to write cluster.yaml into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Run a command on the cluster's hosts over SSH, with each host's output prefixed.
    #[command(
        after_help = "Examples:\n  forgectl exec -- uptime\n  forgectl exec -f cluster.yaml --hosts etcd -- systemctl is-active etcd\n  forgectl exec --hosts worker-1,worker-2 --sudo -- journalctl -u kubelet -n 20\n\nExit code 1 when the command fails (or cannot run) on any host."
    )]
    Exec {
        /// Hosts: roles, machine names or `all` (comma-separated) [default: all].
        #[arg(long, value_delimiter = ',', value_name = "ROLE|NAME,…")]
        hosts: Vec<String>,
        /// Seconds the command may run on each host [default: ssh.command_timeout].
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Run as root (through sudo when ssh.user is not root).
        #[arg(long)]
        sudo: bool,
        /// The command and its arguments (after `--`), passed intact like `kubectl exec`: one
        /// argument is a shell line (`-- 'cd /x && make'`), several are a command and its
        /// arguments (`-- sh -c 'a; b'`).
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Machines: list them (local machines, or the cloud's servers with IPs and volumes), stop / start local ones, and rehearse failures.
    #[command(
        after_help = "Examples:\n  forgectl machines list\n  forgectl machines kill etcd-2      # crash: SIGKILL to its systemd\n  forgectl machines start etcd-2\n  forgectl machines freeze worker-1  # hang every process\n  forgectl machines cut control-1    # unplug its network; `heal` plugs it back"
    )]
    Machines {
        #[command(subcommand)]
        verb: MachineVerb,
    },
    /// What the cluster installs: list it, or download it for an offline site.
    #[command(
        after_help = "Examples:\n  forgectl artifacts list -f cluster.yaml\n  forgectl artifacts fetch -f cluster.yaml --to /srv/forgectl-artifacts\n  forgectl artifacts fetch -f cluster.yaml --images --to /srv/forgectl-images\n\nEvery download is checked against the checksum file the project publishes with the release; every image manifest and layer against its digest."
    )]
    Artifacts {
        #[command(subcommand)]
        verb: ArtifactsVerb,
    },
    /// The cluster's certificates: check expiry, renew (rolling), recover a lost CA.
    #[command(
        after_help = "Examples:\n  forgectl certs check\n  forgectl certs check -o json\n  forgectl certs renew\n\nExit code 1 when a certificate expires within 30 days or a host could not be checked."
    )]
    Certs {
        #[command(subcommand)]
        verb: CertsVerb,
    },
    /// The admission webhooks (HTTPS, AdmissionReview v1): images only from allowed registries,
    /// Ingress hosts only `NAME.<tool domain>` in the tool's own namespace.
    #[command(
        after_help = "Example:\n  forgectl admission serve --cert webhook.crt --key webhook.key --allow-registry registry.toolforge.test\n\nRoutes: POST /validate/images, POST /validate/ingress, GET /healthz. A changed certificate file is reloaded within 30 s."
    )]
    Admission {
        #[command(subcommand)]
        verb: AdmissionVerb,
    },
    /// Tool accounts: namespaces, quotas, RBAC and kubeconfigs from LDAP or a YAML file.
    #[command(
        after_help = "Examples:\n  forgectl accounts sync --dry-run\n  forgectl accounts sync\n  forgectl accounts sync -o json\n  forgectl accounts run --listen 0.0.0.0:9105 --interval 5m\n\nExit code 1 when an account could not be reconciled (the others are)."
    )]
    Accounts {
        #[command(subcommand)]
        verb: AccountsVerb,
    },
    /// The cluster at a glance: etcd quorum, nodes (Ready, kubelet version, roles), system
    /// workloads and the system pods that are not running.
    #[command(
        after_help = "Examples:\n  forgectl status\n  forgectl status -o json\n\nExit code 1 when etcd, a node, a system workload or a system pod is not well."
    )]
    Status,
    /// A read-only web dashboard: the cluster's numbers and a page per tool, JSON and metrics.
    #[command(
        after_help = "Examples:\n  forgectl dashboard                               # on 127.0.0.1:9110\n  forgectl dashboard --listen 0.0.0.0:9110 --ingress-metrics http://10.77.0.30:10254/metrics\n  forgectl dashboard --print-rbac dashboard-reader  # its read-only ClusterRole and a binding\n  curl -H 'Accept: application/json' http://127.0.0.1:9110/tools/NAME\n\nPages: / (tools, pods, nodes, CPU and memory, etcd, certificates, ingress requests/s),\n/tools (an index, ?q=NAME&page=N), /tools/NAME (quota, workloads, pods, web service, jobs);\nthe same as JSON with `Accept: application/json`; Prometheus metrics on /metrics. Fed by\nwatches; reads only (get, list, watch; no Secrets)."
    )]
    Dashboard {
        /// Kubeconfig to read with [default: the state dir's admin.conf].
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Where to listen (port 0: a free one, printed on stdout).
        #[arg(long, default_value = "127.0.0.1:9110")]
        listen: std::net::SocketAddr,
        /// An ingress controller's Prometheus endpoint, for requests per second (repeatable).
        #[arg(long = "ingress-metrics", value_name = "URL")]
        ingress_metrics: Vec<String>,
        /// Leave etcd out (do not use the state dir's etcd client certificate).
        #[arg(long)]
        no_etcd: bool,
        /// Read the certificates shown from every *.crt under DIR instead of the state dir.
        #[arg(long, value_name = "DIR")]
        certs_dir: Option<PathBuf>,
        /// Print the dashboard's read-only ClusterRole and a ClusterRoleBinding to USER, and exit.
        #[arg(long, value_name = "USER")]
        print_rbac: Option<String>,
    },
    /// The external etcd cluster: status, snapshots, replace, add and remove members.
    #[command(
        after_help = "Examples:\n  forgectl etcd status\n  forgectl etcd status -o json\n\nExit code 1 when quorum is lost or one more failure would lose it."
    )]
    Etcd {
        #[command(subcommand)]
        verb: EtcdVerb,
    },
    /// Cordon, drain, uncordon or remove a node (through the state dir's admin kubeconfig).
    #[command(
        after_help = "Examples:\n  forgectl node drain worker-2                 # cordon, then evict its pods\n  forgectl node drain worker-2 --timeout 600\n  forgectl node uncordon worker-2\n  forgectl node remove worker-3 --dry-run      # the steps, nothing changed\n  forgectl node remove worker-3 --yes\n\nPods leave through the Eviction API: PodDisruptionBudgets hold, and a blocked drain names the\nbudget. DaemonSet and static pods stay. A pod no controller would make again is never evicted:\nthe drain refuses before it evicts anything, naming it. Exit code 1 when pods are left at the timeout."
    )]
    Node {
        #[command(subcommand)]
        verb: NodeVerb,
    },
    /// Print the inventory's JSON Schema (for editors and tooling).
    #[command(
        after_help = "Example:\n  forgectl schema > forgectl.schema.json\n  # then in cluster.yaml: # yaml-language-server: $schema=forgectl.schema.json"
    )]
    Schema,
    /// Print shell completions.
    #[command(
        after_help = "Examples:\n  forgectl completions bash > /etc/bash_completion.d/forgectl\n  forgectl completions zsh > \"${fpath[1]}/_forgectl\"\n  forgectl completions fish > ~/.config/fish/completions/forgectl.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What to do with local machines.
#[derive(Debug, Subcommand)]
pub enum MachineVerb {
    /// List the machines: address, state and PID (local); status, fixed and floating IP, volume (OpenStack).
    List,
    /// Clean poweroff; the disk is kept.
    Stop { name: String },
    /// Boot a stopped machine.
    Start { name: String },
    /// Crash the machine (SIGKILL to its PID 1).
    Kill { name: String },
    /// Hang the machine: freeze every process.
    Freeze { name: String },
    /// Undo `freeze`.
    Thaw { name: String },
    /// Unplug the machine's network.
    Cut { name: String },
    /// Plug the network back in.
    Heal { name: String },
}

/// What to do with the admission webhooks.
#[derive(Debug, Subcommand)]
pub enum AdmissionVerb {
    /// Serve them until interrupted.
    Serve {
        /// Listen address.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: std::net::SocketAddr,
        /// Serving certificate (PEM chain), reloaded when the file changes.
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// A registry (optionally with a path prefix) images may come from; repeatable
        /// [default: the inventory's platform.allowed_registries, else its images' registries].
        #[arg(long = "allow-registry", value_name = "REGISTRY[/PATH]")]
        registries: Vec<String>,
        /// The tool domain [default: the inventory's ingress.tool_domain].
        #[arg(long)]
        tool_domain: Option<String>,
        /// Tool namespaces are PREFIX + the tool's name [default: the inventory's
        /// accounts.namespace_prefix].
        #[arg(long)]
        namespace_prefix: Option<String>,
    },
}

/// What to do with tool accounts.
#[derive(Debug, Subcommand)]
pub enum AccountsVerb {
    /// One reconcile pass with a summary (created / updated / renewed / disabled / removed /
    /// unchanged).
    Sync {
        /// Report what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Mark tools for removal even when the source lists none or far fewer than the
        /// cluster has (normally refused: it looks like a broken source).
        #[arg(long)]
        allow_mass_removal: bool,
        /// Kubeconfig to act with [default: the state dir's admin.conf].
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// The controller: a pass at start, when the accounts file changes, soon after the watches
    /// see drift (a managed object changed or deleted by someone else) and at every resync;
    /// leader election with a Lease so that replicas can run side by side; Prometheus metrics
    /// on /metrics, liveness on /healthz. Stops on SIGTERM (giving the Lease up).
    Run {
        /// Kubeconfig to act with [default: the state dir's admin.conf].
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Where /metrics and /healthz listen.
        #[arg(long, default_value = "0.0.0.0:9105")]
        listen: std::net::SocketAddr,
        /// Full resync interval (e.g. 60s, 5m).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// Namespace of the Lease.
        #[arg(long, default_value = "kube-system")]
        lease_namespace: String,
        /// Name of the Lease.
        #[arg(long, default_value = "forgectl-accounts")]
        lease_name: String,
        /// This replica's identity in the Lease [default: host name and PID].
        #[arg(long)]
        identity: Option<String>,
        /// How long the Lease holds without renewal (renewed every third of it).
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        lease_duration: std::time::Duration,
    },
}

/// What to do with a node.
#[derive(Debug, Subcommand)]
pub enum NodeVerb {
    /// Mark the node unschedulable and evict its pods (PodDisruptionBudgets respected).
    Drain {
        /// The node (machine) name.
        name: String,
        /// Seconds to wait for its pods to leave.
        #[arg(long, default_value_t = 300, value_name = "S")]
        timeout: u64,
    },
    /// Take a control plane or worker out of the cluster and delete its machine.
    ///
    /// Drain, reset, delete the Node, update the load balancer, delete the machine. A dead node
    /// is not drained or reset.
    Remove {
        /// The node (machine) name.
        name: String,
        /// Seconds the drain may take.
        #[arg(long, default_value_t = 300, value_name = "S")]
        drain_timeout: u64,
        /// Approve without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Say what would happen and stop; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mark the node schedulable again.
    Uncordon {
        /// The node (machine) name.
        name: String,
    },
}

/// What to do with etcd.
#[derive(Debug, Subcommand)]
pub enum EtcdVerb {
    /// Members, leader, raft index, database size, health and latency of each member.
    Status,
    /// Snapshots of the keyspace.
    Snapshot {
        #[command(subcommand)]
        verb: SnapshotVerb,
    },
    /// Add the inventory's etcd machine NAME as a new member (scaling 3 → 5).
    Add {
        /// The machine.
        name: String,
    },
    /// Remove member NAME, which the inventory no longer lists as an etcd machine (scaling 5 → 3).
    Remove {
        /// The member.
        name: String,
    },
    /// Replace a dead or unhealthy member (its host may be down) with a fresh one, never losing quorum.
    Replace {
        /// The member to replace.
        name: String,
        /// Put the new member on this machine (already an etcd machine in the inventory, which no
        /// longer lists NAME) instead of wiping and reusing NAME's machine.
        #[arg(long, value_name = "MACHINE")]
        new_machine: Option<String>,
    },
}

/// What to do with certificates.
#[derive(Debug, Subcommand)]
pub enum CertsVerb {
    /// Every certificate in the state dir and on the etcd hosts, with its expiry.
    Check,
    /// Re-issue the leaf certificates (same CAs) and roll them onto etcd one member at a time.
    Renew {
        /// The etcd certificates (members and clients) — today the only ones forgectl rolls;
        /// kubeadm's arrive with the Kubernetes phases.
        #[arg(long, default_value_t = true)]
        etcd: bool,
    },
    /// The state dir lost its PKI: read the etcd CA back from the first etcd member that has it.
    Recover {
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// What to do with snapshots.
#[derive(Debug, Subcommand)]
pub enum SnapshotVerb {
    /// Save a snapshot from a healthy member to FILE (0600, checksum verified).
    Save {
        /// Where to write it.
        #[arg(value_name = "FILE")]
        path: PathBuf,
    },
    /// Disaster recovery: rebuild the whole cluster from FILE (asks first; old data is kept aside).
    Restore {
        /// The snapshot.
        #[arg(value_name = "FILE")]
        path: PathBuf,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// What to do with artifacts.
#[derive(Debug, Subcommand)]
pub enum ArtifactsVerb {
    /// Every artifact with version, URL and where its checksum is published.
    List,
    /// Download and verify every artifact into DIR/NAME/VERSION/ (for `source: local` or a
    /// mirror); with --images, pull every image the cluster runs into DIR instead (for
    /// `artifacts.images`).
    Fetch {
        /// Target directory.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Pull the images (`artifacts list` names them) from the registry mirrors of
        /// `runtime.registry_mirrors`, then their registries, as OCI archives into DIR; images
        /// already there are kept.
        #[arg(long)]
        images: bool,
        /// The image platform's architecture, as Go names it (linux/ARCH).
        #[arg(long, value_name = "ARCH", requires = "images", default_value = forgectl::image_fetch::host_arch())]
        arch: String,
    },
}
