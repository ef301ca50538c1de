//! The engine: builds a plan from a playbook and an inventory, and runs it phase by phase.

use crate::executor::{ExecError, Executor};
use crate::inventory::Loaded;
use crate::phases::{self, PhaseError, PlanContext, Presence};
use crate::plan::{Action, Op, PhasePlan, Plan, Readiness};
use crate::playbook::{self, Playbook, PlaybookError, Step};
use crate::render::Templates;

/// Which phases of the playbook to plan and run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these phases (`--only a,b`).
    pub only: Vec<String>,
    /// Up to and including this phase (`--until x`).
    pub until: Option<String>,
}

/// Why a plan could not be made or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The playbook is unusable.
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    /// A playbook names a phase forgectl does not know.
    #[error("playbook {playbook} names an unknown phase `{phase}`; known phases: {known}")]
    UnknownPhase {
        /// The playbook.
        playbook: String,
        /// The phase.
        phase: String,
        /// Every known phase.
        known: String,
    },
    /// `--only` / `--until` names a phase that is not in the playbook.
    #[error(
        "{flag} names `{phase}`, which is not a phase of playbook {playbook}; its phases: {known}"
    )]
    NotInPlaybook {
        /// The flag.
        flag: &'static str,
        /// The phase.
        phase: String,
        /// The playbook.
        playbook: String,
        /// The playbook's phases.
        known: String,
    },
    /// A phase could not plan.
    #[error("phase {phase}: {source}")]
    Phase {
        /// The phase.
        phase: String,
        /// Why.
        source: PhaseError,
    },
}

/// Plans `playbook` for `inv`, limited to `selection`.
pub fn plan(
    inv: &Loaded,
    pb: &Playbook,
    templates: &Templates,
    present: &Presence,
    selection: &Selection,
) -> Result<Plan, EngineError> {
    let names: Vec<&str> = pb.phases.iter().map(|s| s.phase.as_str()).collect();
    let known = || names.join(", ");
    for phase in selection.only.iter().chain(selection.until.iter()) {
        if !names.contains(&phase.as_str()) {
            let flag = if selection.only.contains(phase) {
                "--only"
            } else {
                "--until"
            };
            return Err(EngineError::NotInPlaybook {
                flag,
                phase: phase.clone(),
                playbook: pb.name.clone(),
                known: known(),
            });
        }
    }
    let ctx = PlanContext {
        inv,
        templates,
        present,
    };
    let mut phases = Vec::new();
    for (step, selected) in steps(pb, selection) {
        if selected {
            phases.push(plan_step(&ctx, pb, step)?);
        } else if phases::lookup(&step.phase).is_none() {
            return Err(unknown(pb, step));
        }
    }
    Ok(Plan {
        cluster: inv.inventory.name.clone(),
        playbook: pb.name.clone(),
        probed: false,
        phases,
    })
}

/// The playbook's steps up to `--until`, each with whether `--only` selects it.
fn steps<'p>(
    pb: &'p Playbook,
    selection: &'p Selection,
) -> impl Iterator<Item = (&'p Step, bool)> + 'p {
    let end = pb
        .phases
        .iter()
        .position(|s| selection.until.as_deref() == Some(s.phase.as_str()))
        .map_or(pb.phases.len(), |i| i + 1);
    pb.phases[..end].iter().map(|step| {
        let selected = selection.only.is_empty() || selection.only.contains(&step.phase);
        (step, selected)
    })
}

/// The phases `selection` plans of `pb`, in order.
pub fn selected_phases<'p>(pb: &'p Playbook, selection: &'p Selection) -> Vec<&'p str> {
    steps(pb, selection)
        .filter(|(_, selected)| *selected)
        .map(|(s, _)| s.phase.as_str())
        .collect()
}

fn unknown(pb: &Playbook, step: &Step) -> EngineError {
    EngineError::UnknownPhase {
        playbook: pb.name.clone(),
        phase: step.phase.clone(),
        known: phases::all_names().join(", "),
    }
}

/// Plans one step of a playbook. The engine calls it again right before the phase runs, so a
/// phase plans with what the phases before it made (certificates, machines).
pub fn plan_step(
    ctx: &PlanContext<'_>,
    pb: &Playbook,
    step: &Step,
) -> Result<PhasePlan, EngineError> {
    let phase = phases::lookup(&step.phase).ok_or_else(|| unknown(pb, step))?;
    let hosts = playbook::select(ctx.inv, &pb.name, step)?;
    // A phase switched off in the inventory, or one that works on hosts when none matches,
    // has nothing to do whether or not it is built; the plan says so and why.
    let nothing = phase.skip_reason(ctx).or_else(|| {
        (!step.hosts.is_empty() && hosts.is_empty())
            .then(|| format!("no machine matches {}", step.hosts.join(", ")))
    });
    if let Some(reason) = nothing {
        return Ok(PhasePlan {
            phase: step.phase.clone(),
            title: phase.title().into(),
            readiness: Readiness::Ready,
            hosts: Vec::new(),
            actions: Vec::new(),
            note: Some(reason),
        });
    }
    let actions = phase.plan(ctx, &hosts).map_err(|e| EngineError::Phase {
        phase: step.phase.clone(),
        source: e,
    })?;
    Ok(PhasePlan {
        phase: step.phase.clone(),
        title: phase.title().into(),
        readiness: phase.readiness(ctx),
        hosts: hosts.iter().map(|m| m.name.clone()).collect(),
        actions,
        note: None,
    })
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every selected phase ran.
    Complete {
        /// Phases run.
        phases: usize,
        /// Actions that changed something.
        changed: usize,
    },
    /// The run stopped before a phase that cannot run in this build; nothing after it ran.
    Stopped {
        /// Phases that ran before it.
        ran: Vec<String>,
        /// Actions that changed something before it.
        changed: usize,
        /// The phase it stopped at.
        at: String,
        /// Why it cannot run.
        reason: String,
    },
    /// The user stopped the run (Ctrl-C, SIGTERM) before or during this phase.
    Interrupted {
        /// Phases that completed.
        ran: Vec<String>,
        /// Actions that changed something.
        changed: usize,
        /// The phase that did not start, or was stopped.
        at: String,
        /// True when it was stopped while running (a wait, a command in flight).
        during: bool,
    },
    /// A phase failed.
    Failed {
        /// Phases that completed before it.
        ran: Vec<String>,
        /// Actions that changed something before the failure.
        changed: usize,
        /// The phase that failed.
        at: String,
        /// Why.
        error: ExecError,
    },
}

/// Runs the plan's phases in order with `exec`, stopping before the first one that cannot run
/// and at the first failure. `replan` plans a phase again right before it runs, with what the
/// phases before it made.
pub async fn run(
    plan: &Plan,
    exec: &Executor<'_>,
    replan: &dyn Fn(&str) -> Result<PhasePlan, EngineError>,
) -> Outcome {
    let mut ran = Vec::new();
    let mut changed = 0;
    for planned in &plan.phases {
        let fresh;
        let p = if ran.is_empty() {
            planned
        } else {
            match replan(&planned.phase) {
                Ok(p) => {
                    fresh = p;
                    &fresh
                }
                Err(e) => {
                    return Outcome::Failed {
                        ran,
                        changed,
                        at: planned.phase.clone(),
                        error: ExecError::Unsupported(e.to_string()),
                    };
                }
            }
        };
        let reason = match &p.readiness {
            Readiness::Ready => None,
            Readiness::PlanOnly { missing } => Some(format!("running it needs {missing}")),
            Readiness::NotImplemented { arrives_with } => Some(format!(
                "it is not implemented yet (arrives with {arrives_with})"
            )),
        };
        if let (Some(reason), None) = (reason, &p.note) {
            return Outcome::Stopped {
                ran,
                changed,
                at: p.phase.clone(),
                reason,
            };
        }
        if exec.interrupted() {
            return Outcome::Interrupted {
                ran,
                changed,
                at: p.phase.clone(),
                during: false,
            };
        }
        tracing::info!(phase = %p.phase, actions = p.actions.len(), "phase starts");
        // Ctrl-C stops a phase at once (a wait, a command in flight: what ran is kept, the next
        // run resumes), except while machines are made or deleted: the provider undoes those
        // itself and must be let finish.
        let machines = p
            .actions
            .iter()
            .any(|a| matches!(a.op, Op::CreateMachine { .. } | Op::DeleteMachine { .. }));
        let result = if machines {
            run_phase(p, exec).await
        } else {
            tokio::select! {
                r = run_phase(p, exec) => r,
                _ = exec.interrupt_wait() => {
                    return Outcome::Interrupted {
                        ran,
                        changed,
                        at: p.phase.clone(),
                        during: true,
                    };
                }
            }
        };
        match result {
            Ok(n) => {
                tracing::info!(phase = %p.phase, changed = n, "phase done");
                changed += n
            }
            Err(error) => {
                return Outcome::Failed {
                    ran,
                    changed,
                    at: p.phase.clone(),
                    error,
                };
            }
        }
        ran.push(p.phase.clone());
    }
    Outcome::Complete {
        phases: ran.len(),
        changed,
    }
}

/// Runs one phase's actions in order; returns how many changed something. Consecutive host
/// actions run together (each host in order, hosts in parallel); forgectl's own actions run
/// between them.
async fn run_phase(p: &PhasePlan, exec: &Executor<'_>) -> Result<usize, ExecError> {
    let mut changed = 0;
    let mut batch: Vec<&Action> = Vec::new();
    let mut i = 0;
    while i < p.actions.len() {
        let a = &p.actions[i];
        if matches!(
            a.op,
            Op::Upload { .. }
                | Op::Run { .. }
                | Op::InstallPackages { .. }
                | Op::InstallArtifact { .. }
                | Op::LoadImage { .. }
                | Op::InstallOwn { .. }
        ) {
            batch.push(a);
            i += 1;
            continue;
        }
        if !batch.is_empty() {
            changed += exec.host_actions(&batch).await?;
            batch.clear();
        }
        // Same-kind machine and probe actions are carried out together.
        let same: Vec<&Action> = p.actions[i..]
            .iter()
            .take_while(|b| std::mem::discriminant(&b.op) == std::mem::discriminant(&a.op))
            .collect();
        let names: Vec<String> = same.iter().filter_map(|b| b.host.clone()).collect();
        match &a.op {
            Op::CreateMachine { .. } => changed += exec.create(&names).await?,
            Op::DeleteMachine { .. } => changed += exec.delete(&names).await?,
            Op::Probe => {
                exec.probe(&names).await?;
            }
            Op::FetchFile { .. } => {
                for b in &same {
                    changed += exec.fetch_file(b).await?;
                }
            }
            Op::KubeadmJoin { .. } => changed += exec.kubeadm_join(&same).await?,
            Op::WaitRollout { .. } => {
                for b in &same {
                    exec.wait_rollout(b).await?;
                }
            }
            Op::ApplyManifests { .. } => {
                for b in &same {
                    changed += exec.apply_manifests(b).await?;
                }
            }
            Op::WaitNodesReady { .. } | Op::WaitPodsRunning { .. } => {
                for b in &same {
                    exec.wait_cluster(b).await?;
                }
            }
            Op::CheckDns { .. } => {
                for b in &same {
                    exec.check_dns(b).await?;
                }
            }
            Op::ApplyCloudConfig { .. } => {
                for b in &same {
                    changed += exec.apply_cloud_config(b).await?;
                }
            }
            Op::EnsurePki => changed += exec.ensure_pki().await?,
            Op::WaitEtcdHealthy => {
                exec.wait_etcd().await?;
            }
            Op::SnapshotEtcd { .. } => {
                for b in &same {
                    changed += exec.snapshot_etcd(b).await?;
                }
            }
            Op::ForgetEtcdCluster => changed += exec.forget_etcd_cluster()?,
            Op::CheckEtcdVersions { .. } => {
                for b in &same {
                    exec.check_etcd_versions(b).await?;
                }
            }
            Op::RestartEtcdMember { .. } => changed += exec.restart_etcd_members(&same).await?,
            Op::UpgradePreflight { .. } => {
                for b in &same {
                    changed += exec.upgrade_preflight(b).await?;
                }
            }
            Op::UpgradeNode { .. } => changed += exec.upgrade_nodes(&same).await?,
            Op::Upload { .. }
            | Op::Run { .. }
            | Op::InstallPackages { .. }
            | Op::InstallArtifact { .. }
            | Op::LoadImage { .. }
            | Op::InstallOwn { .. } => {}
        }
        i += same.len();
    }
    if !batch.is_empty() {
        changed += exec.host_actions(&batch).await?;
    }
    Ok(changed)
}
