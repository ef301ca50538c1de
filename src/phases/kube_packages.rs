//! The kube-packages phase: kubeadm, kubelet, kubectl and crictl at the inventory's versions from
//! the artifact source (checksums verified), kubelet's systemd unit and kubeadm's drop-in.

use serde::Serialize;

use super::{Phase, PhaseError, PlanContext, Target};
use crate::artifacts::{CRICTL_VERSION, KUBE_REQUIRED};
use crate::inventory::Machine;
use crate::plan::{Action, Op, Readiness};

/// Installs the Kubernetes binaries and kubelet's unit on the nodes.
pub struct KubePackages;

/// Where the binaries go.
pub const BIN_DIR: &str = "/usr/local/bin";
/// kubelet's unit.
pub const KUBELET_UNIT: Target = Target {
    path: "/etc/systemd/system/kubelet.service",
    mode: 0o644,
    owner: "root:root",
};
/// kubeadm's drop-in for kubelet (the flags kubeadm init / join write).
pub const KUBEADM_DROP_IN: Target = Target {
    path: "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    mode: 0o644,
    owner: "root:root",
};

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    name: &'a str,
    bin_dir: &'a str,
    kubelet_version: &'a str,
}

impl Phase for KubePackages {
    fn name(&self) -> &'static str {
        "kube-packages"
    }

    fn title(&self) -> &'static str {
        "Install kubeadm, kubelet, kubectl and crictl"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        ctx.artifacts_readiness(KUBE_REQUIRED)
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let mut actions = Vec::new();
        for m in hosts {
            actions.extend(host_packages(ctx, m)?);
        }
        Ok(actions)
    }
}

/// One node's actions: kubeadm, kubelet, kubectl and crictl at the inventory's versions (each
/// skipped when installed), kubelet's unit and kubeadm's drop-in, kubelet enabled.
pub fn host_packages(ctx: &PlanContext<'_>, m: &Machine) -> Result<Vec<Action>, PhaseError> {
    let inv = &ctx.inv.inventory;
    let k = inv.versions.kubernetes.to_string();
    let kubelet = inv
        .versions
        .kubelet
        .as_ref()
        .unwrap_or(&inv.versions.kubernetes)
        .to_string();
    let kubectl = inv
        .versions
        .kubectl
        .as_ref()
        .unwrap_or(&inv.versions.kubernetes)
        .to_string();
    let checks = [
        (
            "kubeadm",
            k.clone(),
            format!("{BIN_DIR}/kubeadm version -o short 2>/dev/null | grep -qx v{k}"),
        ),
        (
            "kubelet",
            kubelet.clone(),
            format!("{BIN_DIR}/kubelet --version 2>/dev/null | grep -qx 'Kubernetes v{kubelet}'"),
        ),
        (
            "kubectl",
            kubectl.clone(),
            format!(
                "{BIN_DIR}/kubectl version --client -o json 2>/dev/null | grep -q '\"gitVersion\": \"v{kubectl}\"'"
            ),
        ),
        (
            "crictl",
            CRICTL_VERSION.to_string(),
            format!(
                "{BIN_DIR}/crictl --version 2>/dev/null | grep -qx 'crictl version v{CRICTL_VERSION}'"
            ),
        ),
    ];
    let crictl_missing = ctx.present.unavailable.iter().any(|u| u.name == "crictl");
    let mut actions = Vec::new();
    {
        let h = &m.name;
        for (name, version, installed) in &checks {
            if *name == "crictl" && crictl_missing {
                continue;
            }
            actions.push(Action::local(
                Some(h),
                Op::InstallArtifact {
                    artifact: (*name).into(),
                    version: version.clone(),
                    binaries: vec![(*name).into()],
                    dest: BIN_DIR.into(),
                    installed: installed.clone(),
                },
                &format!("install {name} {version}"),
            ));
        }
        let vars = Vars {
            cluster: &inv.name,
            name: h,
            bin_dir: BIN_DIR,
            kubelet_version: &kubelet,
        };
        actions.push(ctx.rendered(
            h,
            &KUBELET_UNIT,
            "kube/kubelet.service.tera",
            &vars,
            "kubelet's systemd unit",
        )?);
        actions.push(ctx.rendered(
            h,
            &KUBEADM_DROP_IN,
            "kube/10-kubeadm.conf.tera",
            &vars,
            "kubeadm's drop-in for kubelet",
        )?);
        actions.push(Action::run_on_change(
            h,
            "systemctl daemon-reload && systemctl enable kubelet.service",
            "systemctl is-enabled --quiet kubelet.service",
            "enable kubelet (it waits for kubeadm init / join)",
        ));
    }
    Ok(actions)
}
