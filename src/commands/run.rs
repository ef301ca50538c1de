//! `forgectl plan`, `up`, `down` and `render`: everything that goes through the engine.

use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::{CommandError, ExitCode, load_inventory};
use crate::engine::{self, Outcome, Selection};
use crate::executor::Executor;
use crate::interrupt::Interrupt;
use crate::inventory::Loaded;
use crate::inventory::ProviderKind;
use crate::output::{Format, Options, Style};
use crate::phases::{PlanContext, Presence};
use crate::plan::{Op, PhasePlan, Plan};
use crate::playbook::{self, Playbook, Step};
use crate::providers::local::{self, LocalError, LocalProvider};
use crate::render::Templates;
use crate::state::{self, StateDir};

/// What `plan`, `up`, `down` and `render` share.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Inventory file; None for the embedded default.
    pub file: Option<PathBuf>,
    /// Playbook name or path.
    pub playbook: String,
    /// Phase selection.
    pub selection: Selection,
    /// Approved in advance (`--yes`).
    pub yes: bool,
    /// Plan only (`--dry-run`).
    pub dry_run: bool,
}

/// What exists already: for local machines, read from the state dir (no root needed to look);
/// for OpenStack, asked of the cloud (everything tagged with the cluster's name).
/// What exists already, as the provider says. With `offline`, a cloud that cannot be reached
/// (no credentials, say) is taken as holding nothing yet, with a warning: rendering files for
/// review needs no cloud.
pub(crate) async fn presence(
    inv: &Loaded,
    opts: &Options,
    offline: bool,
) -> Result<Presence, CommandError> {
    let mut p = Presence::default();
    let dir = state::base_dir(opts.state_dir.as_deref())
        .ok()
        .map(|b| b.join(&inv.inventory.name))
        .filter(|d| d.exists());
    match inv.inventory.provider {
        ProviderKind::Local => {
            if let Some(dir) = &dir {
                for m in LocalProvider::new(inv, dir, true).list().await {
                    if m.state != local::State::Stopped {
                        p.running.insert(m.name.clone());
                    }
                    p.existing.insert(m.name);
                }
            }
        }
        ProviderKind::Static => {
            p.existing = inv.machines.iter().map(|m| m.name.clone()).collect();
            p.running = p.existing.clone();
        }
        ProviderKind::Openstack => {
            use crate::providers::openstack::{self, OpenStack};
            let cloud = match OpenStack::connect(inv).await {
                Ok(c) => c,
                Err(e) if offline => {
                    crate::errln!(
                        "warning: rendering without the cloud ({}): planned as for a cluster whose machines do not exist yet",
                        crate::error_chain::bottom(&e).0
                    );
                    p.state_dir = dir;
                    return Ok(p);
                }
                Err(e) => return Err(CommandError::Exec(e.into())),
            };
            let found = cloud
                .find()
                .await
                .map_err(|e| CommandError::Exec(e.into()))?;
            for s in &found.servers {
                if let Some(m) = s.machine() {
                    p.existing.insert(m.to_string());
                }
            }
            p.running = openstack::complete(inv, &found);
            if found.servers.is_empty() && !found.is_empty() {
                p.leftovers = Some(found.summary());
            }
        }
        ProviderKind::Vagrant => {}
    }
    p.state_dir = dir;
    Ok(p)
}

/// Everything a run plans with.
struct Planned {
    inv: Loaded,
    pb: Playbook,
    templates: Templates,
    present: Presence,
    plan: Plan,
}

async fn make_plan(
    run: &RunOptions,
    opts: &Options,
    offline: bool,
) -> Result<Planned, CommandError> {
    let inv = load_inventory(run.file.as_deref(), opts)?;
    let pb = playbook::load(&run.playbook)?;
    let templates = Templates::load(opts.templates.as_deref())?;
    let mut present = presence(&inv, opts, offline).await?;
    // Only when a phase this run plans installs release artifacts (a URL may take seconds).
    if engine::selected_phases(&pb, &run.selection)
        .iter()
        .any(|p| crate::phases::ARTIFACT_PHASES.contains(p))
    {
        present.unavailable =
            crate::artifacts::unavailable(&crate::artifacts::list(&inv.inventory)).await;
    }
    let plan = engine::plan(&inv, &pb, &templates, &present, &run.selection)?;
    Ok(Planned {
        inv,
        pb,
        templates,
        present,
        plan,
    })
}

fn print_plan(plan: &Plan, opts: &Options) {
    match opts.format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(plan).unwrap_or_default()),
        Format::Text => crate::out!("{}", plan.to_text(&Style::for_stdout(opts.color))),
    }
}

/// Prints the plan: ordered phases and, per phase and host, the actions.
pub async fn plan(run: &RunOptions, opts: &Options) -> Result<ExitCode, CommandError> {
    let plan = make_plan(run, opts, false).await?.plan;
    print_plan(&plan, opts);
    Ok(ExitCode::Ok)
}

/// Plans and runs the playbook (default `cluster`).
pub async fn up(run: &RunOptions, opts: &Options) -> Result<ExitCode, CommandError> {
    execute(run, opts, "up").await
}

/// Plans and runs the `down` playbook: deletes what the provider created.
pub async fn down(run: &RunOptions, opts: &Options) -> Result<ExitCode, CommandError> {
    execute(run, opts, "down").await
}

/// Plans and runs the `reset` playbook: Kubernetes and etcd off the machines, machines kept.
pub async fn reset(run: &RunOptions, opts: &Options) -> Result<ExitCode, CommandError> {
    execute(run, opts, "reset").await
}

async fn execute(
    run: &RunOptions,
    opts: &Options,
    command: &str,
) -> Result<ExitCode, CommandError> {
    // Catch Ctrl-C from the start: half-made machines are removed, later phases stop cleanly.
    let interrupt = Interrupt::install().map_err(|e| CommandError::Write {
        path: "signal handlers".into(),
        source: e,
    })?;
    // Everything is validated and planned before the state dir is touched: a malformed inventory
    // or playbook never leaves anything behind.
    let Planned {
        inv,
        pb,
        templates,
        mut present,
        plan,
    } = make_plan(run, opts, false).await?;
    print_plan(&plan, opts);
    if command == "reset" && opts.format == Format::Text {
        crate::outln!("{}", reset_notice(&inv));
    }
    if run.dry_run {
        if opts.format == Format::Text {
            crate::outln!("Dry run: nothing was changed.");
        }
        return Ok(ExitCode::Ok);
    }
    let runnable_actions: usize = plan
        .phases
        .iter()
        .take_while(|p| Some(p.phase.as_str()) != plan.first_blocked().map(|b| b.phase.as_str()))
        .map(|p| p.actions.len())
        .sum();
    // Local machines need root: say so before anything is asked or written.
    let makes_machines = plan
        .phases
        .iter()
        .flat_map(|p| &p.actions)
        .any(|a| matches!(a.op, Op::CreateMachine { .. } | Op::DeleteMachine { .. }));
    if inv.inventory.provider == ProviderKind::Local && makes_machines && !local::is_root() {
        return Err(CommandError::Exec(LocalError::NotRoot.into()));
    }
    if runnable_actions > 0 && !run.yes {
        approve(command)?;
    }
    let base = state::base_dir(opts.state_dir.as_deref())?;
    let dir = StateDir::open(&base, &inv.inventory.name)?;
    let _lock = dir.lock(command)?;
    let quiet = opts.verbosity < 0 || opts.format == Format::Json;
    let exec =
        Executor::new(&inv, &dir, quiet, interrupt.clone()).with_templates(opts.templates.clone());
    present.state_dir = Some(dir.path().to_path_buf());
    // Cloud machines get their addresses when they are made: when provision makes any and
    // phases follow it, they run with the inventory reloaded with those addresses.
    let split = (inv.inventory.provider == ProviderKind::Openstack)
        .then(|| plan.phases.iter().position(|p| p.phase == "provision"))
        .flatten()
        .filter(|&i| !plan.phases[i].actions.is_empty() && i + 1 < plan.phases.len());
    let (first, rest) = match split {
        Some(i) => {
            let (a, b) = plan.phases.split_at(i + 1);
            (a.to_vec(), b.to_vec())
        }
        None => (plan.phases.clone(), Vec::new()),
    };
    let part = |phases: Vec<PhasePlan>| Plan {
        phases,
        ..plan.clone()
    };
    let ctx = PlanContext {
        inv: &inv,
        templates: &templates,
        present: &present,
    };
    let outcome = engine::run(&part(first.clone()), &exec, &replanner(&ctx, &pb)).await;
    exec.close().await;
    let outcome = match (outcome, rest.is_empty()) {
        (Outcome::Complete { phases, changed }, false) => {
            let assigned = crate::providers::openstack::assigned(dir.path());
            let inv2 = inv.clone().with_assigned_addresses(&assigned);
            let ctx2 = PlanContext {
                inv: &inv2,
                templates: &templates,
                present: &present,
            };
            let replan2 = replanner(&ctx2, &pb);
            let mut fresh = Vec::new();
            for p in &rest {
                fresh.push(replan2(&p.phase).map_err(CommandError::from)?);
            }
            let exec2 =
                Executor::new(&inv2, &dir, quiet, interrupt).with_templates(opts.templates.clone());
            let second = engine::run(&part(fresh), &exec2, &replan2).await;
            exec2.close().await;
            let before: Vec<String> = first.iter().map(|p| p.phase.clone()).collect();
            merge(phases, changed, before, second)
        }
        (o, _) => o,
    };
    let record = match &outcome {
        Outcome::Complete { phases, changed } => json!({
            "command": command, "playbook": plan.playbook, "result": "complete",
            "phases": phases, "changed": changed,
        }),
        Outcome::Stopped {
            ran,
            changed,
            at,
            reason,
        } => json!({
            "command": command, "playbook": plan.playbook, "result": "stopped",
            "ran": ran, "changed": changed, "stopped_at": at, "reason": reason,
        }),
        Outcome::Interrupted {
            ran,
            changed,
            at,
            during,
        } => json!({
            "command": command, "playbook": plan.playbook, "result": "interrupted",
            "ran": ran, "changed": changed, "stopped_at": at, "during_phase": during,
        }),
        Outcome::Failed {
            ran,
            changed,
            at,
            error,
        } => json!({
            "command": command, "playbook": plan.playbook, "result": "failed",
            "ran": ran, "changed": changed, "failed_at": at, "error": error.to_string(),
            "next_step": error.next_step(),
        }),
    };
    dir.write_secret("last-run.json", record.to_string().as_bytes())?;
    match opts.format {
        Format::Json => crate::outln!("{record}"),
        Format::Text => report(&outcome, command),
    }
    Ok(match outcome {
        Outcome::Complete { .. } => ExitCode::Ok,
        Outcome::Stopped { .. } => ExitCode::Incomplete,
        Outcome::Failed { .. } | Outcome::Interrupted { .. } => ExitCode::Failed,
    })
}

/// What `reset` deletes, said before it asks.
fn reset_notice(inv: &Loaded) -> String {
    format!(
        "reset deletes, on the nodes: {}.\nOn the etcd machines: the member (stopped, disabled), {}, {} and its unit; a last snapshot goes to the state dir's backups/ first when a member answers.\nThe machines, their packages, containerd, haproxy and NFS stay; `forgectl up` builds the cluster again.",
        crate::phases::kubeadm_reset::REMOVES,
        inv.inventory.etcd.data_dir,
        crate::phases::etcd::PKI_DIR,
    )
}

/// A closure that plans a phase of `pb` again with `ctx`.
fn replanner<'c>(
    ctx: &'c PlanContext<'c>,
    pb: &'c Playbook,
) -> impl Fn(&str) -> Result<PhasePlan, engine::EngineError> + 'c {
    move |name: &str| {
        let step = pb
            .phases
            .iter()
            .find(|s| s.phase == name)
            .cloned()
            .unwrap_or(Step {
                phase: name.to_string(),
                hosts: Vec::new(),
            });
        engine::plan_step(ctx, pb, &step)
    }
}

/// The outcome of a run in two parts: `phases` phases (`before`) with `changed` changes, then `second`.
fn merge(phases: usize, changed: usize, before: Vec<String>, second: Outcome) -> Outcome {
    let join = |ran: Vec<String>| before.iter().cloned().chain(ran).collect::<Vec<_>>();
    match second {
        Outcome::Complete {
            phases: p,
            changed: c,
        } => Outcome::Complete {
            phases: phases + p,
            changed: changed + c,
        },
        Outcome::Stopped {
            ran,
            changed: c,
            at,
            reason,
        } => Outcome::Stopped {
            ran: join(ran),
            changed: changed + c,
            at,
            reason,
        },
        Outcome::Interrupted {
            ran,
            changed: c,
            at,
            during,
        } => Outcome::Interrupted {
            ran: join(ran),
            changed: changed + c,
            at,
            during,
        },
        Outcome::Failed {
            ran,
            changed: c,
            at,
            error,
        } => Outcome::Failed {
            ran: join(ran),
            changed: changed + c,
            at,
            error,
        },
    }
}

fn report(outcome: &Outcome, command: &str) {
    let done = |ran: &[String], changed: usize| {
        if ran.is_empty() {
            "no phase ran".to_string()
        } else {
            format!("ran {} ({changed} change(s))", ran.join(", "))
        }
    };
    match outcome {
        Outcome::Complete { phases, changed } => {
            crate::outln!("{command}: done — {phases} phase(s), {changed} change(s).");
        }
        Outcome::Stopped {
            ran,
            changed,
            at,
            reason,
        } => {
            crate::outln!("{command}: stopped before phase `{at}`: {reason}.");
            crate::outln!(
                "{}; `{at}` and the phases after it were not attempted.",
                done(ran, *changed)
            );
        }
        Outcome::Interrupted {
            ran,
            changed,
            at,
            during: false,
        } => {
            crate::errln!("{command}: interrupted; stopped before phase `{at}`.");
            crate::outln!(
                "{}; `{at}` and the phases after it were not attempted. Run again to go on.",
                done(ran, *changed)
            );
        }
        Outcome::Interrupted {
            ran,
            changed,
            at,
            during: true,
        } => {
            crate::errln!(
                "{command}: interrupted during phase `{at}`; stopped at once (a command already sent to a host may still finish there)."
            );
            crate::outln!(
                "{}; `{at}` did not finish and the phases after it were not attempted. Run again to go on: finished steps are skipped.",
                done(ran, *changed)
            );
        }
        Outcome::Failed {
            ran,
            changed,
            at,
            error,
        } => {
            crate::errln!("{command}: phase `{at}` failed: {error}");
            crate::errln!("  = next: {}", error.next_step());
            crate::outln!(
                "{}; `{at}` failed, the phases after it were not attempted.",
                done(ran, *changed)
            );
        }
    }
}

pub(crate) fn approve(command: &str) -> Result<(), CommandError> {
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::NotApproved);
    }
    crate::out!("Go ahead with `forgectl {command}` as planned above? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(CommandError::Declined)
    }
}

/// Writes every file the run would push into `out/HOST/PATH`, for review and golden tests.
pub async fn render(
    run: &RunOptions,
    out: &Path,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let plan = make_plan(run, opts, true).await?.plan;
    let mut written = Vec::new();
    let mut secrets = 0;
    for phase in &plan.phases {
        for action in &phase.actions {
            let Some(f) = action.rendered_file() else {
                continue;
            };
            let host = action
                .host
                .as_deref()
                .unwrap_or(crate::plan::MANIFESTS_HOST);
            let (path, content, sha256, mode) = (f.path, f.content, f.sha256, &f.mode);
            if f.template.is_none() {
                // Certificates and keys: secrets that live in the state dir, never copied here.
                secrets += 1;
                continue;
            }
            let rel = Path::new(host).join(path.trim_start_matches('/'));
            let target = out.join(&rel);
            write_file(&target, content.as_bytes(), *mode)?;
            if matches!(action.op, crate::plan::Op::ApplyManifests { .. }) {
                for hook in webhooks_without_ca(content) {
                    crate::errln!(
                        "warning: {}: {hook} has no caBundle: the state dir holds no cluster CA yet. \
                         Applied as it is, the API server cannot verify the webhook's certificate and \
                         refuses what the webhook checks (every tool pod, with failurePolicy Fail). \
                         Run `forgectl up --until pki` first, then render again.",
                        target.display()
                    );
                }
            }
            written.push(json!({
                "phase": phase.phase, "host": host, "path": path,
                "file": target.display().to_string(), "sha256": sha256,
            }));
        }
    }
    match opts.format {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&written).unwrap_or_default()
        ),
        Format::Text => {
            for w in &written {
                crate::outln!("{}", w["file"].as_str().unwrap_or_default());
            }
            crate::outln!("{} file(s) written under {}", written.len(), out.display());
            if secrets > 0 {
                crate::outln!(
                    "{secrets} certificate and key upload(s) not written: they come from the state dir's PKI"
                );
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// The webhooks of the (Validating|Mutating)WebhookConfigurations in a manifest bundle that call
/// a URL with no CA bundle to verify it by: `Kind name: webhook`.
fn webhooks_without_ca(bundle: &str) -> Vec<String> {
    let Ok(docs) = crate::kube::documents("bundle", bundle) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        if !matches!(
            kind,
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"
        ) {
            continue;
        }
        for w in d["webhooks"].as_array().into_iter().flatten() {
            let cc = &w["clientConfig"];
            if cc["url"].is_string() && cc["caBundle"].as_str().is_none_or(str::is_empty) {
                out.push(format!(
                    "{kind} {}: {}",
                    d["metadata"]["name"].as_str().unwrap_or_default(),
                    w["name"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    out
}

fn write_file(target: &Path, data: &[u8], mode: u32) -> Result<(), CommandError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| CommandError::Write {
        path: target.display().to_string(),
        source: e,
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(target, data).map_err(err)?;
    // Owner read/write, plus only the read bits the remote file gives group and others:
    // a file that is secret on the host stays unreadable to others here too.
    std::fs::set_permissions(
        target,
        std::fs::Permissions::from_mode((mode & 0o044) | 0o600),
    )
    .map_err(err)?;
    Ok(())
}
