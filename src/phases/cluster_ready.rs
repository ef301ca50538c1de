//! The cluster-ready phase, the bring-up's last gate: every node registered and Ready, every
//! kube-system pod running and ready, and the cluster DNS answering from a node with the API's
//! Service address (CoreDNS, kube-proxy and the pod network working together).

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::{Machine, Role};
use crate::plan::{Action, Op, Readiness};

/// Waits until the cluster works.
pub struct ClusterReady;

/// How long nodes may take to become Ready (kubelet, CNI), in seconds.
const NODES_TIMEOUT_S: u64 = 600;
/// How long kube-system may take to settle, in seconds.
const PODS_TIMEOUT_S: u64 = 600;
/// How long DNS may take to answer, in seconds.
const DNS_TIMEOUT_S: u64 = 120;

/// The cluster DNS Service IP kubeadm gives CoreDNS (the service network's 10th address) and
/// the API's Service IP (its first), as text.
pub fn service_ips(ctx: &PlanContext<'_>) -> Result<(String, String), PhaseError> {
    let cidr = &ctx.inv.inventory.network.service_cidr;
    let nth = |n| {
        cidr.nth(n).map(|a| a.to_string()).ok_or_else(|| {
            PhaseError::Inventory(format!("network.service_cidr {cidr} is too small"))
        })
    };
    Ok((nth(10)?, nth(1)?))
}

impl Phase for ClusterReady {
    fn name(&self) -> &'static str {
        "cluster-ready"
    }

    fn title(&self) -> &'static str {
        "Wait for nodes Ready, kube-system running and DNS answering"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let nodes: Vec<String> = hosts.iter().map(|m| m.name.clone()).collect();
        let (dns, api) = service_ips(ctx)?;
        let name = format!(
            "kubernetes.default.svc.{}.",
            ctx.inv.inventory.network.dns_domain.trim_end_matches('.')
        );
        let first_cp = hosts
            .iter()
            .find(|m| m.has(Role::ControlPlane))
            .unwrap_or(&hosts[0]);
        Ok(vec![
            Action::local(
                None,
                Op::WaitNodesReady {
                    nodes,
                    timeout_s: NODES_TIMEOUT_S,
                },
                &format!("{} node(s) registered and Ready", hosts.len()),
            ),
            Action::local(
                None,
                Op::WaitPodsRunning {
                    namespace: "kube-system".into(),
                    timeout_s: PODS_TIMEOUT_S,
                },
                "kube-system: every pod running and ready",
            ),
            Action::local(
                Some(&first_cp.name),
                Op::CheckDns {
                    name,
                    server: dns,
                    expect: api,
                    timeout_s: DNS_TIMEOUT_S,
                },
                "the cluster DNS answers from a node",
            ),
        ])
    }
}
