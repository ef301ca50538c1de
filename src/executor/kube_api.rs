//! The executor's work through the Kubernetes API: applying manifests and waiting for rollouts,
//! with one client per run from the admin kubeconfig in the state dir.

use std::time::Duration;

use super::{ExecError, Executor};
use crate::kube::Kube;
use crate::phases::kubeadm_init::STATE_ADMIN_CONF;
use crate::plan::{Action, Op};

/// Environment variable that caps every wait gate (rollouts, nodes, pods, DNS), in seconds: for
/// CI jobs that would rather fail fast than wait out the defaults.
pub const WAIT_CAP_ENV: &str = "FORGECTL_WAIT_TIMEOUT_S";

/// `timeout_s`, capped by `FORGECTL_WAIT_TIMEOUT_S` when that is set.
pub fn wait_limit(timeout_s: u64) -> Duration {
    let cap = std::env::var(WAIT_CAP_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    Duration::from_secs(cap.map_or(timeout_s, |c| c.min(timeout_s)))
}

/// The key of the cloud config in its Secret (what the Cinder CSI manifests mount).
pub const CLOUD_CONF_KEY: &str = "cloud.conf";

impl Executor<'_> {
    /// Applies the action's manifests through the admin kubeconfig in the state dir; returns how
    /// many objects were created or changed.
    pub async fn apply_manifests(&self, a: &Action) -> Result<usize, ExecError> {
        let Op::ApplyManifests {
            template, content, ..
        } = &a.op
        else {
            return Ok(0);
        };
        let report = self.kube().await?.apply_yaml(template, content).await?;
        for o in &report.created {
            tracing::info!(object = %o, "created");
        }
        for o in &report.configured {
            tracing::info!(object = %o, "configured");
        }
        Ok(report.changes())
    }

    /// Creates or updates the Secret with the Cinder CSI driver's cloud config (from forgectl's
    /// OpenStack credentials); returns 1 if it changed.
    pub async fn apply_cloud_config(&self, a: &Action) -> Result<usize, ExecError> {
        let Op::ApplyCloudConfig { namespace, name } = &a.op else {
            return Ok(0);
        };
        let settings = crate::providers::openstack::spec::settings(self.inv).ok_or_else(|| {
            ExecError::Unsupported("storage.cinder needs the openstack provider's settings".into())
        })?;
        let conf = crate::providers::openstack::cloud_conf::cloud_conf(settings)?;
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: ::kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "forgectl".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                [(
                    CLOUD_CONF_KEY.to_string(),
                    k8s_openapi::ByteString(conf.into_bytes()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let mut object = serde_json::to_value(&secret)
            .map_err(|e| ExecError::Unsupported(format!("cloud-config secret: {e}")))?;
        object["apiVersion"] = "v1".into();
        object["kind"] = "Secret".into();
        let report = self.kube().await?.apply_objects(vec![object]).await?;
        Ok(report.changes())
    }

    /// Waits until the action's workload rolled out.
    pub async fn wait_rollout(&self, a: &Action) -> Result<(), ExecError> {
        let Op::WaitRollout {
            workload,
            namespace,
            name,
            timeout_s,
        } = &a.op
        else {
            return Ok(());
        };
        self.kube()
            .await?
            .wait_rollout(workload, namespace, name, wait_limit(*timeout_s))
            .await?;
        Ok(())
    }

    /// Waits for the nodes or the pods the action names.
    pub async fn wait_cluster(&self, a: &Action) -> Result<(), ExecError> {
        match &a.op {
            Op::WaitNodesReady { nodes, timeout_s } => {
                self.kube()
                    .await?
                    .wait_nodes_ready(nodes, wait_limit(*timeout_s))
                    .await?
            }
            Op::WaitPodsRunning {
                namespace,
                timeout_s,
            } => {
                self.kube()
                    .await?
                    .wait_pods_running(namespace, wait_limit(*timeout_s))
                    .await?
            }
            _ => {}
        }
        Ok(())
    }

    /// The client of the cluster's API, from the admin kubeconfig in the state dir; made once
    /// per run.
    pub(super) async fn kube(&self) -> Result<&Kube, ExecError> {
        self.kube
            .get_or_try_init(|| async {
                let admin = self.state.path().join(STATE_ADMIN_CONF);
                if !admin.exists() {
                    return Err(ExecError::Unsupported(format!(
                        "no admin kubeconfig at {}: the kubeadm-init phase fetches it",
                        admin.display()
                    )));
                }
                Ok(Kube::from_kubeconfig(&admin).await?)
            })
            .await
    }
}
