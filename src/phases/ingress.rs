//! The ingress phase: nginx-ingress as a DaemonSet on the ingress nodes (host network by default,
//! behind the haproxy front of the lb phase), the default IngressClass and a default backend,
//! applied through the API with server-side apply.

use serde::Serialize;

use super::kubeadm_init::INGRESS_LABEL;
use super::{Phase, PhaseError, PlanContext, manifests};
use crate::inventory::Machine;
use crate::plan::{Action, Readiness};

/// Deploys nginx-ingress.
pub struct Ingress;

/// Its namespace.
pub const NAMESPACE: &str = "ingress-nginx";
/// Its template.
pub const TEMPLATE: &str = "ingress/nginx-ingress.yaml.tera";

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    namespace: &'a str,
    node_label: &'a str,
    image: &'a str,
    default_backend_image: &'a str,
    host_network: bool,
    tls_front: bool,
}

impl Phase for Ingress {
    fn name(&self) -> &'static str {
        "ingress"
    }

    fn title(&self) -> &'static str {
        "Deploy nginx-ingress, its IngressClass and default backend"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        (!ctx.inv.inventory.ingress.enabled).then(|| "ingress.enabled is false".into())
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let i = &ctx.inv.inventory.ingress;
        let vars = Vars {
            cluster: &ctx.inv.inventory.name,
            namespace: NAMESPACE,
            node_label: INGRESS_LABEL,
            image: &i.image,
            default_backend_image: &i.default_backend_image,
            host_network: i.host_network,
            tls_front: i.tls_front.enabled,
        };
        let wait = |kind: &str, name: &str| {
            manifests::wait_rollout(
                kind,
                NAMESPACE,
                name,
                &format!("{kind} {name} rolled out on its nodes"),
            )
        };
        Ok(vec![
            manifests::apply(
                ctx,
                TEMPLATE,
                "nginx-ingress.yaml",
                &vars,
                &format!(
                    "nginx-ingress on {} ingress node(s) (label {INGRESS_LABEL}=true)",
                    hosts.len()
                ),
            )?,
            wait("DaemonSet", "ingress-nginx-controller"),
            wait("Deployment", "default-backend"),
        ])
    }
}
