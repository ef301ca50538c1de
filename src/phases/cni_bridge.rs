//! The cni-bridge phase (`cni.plugin: bridge`): a pod network that needs no images. Each node
//! puts its podCIDR (given by kube-controller-manager from `network.pod_cidr`) on a local bridge
//! with the standard CNI bridge and host-local plugins, and routes every other node's podCIDR
//! through that node; the nodes must share one network (as local machines do).

use serde::Serialize;

use super::etcd::address_or_name;
use super::{Phase, PhaseError, PlanContext, Target, manifests};
use crate::inventory::Machine;
use crate::inventory::model::CniPlugin;
use crate::plan::{Action, Readiness};

/// Sets up the bridge pod network on the nodes.
pub struct CniBridge;

/// The script that applies and checks the node's part.
pub const SCRIPT: Target = Target {
    path: "/usr/local/lib/forgectl/cni-bridge",
    mode: 0o755,
    owner: "root:root",
};
/// Its unit, which applies the saved routes at boot.
pub const UNIT: Target = Target {
    path: "/etc/systemd/system/forgectl-cni-bridge.service",
    mode: 0o644,
    owner: "root:root",
};

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    name: &'a str,
    address: String,
    pod_cidr: String,
    service_cidr: String,
    script: &'a str,
}

impl Phase for CniBridge {
    fn name(&self) -> &'static str {
        "cni-bridge"
    }

    fn title(&self) -> &'static str {
        "Bridge pod network: each node's podCIDR on a bridge, routes between nodes"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        (ctx.inv.inventory.cni.plugin != CniPlugin::Bridge)
            .then(|| "cni.plugin is calico".to_string())
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        #[derive(Serialize)]
        struct Rbac<'a> {
            cluster: &'a str,
        }
        let mut actions = vec![manifests::apply(
            ctx,
            "cni/bridge-rbac.yaml.tera",
            "bridge-rbac.yaml",
            &Rbac { cluster: &inv.name },
            "nodes may list the nodes (podCIDRs and addresses for their routes)",
        )?];
        for m in hosts {
            let h = &m.name;
            let vars = Vars {
                cluster: &inv.name,
                name: h,
                address: address_or_name(m),
                pod_cidr: inv.network.pod_cidr.to_string(),
                service_cidr: inv.network.service_cidr.to_string(),
                script: SCRIPT.path,
            };
            actions.push(ctx.rendered(
                h,
                &SCRIPT,
                "cni/bridge.sh.tera",
                &vars,
                "applies and checks this node's part of the bridge pod network",
            )?);
            actions.push(ctx.rendered(
                h,
                &UNIT,
                "cni/cni-bridge.service.tera",
                &vars,
                "the routes again at boot",
            )?);
            actions.push(Action::run_on_change(
                h,
                "systemctl daemon-reload && systemctl enable forgectl-cni-bridge.service",
                "systemctl is-enabled --quiet forgectl-cni-bridge.service",
                "enable the boot unit",
            ));
            actions.push(Action::run(
                h,
                &format!("{} apply", SCRIPT.path),
                Some(&format!("{} check", SCRIPT.path)),
                "this node's podCIDR on cni0 and routes to the other nodes' podCIDRs",
            ));
        }
        Ok(actions)
    }
}
