//! The storage-cinder phase (OpenStack only): the Secret with the cloud config, the Cinder CSI
//! driver (controller Deployment, node DaemonSet, least RBAC) and a StorageClass.

use serde::Serialize;

use super::{Phase, PhaseError, PlanContext, manifests};
use crate::inventory::Machine;
use crate::inventory::model::ReclaimPolicy;
use crate::plan::{Action, Op, Readiness};

/// Deploys the Cinder CSI driver.
pub struct StorageCinder;

/// Its template.
pub const TEMPLATE: &str = "storage/cinder-csi.yaml.tera";
/// Where the driver runs and its cloud config lives.
pub const NAMESPACE: &str = "kube-system";
/// The Secret with the cloud config.
pub const SECRET: &str = "cloud-config";

/// Tags of the CSI sidecars forgectl deploys (they follow the CSI spec, not Kubernetes).
const SIDECARS: &[(&str, &str)] = &[
    ("attacher", "csi-attacher:v4.9.0"),
    ("provisioner", "csi-provisioner:v5.3.0"),
    ("resizer", "csi-resizer:v1.14.0"),
    ("liveness", "livenessprobe:v2.16.0"),
    ("registrar", "csi-node-driver-registrar:v2.14.0"),
];

/// The driver's images by role (`plugin` and the CSI sidecars).
pub fn images(
    c: &crate::inventory::model::Cinder,
) -> std::collections::BTreeMap<&'static str, String> {
    let registry = c.sidecar_registry.trim_end_matches('/');
    let mut images: std::collections::BTreeMap<&'static str, String> = SIDECARS
        .iter()
        .map(|(k, image)| (*k, format!("{registry}/{image}")))
        .collect();
    images.insert("plugin", c.plugin_image.clone());
    images
}

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    namespace: &'a str,
    secret_name: &'a str,
    images: std::collections::BTreeMap<&'static str, String>,
    storage_class: &'a str,
    default_class: bool,
    availability_zone: &'a str,
    volume_type: &'a str,
    reclaim_policy: &'static str,
}

impl Phase for StorageCinder {
    fn name(&self) -> &'static str {
        "storage-cinder"
    }

    fn title(&self) -> &'static str {
        "Cinder CSI driver and StorageClass"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        (!ctx.inv.inventory.storage.cinder.enabled)
            .then(|| "storage.cinder.enabled is false".into())
    }

    fn plan(&self, ctx: &PlanContext<'_>, _: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let c = &inv.storage.cinder;
        let images = images(c);
        let vars = Vars {
            cluster: &inv.name,
            namespace: NAMESPACE,
            secret_name: SECRET,
            images,
            storage_class: &c.storage_class,
            default_class: c.default_class,
            availability_zone: c.availability_zone.as_deref().unwrap_or_default(),
            volume_type: c.volume_type.as_deref().unwrap_or_default(),
            reclaim_policy: match c.reclaim_policy {
                ReclaimPolicy::Delete => "Delete",
                ReclaimPolicy::Retain => "Retain",
            },
        };
        let why = format!(
            "Cinder CSI driver and StorageClass {}{}",
            c.storage_class,
            if c.default_class { " (default)" } else { "" }
        );
        Ok(vec![
            Action::local(
                None,
                Op::ApplyCloudConfig {
                    namespace: NAMESPACE.into(),
                    name: SECRET.into(),
                },
                "the driver's cloud config, from forgectl's OpenStack credentials",
            ),
            manifests::apply(ctx, TEMPLATE, "cinder-csi.yaml", &vars, &why)?,
            manifests::wait_rollout(
                "Deployment",
                NAMESPACE,
                "csi-cinder-controllerplugin",
                "the Cinder CSI controller available",
            ),
            manifests::wait_rollout(
                "DaemonSet",
                NAMESPACE,
                "csi-cinder-nodeplugin",
                "the Cinder CSI node plugin on every node",
            ),
        ])
    }
}
