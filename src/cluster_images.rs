//! Every container image a cluster needs, by exact reference: what `forgectl artifacts list`
//! shows, and what a site whose nodes cannot pull must put in `artifacts.images`.

use serde::Serialize;

use crate::inventory::Inventory;
use crate::inventory::model::CniPlugin;

/// One image the cluster runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeededImage {
    /// The exact reference (`registry.k8s.io/pause:3.10.2`).
    pub reference: String,
    /// What runs it.
    pub used_by: &'static str,
    /// Which nodes pull it.
    pub nodes: &'static str,
}

/// CoreDNS's tag as kubeadm of Kubernetes 1.`minor` deploys it.
fn coredns_tag(minor: u64) -> &'static str {
    match minor {
        0..=33 => "v1.12.0",
        34 => "v1.12.1",
        35 => "v1.13.1",
        _ => "v1.14.2",
    }
}

/// Every image, in the order the bring-up needs them.
pub fn needed(inv: &Inventory) -> Vec<NeededImage> {
    let k = &inv.versions.kubernetes;
    let kubelet = inv.versions.kubelet.as_ref().unwrap_or(k);
    let mut out = Vec::new();
    let mut add = |reference: String, used_by: &'static str, nodes: &'static str| {
        out.push(NeededImage {
            reference,
            used_by,
            nodes,
        })
    };
    for part in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        add(
            format!("registry.k8s.io/{part}:v{k}"),
            "kubeadm (static pod)",
            "control planes",
        );
    }
    add(
        inv.runtime.pause_image(k),
        "containerd (every pod's sandbox)",
        "all nodes",
    );
    add(
        format!("registry.k8s.io/kube-proxy:v{kubelet}"),
        "kubeadm (kube-proxy DaemonSet)",
        "all nodes",
    );
    add(
        format!("registry.k8s.io/coredns/coredns:{}", coredns_tag(k.0.minor)),
        "kubeadm (CoreDNS Deployment)",
        "any node",
    );
    if inv.cni.plugin == CniPlugin::Calico {
        let registry = inv.calico.registry.trim_end_matches('/');
        for part in ["node", "cni", "kube-controllers"] {
            add(
                format!("{registry}/{part}:v{}", inv.versions.calico),
                "Calico",
                if part == "kube-controllers" {
                    "any node"
                } else {
                    "all nodes"
                },
            );
        }
    }
    if inv.ingress.enabled {
        add(
            inv.ingress.image.clone(),
            "nginx-ingress controller",
            "ingress nodes",
        );
        add(
            inv.ingress.default_backend_image.clone(),
            "nginx-ingress default backend",
            "any node",
        );
    }
    if inv.storage.cinder.enabled {
        for (_, image) in crate::phases::storage_cinder::images(&inv.storage.cinder) {
            add(image, "Cinder CSI", "all nodes");
        }
    }
    for image in inv.platform.images.values() {
        add(image.clone(), "tools' web services and jobs", "workers");
    }
    out.dedup_by(|a, b| a.reference == b.reference);
    out
}
