//! The kubeadm-init phase: `kubeadm init` on the first control plane with the external etcd and
//! forgectl's CAs, then the admin kubeconfig into the state dir.

use serde::Serialize;

use super::etcd::address_or_name;
use super::{Phase, PhaseError, PlanContext, Target};
use crate::inventory::types::Version;
use crate::inventory::{Inventory, Loaded, Machine, Role};
use crate::plan::{Action, Op, Readiness};

/// Runs `kubeadm init` on the first control plane.
pub struct KubeadmInit;

/// kubeadm's certificates directory on control planes.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// forgectl's kubeadm configuration files on a node (root only: a join file briefly holds a token).
pub const CONFIG_DIR: &str = "/etc/kubernetes/forgectl";
/// The init configuration.
pub const INIT_CONFIG: Target = Target {
    path: "/etc/kubernetes/forgectl/kubeadm-init.yaml",
    mode: 0o600,
    owner: "root:root",
};
/// The admin kubeconfig kubeadm writes, and its copy in the state dir.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// Where the admin kubeconfig lands in the cluster's state dir.
pub const STATE_ADMIN_CONF: &str = "admin.conf";
/// Written on the first control plane once `kubeadm init` has finished every phase (its own
/// files exist long before: they do not say it finished).
pub const INIT_DONE: &str = "/var/lib/forgectl/kubeadm-init.done";
/// The description of the join token `kubeadm init` makes (it always makes one), by which forgectl
/// finds and deletes it.
pub const INIT_TOKEN_DESCRIPTION: &str = "forgectl: kubeadm init (deleted once init finished)";

/// `kubeadm init`, then the mark that it finished. An init that stopped half-way (its admin
/// kubeconfig exists, the mark does not) runs again over the files it made, without the preflight
/// checks (they passed the first time, and would refuse those files).
pub fn init_command() -> String {
    format!(
        "if test -f {ADMIN_CONF}; then again=--skip-phases=preflight; fi; \
         kubeadm init --config {} --skip-token-print $again && mkdir -p /var/lib/forgectl && touch {INIT_DONE}",
        INIT_CONFIG.path
    )
}

/// The oldest etcd kubeadm accepts for an external etcd.
pub const MIN_ETCD: (u64, u64, u64) = (3, 5, 24);

/// A check that succeeds when the local API server answers /readyz.
pub const API_READY: &str =
    "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw=/readyz >/dev/null 2>&1";

/// Waits up to two minutes for the local API server, then fails saying where to look.
pub fn wait_api_ready() -> String {
    format!(
        "for i in $(seq 60); do {API_READY} && exit 0; sleep 2; done; \
         echo 'the API server does not answer /readyz after 2 min (crictl ps -a; journalctl -u kubelet)' >&2; exit 1"
    )
}

/// The control-plane endpoint (`host:port`): `api.endpoint`, else the first lb machine, else the
/// first control plane.
pub fn api_endpoint(inv: &Loaded) -> String {
    let i = &inv.inventory;
    if let Some(e) = &i.api.endpoint {
        return if e.contains(':') && !e.starts_with('[') && e.parse::<std::net::IpAddr>().is_err() {
            e.clone()
        } else {
            format!("{e}:{}", i.api.port)
        };
    }
    let lb = inv.with_role(Role::Lb).next();
    if let (Some(vip), Some(_)) = (i.api.vip, lb) {
        return match vip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", i.api.port),
            v4 => format!("{v4}:{}", i.api.port),
        };
    }
    match lb {
        Some(m) => format!("{}:{}", address_or_name(m), i.api.port),
        None => inv
            .with_role(Role::ControlPlane)
            .next()
            .map(|m| format!("{}:6443", address_or_name(m)))
            .unwrap_or_default(),
    }
}

/// Names and addresses the API server certificate must carry: the endpoint, the lb machines and
/// every control plane (names, addresses, floating addresses), and `api.extra_sans`.
fn cert_sans(inv: &Loaded) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    if let Some(e) = &inv.inventory.api.endpoint {
        add(e
            .rsplit_once(':')
            .map_or(e.as_str(), |(h, _)| h)
            .to_string());
    }
    if let Some(vip) = inv.inventory.api.vip {
        add(vip.to_string());
    }
    for m in inv
        .with_role(Role::Lb)
        .chain(inv.with_role(Role::ControlPlane))
    {
        add(m.name.clone());
        if let Some(a) = m.address {
            add(a.to_string());
        }
        if let Some(a) = m.floating_address {
            add(a.to_string());
        }
    }
    for s in &inv.inventory.api.extra_sans {
        add(s.clone());
    }
    out
}

/// The cluster PKI files a control plane holds, pre-made by forgectl so every control plane has
/// the same CAs: (state-dir path, extension, name under /etc/kubernetes/pki, mode).
pub fn control_plane_pki() -> Vec<(&'static str, &'static str, &'static str, u32)> {
    use crate::pki::paths;
    vec![
        (paths::KUBE_CA, "crt", "ca.crt", 0o644),
        (paths::KUBE_CA, "key", "ca.key", 0o600),
        (paths::FRONT_PROXY_CA, "crt", "front-proxy-ca.crt", 0o644),
        (paths::FRONT_PROXY_CA, "key", "front-proxy-ca.key", 0o600),
        (paths::SA, "key", "sa.key", 0o600),
        (paths::SA, "pub", "sa.pub", 0o644),
        (paths::ETCD_CA, "crt", "etcd/ca.crt", 0o644),
        (
            paths::APISERVER_ETCD_CLIENT,
            "crt",
            "apiserver-etcd-client.crt",
            0o644,
        ),
        (
            paths::APISERVER_ETCD_CLIENT,
            "key",
            "apiserver-etcd-client.key",
            0o600,
        ),
    ]
}

/// Uploads of the control-plane PKI to `host` (empty content before the pki phase made it; the
/// engine plans again right before the phase runs).
pub fn pki_uploads(ctx: &PlanContext<'_>, host: &str) -> Vec<Action> {
    control_plane_pki()
        .into_iter()
        .map(|(rel, ext, name, mode)| {
            let content = ctx.state_file(&format!("{rel}.{ext}")).unwrap_or_default();
            Action::upload_rendered(
                host,
                &format!("{PKI_DIR}/{name}"),
                mode,
                "root:root",
                None,
                content,
                "cluster PKI from the state dir (forgectl keeps the CAs)",
            )
        })
        .collect()
}

/// Ready, unless kubeadm would refuse the etcd this inventory installs (kubeadm-init and
/// kubeadm-join then only plan).
pub fn kubeadm_readiness(inv: &Inventory) -> Readiness {
    match etcd_too_old(inv) {
        Some(missing) => Readiness::PlanOnly { missing },
        None => Readiness::Ready,
    }
}

/// Why kubeadm would refuse the etcd this inventory installs, if it would.
fn etcd_too_old(inv: &Inventory) -> Option<String> {
    let ignored = inv
        .kubeadm
        .ignore_preflight_errors
        .iter()
        .any(|e| e == "ExternalEtcdVersion" || e == "all");
    let debian = crate::artifacts::etcd_from_debian(inv);
    let (a, b, c) = MIN_ETCD;
    let old = debian || inv.versions.etcd < Version::new(a, b, c);
    (old && !ignored).then(|| {
        let min = format!("{a}.{b}.{c}");
        format!(
            "an etcd kubeadm accepts (≥ {min}; {} is older): take etcd from release artifacts \
             (artifacts.source: upstream, mirror or local with versions.etcd ≥ {min}), or list \
             ExternalEtcdVersion in kubeadm.ignore_preflight_errors to try anyway (not for production)",
            if debian {
                "Debian's 3.4".to_string()
            } else {
                inv.versions.etcd.to_string()
            }
        )
    })
}

#[derive(Serialize)]
pub(crate) struct InitVars<'a> {
    pub cluster: &'a str,
    pub name: &'a str,
    pub address: String,
    pub kubernetes_version: String,
    pub endpoint: String,
    pub pki_dir: &'a str,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub dns_domain: &'a str,
    pub etcd_endpoints: Vec<String>,
    pub cert_sans: Vec<String>,
    pub admission_plugins: String,
    pub ignore_preflight_errors: Vec<String>,
    pub node_labels: String,
    pub controller_manager_qps: u32,
    pub controller_manager_burst: u32,
    /// Some node runs cgroup v1: kubelet ≥ 1.35 must be told to start anyway.
    pub cgroup_v1: bool,
    /// kube-proxy's `conntrack.maxPerCore` when forgectl sets it (0: leave the host's limit).
    pub conntrack_max_per_core: Option<u32>,
    /// The machines keep their files on the host's own disk (local machines): kubelet's eviction
    /// and image collection use absolute floors, not percentages of that shared disk.
    pub shared_host_disk: bool,
    pub init_token_description: &'static str,
}

/// True when the facts phase found cgroup v1 on some control plane or worker: the
/// KubeletConfiguration (shared by every node) then sets `failCgroupV1: false`.
pub fn cluster_on_cgroup_v1(ctx: &PlanContext<'_>) -> bool {
    ctx.inv
        .machines
        .iter()
        .filter(|m| m.has(Role::ControlPlane) || m.has(Role::Worker))
        .any(|m| host_on_cgroup_v1(ctx, &m.name))
}

/// True when the facts phase found cgroup v1 on `host`.
pub fn host_on_cgroup_v1(ctx: &PlanContext<'_>, host: &str) -> bool {
    ctx.facts(host).is_some_and(|f| f.cgroup_version == 1)
}

/// kubeadm's preflight errors to ignore on `host`: the inventory's, and SystemVerification where
/// the host runs cgroup v1 (kubeadm ≥ 1.35 refuses it there; forgectl warns instead).
pub fn ignored_preflight(ctx: &PlanContext<'_>, host: &str) -> Vec<String> {
    let mut out = ctx.inv.inventory.kubeadm.ignore_preflight_errors.clone();
    if host_on_cgroup_v1(ctx, host) && !out.iter().any(|e| e == "SystemVerification" || e == "all")
    {
        out.push("SystemVerification".into());
    }
    out
}

/// kube-proxy's `conntrack.maxPerCore`: 0 (keep the host's limit) on local machines, which share
/// the host's conntrack table and may not change it; kube-proxy's own default elsewhere.
pub fn conntrack_max_per_core(inv: &Inventory) -> Option<u32> {
    (inv.provider == crate::inventory::model::ProviderKind::Local).then_some(0)
}

/// Requests per second each kube-controller-manager controller's client may make (its
/// `--kube-api-qps`; upstream's default is 20). The CSR signer is one such controller: at 20
/// it signs at most 20 certificates a second, which made 3,500 new tools take three minutes.
pub const CONTROLLER_MANAGER_API_QPS: u32 = 200;
/// Its burst (`--kube-api-burst`; upstream's default is 30).
pub const CONTROLLER_MANAGER_API_BURST: u32 = 400;

/// Labels kubelet gives its node at registration: the machine's forgectl roles that select
/// workloads (`node.forgectl.io/ingress=true`), then its group's `labels` (validated with
/// Kubernetes' label rules and NodeRestriction's, so none can break the list). (NodeRestriction
/// forbids kubelets to set node-role.kubernetes.io labels, so forgectl uses its own prefix.)
pub fn node_labels(inv: &Inventory, m: &Machine) -> String {
    let mut out = Vec::new();
    if m.has(Role::Ingress) {
        out.push(format!("{INGRESS_LABEL}=true"));
    }
    if inv.storage.nfs.enabled && m.has(Role::Worker) {
        out.push(format!("{NFS_LABEL}=true"));
    }
    if let Some(g) = inv.groups.iter().find(|g| g.name == m.group) {
        out.extend(g.labels.iter().map(|(k, v)| format!("{k}={v}")));
    }
    out.join(",")
}

/// The node label of ingress machines.
pub const INGRESS_LABEL: &str = "node.forgectl.io/ingress";
/// The node label of workers that mount the NFS exports (pods with hostPath volumes of tool homes
/// select it).
pub const NFS_LABEL: &str = "node.forgectl.io/nfs";

impl Phase for KubeadmInit {
    fn name(&self) -> &'static str {
        "kubeadm-init"
    }

    fn title(&self) -> &'static str {
        "kubeadm init on the first control plane, with external etcd"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        kubeadm_readiness(&ctx.inv.inventory)
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let Some(first) = hosts.first() else {
            return Ok(Vec::new());
        };
        let h = &first.name;
        let vars = InitVars {
            cluster: &inv.name,
            name: h,
            address: address_or_name(first),
            kubernetes_version: inv.versions.kubernetes.to_string(),
            endpoint: api_endpoint(ctx.inv),
            pki_dir: PKI_DIR,
            pod_cidr: inv.network.pod_cidr.to_string(),
            service_cidr: inv.network.service_cidr.to_string(),
            dns_domain: &inv.network.dns_domain,
            etcd_endpoints: ctx
                .inv
                .with_role(Role::Etcd)
                .map(|m| format!("https://{}:{}", address_or_name(m), inv.etcd.client_port))
                .collect(),
            cert_sans: cert_sans(ctx.inv),
            admission_plugins: inv.kubeadm.admission_plugins.join(","),
            ignore_preflight_errors: ignored_preflight(ctx, h),
            node_labels: node_labels(inv, first),
            controller_manager_qps: CONTROLLER_MANAGER_API_QPS,
            controller_manager_burst: CONTROLLER_MANAGER_API_BURST,
            cgroup_v1: cluster_on_cgroup_v1(ctx),
            conntrack_max_per_core: conntrack_max_per_core(inv),
            shared_host_disk: inv.provider == crate::inventory::model::ProviderKind::Local,
            init_token_description: INIT_TOKEN_DESCRIPTION,
        };
        let mut actions = pki_uploads(ctx, h);
        actions.push(ctx.rendered(
            h,
            &INIT_CONFIG,
            "kube/kubeadm-init.yaml.tera",
            &vars,
            "kubeadm's Init- and ClusterConfiguration",
        )?);
        actions.push(Action::run(
            h,
            &init_command(),
            // A control plane that joined is in the cluster already: when it becomes the first
            // (the one before it was removed), init must never run on it.
            Some(&format!(
                "test -f {INIT_DONE} || test -f {}",
                crate::executor::kubeadm::JOIN_DONE
            )),
            "kubeadm init (once: skipped when it finished before, or when this control plane joined the cluster; an init stopped half-way is run again over what it made)",
        ));
        actions.push(Action::run(
            h,
            &format!(
                "kubeadm token list --kubeconfig {ADMIN_CONF} | grep -F '{INIT_TOKEN_DESCRIPTION}' | cut -d' ' -f1 \
                 | xargs -r -n1 kubeadm token delete --kubeconfig {ADMIN_CONF}"
            ),
            Some(&format!(
                "! kubeadm token list --kubeconfig {ADMIN_CONF} | grep -qF '{INIT_TOKEN_DESCRIPTION}'"
            )),
            "delete the join token kubeadm init makes by default (forgectl makes one per join run)",
        ));
        actions.push(Action::run(
            h,
            &wait_api_ready(),
            Some(API_READY),
            "the API server answers /readyz",
        ));
        actions.push(Action::local(
            Some(h),
            Op::FetchFile {
                path: ADMIN_CONF.into(),
                to: STATE_ADMIN_CONF.into(),
            },
            "the admin kubeconfig into the state dir (0600)",
        ));
        Ok(actions)
    }
}
