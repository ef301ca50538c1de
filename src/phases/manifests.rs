//! What the phases that work through the Kubernetes API plan: an apply of a rendered manifest
//! and waits for the workloads it makes.

use super::{PhaseError, PlanContext};
use crate::plan::{Action, Op, sha256_hex};

/// How long a workload may take to roll out, unless a phase says otherwise.
pub const ROLLOUT_TIMEOUT_S: u64 = 300;

/// Server-side apply of `template` rendered with `vars`; `render` writes it to
/// `cluster/manifests/FILE`.
pub fn apply(
    ctx: &PlanContext<'_>,
    template: &str,
    file: &str,
    vars: &impl serde::Serialize,
    why: &str,
) -> Result<Action, PhaseError> {
    let content = ctx.templates.render(template, vars)?;
    let objects = crate::kube::documents(template, &content)
        .map_err(|e| PhaseError::Inventory(e.to_string()))?
        .len();
    Ok(Action::local(
        None,
        Op::ApplyManifests {
            template: template.into(),
            path: format!("/manifests/{file}"),
            sha256: sha256_hex(content.as_bytes()),
            content,
            objects,
        },
        why,
    ))
}

/// A wait until the `kind` (`DaemonSet` or `Deployment`) `namespace/name` rolled out.
pub fn wait_rollout(kind: &str, namespace: &str, name: &str, why: &str) -> Action {
    Action::local(
        None,
        Op::WaitRollout {
            workload: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            timeout_s: ROLLOUT_TIMEOUT_S,
        },
        why,
    )
}
