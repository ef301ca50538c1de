//! What versions a cluster runs, read through the API: each node's kubelet, each control plane's
//! static pods, and the version kubeadm recorded for the cluster (kubeadm-config).

use ::kube::api::{Api, ListParams, Patch, PatchParams};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};

use super::{FIELD_MANAGER, Kube, KubeError, error_text};

/// The control plane's own components, as kubeadm runs them (static pods).
pub const CONTROL_PLANE_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// A node as an upgrade sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Ready condition True.
    pub ready: bool,
    /// `status.nodeInfo.kubeletVersion` (`v1.36.2`).
    pub kubelet: String,
    /// Cordoned.
    pub unschedulable: bool,
    /// The value of `annotation`, when asked for one and set.
    pub annotation: Option<String>,
}

/// A control-plane component's pod on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentPod {
    /// `kube-apiserver` and the others.
    pub component: String,
    /// The tag of its image (`v1.36.2`).
    pub tag: String,
    /// Ready condition True.
    pub ready: bool,
}

/// The tag of an image reference (`registry.k8s.io/kube-apiserver:v1.36.2` → `v1.36.2`).
pub fn image_tag(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let name = without_digest.rsplit('/').next().unwrap_or(without_digest);
    name.split_once(':').map_or("", |(_, t)| t)
}

/// `kubernetesVersion` of a kubeadm ClusterConfiguration document.
pub fn configured_version(cluster_configuration: &str) -> Option<String> {
    cluster_configuration.lines().find_map(|l| {
        l.strip_prefix("kubernetesVersion:")
            .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

impl Kube {
    /// `node` as an upgrade sees it; None when it is not registered.
    pub async fn node_state(
        &self,
        node: &str,
        annotation: &str,
    ) -> Result<Option<NodeState>, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let found = api.get_opt(node).await.map_err(|e| KubeError::Api {
            what: format!("read node {node}"),
            cause: error_text(&e),
        })?;
        Ok(found.map(|n| {
            let ready = super::ready::node_is_ready(&n);
            let status = n.status.unwrap_or_default();
            NodeState {
                ready,
                kubelet: status
                    .node_info
                    .map(|i| i.kubelet_version)
                    .unwrap_or_default(),
                unschedulable: n.spec.and_then(|s| s.unschedulable).unwrap_or(false),
                annotation: n
                    .metadata
                    .annotations
                    .and_then(|a| a.get(annotation).cloned()),
            }
        }))
    }

    /// Sets (`Some`) or removes (`None`) an annotation of `node`, and cordons or uncordons it,
    /// in one request.
    pub async fn mark_node(
        &self,
        node: &str,
        annotation: &str,
        value: Option<&str>,
        unschedulable: bool,
    ) -> Result<(), KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({
            "metadata": {"annotations": {annotation: value}},
            "spec": {"unschedulable": unschedulable},
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(node, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeError::Api {
                what: format!(
                    "{} node {node}",
                    if unschedulable { "cordon" } else { "uncordon" }
                ),
                cause: error_text(&e),
            })?;
        Ok(())
    }

    /// The control-plane components' pods on `node` (kube-system, kubeadm's static pods).
    pub async fn component_pods(&self, node: &str) -> Result<Vec<ComponentPod>, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        let params = ListParams::default()
            .fields(&format!("spec.nodeName={node}"))
            .labels("tier=control-plane");
        let pods = api.list(&params).await.map_err(|e| KubeError::Api {
            what: format!("list the control-plane pods of {node}"),
            cause: error_text(&e),
        })?;
        Ok(pods
            .items
            .into_iter()
            .filter_map(|p| {
                let component = p.metadata.labels.as_ref()?.get("component")?.clone();
                if !CONTROL_PLANE_COMPONENTS.contains(&component.as_str()) {
                    return None;
                }
                let tag = p
                    .spec
                    .as_ref()?
                    .containers
                    .first()
                    .and_then(|c| c.image.as_deref())
                    .map(image_tag)
                    .unwrap_or_default()
                    .to_string();
                let ready = p
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                Some(ComponentPod {
                    component,
                    tag,
                    ready,
                })
            })
            .collect())
    }

    /// The Kubernetes version kubeadm recorded for the cluster (kube-system/kubeadm-config);
    /// `kubeadm upgrade apply` moves it.
    pub async fn kubeadm_version(&self) -> Result<Option<String>, KubeError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-system");
        let cm = api
            .get_opt("kubeadm-config")
            .await
            .map_err(|e| KubeError::Api {
                what: "read kube-system/kubeadm-config".into(),
                cause: error_text(&e),
            })?;
        Ok(cm
            .and_then(|c| c.data)
            .and_then(|d| d.get("ClusterConfiguration").cloned())
            .and_then(|text| configured_version(&text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_image_references() {
        assert_eq!(
            image_tag("registry.k8s.io/kube-apiserver:v1.36.2"),
            "v1.36.2"
        );
        assert_eq!(image_tag("localhost:5000/kube-proxy:v1.35.3"), "v1.35.3");
        assert_eq!(image_tag("localhost:5000/kube-proxy"), "");
        assert_eq!(image_tag("registry.k8s.io/pause:3.10@sha256:abcd"), "3.10");
    }

    #[test]
    fn kubeadm_recorded_version() {
        let text = "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\nkubernetesVersion: v1.35.3\nnetworking: {}\n";
        assert_eq!(configured_version(text).as_deref(), Some("v1.35.3"));
        assert_eq!(configured_version("kind: ClusterConfiguration\n"), None);
    }
}
