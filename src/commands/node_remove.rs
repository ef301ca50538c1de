//! `forgectl node remove NAME`: a control plane or worker taken out of the cluster, each step
//! printed — drain (PodDisruptionBudgets respected), the node reset (kubeadm reset and its
//! leftovers), the Node object deleted, the load balancer's backends rendered without it, the
//! machine deleted. A node that is already dead (its machine not running, or NotReady) is not
//! drained or reset, and the output says so. Refuses to remove the last control plane, and etcd
//! machines (`forgectl etcd remove` keeps quorum for those).

use std::path::Path;
use std::time::Duration;

use super::{CommandError, ExitCode, load_inventory};
use crate::engine;
use crate::executor::Executor;
use crate::interrupt::Interrupt;
use crate::inventory::{Loaded, Machine, ProviderKind, Role};
use crate::kube::Kube;
use crate::output::{Format, Options};
use crate::phases::{PlanContext, kubeadm_init::STATE_ADMIN_CONF};
use crate::plan::Plan;
use crate::render::Templates;

/// How `node remove` runs.
#[derive(Debug, Clone)]
pub struct RemoveOptions {
    /// The machine.
    pub name: String,
    /// Seconds the drain may take.
    pub drain_timeout: u64,
    /// Approved in advance.
    pub yes: bool,
    /// Say what would happen and stop.
    pub dry_run: bool,
}

/// The machine called `name`, or why there is none.
pub(super) fn machine_named<'i>(inv: &'i Loaded, name: &str) -> Result<&'i Machine, String> {
    inv.machines.iter().find(|m| m.name == name).ok_or_else(|| {
        format!(
            "no machine named {name} in the inventory of cluster {}",
            inv.inventory.name
        )
    })
}

/// The machine `name` when this command may remove it, else why not.
pub fn removable<'i>(inv: &'i Loaded, name: &str) -> Result<&'i Machine, String> {
    let m = machine_named(inv, name)?;
    if m.has(Role::Etcd) {
        return Err(format!(
            "{name} is an etcd member: drop it from the inventory's etcd group, then `forgectl etcd remove {name}` (it keeps quorum, or refuses)"
        ));
    }
    if !m.has(Role::ControlPlane) && !m.has(Role::Worker) {
        return Err(format!(
            "{name} is not a Kubernetes node (roles: {}); drop it from the inventory and run `forgectl up`",
            m.roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if m.has(Role::ControlPlane) && inv.with_role(Role::ControlPlane).count() == 1 {
        return Err(format!(
            "{name} is the cluster's only control plane: removing it would leave no API server; add another control plane first (`forgectl up --playbook scale`)"
        ));
    }
    Ok(m)
}

/// The inventory without `name`: what the load balancer is rendered from after the removal.
fn without(inv: &Loaded, name: &str) -> Loaded {
    let mut rest = inv.clone();
    rest.machines.retain(|m| m.name != name);
    rest
}

/// Removes a node from the cluster and deletes its machine.
pub async fn node_remove(
    file: Option<&Path>,
    o: &RemoveOptions,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let name = o.name.as_str();
    let m = removable(&inv, name).map_err(|why| CommandError::Usage(format!("refusing: {why}")))?;
    let text = opts.format == Format::Text && opts.verbosity >= 0;
    let say = |line: &str| {
        if text {
            crate::outln!("{line}");
        }
    };
    let deletes_machine = inv.inventory.provider != ProviderKind::Static;
    say(&format!(
        "Removing {name} from cluster {}:\n  1. drain it (PodDisruptionBudgets respected, at most {} s)\n  2. reset it (kubeadm reset, CNI, iptables and forgectl leftovers)\n  3. delete its Node object\n  4. render the load balancer without it\n  5. {}\nA node that is already dead is not drained or reset.",
        inv.inventory.name,
        o.drain_timeout,
        if deletes_machine {
            "delete its machine"
        } else {
            "keep the machine (static hosts are never deleted)"
        }
    ));
    if o.dry_run {
        say("Dry run: nothing was changed.");
        return Ok(ExitCode::Ok);
    }
    // Local machines need root to be deleted: said before anything is asked or changed.
    if deletes_machine
        && inv.inventory.provider == ProviderKind::Local
        && !crate::providers::local::is_root()
    {
        return Err(CommandError::Exec(
            crate::providers::local::LocalError::NotRoot.into(),
        ));
    }
    if !o.yes {
        super::run::approve(&format!("node remove {name}"))?;
    }
    let dir = super::state_dir(&inv, opts)?;
    let _lock = dir.lock("node remove")?;
    let mut present = super::run::presence(&inv, opts, false).await?;
    present.state_dir = Some(dir.path().to_path_buf());
    let running = present.running.contains(name);
    let kube = Kube::from_kubeconfig(&dir.path().join(STATE_ADMIN_CONF)).await?;
    let ready = kube.node_ready(name).await?;

    // 1. drain
    match ready {
        Some(true) if running => {
            let d = kube
                .drain(name, Duration::from_secs(o.drain_timeout))
                .await?;
            say(&format!(
                "• drained {name}: {} pod(s) evicted{}",
                d.evicted.len(),
                if d.kept.is_empty() {
                    String::new()
                } else {
                    format!(", kept {}", d.kept.len())
                }
            ));
        }
        Some(_) => say(&format!(
            "• not drained: {name} is {} (its pods go with its Node object)",
            if running { "NotReady" } else { "not running" }
        )),
        None => say(&format!("• not drained: {name} is not registered")),
    }

    // 2. reset
    let templates = Templates::load(opts.templates.as_deref())?;
    let quiet = opts.verbosity < 0 || opts.format == Format::Json;
    let exec =
        Executor::new(&inv, &dir, quiet, Interrupt::never()).with_templates(opts.templates.clone());
    if running {
        let ctx = PlanContext {
            inv: &inv,
            templates: &templates,
            present: &present,
        };
        let actions = crate::phases::kubeadm_reset::node_reset(&ctx, m)
            .map_err(|e| CommandError::Usage(e.to_string()))?;
        let refs: Vec<&crate::plan::Action> = actions.iter().collect();
        let changed = exec.host_actions(&refs).await?;
        say(&format!(
            "• reset {name}{}",
            if changed == 0 {
                " (nothing was left)"
            } else {
                ""
            }
        ));
    } else {
        say(&format!("• not reset: {name}'s machine is not running"));
    }

    // 3. the Node object
    if kube.delete_node(name).await? {
        say(&format!("• deleted the Node object {name}"));
    }

    // 4. the load balancer, when it had the node as a backend
    if (m.has(Role::ControlPlane) || m.has(Role::Ingress))
        && inv.with_role(Role::Lb).next().is_some()
    {
        let rest = without(&inv, name);
        let ctx = PlanContext {
            inv: &rest,
            templates: &templates,
            present: &present,
        };
        let pb = crate::playbook::load("cluster")?;
        let step = pb
            .phases
            .iter()
            .find(|s| s.phase == "lb")
            .cloned()
            .ok_or_else(|| CommandError::Usage("the cluster playbook has no lb phase".into()))?;
        let phase = engine::plan_step(&ctx, &pb, &step)?;
        let plan = Plan {
            cluster: inv.inventory.name.clone(),
            playbook: "node-remove".into(),
            probed: false,
            phases: vec![phase],
        };
        let lb_exec = Executor::new(&rest, &dir, quiet, Interrupt::never())
            .with_templates(opts.templates.clone());
        let outcome = engine::run(&plan, &lb_exec, &|p| {
            Err(engine::EngineError::UnknownPhase {
                playbook: "node-remove".into(),
                phase: p.into(),
                known: "lb".into(),
            })
        })
        .await;
        lb_exec.close().await;
        match outcome {
            engine::Outcome::Complete { .. } => say(&format!(
                "• the load balancer no longer sends traffic to {name}"
            )),
            engine::Outcome::Failed { error, .. } => return Err(CommandError::Exec(error)),
            other => {
                return Err(CommandError::Usage(format!(
                    "the load balancer was not updated: {other:?}"
                )));
            }
        }
    }

    // 5. the machine (its SSH connections closed first; deleting needs none)
    exec.close().await;
    if deletes_machine {
        let n = exec.delete(&[name.to_string()]).await?;
        say(&format!(
            "• {}",
            if n > 0 {
                format!("deleted the machine {name}")
            } else {
                format!("the machine {name} was gone already")
            }
        ));
    }
    match opts.format {
        Format::Json => crate::outln!(
            "{}",
            serde_json::json!({"node": name, "removed": true, "machine_deleted": deletes_machine})
        ),
        Format::Text => say(&format!(
            "{name} is out of the cluster. Now take it out of the inventory (lower its group's count when it is the group's last machine): until then `forgectl up` would make it again."
        )),
    }
    Ok(ExitCode::Ok)
}
