//! The rolling upgrade's phases: `upgrade-preflight` (checks, then an etcd snapshot, then the
//! target's images on the nodes), `upgrade-control-plane` (one at a time) and `upgrade-workers`
//! (in batches of `upgrade.max_unavailable`). Which node is behind is only known at run time:
//! each node's action skips a node that runs the target already, so a stopped run resumes.

use super::{Phase, PhaseError, PlanContext};
use crate::artifacts::KUBE_REQUIRED;
use crate::inventory::{Machine, Role};
use crate::plan::{Action, Op, Readiness};

/// Checks, snapshot and images before anything is upgraded.
pub struct UpgradePreflight;
/// Control planes, one at a time.
pub struct UpgradeControlPlane;
/// Workers, in batches.
pub struct UpgradeWorkers;

/// (Kubernetes, kubelet) versions the inventory asks for.
fn targets(ctx: &PlanContext<'_>) -> (String, String) {
    let v = &ctx.inv.inventory.versions;
    (
        v.kubernetes.to_string(),
        v.kubelet.as_ref().unwrap_or(&v.kubernetes).to_string(),
    )
}

impl Phase for UpgradePreflight {
    fn name(&self) -> &'static str {
        "upgrade-preflight"
    }

    fn title(&self) -> &'static str {
        "Check the skew policy and the cluster's health, snapshot etcd, load the target's images"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        ctx.artifacts_readiness(KUBE_REQUIRED)
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let (kubernetes, kubelet) = targets(ctx);
        let nodes: Vec<String> = ctx
            .inv
            .machines
            .iter()
            .filter(|m| m.has(Role::ControlPlane) || m.has(Role::Worker))
            .map(|m| m.name.clone())
            .collect();
        let mut actions = vec![Action::local(
            None,
            Op::UpgradePreflight {
                kubernetes,
                kubelet,
                nodes,
                etcd: (!crate::artifacts::etcd_from_debian(&ctx.inv.inventory))
                    .then(|| ctx.inv.inventory.versions.etcd.to_string()),
            },
            "nothing is upgraded unless every check passes and etcd is saved",
        )];
        let images = super::runtime::image_archives(ctx)?;
        for m in hosts {
            actions.extend(super::runtime::image_loads(m, &images));
        }
        Ok(actions)
    }
}

/// One node's upgrade action.
fn node_action(ctx: &PlanContext<'_>, m: &Machine, batch: usize) -> Result<Action, PhaseError> {
    let (kubernetes, kubelet) = targets(ctx);
    let (kubeadm, packages): (Vec<Action>, Vec<Action>) =
        super::kube_packages::host_packages(ctx, m)?
            .into_iter()
            .partition(
                |a| matches!(&a.op, Op::InstallArtifact { artifact, .. } if artifact == "kubeadm"),
            );
    Ok(Action::local(
        Some(&m.name),
        Op::UpgradeNode {
            control_plane: m.has(Role::ControlPlane),
            batch,
            kubernetes,
            kubelet,
            drain_timeout_s: u64::from(ctx.inv.inventory.upgrade.drain_timeout),
            ignore_preflight: super::kubeadm_init::ignored_preflight(ctx, &m.name),
            kubeadm,
            packages,
        },
        "rolling upgrade of one node",
    ))
}

impl Phase for UpgradeControlPlane {
    fn name(&self) -> &'static str {
        "upgrade-control-plane"
    }

    fn title(&self) -> &'static str {
        "Upgrade control planes one at a time"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        ctx.artifacts_readiness(KUBE_REQUIRED)
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        hosts
            .iter()
            .enumerate()
            .map(|(i, m)| node_action(ctx, m, i + 1))
            .collect()
    }
}

impl Phase for UpgradeWorkers {
    fn name(&self) -> &'static str {
        "upgrade-workers"
    }

    fn title(&self) -> &'static str {
        "Drain, upgrade and uncordon workers in batches"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        ctx.artifacts_readiness(KUBE_REQUIRED)
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let size = ctx.inv.inventory.upgrade.max_unavailable.max(1) as usize;
        // Nodes that are control planes too were upgraded with the control planes.
        hosts
            .iter()
            .filter(|m| !m.has(Role::ControlPlane))
            .enumerate()
            .map(|(i, m)| node_action(ctx, m, i / size + 1))
            .collect()
    }
}
