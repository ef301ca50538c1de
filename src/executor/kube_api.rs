//! The executor's work through the Kubernetes API: applying manifests and waiting for rollouts,
//! with one client per run from the admin kubeconfig in the state dir.

use std::time::Duration;

use super::{ExecError, Executor};
use crate::kube::Kube;
use crate::phases::kubeadm_init::STATE_ADMIN_CONF;
use crate::plan::{Action, Op};

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
            .wait_rollout(workload, namespace, name, Duration::from_secs(*timeout_s))
            .await?;
        Ok(())
    }

    /// The client of the cluster's API, from the admin kubeconfig in the state dir; made once
    /// per run.
    async fn kube(&self) -> Result<&Kube, ExecError> {
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
