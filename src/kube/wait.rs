//! Waits on the API: a DaemonSet or Deployment rolled out (every wanted pod updated and ready, as
//! the controllers report it in `status`).

use std::time::{Duration, Instant};

use ::kube::api::{Api, DynamicObject};
use ::kube::core::GroupVersionKind;
use ::kube::discovery::ApiResource;
use serde_json::Value;

use super::{Kube, KubeError};

/// Whether a workload's status shows it rolled out, and if not, what it says.
pub fn rolled_out(kind: &str, obj: &Value) -> Result<(), String> {
    let st = &obj["status"];
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    if n("observedGeneration") < generation {
        return Err("the controller has not seen the latest spec yet".into());
    }
    match kind {
        "DaemonSet" => {
            let want = n("desiredNumberScheduled");
            if want == 0 {
                return Err("no node matches its node selector".into());
            }
            if n("updatedNumberScheduled") < want || n("numberReady") < want {
                return Err(format!(
                    "{} of {want} pod(s) updated, {} ready",
                    n("updatedNumberScheduled"),
                    n("numberReady")
                ));
            }
            Ok(())
        }
        _ => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            if n("updatedReplicas") < want || n("availableReplicas") < want {
                return Err(format!(
                    "{} of {want} replica(s) updated, {} available",
                    n("updatedReplicas"),
                    n("availableReplicas")
                ));
            }
            Ok(())
        }
    }
}

impl Kube {
    /// Waits until the `kind` (`DaemonSet` or `Deployment`) `namespace/name` rolled out.
    pub async fn wait_rollout(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), KubeError> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", kind));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let what = format!("{kind} {namespace}/{name}");
        let started = Instant::now();
        loop {
            let obj = api.get_opt(name).await.map_err(|e| KubeError::Api {
                what: format!("read {what}"),
                cause: super::error_text(&e),
            })?;
            let state = match &obj {
                Some(o) => serde_json::to_value(o)
                    .map_err(|e| e.to_string())
                    .and_then(|v| rolled_out(kind, &v)),
                None => Err("it does not exist".into()),
            };
            match state {
                Ok(()) => return Ok(()),
                Err(why) if started.elapsed() >= timeout => {
                    return Err(KubeError::NotReady {
                        what: format!("{what} rolled out"),
                        after: timeout,
                        why,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rolled_out;
    use serde_json::json;

    #[test]
    fn rollout_states() {
        let ds = |status| json!({"metadata": {"generation": 2}, "status": status});
        assert!(rolled_out("DaemonSet", &ds(json!({"observedGeneration": 2, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberReady": 2}))).is_ok());
        assert!(rolled_out("DaemonSet", &ds(json!({"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberReady": 2}))).is_err());
        let e = rolled_out("DaemonSet", &ds(json!({"observedGeneration": 2, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberReady": 1}))).unwrap_err();
        assert_eq!(e, "2 of 2 pod(s) updated, 1 ready");
        assert!(
            rolled_out("DaemonSet", &ds(json!({"observedGeneration": 2})))
                .unwrap_err()
                .contains("no node")
        );
        let d = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(rolled_out("Deployment", &d).is_ok());
        assert!(
            rolled_out(
                "Deployment",
                &json!({"metadata": {"generation": 1}, "spec": {"replicas": 2}})
            )
            .is_err()
        );
    }
}
