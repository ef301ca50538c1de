//! The provision phase: make sure every machine of the inventory exists.

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::{Machine, ProviderKind};
use crate::plan::{Action, Readiness};

/// Creates missing machines through the inventory's provider.
pub struct Provision;

impl Phase for Provision {
    fn name(&self) -> &'static str {
        "provision"
    }

    fn title(&self) -> &'static str {
        "Create the machines that do not exist yet"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        match ctx.inv.inventory.provider {
            // Static hosts exist already: there is nothing to create.
            ProviderKind::Static => Readiness::Ready,
            ProviderKind::Local => Readiness::NotImplemented {
                arrives_with: "the local provider, issue #3".into(),
            },
            ProviderKind::Openstack | ProviderKind::Vagrant => Readiness::NotImplemented {
                arrives_with: "issue #5".into(),
            },
        }
    }

    fn plan(&self, _: &PlanContext<'_>, _: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        Ok(Vec::new())
    }
}
