//! Waits on the API for the cluster as a whole: every node registered and Ready, every pod of a
//! namespace running with its containers ready.

use std::time::{Duration, Instant};

use ::kube::api::{Api, DynamicObject, ListParams};
use ::kube::core::GroupVersionKind;
use ::kube::discovery::ApiResource;
use serde_json::Value;

use super::{Kube, KubeError};

/// How often a wait looks again.
const POLL: Duration = Duration::from_secs(2);

/// Whether a Node's `Ready` condition is True.
pub fn node_is_ready(n: &k8s_openapi::api::core::v1::Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// Whether every node of `want` is in `nodes` and Ready; if not, which are missing or not ready.
pub fn nodes_ready(nodes: &[Value], want: &[String]) -> Result<(), String> {
    let missing: Vec<&str> = want
        .iter()
        .filter(|w| !nodes.iter().any(|n| name(n) == w.as_str()))
        .map(String::as_str)
        .collect();
    let not_ready: Vec<&str> = nodes
        .iter()
        .filter(|n| want.iter().any(|w| w == name(n)) && !condition_true(n, "Ready"))
        .map(name)
        .collect();
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!("not registered: {}", missing.join(", ")));
    }
    if !not_ready.is_empty() {
        why.push(format!("not Ready: {}", not_ready.join(", ")));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

/// A pod that neither has finished (Succeeded) nor runs with all containers ready, as
/// `NAME (PHASE[, WAITING REASON])`; None for a pod that is fine.
pub fn pod_behind(p: &Value) -> Option<String> {
    let phase = p["status"]["phase"].as_str().unwrap_or("Pending");
    if phase == "Succeeded" || (phase == "Running" && condition_true(p, "Ready")) {
        return None;
    }
    let waiting = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["state"]["waiting"]["reason"].as_str());
    Some(match waiting {
        Some(r) => format!("{} ({phase}, {r})", name(p)),
        None => format!("{} ({phase})", name(p)),
    })
}

/// Whether every pod of `pods` has finished (Succeeded) or runs with all containers ready, and
/// there is at least one; if not, which pods are behind and in what phase.
pub fn pods_running(pods: &[Value]) -> Result<(), String> {
    if pods.is_empty() {
        return Err("no pods yet".into());
    }
    let behind: Vec<String> = pods.iter().filter_map(pod_behind).collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} pod(s) not running and ready: {}",
            behind.len(),
            pods.len(),
            behind.join(", ")
        ))
    }
}

impl Kube {
    /// Every object of `group`/`version` `kind` (in `namespace`, or cluster-wide), as JSON.
    pub async fn list(
        &self,
        (group, version, kind): (&str, &str, &str),
        namespace: Option<&str>,
    ) -> Result<Vec<Value>, KubeError> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let err = |verb: &str, cause: String| KubeError::Api {
            what: format!("{verb} {kind} objects"),
            cause,
        };
        api.list(&ListParams::default())
            .await
            .map_err(|e| err("list", super::error_text(&e)))?
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(|e| err("read", e.to_string())))
            .collect()
    }

    /// Polls `check` over what `list` gives for `gvk` in `namespace` until it passes or
    /// `timeout` ends; `what` names the wait in the error.
    async fn wait_list(
        &self,
        gvk: (&str, &str, &str),
        namespace: Option<&str>,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Value]) -> Result<(), String>,
    ) -> Result<(), KubeError> {
        let start = Instant::now();
        loop {
            let items = self.list(gvk, namespace).await?;
            match check(&items) {
                Ok(()) => return Ok(()),
                Err(why) if start.elapsed() >= timeout => {
                    return Err(KubeError::NotReady {
                        what: what.into(),
                        after: timeout,
                        why,
                    });
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Waits until every node of `want` is registered and Ready.
    pub async fn wait_nodes_ready(
        &self,
        want: &[String],
        timeout: Duration,
    ) -> Result<(), KubeError> {
        self.wait_list(("", "v1", "Node"), None, "nodes", timeout, |nodes| {
            nodes_ready(nodes, want)
        })
        .await
    }

    /// Waits until every pod of `namespace` runs with its containers ready (or has finished).
    pub async fn wait_pods_running(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<(), KubeError> {
        let what = format!("pods in {namespace}");
        self.wait_list(
            ("", "v1", "Pod"),
            Some(namespace),
            &what,
            timeout,
            pods_running,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(n: &str, ready: &str) -> Value {
        json!({"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": ready}]}})
    }

    #[test]
    fn nodes_must_all_be_there_and_ready() {
        let want = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let nodes = [node("a", "True"), node("b", "False"), node("x", "False")];
        assert_eq!(
            nodes_ready(&nodes, &want).unwrap_err(),
            "not registered: c; not Ready: b"
        );
        let nodes = [node("a", "True"), node("b", "True"), node("c", "True")];
        assert!(nodes_ready(&nodes, &want).is_ok());
    }

    #[test]
    fn pods_must_run_ready_or_have_finished() {
        let ok = json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let done = json!({"metadata": {"name": "j"}, "status": {"phase": "Succeeded"}});
        let crash = json!({"metadata": {"name": "c"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert!(pods_running(&[ok.clone(), done.clone()]).is_ok());
        assert_eq!(
            pods_running(&[ok, done, crash]).unwrap_err(),
            "1 of 3 pod(s) not running and ready: c (Running, CrashLoopBackOff)"
        );
        assert!(pods_running(&[]).is_err());
    }
}
