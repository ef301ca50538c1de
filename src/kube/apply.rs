//! Server-side apply of multi-document manifests: each object patched with `Patch::Apply` under
//! forgectl's field manager (forced: forgectl owns what it renders), namespaces and CRDs first,
//! and a report of what was created, changed or already as rendered (from the resourceVersion
//! before and after: a no-op apply leaves it alone).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ::kube::api::{Api, DynamicObject, Patch, PatchParams};
use ::kube::core::{GroupVersionKind, gvk::ParseGroupVersionError};
use ::kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};
use serde_json::Value;

use super::{FIELD_MANAGER, Kube, KubeError};

/// What an apply did, object by object (`Kind namespace/name`).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// Objects that did not exist.
    pub created: Vec<String>,
    /// Objects that changed.
    pub configured: Vec<String>,
    /// Objects already as rendered.
    pub unchanged: Vec<String>,
}

impl ApplyReport {
    /// Objects created or changed.
    pub fn changes(&self) -> usize {
        self.created.len() + self.configured.len()
    }
}

/// The objects of a multi-document YAML text (empty documents skipped), each with apiVersion,
/// kind and metadata.name.
pub fn documents(source_name: &str, yaml: &str) -> Result<Vec<Value>, KubeError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| KubeError::Document {
        source_name: source_name.into(),
        index: 0,
        cause: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        if d.is_null() {
            continue;
        }
        let missing = ["apiVersion", "kind"]
            .into_iter()
            .find(|k| d.get(*k).and_then(Value::as_str).is_none())
            .or_else(|| {
                d["metadata"]["name"]
                    .as_str()
                    .is_none()
                    .then_some("metadata.name")
            });
        if let Some(k) = missing {
            return Err(KubeError::Document {
                source_name: source_name.into(),
                index: i + 1,
                cause: format!("no {k}"),
            });
        }
        out.push(d);
    }
    Ok(out)
}

/// Applies first what others depend on: namespaces, then CRDs, then the rest (in file order).
fn rank(d: &Value) -> u8 {
    match d["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    }
}

fn label(d: &Value) -> String {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    match d["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{} {ns}/{name}", d["kind"].as_str().unwrap_or_default()),
        None => format!("{} {name}", d["kind"].as_str().unwrap_or_default()),
    }
}

/// How long a custom resource's kind may take to be served after its CRD was applied (the API
/// server establishes a new CRD within a second or two).
const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests in flight at once while applying the objects of one group.
const APPLY_CONCURRENCY: usize = 8;

/// What an apply did to one object.
enum Outcome {
    Created,
    Configured,
    Unchanged,
}

/// `group/Kind` of every CRD among `docs`.
fn kinds_defined(docs: &[Value]) -> HashSet<String> {
    docs.iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| {
            format!(
                "{}/{}",
                d["spec"]["group"].as_str().unwrap_or_default(),
                d["spec"]["names"]["kind"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn gvk_of(d: &Value) -> Result<GroupVersionKind, ParseGroupVersionError> {
    let api_version = d["apiVersion"].as_str().unwrap_or_default();
    let kind = d["kind"].as_str().unwrap_or_default();
    let gv: ::kube::core::GroupVersion = api_version.parse()?;
    Ok(GroupVersionKind::gvk(&gv.group, &gv.version, kind))
}

impl Kube {
    async fn resource(
        &self,
        cache: &mut HashMap<String, (ApiResource, ApiCapabilities)>,
        d: &Value,
    ) -> Result<(ApiResource, ApiCapabilities), KubeError> {
        let api_version = d["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = d["kind"].as_str().unwrap_or_default().to_string();
        let key = format!("{api_version}/{kind}");
        if let Some(r) = cache.get(&key) {
            return Ok(r.clone());
        }
        let not_served = || KubeError::NotServed {
            api_version: api_version.clone(),
            kind: kind.clone(),
        };
        let gvk = gvk_of(d).map_err(|_| not_served())?;
        let found = pinned_kind(&self.client, &gvk).await.map_err(|e| match e {
            ::kube::Error::Discovery(_) => not_served(),
            ::kube::Error::Api(s) if s.code == 404 => not_served(),
            e => KubeError::Api {
                what: format!("discover {api_version} {kind}"),
                cause: super::error_text(&e),
            },
        })?;
        cache.insert(key, found.clone());
        Ok(found)
    }

    /// As `resource`, but a kind whose CRD is among the objects being applied is waited for
    /// until the API server serves it.
    async fn resource_soon(
        &self,
        cache: &mut HashMap<String, (ApiResource, ApiCapabilities)>,
        defined: &HashSet<String>,
        d: &Value,
    ) -> Result<(ApiResource, ApiCapabilities), KubeError> {
        let start = Instant::now();
        loop {
            match self.resource(cache, d).await {
                Err(KubeError::NotServed { .. })
                    if start.elapsed() < CRD_ESTABLISH_TIMEOUT
                        && gvk_of(d).is_ok_and(|g| {
                            defined.contains(&format!("{}/{}", g.group, g.kind))
                        }) =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                r => return r,
            }
        }
    }

    /// Applies every object of `yaml` (from `source_name`, for messages) with server-side apply.
    pub async fn apply_yaml(
        &self,
        source_name: &str,
        yaml: &str,
    ) -> Result<ApplyReport, KubeError> {
        self.apply_objects(documents(source_name, yaml)?).await
    }

    /// Applies `docs` (each with apiVersion, kind and metadata.name) with server-side apply.
    pub async fn apply_objects(&self, mut docs: Vec<Value>) -> Result<ApplyReport, KubeError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        docs.sort_by_key(rank);
        let mut cache = HashMap::new();
        let mut report = ApplyReport::default();
        let defined = kinds_defined(&docs);
        // Namespaces, then CRDs, then the rest: each group once the one before is applied,
        // the objects of a group side by side (at most APPLY_CONCURRENCY requests at once).
        let mut rest = docs.as_slice();
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|d| rank(d) == rank(first)).count();
            let (group, after) = rest.split_at(n);
            rest = after;
            let mut resolved = Vec::with_capacity(group.len());
            for d in group {
                resolved.push((d, self.resource_soon(&mut cache, &defined, d).await?));
            }
            let outcomes: Vec<(String, Outcome)> = stream::iter(resolved)
                .map(|(d, (ar, caps))| self.apply_one(d, ar, caps))
                .buffered(APPLY_CONCURRENCY)
                .try_collect()
                .await?;
            for (what, outcome) in outcomes {
                match outcome {
                    Outcome::Created => report.created.push(what),
                    Outcome::Configured => report.configured.push(what),
                    Outcome::Unchanged => report.unchanged.push(what),
                }
            }
        }
        Ok(report)
    }

    /// Applies one object: its label and what the apply did.
    async fn apply_one(
        &self,
        d: &Value,
        ar: ApiResource,
        caps: ApiCapabilities,
    ) -> Result<(String, Outcome), KubeError> {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            let ns = d["metadata"]["namespace"].as_str().unwrap_or("default");
            Api::namespaced_with(self.client.clone(), ns, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        let what = label(d);
        let api_err = |verb: &str, e: ::kube::Error| KubeError::Api {
            what: format!("{verb} {what}"),
            cause: super::error_text(&e),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let before = api.get_opt(name).await.map_err(|e| api_err("read", e))?;
        let after = api
            .patch(name, &params, &Patch::Apply(d))
            .await
            .map_err(|e| api_err("apply", e))?;
        let outcome = match before {
            None => Outcome::Created,
            Some(b) if content(&b) != content(&after) => Outcome::Configured,
            Some(_) => Outcome::Unchanged,
        };
        Ok((what, outcome))
    }
}

/// What an object says, without the server's bookkeeping: its resourceVersion and
/// managedFields (the server may rewrite forgectl's entry once after a controller's first
/// status write, with nothing else changed) and its status (the controllers').
fn content(o: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    v
}
