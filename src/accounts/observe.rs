//! What the cluster holds now: every object the provisioner manages (one paged list per kind,
//! by label) and its leftover certificate requests.

use std::collections::HashMap;

use ::kube::api::{ApiResource, DynamicObject, ListParams};
use ::kube::core::GroupVersionKind;
use futures::future::try_join_all;
use serde_json::Value;

use super::desired::{KINDS, MANAGED_BY, MANAGER, TOOL_LABEL, key_of};
use super::list_page::{Item, Page};
use super::{AccountsError, api_err};

/// Items per page of a list.
const PAGE: u32 = 5000;

/// Every managed object, by [`key_of`], and the keys of each tool's objects.
#[derive(Debug, Default)]
pub struct Observed {
    objects: HashMap<String, Value>,
    by_tool: HashMap<String, Vec<String>>,
}

impl Observed {
    /// From a list of objects.
    pub fn new(objects: impl IntoIterator<Item = Value>) -> Self {
        let mut out = Self::default();
        for o in objects {
            let key = key_of(&o);
            if let Some(t) = o["metadata"]["labels"][TOOL_LABEL].as_str() {
                out.by_tool
                    .entry(t.to_string())
                    .or_default()
                    .push(key.clone());
            }
            out.objects.insert(key, o);
        }
        out
    }

    /// The object with `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Whether there is an object with `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.objects.contains_key(key)
    }

    /// Every object.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.objects.values()
    }

    /// The objects of tool `name`, with their keys.
    pub fn of_tool<'a>(&'a self, name: &str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.by_tool
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|k| self.objects.get(k).map(|o| (k.as_str(), o)))
    }
}

/// Every object of `ar` matching `selector` (cluster-wide), page by page, as the JSON the API
/// server sent (no round trip through typed objects).
pub async fn list_all(
    client: &::kube::Client,
    ar: &ApiResource,
    selector: &str,
) -> Result<Vec<Value>, AccountsError> {
    use ::kube::Resource;
    let request = ::kube::core::Request::new(DynamicObject::url_path(ar, None));
    let bad = |cause: String| AccountsError::Api {
        what: format!("list {}", ar.plural),
        cause,
    };
    let mut out = Vec::new();
    let mut params = ListParams::default().labels(selector).limit(PAGE);
    let started = std::time::Instant::now();
    loop {
        let req = request.list(&params).map_err(|e| bad(e.to_string()))?;
        let text = client
            .request_text(req)
            .await
            .map_err(|e| api_err(format!("list {}", ar.plural), e))?;
        let (answered, bytes) = (started.elapsed(), text.len());
        // Megabytes of JSON: parsed off the async workers.
        let page = tokio::task::spawn_blocking(move || serde_json::from_str::<Page>(&text))
            .await
            .map_err(|e| bad(e.to_string()))?
            .map_err(|e| bad(format!("the answer is not a list: {e}")))?;
        for Item(mut v) in page.items.unwrap_or_default() {
            // Items of a list carry no kind; put it back so keys name it.
            v["kind"] = Value::String(ar.kind.clone());
            v["apiVersion"] = Value::String(ar.api_version.clone());
            out.push(v);
        }
        tracing::debug!(
            kind = ar.kind,
            items = out.len(),
            bytes,
            answered_ms = answered.as_millis() as u64,
            parsed_ms = started.elapsed().as_millis() as u64,
            "listed a page"
        );
        match page.metadata.continue_token {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => return Ok(out),
        }
    }
}

/// The resource of a managed kind.
pub fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// The ClusterRole tools are bound to, as stored (None: missing).
pub async fn tool_role(client: &::kube::Client) -> Result<Option<Value>, AccountsError> {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let api: ::kube::Api<ClusterRole> = ::kube::Api::all(client.clone());
    let role = api
        .get_opt(super::desired::TOOL_CLUSTER_ROLE)
        .await
        .map_err(|e| {
            api_err(
                format!("read ClusterRole {}", super::desired::TOOL_CLUSTER_ROLE),
                e,
            )
        })?;
    Ok(role.and_then(|r| serde_json::to_value(r).ok()))
}

/// Every object the provisioner manages, the kinds listed side by side.
pub async fn managed(client: &::kube::Client) -> Result<Observed, AccountsError> {
    let selector = format!("{MANAGED_BY}={MANAGER}");
    // One task per kind, so that the answers are parsed on every core.
    let lists = try_join_all(KINDS.iter().map(|(g, v, k, _)| {
        let ar = resource(g, v, k);
        let (selector, client) = (selector.clone(), client.clone());
        tokio::spawn(async move { list_all(&client, &ar, &selector).await })
    }))
    .await
    .map_err(|e| AccountsError::Api {
        what: "list the managed objects".into(),
        cause: e.to_string(),
    })?
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Observed::new(lists.into_iter().flatten()))
}

/// The provisioner's certificate requests still in the cluster (names).
pub async fn requests(client: &::kube::Client) -> Result<Vec<String>, AccountsError> {
    let ar = resource("certificates.k8s.io", "v1", "CertificateSigningRequest");
    let selector = format!("{MANAGED_BY}={MANAGER}");
    Ok(list_all(client, &ar, &selector)
        .await?
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect())
}
