//! The dashboard's picture of the cluster: one reflector (a watch with a local cache) per kind
//! it shows, so a page reads memory, never the API. Managed fields are dropped as objects
//! arrive (they are most of an object's size and no page shows them).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ResourceQuota};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::DashboardError;
use crate::accounts::desired::{MANAGED_BY, MANAGER, TENANT_LABEL};

/// Seconds a watch asks the server to keep it open; below the client's read timeout, so a quiet
/// watch ends on the server's side and is resumed from its resource version, not failed.
const WATCH_SECONDS: u32 = 25;

/// The caches, one per kind.
#[derive(Clone)]
pub struct Stores {
    /// Tool namespaces (label `forgectl.io/tenant=true`).
    pub namespaces: Store<Namespace>,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every node.
    pub nodes: Store<Node>,
    /// The tools' quotas (managed by the accounts provisioner).
    pub quotas: Store<ResourceQuota>,
    /// Every Deployment.
    pub deployments: Store<Deployment>,
    /// Every Job.
    pub jobs: Store<Job>,
    /// Every CronJob.
    pub cronjobs: Store<CronJob>,
    /// Every Ingress.
    pub ingresses: Store<Ingress>,
}

/// Starts a reflector for `api` (filtered by `labels` when given) on the runtime; returns its
/// store. Errors are logged and the watch backs off and starts again.
fn reflect<K>(api: Api<K>, labels: Option<&str>) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let mut config = watcher::Config::default().timeout(WATCH_SECONDS);
    if let Some(l) = labels {
        config = config.labels(l);
    }
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(kind, error = %e, "dashboard watch failed; retrying");
            }
        }
    });
    reader
}

impl Stores {
    /// Starts every watch with `client`.
    pub fn start(client: &kube::Client) -> Self {
        let quotas = format!("{MANAGED_BY}={MANAGER}");
        let tenants = format!("{TENANT_LABEL}=true");
        Self {
            namespaces: reflect(Api::all(client.clone()), Some(&tenants)),
            pods: reflect(Api::all(client.clone()), None),
            nodes: reflect(Api::all(client.clone()), None),
            quotas: reflect(Api::all(client.clone()), Some(&quotas)),
            deployments: reflect(Api::all(client.clone()), None),
            jobs: reflect(Api::all(client.clone()), None),
            cronjobs: reflect(Api::all(client.clone()), None),
            ingresses: reflect(Api::all(client.clone()), None),
        }
    }

    /// Waits until every cache holds its first full list, at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), DashboardError> {
        let all = async {
            self.namespaces.wait_until_ready().await?;
            self.pods.wait_until_ready().await?;
            self.nodes.wait_until_ready().await?;
            self.quotas.wait_until_ready().await?;
            self.deployments.wait_until_ready().await?;
            self.jobs.wait_until_ready().await?;
            self.cronjobs.wait_until_ready().await?;
            self.ingresses.wait_until_ready().await
        };
        match tokio::time::timeout(limit, all).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DashboardError::Watch(e.to_string())),
            Err(_) => Err(DashboardError::Watch(format!(
                "the first lists did not arrive within {} s (are get, list and watch allowed? see `forgectl dashboard --print-rbac`)",
                limit.as_secs()
            ))),
        }
    }
}
