//! `forgectl node drain|uncordon NAME`: a node cordoned and emptied through the Eviction API, or
//! made schedulable again, with the state dir's admin kubeconfig.

use serde_json::json;
use std::path::Path;
use std::time::Duration;

use super::{CommandError, ExitCode, load_inventory_quiet};
use crate::kube::Kube;
use crate::output::{Format, Options};
use crate::phases::kubeadm_init::STATE_ADMIN_CONF;

/// What to do with a node.
#[derive(Debug, Clone)]
pub enum NodeVerb {
    /// Cordon it and evict its pods, waiting at most this long.
    Drain {
        /// The node.
        name: String,
        /// Seconds to wait for its pods to leave.
        timeout: u64,
    },
    /// Make it schedulable again.
    Uncordon {
        /// The node.
        name: String,
    },
}

/// Runs a `node` verb.
pub async fn node(
    file: Option<&Path>,
    verb: NodeVerb,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory_quiet(file, opts)?;
    let name = match &verb {
        NodeVerb::Drain { name, .. } | NodeVerb::Uncordon { name } => name.clone(),
    };
    super::node_remove::machine_named(&inv, &name).map_err(CommandError::Usage)?;
    let admin = super::state_dir(&inv, opts)?.path().join(STATE_ADMIN_CONF);
    let kube = Kube::from_kubeconfig(&admin).await?;
    match verb {
        NodeVerb::Drain { timeout, .. } => {
            let d = kube.drain(&name, Duration::from_secs(timeout)).await?;
            match opts.format {
                Format::Json => crate::outln!(
                    "{}",
                    json!({"node": name, "cordoned": d.cordoned, "evicted": d.evicted, "kept": d.kept})
                ),
                Format::Text => {
                    crate::outln!(
                        "{name}: {}; {} pod(s) evicted{}{}",
                        if d.cordoned {
                            "cordoned"
                        } else {
                            "was cordoned already"
                        },
                        d.evicted.len(),
                        if d.evicted.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", d.evicted.join(", "))
                        },
                        if d.kept.is_empty() {
                            String::new()
                        } else {
                            format!("; kept: {}", d.kept.join(", "))
                        }
                    );
                }
            }
        }
        NodeVerb::Uncordon { .. } => {
            let changed = kube.cordon(&name, false).await?;
            match opts.format {
                Format::Json => crate::outln!("{}", json!({"node": name, "changed": changed})),
                Format::Text => crate::outln!(
                    "{name}: {}",
                    if changed {
                        "schedulable again"
                    } else {
                        "was schedulable already"
                    }
                ),
            }
        }
    }
    Ok(ExitCode::Ok)
}
