//! `forgectl dashboard`: a read-only web page of the cluster's numbers (tools, pods, nodes,
//! CPU and memory, etcd, certificates, ingress traffic) and one page per tool (quota,
//! workloads, pods, web service, jobs), fed by watches; JSON at the same paths and Prometheus
//! metrics on /metrics.

pub mod extras;
pub mod metrics;
pub mod rbac;
pub mod server;
pub mod view;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long the first lists may take.
const FIRST_LISTS: Duration = Duration::from_secs(60);

/// What went wrong serving the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A watch could not start.
    #[error("the dashboard's watches: {0}")]
    Watch(String),
    /// The address could not be listened on.
    #[error("listen on {addr}: {cause}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: String,
    },
    /// A page template is broken (a bug).
    #[error("the dashboard's pages: {0}")]
    Pages(String),
    /// The server stopped.
    #[error("the dashboard's server: {0}")]
    Serve(String),
}

impl DashboardError {
    /// The next step for people.
    pub fn next_step(&self) -> String {
        match self {
            Self::Watch(_) => "check the kubeconfig and that its user may get, list and watch what `forgectl dashboard --print-rbac` lists".into(),
            Self::Listen { .. } => "pick another address with --listen (port 0 picks a free one)".into(),
            Self::Pages(_) | Self::Serve(_) => "report this as a bug, with the output above".into(),
        }
    }
}

/// Serves the dashboard of `cluster` with `client` on `listen` until `shutdown`; calls
/// `on_ready` with the bound address once the first lists are in.
pub async fn run(
    client: &kube::Client,
    cluster: &str,
    sources: extras::Sources,
    listen: SocketAddr,
    on_ready: impl FnOnce(SocketAddr, &server::Dashboard),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DashboardError> {
    let stores = watch::Stores::start(client);
    stores.wait_ready(FIRST_LISTS).await?;
    let extras = extras::spawn(sources);
    let dashboard = server::Dashboard::new(cluster, stores, extras)
        .map_err(|e| DashboardError::Pages(format!("{e:?}")))?;
    let listener =
        tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| DashboardError::Listen {
                addr: listen,
                cause: e.to_string(),
            })?;
    let addr = listener.local_addr().map_err(|e| DashboardError::Listen {
        addr: listen,
        cause: e.to_string(),
    })?;
    on_ready(addr, &dashboard);
    axum::serve(listener, server::router(Arc::new(dashboard)))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| DashboardError::Serve(e.to_string()))
}
