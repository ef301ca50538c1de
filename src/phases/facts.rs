//! The facts phase: connect to every host over SSH and read what the later phases decide from.

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::Machine;
use crate::plan::{Action, Op, Readiness};

/// Probes hosts (OS, kernel, systemd state). Changes nothing.
pub struct Facts;

impl Phase for Facts {
    fn name(&self) -> &'static str {
        "facts"
    }

    fn title(&self) -> &'static str {
        "Connect over SSH and probe the hosts (OS, kernel, systemd)"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn plan(&self, _: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        Ok(hosts
            .iter()
            .map(|m| Action::local(Some(&m.name), Op::Probe, "read the host's facts"))
            .collect())
    }
}
