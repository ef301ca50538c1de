//! Cordon, drain, uncordon and delete a node: pods leave through the Eviction API, so PodDisruptionBudgets
//! hold (a blocked eviction is tried again until the budget allows it or the time is up, and the
//! budget that blocks is named). DaemonSet pods and static (mirror) pods stay, as with
//! `kubectl drain`; a pod no controller would make again is not evicted: the drain refuses,
//! naming it, before it evicts anything.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ::kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{FIELD_MANAGER, Kube, KubeError, error_text};

/// Evictions in flight at once.
const EVICTIONS_IN_FLIGHT: usize = 8;
/// Pause between rounds while pods leave or budgets block.
const ROUND: Duration = Duration::from_secs(1);

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    /// Whether the node was cordoned by this drain (false: it was already).
    pub cordoned: bool,
    /// Pods evicted, `namespace/name`.
    pub evicted: Vec<String>,
    /// Pods left on the node on purpose (`namespace/name (why)`): DaemonSet and static pods.
    pub kept: Vec<String>,
}

/// `namespace/name` of a pod.
fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Why a pod stays on a drained node, or None when it is evicted.
fn stays(p: &Pod) -> Option<&'static str> {
    let meta = &p.metadata;
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
    {
        return Some("static pod");
    }
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Some("finished");
    }
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(o) if o.kind == "DaemonSet" => Some("DaemonSet"),
        _ => None,
    }
}

/// True when no controller would make the pod again.
fn unmanaged(p: &Pod) -> bool {
    !p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true))
}

/// Whether `selector` selects `labels` (matchLabels and matchExpressions).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The budget that keeps `p` from leaving, for people.
fn blocking_budget(p: &Pod, budgets: &[PodDisruptionBudget]) -> Option<String> {
    let labels = p.metadata.labels.clone().unwrap_or_default();
    budgets
        .iter()
        .filter(|b| b.metadata.namespace == p.metadata.namespace)
        .find(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| selects(s, &labels))
        })
        .map(|b| {
            let st = b.status.clone().unwrap_or_default();
            let spec = b.spec.clone().unwrap_or_default();
            let rule = match (spec.min_available, spec.max_unavailable) {
                (Some(m), _) => format!("minAvailable {}", int_or_string(&m)),
                (None, Some(m)) => format!("maxUnavailable {}", int_or_string(&m)),
                (None, None) => "no rule".into(),
            };
            format!(
                "PodDisruptionBudget {}/{} ({rule}: {} healthy, {} needed, {} disruption(s) allowed)",
                b.metadata.namespace.as_deref().unwrap_or_default(),
                b.metadata.name.as_deref().unwrap_or_default(),
                st.current_healthy,
                st.desired_healthy,
                st.disruptions_allowed
            )
        })
}

fn int_or_string(v: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match v {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

impl Kube {
    /// Marks `node` unschedulable (`on`) or schedulable again; returns whether that changed it.
    pub async fn cordon(&self, node: &str, on: bool) -> Result<bool, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let what = format!("{} node {node}", if on { "cordon" } else { "uncordon" });
        let current = api.get(node).await.map_err(|e| KubeError::Api {
            what: what.clone(),
            cause: error_text(&e),
        })?;
        let now = current
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if now == on {
            return Ok(false);
        }
        let patch = serde_json::json!({"spec": {"unschedulable": on}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(node, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::Api {
                what,
                cause: error_text(&e),
            })?;
        Ok(true)
    }

    /// Whether `node` is registered and Ready: None when it is not registered.
    pub async fn node_ready(&self, node: &str) -> Result<Option<bool>, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let found = api.get_opt(node).await.map_err(|e| KubeError::Api {
            what: format!("read node {node}"),
            cause: error_text(&e),
        })?;
        Ok(found.as_ref().map(super::ready::node_is_ready))
    }

    /// Deletes the Node object `node`; returns whether there was one.
    pub async fn delete_node(&self, node: &str) -> Result<bool, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.delete(node, &Default::default()).await {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(KubeError::Api {
                what: format!("delete node {node}"),
                cause: error_text(&e),
            }),
        }
    }

    /// Cordons `node` and evicts its pods through the Eviction API until none is left that must
    /// go, or `timeout` ends (then: which pods are left and the budget that holds each).
    pub async fn drain(&self, node: &str, timeout: Duration) -> Result<Drained, KubeError> {
        let started = Instant::now();
        let cordoned = self.cordon(node, true).await?;
        let what = format!("drain node {node}");
        let api_err = |e: ::kube::Error| KubeError::Api {
            what: what.clone(),
            cause: error_text(&e),
        };
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let first = pods.list(&on_node).await.map_err(api_err)?;
        let lost: Vec<String> = first
            .items
            .iter()
            .filter(|p| stays(p).is_none() && unmanaged(p))
            .map(key)
            .collect();
        if !lost.is_empty() {
            return Err(KubeError::Api {
                what,
                cause: format!(
                    "{} pod(s) on it belong to no controller and would be lost, so nothing was evicted: {} — delete or move them, then run again (the node stays cordoned)",
                    lost.len(),
                    lost.join(", ")
                ),
            });
        }
        let kept: Vec<String> = first
            .items
            .iter()
            .filter_map(|p| stays(p).map(|why| format!("{} ({why})", key(p))))
            .collect();
        let mut evicted: Vec<String> = Vec::new();
        // The first round works on the listing above; later ones list again.
        let mut listed = Some(first.items);
        loop {
            let items = match listed.take() {
                Some(items) => items,
                None => pods.list(&on_node).await.map_err(api_err)?.items,
            };
            let left: Vec<Pod> = items.into_iter().filter(|p| stays(p).is_none()).collect();
            if left.is_empty() {
                return Ok(Drained {
                    cordoned,
                    evicted,
                    kept,
                });
            }
            let to_evict: Vec<&Pod> = left
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let results: Vec<(String, Result<(), ::kube::Error>)> = stream::iter(to_evict)
                .map(|p| {
                    let ns = p.metadata.namespace.clone().unwrap_or_default();
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let client = self.no_retry.clone();
                    async move {
                        let api: Api<Pod> = Api::namespaced(client, &ns);
                        let r = api.evict(&name, &EvictParams::default()).await.map(|_| ());
                        (format!("{ns}/{name}"), r)
                    }
                })
                .buffer_unordered(EVICTIONS_IN_FLIGHT)
                .collect()
                .await;
            for (pod, r) in results {
                match r {
                    Ok(()) => {
                        tracing::info!(node, pod = %pod, "evicted");
                        evicted.push(pod);
                    }
                    // 429: a disruption budget says not now; 404: gone already.
                    Err(::kube::Error::Api(s)) if s.code == 429 || s.code == 404 => {}
                    Err(e) => return Err(api_err(e)),
                }
            }
            if started.elapsed() >= timeout {
                let budgets: Api<PodDisruptionBudget> = Api::all(self.client.clone());
                let budgets = budgets
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let why: Vec<String> = left
                    .iter()
                    .map(|p| {
                        let hold = if p.metadata.deletion_timestamp.is_some() {
                            "terminating".to_string()
                        } else {
                            blocking_budget(p, &budgets)
                                .map(|b| format!("held by {b}"))
                                .unwrap_or_else(|| "eviction refused".into())
                        };
                        format!("{} ({hold})", key(p))
                    })
                    .collect();
                return Err(KubeError::NotReady {
                    what,
                    after: started.elapsed(),
                    why: format!(
                        "{} pod(s) still on it: {}; the node stays cordoned",
                        left.len(),
                        why.join("; ")
                    ),
                });
            }
            tokio::time::sleep(ROUND).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let sel = |ml: Option<&[(&str, &str)]>, ex: Vec<(&str, &str, Vec<&str>)>| LabelSelector {
            match_labels: ml.map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            match_expressions: Some(
                ex.into_iter()
                    .map(|(k, op, vs)| LabelSelectorRequirement {
                        key: k.into(),
                        operator: op.into(),
                        values: Some(vs.into_iter().map(String::from).collect()),
                    })
                    .collect(),
            ),
        };
        assert!(selects(&sel(Some(&[("app", "web")]), vec![]), &labels));
        assert!(!selects(&sel(Some(&[("app", "db")]), vec![]), &labels));
        assert!(selects(
            &sel(None, vec![("app", "In", vec!["web", "x"])]),
            &labels
        ));
        assert!(!selects(
            &sel(None, vec![("app", "NotIn", vec!["web"])]),
            &labels
        ));
        assert!(selects(
            &sel(None, vec![("tier", "DoesNotExist", vec![])]),
            &labels
        ));
        assert!(!selects(
            &sel(None, vec![("tier", "Exists", vec![])]),
            &labels
        ));
        // An empty selector selects every pod, as for a PodDisruptionBudget in policy/v1.
        assert!(selects(&sel(None, vec![]), &labels));
    }
}
