//! The pki phase: make the cluster's CAs and certificates that are missing (in the state dir).

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::Machine;
use crate::plan::{Action, Op, Readiness};

/// Makes missing certificates and keys; keeps what exists (same CAs on every run).
pub struct Pki;

impl Phase for Pki {
    fn name(&self) -> &'static str {
        "pki"
    }

    fn title(&self) -> &'static str {
        "Make the etcd, Kubernetes and front-proxy CAs and certificates that are missing"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn plan(&self, _: &PlanContext<'_>, _: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        Ok(vec![Action::local(
            None,
            Op::EnsurePki,
            "etcd CA, member server/peer certificates, etcd client certificates, Kubernetes and front-proxy CAs, SA key",
        )])
    }
}
