//! The provision phase: make sure every machine of the inventory exists and runs.

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::{Machine, ProviderKind};
use crate::plan::{Action, Op, Readiness};

/// Creates missing machines (and starts stopped ones) through the inventory's provider.
pub struct Provision;

impl Phase for Provision {
    fn name(&self) -> &'static str {
        "provision"
    }

    fn title(&self) -> &'static str {
        "Create the machines that do not exist yet"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        super::provider_readiness(ctx)
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        match ctx.inv.inventory.provider {
            ProviderKind::Static => Some("static hosts exist already".into()),
            ProviderKind::Local | ProviderKind::Openstack
                if ctx
                    .inv
                    .machines
                    .iter()
                    .all(|m| ctx.present.running.contains(&m.name)) =>
            {
                Some(format!("all {} machines run", ctx.inv.machines.len()))
            }
            _ => None,
        }
    }

    fn plan(&self, ctx: &PlanContext<'_>, _: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        Ok(ctx
            .inv
            .machines
            .iter()
            .filter(|m| !ctx.present.running.contains(&m.name))
            .map(|m| {
                let openstack = ctx.inv.inventory.provider == ProviderKind::Openstack;
                let why = match (ctx.present.existing.contains(&m.name), openstack) {
                    (true, false) => "start the stopped machine",
                    (true, true) => {
                        "complete the server (ports, volume, floating IP) or replace it if in ERROR"
                    }
                    (false, true) => "create the server with its ports, volume and floating IP",
                    (false, false) => "create the machine",
                };
                Action::local(
                    Some(&m.name),
                    Op::CreateMachine {
                        machine: m.name.clone(),
                        address: m.address.map(|a| a.to_string()),
                    },
                    why,
                )
            })
            .collect())
    }
}
