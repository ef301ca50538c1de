//! What `toolctl` knows about the tool it runs as: its kubeconfig (the one `forgectl accounts`
//! wrote into the home), its namespace and name (from the kubeconfig's context), its uid, gid and
//! home (from the process: toolctl runs as the tool), and the platform's settings for tools
//! (the ConfigMap `forgectl-platform/toolctl`: the tool domain and the image of each type).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ::kube::api::Api;
use k8s_openapi::api::core::v1::ConfigMap;

/// Namespace of the platform's settings for tools.
pub const PLATFORM_NAMESPACE: &str = "forgectl-platform";
/// Name of the ConfigMap with them.
pub const SETTINGS_CONFIGMAP: &str = "toolctl";
/// Name of the PersistentVolumeClaim of the tool's home, when the platform gives one.
pub const HOME_CLAIM: &str = "tool-home";

/// Why a toolctl command failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The kubeconfig is missing or unusable.
    #[error("kubeconfig {path}: {cause}")]
    Kubeconfig {
        /// Its path.
        path: String,
        /// Why.
        cause: String,
    },
    /// The kubeconfig's namespace is not a tool namespace.
    #[error(
        "the kubeconfig's namespace {0:?} is not a tool namespace (the platform's prefix, then the tool's name)"
    )]
    NotATool(String),
    /// An image type the platform does not offer.
    #[error("no image type {wanted:?}; the platform offers: {offered}")]
    UnknownType {
        /// Asked for.
        wanted: String,
        /// What there is.
        offered: String,
    },
    /// An API request failed.
    #[error("{what}: {cause}")]
    Api {
        /// What was asked.
        what: String,
        /// The answer.
        cause: String,
    },
    /// Something the tool asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A wait ran out.
    #[error("{what}: not ready after {secs} s: {why}")]
    NotReady {
        /// What.
        what: String,
        /// How long.
        secs: u64,
        /// The last state seen.
        why: String,
    },
    /// The command line asks for something that does not fit.
    #[error("{0}")]
    Usage(String),
}

impl ToolError {
    /// What to do next.
    pub fn next_step(&self) -> Option<&'static str> {
        Some(match self {
            Self::Kubeconfig { .. } => {
                "run toolctl as the tool (`become TOOL`): its kubeconfig is ~/.kube/config"
            }
            Self::NotATool(_) => "use the kubeconfig forgectl wrote into the tool's home",
            Self::UnknownType { .. } => "pick one of the types offered",
            Self::NotReady { .. } => {
                "look at `toolctl webservice status` and `toolctl webservice logs`"
            }
            _ => return None,
        })
    }
}

/// Renders an API error for tool owners: the server's message alone.
pub fn api_err(what: impl Into<String>, e: ::kube::Error) -> ToolError {
    ToolError::Api {
        what: what.into(),
        cause: match e {
            ::kube::Error::Api(s) => s.message,
            e => e.to_string(),
        },
    }
}

/// The tool toolctl acts for.
pub struct ToolContext {
    /// API client with the tool's credentials.
    pub client: ::kube::Client,
    /// The tool's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// uid the tool's containers run as.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// The tool's home (mounted into its containers when the platform gives a home claim).
    pub home: PathBuf,
    /// `NAME.<tool domain>` is the tool's host.
    pub tool_domain: String,
    /// Image types: TYPE → image.
    pub images: BTreeMap<String, String>,
}

impl ToolContext {
    /// The context from `kubeconfig` (the tool's), with uid, gid and home given (the process's
    /// own by default).
    pub async fn load(
        kubeconfig: &Path,
        uid: u32,
        gid: u32,
        home: PathBuf,
    ) -> Result<Self, ToolError> {
        let err = |cause: String| ToolError::Kubeconfig {
            path: kubeconfig.display().to_string(),
            cause,
        };
        let kc =
            ::kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
        let current = kc.current_context.clone().unwrap_or_default();
        let namespace = kc
            .contexts
            .iter()
            .find(|c| c.name == current)
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.namespace.clone())
            .ok_or_else(|| err("its context has no namespace".into()))?;
        // The same client forgectl uses (its timeouts), with the tool's credentials.
        let client = crate::kube::Kube::from_kubeconfig(kubeconfig)
            .await
            .map_err(|e| err(e.to_string()))?
            .client()
            .clone();
        let settings: Api<ConfigMap> = Api::namespaced(client.clone(), PLATFORM_NAMESPACE);
        let cm = settings.get(SETTINGS_CONFIGMAP).await.map_err(|e| {
            api_err(
                format!("read the platform settings ({PLATFORM_NAMESPACE}/{SETTINGS_CONFIGMAP})"),
                e,
            )
        })?;
        let data = cm.data.unwrap_or_default();
        // The prefix the provisioner uses (accounts.namespace_prefix), as the platform says.
        let prefix = data
            .get("namespace_prefix")
            .map(String::as_str)
            .unwrap_or("tool-");
        let name = namespace
            .strip_prefix(prefix)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ToolError::NotATool(namespace.clone()))?
            .to_string();
        let tool_domain = data
            .get("tool_domain")
            .cloned()
            .unwrap_or_else(|| "toolforge.test".into());
        let images = data
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("image.")?.to_string(), v.clone())))
            .collect();
        Ok(Self {
            client,
            name,
            namespace,
            uid,
            gid,
            home,
            tool_domain,
            images,
        })
    }

    /// The image of `kind`.
    pub fn image(&self, kind: &str) -> Result<&str, ToolError> {
        self.images
            .get(kind)
            .map(String::as_str)
            .ok_or_else(|| ToolError::UnknownType {
                wanted: kind.into(),
                offered: self.images.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The tool's host.
    pub fn host(&self) -> String {
        format!("{}.{}", self.name, self.tool_domain)
    }

    /// A pod spec running `image` (with `command` or the image's own) as the tool: its uid and
    /// gid, no privileges (what PSA `restricted` asks), its home mounted when the platform gives
    /// a home claim, working directory the home.
    pub fn pod_spec(
        &self,
        container: &str,
        image: &str,
        command: Option<&str>,
        port: Option<u16>,
        home_claim: bool,
        restart: &str,
    ) -> serde_json::Value {
        use serde_json::json;
        let home = self.home.display().to_string();
        let mut c = json!({
            "name": container, "image": image, "workingDir": home,
            "env": [{"name": "HOME", "value": home}, {"name": "TOOL_NAME", "value": self.name}],
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]}},
        });
        if let Some(cmd) = command {
            c["command"] = json!(["/bin/sh", "-c", cmd]);
        }
        if let Some(p) = port {
            c["ports"] = json!([{"name": "http", "containerPort": p}]);
            if let Some(e) = c["env"].as_array_mut() {
                e.push(json!({"name": "PORT", "value": p.to_string()}));
            }
            c["readinessProbe"] = json!({"tcpSocket": {"port": p}, "periodSeconds": 5});
        }
        let mut spec = json!({
            "restartPolicy": restart,
            "securityContext": {"runAsUser": self.uid, "runAsGroup": self.gid,
                "fsGroup": self.gid, "runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [c],
        });
        if home_claim {
            spec["volumes"] = json!([{"name": "home",
                "persistentVolumeClaim": {"claimName": HOME_CLAIM}}]);
            spec["containers"][0]["volumeMounts"] = json!([{"name": "home", "mountPath": home}]);
        }
        spec
    }

    /// Whether the platform gave the tool a claim on its home.
    pub async fn has_home_claim(&self) -> Result<bool, ToolError> {
        let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &self.namespace);
        api.get_opt(HOME_CLAIM)
            .await
            .map(|c| c.is_some())
            .map_err(|e| api_err("read the home claim", e))
    }
}
