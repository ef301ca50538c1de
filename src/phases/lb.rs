//! The lb phase: haproxy in front of the API servers and the ingress nodes.

use serde::Serialize;

use super::etcd::address_or_name;
use super::{Phase, PhaseError, PlanContext, Target};
use crate::inventory::{Machine, ProviderKind, Role};
use crate::plan::{Action, Op, Readiness};

/// Configures haproxy on the lb machines.
pub struct Lb;

/// haproxy's configuration file.
pub const CONFIG: Target = Target {
    path: "/etc/haproxy/haproxy.cfg",
    mode: 0o644,
    owner: "root:root",
};

/// Connections haproxy accepts at once (it needs about two open files per connection).
pub const MAXCONN: u32 = 20000;
/// On local machines: their open-file limit is the host's (often 20000 hard), so fewer.
pub const LOCAL_MAXCONN: u32 = 4000;

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
    maxconn: u32,
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
        Readiness::Ready
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
                maxconn: if inv.provider == ProviderKind::Local {
                    LOCAL_MAXCONN
                } else {
                    MAXCONN
                },
                control_planes: backends(ctx.inv.with_role(Role::ControlPlane)),
                ingress_nodes: ingress.clone(),
            };
            actions.push(Action::local(
                Some(&m.name),
                Op::InstallPackages {
                    packages: vec!["haproxy".into()],
                },
                "install haproxy (started once configured)",
            ));
            actions.push(ctx.rendered(
                &m.name,
                &CONFIG,
                "lb/haproxy.cfg.tera",
                &c,
                "haproxy configuration",
            )?);
            actions.push(Action::run_on_change(
                &m.name,
                "haproxy -q -c -f /etc/haproxy/haproxy.cfg && systemctl enable haproxy.service && systemctl reload-or-restart haproxy.service",
                "systemctl is-active --quiet haproxy.service",
                "check the configuration and (re)load haproxy after a change",
            ));
        }
        Ok(actions)
    }
}
