//! The Kubernetes API from forgectl: a client from the admin kubeconfig (the cluster CA, a client
//! certificate), server-side apply of multi-document YAML with forgectl's field manager, in
//! dependency order (namespaces and CRDs first).

mod apply;
mod drain;
mod ready;
mod versions;
mod wait;

pub use apply::{ApplyReport, documents};
pub use drain::{Drained, selects};
pub use ready::{node_is_ready, nodes_ready, pod_behind, pods_running};
pub use versions::{
    CONTROL_PLANE_COMPONENTS, ComponentPod, NodeState, configured_version, image_tag,
};
pub use wait::rolled_out;

use std::path::Path;
use std::time::Duration;

/// forgectl's field manager for server-side apply.
pub const FIELD_MANAGER: &str = "forgectl";
/// How long one API request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An API error for people: the server's message with its reason and code
/// (`namespaces "x" not found (NotFound, 404)`), or the client's error.
pub fn error_text(e: &::kube::Error) -> String {
    use std::io::ErrorKind::*;
    match e {
        ::kube::Error::Api(s) => format!("{} ({}, {})", s.message, s.reason, s.code),
        e => match crate::error_chain::bottom(e) {
            (_, Some(ConnectionRefused)) => {
                "the API server refused the connection — is it up? (`forgectl status`)".into()
            }
            (_, Some(TimedOut)) => {
                "the API server did not answer in time — is it up and reachable? (`forgectl status`)"
                    .into()
            }
            (cause, _) => format!("the API request failed: {cause}"),
        },
    }
}

/// Why a Kubernetes API operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig is unusable.
    #[error("kubeconfig {path}: {cause}")]
    Kubeconfig {
        /// Its path.
        path: String,
        /// Why.
        cause: String,
    },
    /// A manifest is not valid YAML or not a Kubernetes object.
    #[error("manifest {source_name}, document {index}: {cause}")]
    Document {
        /// Where it comes from (a template name).
        source_name: String,
        /// 1-based document number.
        index: usize,
        /// Why.
        cause: String,
    },
    /// The API server does not serve the object's kind.
    #[error("{api_version} {kind} is not served by the API server (is its CRD applied first?)")]
    NotServed {
        /// apiVersion.
        api_version: String,
        /// kind.
        kind: String,
    },
    /// A wait ran out of time.
    #[error("{what}: not ready after {} s: {why}", .after.as_secs())]
    NotReady {
        /// What was waited for.
        what: String,
        /// How long.
        after: std::time::Duration,
        /// What the cluster said last.
        why: String,
    },
    /// The API server refused or failed a request.
    #[error("{what}: {cause}")]
    Api {
        /// What forgectl asked.
        what: String,
        /// The API server's answer.
        cause: String,
    },
}

impl KubeError {
    /// What to do next.
    pub fn next_step(&self) -> String {
        match self {
            Self::Kubeconfig { .. } => {
                "run `forgectl up --until kubeadm-init` to fetch the admin kubeconfig again".into()
            }
            Self::Document { .. } => "fix the template named above (or its --templates override)".into(),
            Self::NotServed { .. } => {
                "apply the CustomResourceDefinition before objects of its kind".into()
            }
            Self::NotReady { .. } => {
                "look at `forgectl status` and the pods' events (`kubectl --kubeconfig STATE_DIR/CLUSTER/admin.conf -n NAMESPACE describe pods`), then run again".into()
            }
            Self::Api { .. } => {
                "check the API server (`forgectl exec --hosts control-plane -- crictl ps -a`) and run again".into()
            }
        }
    }
}

/// A client of one cluster's API.
pub struct Kube {
    client: ::kube::Client,
    /// The same without the client's own retries of 429, 503 and 504: for evictions, whose 429
    /// means "a disruption budget says not now", which the drain loop answers itself.
    no_retry: ::kube::Client,
}

impl Kube {
    /// A client from a kubeconfig file (its current context).
    pub async fn from_kubeconfig(path: &Path) -> Result<Self, KubeError> {
        let err = |cause: String| KubeError::Kubeconfig {
            path: path.display().to_string(),
            cause,
        };
        let kc = ::kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        let mut config = ::kube::Config::from_custom_kubeconfig(
            kc,
            &::kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| err(e.to_string()))?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        let mut once = config.clone();
        once.default_retry = false;
        let client = ::kube::Client::try_from(config).map_err(|e| err(e.to_string()))?;
        let no_retry = ::kube::Client::try_from(once).map_err(|e| err(e.to_string()))?;
        Ok(Self { client, no_retry })
    }

    /// The client, for the callers that need the raw API.
    pub fn client(&self) -> &::kube::Client {
        &self.client
    }
}
