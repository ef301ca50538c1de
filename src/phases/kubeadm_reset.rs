//! The kubeadm-reset phase (`forgectl reset`): `kubeadm reset` on each node,
//! then what kubeadm leaves behind — CNI configuration and state, the pod network's links and
//! routes, the iptables rules of kube-proxy, kubelet and the pod network, forgectl's node units
//! and its kubeadm marks — through a script that also says what is left. The machine, its
//! packages and containerd stay.

use serde::Serialize;

use super::{Phase, PhaseError, PlanContext, Target};
use crate::inventory::Machine;
use crate::plan::{Action, Readiness};

/// Takes Kubernetes off the nodes.
pub struct KubeadmReset;

/// The script that resets the node and reports what is left.
pub const SCRIPT: Target = Target {
    path: "/usr/local/lib/forgectl/node-reset",
    mode: 0o755,
    owner: "root:root",
};

/// What the reset removes, for the plan and the confirmation.
pub const REMOVES: &str = "kubeadm reset (kubelet stopped, pod containers removed, /etc/kubernetes and /var/lib/kubelet emptied), \
     then the contents of /etc/cni/net.d, /var/lib/cni, /var/lib/calico, the pod network's links (cni0, tunl0, vxlan.calico) and routes, \
     the KUBE-/CNI-/cali- iptables rules, forgectl's node units (kubelet, cni-bridge, admission, accounts: disabled) and its kubeadm marks; containerd restarted";

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    name: &'a str,
}

/// The actions that reset `m`: the script, then running it unless nothing is left.
pub fn node_reset(ctx: &PlanContext<'_>, m: &Machine) -> Result<Vec<Action>, PhaseError> {
    let vars = Vars {
        cluster: &ctx.inv.inventory.name,
        name: &m.name,
    };
    Ok(vec![
        ctx.rendered(
            &m.name,
            &SCRIPT,
            "kube/node-reset.sh.tera",
            &vars,
            "resets the node and says what is left",
        )?,
        Action::run(
            &m.name,
            &format!("{} apply", SCRIPT.path),
            Some(&format!("test -z \"$({} left)\"", SCRIPT.path)),
            REMOVES,
        ),
    ])
}

impl Phase for KubeadmReset {
    fn name(&self) -> &'static str {
        "kubeadm-reset"
    }

    fn title(&self) -> &'static str {
        "kubeadm reset, and the CNI, iptables and forgectl leftovers on the nodes"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let mut actions = Vec::new();
        for m in hosts {
            actions.extend(node_reset(ctx, m)?);
        }
        Ok(actions)
    }
}
