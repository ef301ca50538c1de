//! The kubeadm-join phase: the other control planes one at a time (with the cluster PKI pushed
//! first, so no certificate key is needed), then the workers together, each with a bootstrap token
//! made for the join on the first control plane and deleted afterwards.

use serde::Serialize;

use super::etcd::address_or_name;
use super::kubeadm_init::{api_endpoint, kubeadm_readiness, pki_uploads};
use super::{Phase, PhaseError, PlanContext};
use crate::inventory::{Machine, Role};
use crate::plan::{Action, Op, Readiness, TOKEN_PLACEHOLDER, sha256_hex};

/// Joins control planes and workers.
pub struct KubeadmJoin;

#[derive(Serialize)]
struct JoinVars<'a> {
    cluster: &'a str,
    name: &'a str,
    address: String,
    endpoint: String,
    token: &'a str,
    ca_cert_hash: String,
    control_plane: bool,
    ignore_preflight_errors: Vec<String>,
    node_labels: String,
}

/// kubeadm's discovery hash of the cluster CA in the state dir (empty before the pki phase).
fn ca_cert_hash(ctx: &PlanContext<'_>) -> String {
    ctx.state_file(&format!("{}.crt", crate::pki::paths::KUBE_CA))
        .and_then(|pem| crate::pki::ca_cert_hash(&pem).ok())
        .unwrap_or_else(|| "sha256:(of the cluster CA, once the pki phase made it)".into())
}

impl Phase for KubeadmJoin {
    fn name(&self) -> &'static str {
        "kubeadm-join"
    }

    fn title(&self) -> &'static str {
        "Join control planes one by one, then workers"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        kubeadm_readiness(&ctx.inv.inventory)
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let Some(first) = ctx.inv.with_role(Role::ControlPlane).next() else {
            return Ok(Vec::new());
        };
        let hash = ca_cert_hash(ctx);
        // Control planes first, in inventory order, then workers; the first control plane was
        // made by kubeadm-init.
        let mut order: Vec<&Machine> = hosts
            .iter()
            .copied()
            .filter(|m| m.has(Role::ControlPlane) && m.name != first.name)
            .collect();
        order.extend(
            hosts
                .iter()
                .copied()
                .filter(|m| !m.has(Role::ControlPlane) && m.has(Role::Worker)),
        );
        let mut pki = Vec::new();
        let mut joins = Vec::new();
        for m in order {
            let control_plane = m.has(Role::ControlPlane);
            if control_plane {
                pki.extend(pki_uploads(ctx, &m.name));
            }
            let vars = JoinVars {
                cluster: &inv.name,
                name: &m.name,
                address: address_or_name(m),
                endpoint: api_endpoint(ctx.inv),
                token: TOKEN_PLACEHOLDER,
                ca_cert_hash: hash.clone(),
                control_plane,
                ignore_preflight_errors: super::kubeadm_init::ignored_preflight(ctx, &m.name),
                node_labels: super::kubeadm_init::node_labels(&ctx.inv.inventory, m),
            };
            let config = ctx.templates.render("kube/kubeadm-join.yaml.tera", &vars)?;
            joins.push(Action::local(
                Some(&m.name),
                Op::KubeadmJoin {
                    control_plane,
                    first: first.name.clone(),
                    sha256: sha256_hex(config.as_bytes()),
                    config,
                },
                if control_plane {
                    "join as a control plane (skipped when joined), then wait for its API server"
                } else {
                    "join as a worker (skipped when joined)"
                },
            ));
        }
        pki.extend(joins);
        Ok(pki)
    }
}
