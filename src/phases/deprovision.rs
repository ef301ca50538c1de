//! The deprovision phase: delete the machines and everything the provider made for them.

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::{Machine, ProviderKind};
use crate::plan::{Action, Op, Readiness};

/// Deletes every machine the provider made for the cluster.
pub struct Deprovision;

impl Phase for Deprovision {
    fn name(&self) -> &'static str {
        "deprovision"
    }

    fn title(&self) -> &'static str {
        "Delete the machines and everything the provider made for them"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        super::provider_readiness(ctx)
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        match ctx.inv.inventory.provider {
            ProviderKind::Static => {
                Some("static hosts are never deleted (use the reset playbook)".into())
            }
            ProviderKind::Local if ctx.present.existing.is_empty() => {
                Some("no machine exists".into())
            }
            ProviderKind::Openstack
                if ctx.present.existing.is_empty() && ctx.present.leftovers.is_none() =>
            {
                Some(format!(
                    "nothing in the cloud carries the tag of cluster {}",
                    ctx.inv.inventory.name
                ))
            }
            ProviderKind::Vagrant
                if !ctx.present.state_dir.as_ref().is_some_and(|d| {
                    crate::providers::vagrant::dir(d)
                        .join("Vagrantfile")
                        .exists()
                }) =>
            {
                Some("forgectl made no Vagrant machines for this cluster".into())
            }
            _ => None,
        }
    }

    fn plan(&self, ctx: &PlanContext<'_>, _: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let names: Vec<String> = if ctx.inv.inventory.provider == ProviderKind::Vagrant {
            ctx.inv.machines.iter().map(|m| m.name.clone()).collect()
        } else {
            ctx.present.existing.iter().cloned().collect()
        };
        let why = if ctx.inv.inventory.provider == ProviderKind::Openstack {
            "delete the server, its ports, floating IP and volume"
        } else {
            "delete the machine, its disk and its network"
        };
        let mut actions: Vec<Action> = names
            .into_iter()
            .map(|name| {
                Action::local(
                    Some(&name),
                    Op::DeleteMachine {
                        machine: name.clone(),
                    },
                    why,
                )
            })
            .collect();
        if let Some(rest) = &ctx.present.leftovers {
            actions.push(Action::local(
                None,
                Op::DeleteMachine {
                    machine: format!("(cluster {})", ctx.inv.inventory.name),
                },
                &format!("delete what the provider made for the cluster: {rest}"),
            ));
        }
        Ok(actions)
    }
}
