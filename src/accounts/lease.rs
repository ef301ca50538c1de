//! Leader election with a coordination.k8s.io/v1 Lease (as client-go's leaderelection does):
//! the holder renews it every few seconds; another replica takes it over only once
//! `renewTime + leaseDurationSeconds` has passed; every write carries the resourceVersion it
//! read, so two replicas racing for it cannot both win (the loser gets 409 Conflict).

use std::time::{Duration, SystemTime};

use ::kube::api::{Api, PostParams};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

use super::{AccountsError, api_err};

/// A Lease this replica holds or waits for.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn now_micro() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

impl LeaseLock {
    /// The Lease `namespace`/`name`, held as `identity` for `duration` per renewal.
    pub fn new(
        client: &::kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn lease(&self, transitions: i32, acquired: Option<String>, rv: Option<String>) -> Lease {
        let now = now_micro();
        let mut v = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {"holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration.as_secs(),
                "acquireTime": acquired.unwrap_or_else(|| now.clone()), "renewTime": now,
                "leaseTransitions": transitions}});
        if let Some(rv) = rv {
            v["metadata"]["resourceVersion"] = json!(rv);
        }
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Takes or renews the Lease; whether this replica holds it now.
    pub async fn acquire_or_renew(&self) -> Result<bool, AccountsError> {
        let what = || format!("Lease {}", self.name);
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| api_err(what(), e))?;
        let Some(l) = current else {
            return match self
                .api
                .create(&PostParams::default(), &self.lease(0, None, None))
                .await
            {
                Ok(_) => Ok(true),
                Err(::kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(api_err(what(), e)),
            };
        };
        let spec = l.spec.clone().unwrap_or_default();
        let rv = l.metadata.resource_version.clone();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let as_json = serde_json::to_value(&spec).unwrap_or_default();
        let renewed = as_json["renewTime"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let held_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = renewed.is_none_or(|t| t + held_for < SystemTime::now());
        if !mine && !free && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine {
            as_json["acquireTime"].as_str().map(str::to_string)
        } else {
            None
        };
        let next = self.lease(transitions, acquired, rv);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(api_err(what(), e)),
        }
    }

    /// Gives the Lease up (on shutdown) so another replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(l)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = l.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let mut v = serde_json::to_value(&l).unwrap_or_default();
        v["spec"]["holderIdentity"] = json!("");
        v["spec"]["leaseDurationSeconds"] = json!(1);
        if let Ok(released) = serde_json::from_value::<Lease>(v) {
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &released)
                .await;
        }
    }
}
