//! Phases: each turns the inventory (and, later, host facts) into a list of actions.
//!
//! Phases never perform side effects themselves and never call each other; the engine runs the
//! actions they plan. Phases not built yet are listed by name with what will bring them, so a plan
//! never silently skips them.

mod cluster_ready;
mod cni_bridge;
mod cni_calico;
mod deprovision;
pub mod etcd;
mod etcd_reset;
mod facts;
pub mod host_prep;
pub(crate) mod ingress;
mod kube_packages;
pub mod kubeadm_init;
mod kubeadm_join;
pub mod kubeadm_reset;
mod lb;
mod manifests;
mod pki;
pub mod platform;
mod provision;
mod runtime;
pub mod storage_cinder;
mod storage_nfs;
mod upgrade;

use std::collections::BTreeSet;

use crate::inventory::{Loaded, Machine};
use crate::plan::{Action, Readiness};
use crate::render::{RenderError, Templates};

/// Where the facts phase keeps what it learned, in the cluster's state dir.
pub const FACTS_FILE: &str = "facts.json";

/// What a phase gets to plan with.
pub struct PlanContext<'a> {
    /// The inventory.
    pub inv: &'a Loaded,
    /// The templates.
    pub templates: &'a Templates,
    /// What exists already, as far as the provider knows.
    pub present: &'a Presence,
}

/// Machines that exist and run, as the provider reports them (no SSH needed).
#[derive(Debug, Clone, Default)]
pub struct Presence {
    /// Machines that exist (running or stopped).
    pub existing: BTreeSet<String>,
    /// Machines that run.
    pub running: BTreeSet<String>,
    /// The cluster's state dir, when it exists (certificates made by the pki phase live there).
    pub state_dir: Option<std::path::PathBuf>,
    /// Artifacts the inventory's source cannot give (checked before planning).
    pub unavailable: Vec<crate::artifacts::Unavailable>,
    /// What the provider made that no machine holds (cloud security groups, a keypair …), for
    /// `down` to delete too; None when there is nothing.
    pub leftovers: Option<String>,
}

/// Where and how a rendered file lands on a host.
pub struct Target {
    /// Absolute path.
    pub path: &'static str,
    /// Permission bits.
    pub mode: u32,
    /// `user:group`.
    pub owner: &'static str,
}

impl PlanContext<'_> {
    /// An upload of `template` rendered with `vars` to `target` on `host`.
    pub fn rendered(
        &self,
        host: &str,
        target: &Target,
        template: &str,
        vars: &impl serde::Serialize,
        why: &str,
    ) -> Result<Action, PhaseError> {
        self.rendered_to(host, target.path, target, template, vars, why)
    }

    /// As `rendered`, to `path` (a path made at plan time) with `like`'s mode and owner.
    pub fn rendered_to(
        &self,
        host: &str,
        path: &str,
        like: &Target,
        template: &str,
        vars: &impl serde::Serialize,
        why: &str,
    ) -> Result<Action, PhaseError> {
        let content = self.templates.render(template, vars)?;
        Ok(Action::upload_rendered(
            host,
            path,
            like.mode,
            like.owner,
            Some(template),
            content,
            why,
        ))
    }

    /// What the facts phase learned about `host` (None before it ran).
    pub fn facts(&self, host: &str) -> Option<crate::executor::HostFacts> {
        let text = self.state_file(FACTS_FILE)?;
        let all: Vec<crate::executor::HostFacts> = serde_json::from_str(&text).ok()?;
        all.into_iter().find(|f| f.host == host)
    }

    /// The text of `rel` in the cluster's state dir (certificates the pki phase made), if it is
    /// there yet. Before the pki phase ran (a plan of a new cluster) it is not: the engine plans
    /// each phase again right before running it.
    pub fn state_file(&self, rel: &str) -> Option<String> {
        let dir = self.present.state_dir.as_ref()?;
        std::fs::read_to_string(dir.join(rel)).ok()
    }

    /// Ready, unless some of `artifacts` cannot be fetched from the inventory's source: then the
    /// phase plans but does not run, and says which and how to provide them.
    pub fn artifacts_readiness(&self, artifacts: &[&str]) -> Readiness {
        let missing: Vec<&crate::artifacts::Unavailable> = self
            .present
            .unavailable
            .iter()
            .filter(|u| artifacts.contains(&u.name.as_str()))
            .collect();
        if missing.is_empty() {
            Readiness::Ready
        } else {
            Readiness::PlanOnly {
                missing: crate::artifacts::explain_unavailable(&missing),
            }
        }
    }
}

/// Why a phase could not plan.
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    /// A template failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The inventory lacks something this phase needs.
    #[error("{0}")]
    Inventory(String),
}

/// A step of a playbook.
pub trait Phase: Sync {
    /// Name used in playbooks and `--only` / `--until`.
    fn name(&self) -> &'static str;
    /// One line for people.
    fn title(&self) -> &'static str;
    /// Whether it can run in this build, for this inventory.
    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness;
    /// Why the phase does not apply to this inventory at all (a feature switched off), if so.
    fn skip_reason(&self, _ctx: &PlanContext<'_>) -> Option<String> {
        None
    }
    /// The actions it would take on `hosts`.
    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError>;
}

static BUILT: &[&dyn Phase] = &[
    &provision::Provision,
    &facts::Facts,
    &pki::Pki,
    &etcd::Etcd,
    &host_prep::HostPrep,
    &lb::Lb,
    &runtime::Runtime,
    &kube_packages::KubePackages,
    &kubeadm_init::KubeadmInit,
    &kubeadm_join::KubeadmJoin,
    &cni_bridge::CniBridge,
    &cni_calico::CniCalico,
    &ingress::Ingress,
    &storage_nfs::StorageNfs,
    &storage_cinder::StorageCinder,
    &cluster_ready::ClusterReady,
    &platform::Platform,
    &deprovision::Deprovision,
    &kubeadm_reset::KubeadmReset,
    &etcd_reset::EtcdReset,
    &upgrade::UpgradePreflight,
    &upgrade::UpgradeControlPlane,
    &upgrade::UpgradeWorkers,
];

/// The phase called `name`, if any (built or pending).
pub fn lookup(name: &str) -> Option<&'static dyn Phase> {
    BUILT.iter().copied().find(|p| p.name() == name)
}

/// Every phase name forgectl knows.
pub fn all_names() -> Vec<&'static str> {
    BUILT.iter().map(|p| p.name()).collect()
}

/// Readiness of the phases that talk to the provider: built for every provider.
pub(crate) fn provider_readiness(ctx: &PlanContext<'_>) -> Readiness {
    use crate::inventory::ProviderKind;
    match ctx.inv.inventory.provider {
        ProviderKind::Static
        | ProviderKind::Local
        | ProviderKind::Vagrant
        | ProviderKind::Openstack => Readiness::Ready,
    }
}

/// Phases that install release artifacts (which the inventory's source may not give).
pub const ARTIFACT_PHASES: &[&str] = &[
    "etcd",
    "runtime",
    "kube-packages",
    "upgrade-preflight",
    "upgrade-control-plane",
    "upgrade-workers",
];
