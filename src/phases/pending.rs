//! Phases that are named in playbooks but not built yet, with what will bring each one.

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::Machine;
use crate::plan::{Action, Readiness};

/// A phase that is not implemented yet.
pub struct Pending {
    name: &'static str,
    title: &'static str,
    arrives_with: &'static str,
}

const PENDING: &[Pending] = &[
    p(
        "upgrade-control-plane",
        "Upgrade control planes one at a time",
        "a later issue (day two)",
    ),
    p(
        "upgrade-workers",
        "Drain, upgrade and uncordon workers in batches",
        "a later issue (day two)",
    ),
];

const fn p(name: &'static str, title: &'static str, arrives_with: &'static str) -> Pending {
    Pending {
        name,
        title,
        arrives_with,
    }
}

impl Phase for Pending {
    fn name(&self) -> &'static str {
        self.name
    }

    fn title(&self) -> &'static str {
        self.title
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::NotImplemented {
            arrives_with: self.arrives_with.into(),
        }
    }

    fn plan(&self, _: &PlanContext<'_>, _: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        Ok(Vec::new())
    }
}

pub(super) fn lookup(name: &str) -> Option<&'static dyn Phase> {
    PENDING
        .iter()
        .find(|p| p.name == name)
        .map(|p| p as &dyn Phase)
}

pub(super) fn names() -> impl Iterator<Item = &'static str> {
    PENDING.iter().map(|p| p.name)
}
