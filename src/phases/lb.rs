//! The lb phase: haproxy in front of the API servers and the ingress nodes.

use serde::Serialize;

use super::etcd::address_or_name;
use super::{NEEDS_KUBE, Phase, PhaseError, PlanContext, Target};
use crate::inventory::{Machine, Role};
use crate::plan::{Action, Readiness};

/// Configures haproxy on the lb machines.
pub struct Lb;

/// haproxy's configuration file.
pub const CONFIG: Target = Target {
    path: "/etc/haproxy/haproxy.cfg",
    mode: 0o644,
    owner: "root:root",
};

#[derive(Clone, Serialize)]
struct Backend {
    name: String,
    address: String,
}

#[derive(Serialize)]
struct LbContext<'a> {
    cluster: &'a str,
    name: &'a str,
    api_port: u16,
    control_planes: Vec<Backend>,
    ingress_nodes: Vec<Backend>,
}

fn backends<'a>(ms: impl Iterator<Item = &'a Machine>) -> Vec<Backend> {
    ms.map(|m| Backend {
        name: m.name.clone(),
        address: address_or_name(m),
    })
    .collect()
}

impl Phase for Lb {
    fn name(&self) -> &'static str {
        "lb"
    }

    fn title(&self) -> &'static str {
        "haproxy in front of the API servers and the ingress nodes"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::PlanOnly {
            missing: NEEDS_KUBE.into(),
        }
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let ingress = if inv.ingress.enabled {
            backends(ctx.inv.with_role(Role::Ingress))
        } else {
            Vec::new()
        };
        let mut actions = Vec::new();
        for m in hosts {
            let c = LbContext {
                cluster: &inv.name,
                name: &m.name,
                api_port: inv.api.port,
                control_planes: backends(ctx.inv.with_role(Role::ControlPlane)),
                ingress_nodes: ingress.clone(),
            };
            actions.push(Action::run(
                &m.name,
                "apt-get install -y --no-install-recommends haproxy",
                Some("command -v haproxy"),
                "install haproxy",
            ));
            actions.push(ctx.rendered(
                &m.name,
                &CONFIG,
                "lb/haproxy.cfg.tera",
                &c,
                "haproxy configuration",
            )?);
            actions.push(Action::run(
                &m.name,
                "haproxy -c -f /etc/haproxy/haproxy.cfg && systemctl enable haproxy && systemctl reload-or-restart haproxy",
                None,
                "check the configuration and (re)load haproxy",
            ));
        }
        Ok(actions)
    }
}
