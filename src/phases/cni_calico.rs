//! The cni-calico phase: Calico with the Kubernetes datastore and the netfilter dataplane
//! (CRDs, the default IP pool and Felix configuration, calico-node on every node,
//! calico-kube-controllers), applied with server-side apply, then waited for.

use serde::Serialize;

use super::{Phase, PhaseError, PlanContext, manifests};
use crate::inventory::Machine;
use crate::inventory::model::{Calico, Encapsulation, IptablesBackend};
use crate::plan::{Action, Readiness};

/// Deploys Calico.
pub struct CniCalico;

/// Its template.
pub const TEMPLATE: &str = "cni/calico.yaml.tera";
/// Where Calico's workloads run.
const NAMESPACE: &str = "kube-system";

#[derive(Serialize)]
struct Images {
    node: String,
    cni: String,
    kube_controllers: String,
}

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    version: String,
    images: Images,
    pod_cidr: String,
    block_size: u8,
    ipip_mode: &'static str,
    vxlan_mode: &'static str,
    backend: &'static str,
    mtu: u32,
    iptables_backend: &'static str,
    nat_outgoing: bool,
}

/// Calico's IPIP and VXLAN modes and its networking backend for the inventory's encapsulation.
fn modes(c: &Calico) -> (&'static str, &'static str, &'static str) {
    let on = if c.cross_subnet {
        "CrossSubnet"
    } else {
        "Always"
    };
    match c.encapsulation {
        Encapsulation::Ipip => (on, "Never", "bird"),
        Encapsulation::Vxlan => ("Never", on, "vxlan"),
        Encapsulation::None => ("Never", "Never", "bird"),
    }
}

impl Phase for CniCalico {
    fn name(&self) -> &'static str {
        "cni-calico"
    }

    fn title(&self) -> &'static str {
        "Apply Calico and wait for calico-node on every node"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        (ctx.inv.inventory.cni.plugin != crate::inventory::model::CniPlugin::Calico)
            .then(|| "cni.plugin is bridge".to_string())
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let inv = &ctx.inv.inventory;
        let c = &inv.calico;
        let version = format!("v{}", inv.versions.calico);
        let image = |name: &str| format!("{}/{name}:{version}", c.registry.trim_end_matches('/'));
        let (ipip_mode, vxlan_mode, backend) = modes(c);
        let vars = Vars {
            cluster: &inv.name,
            images: Images {
                node: image("node"),
                cni: image("cni"),
                kube_controllers: image("kube-controllers"),
            },
            version: version.clone(),
            pod_cidr: inv.network.pod_cidr.to_string(),
            block_size: c.block_size,
            ipip_mode,
            vxlan_mode,
            backend,
            mtu: c.effective_mtu(),
            iptables_backend: match c.iptables_backend {
                IptablesBackend::Auto => "Auto",
                IptablesBackend::Nft => "NFT",
                IptablesBackend::Legacy => "Legacy",
            },
            nat_outgoing: true,
        };
        let why = format!(
            "Calico {version} for {} node(s): pod network {} in /{} blocks, {} (MTU {}), Felix on {} netfilter",
            hosts.len(),
            vars.pod_cidr,
            vars.block_size,
            match c.encapsulation {
                Encapsulation::Ipip => "IPIP",
                Encapsulation::Vxlan => "VXLAN",
                Encapsulation::None => "no encapsulation",
            },
            vars.mtu,
            vars.iptables_backend,
        );
        Ok(vec![
            manifests::apply(ctx, TEMPLATE, "calico.yaml", &vars, &why)?,
            manifests::wait_rollout(
                "DaemonSet",
                NAMESPACE,
                "calico-node",
                "calico-node ready on every node",
            ),
            manifests::wait_rollout(
                "Deployment",
                NAMESPACE,
                "calico-kube-controllers",
                "calico-kube-controllers available",
            ),
        ])
    }
}
