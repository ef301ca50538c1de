//! The commands behind the CLI. Each takes plain options (no clap types) and returns an exit code;
//! errors carry what went wrong and the next step to take.

mod accounts;
mod admission;
mod artifacts;
mod certs;
mod dashboard;
mod error;
mod etcd;
mod exec;
mod init;
mod inventory_cmds;
mod machines;
mod node;
mod node_remove;
mod run;
mod status;

pub use accounts::{AccountsOptions, AccountsRunOptions, accounts_run, accounts_sync};
pub use admission::{AdmissionOptions, admission_serve};
pub use artifacts::{artifacts_fetch, artifacts_fetch_images, artifacts_list};
pub use certs::{certs_check, certs_recover, certs_renew};
pub use dashboard::{DashboardOptions, dashboard};
pub use error::{CommandError, ExitCode};
pub use etcd::{
    Membership, Quorum, etcd_membership, etcd_snapshot_restore, etcd_snapshot_save, etcd_status,
    quorum,
};
pub use exec::{ExecOptions, command_line as exec_command_line, exec};
pub use init::init;
pub use inventory_cmds::{schema, validate};
pub use machines::{machines_apply, machines_list};
pub use node::{NodeVerb, node};
pub use node_remove::{RemoveOptions, node_remove};
pub use run::{RunOptions, down, plan, render, reset, up};
pub use status::status;

use crate::inventory::{self, Loaded, diagnostics};
use crate::output::{Format, Options, use_color};
use std::io::IsTerminal;
use std::path::Path;

/// Resolves on SIGTERM or Ctrl-C: the end of a long-running service (`accounts run`,
/// `dashboard`).
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Loads the inventory (or the embedded default), printing warnings to stderr.
pub(crate) fn load_inventory(file: Option<&Path>, opts: &Options) -> Result<Loaded, CommandError> {
    load_inventory_showing(file, opts, 0)
}

/// As [`load_inventory`], for commands that only read or inspect (status, lists, checks, exec):
/// the inventory's warnings are for `validate` and the commands that change things, so they are
/// shown here only with `-v`.
pub(crate) fn load_inventory_quiet(
    file: Option<&Path>,
    opts: &Options,
) -> Result<Loaded, CommandError> {
    load_inventory_showing(file, opts, 1)
}

/// Loads the inventory; prints its warnings when the verbosity is at least `warn_at`.
fn load_inventory_showing(
    file: Option<&Path>,
    opts: &Options,
    warn_at: i8,
) -> Result<Loaded, CommandError> {
    let mut loaded = inventory::load(file)?;
    // Cloud machines get their addresses when they are made: the state dir's record has them.
    if loaded.inventory.provider == inventory::ProviderKind::Openstack
        && let Ok(base) = crate::state::base_dir(opts.state_dir.as_deref())
    {
        let assigned = crate::providers::openstack::assigned(&base.join(&loaded.inventory.name));
        loaded = loaded.with_assigned_addresses(&assigned);
    }
    // Local machines keep the address they were made with when a group before them grows.
    if loaded.inventory.provider == inventory::ProviderKind::Local
        && let Ok(base) = crate::state::base_dir(opts.state_dir.as_deref())
    {
        let recorded =
            crate::providers::local::recorded_addresses(&base.join(&loaded.inventory.name));
        loaded = loaded.with_recorded_local_addresses(&recorded);
    }
    if !loaded.warnings.is_empty() && opts.format == Format::Text && opts.verbosity >= warn_at {
        crate::errout!(
            "{}",
            diagnostics::render(
                &loaded.source.name,
                &loaded.source.text,
                &loaded.warnings,
                stderr_palette(opts)
            )
        );
    }
    Ok(loaded)
}

/// The palette for messages on stderr.
pub fn stderr_palette(opts: &Options) -> diagnostics::Palette {
    if use_color(opts.color, std::io::stderr().is_terminal()) {
        diagnostics::Palette::colored()
    } else {
        diagnostics::Palette::default()
    }
}

/// Plans the `etcd` phase for `hosts` (selectors) with the state dir's PKI and runs its host
/// steps; returns how many changed something. Shared by the etcd maintenance commands.
pub(crate) async fn run_etcd_phase_on(
    inv: &Loaded,
    dir: &crate::state::StateDir,
    exec: &crate::executor::Executor<'_>,
    hosts: &[String],
    opts: &Options,
) -> Result<usize, CommandError> {
    let templates = crate::render::Templates::load(opts.templates.as_deref())?;
    let present = crate::phases::Presence {
        state_dir: Some(dir.path().to_path_buf()),
        ..crate::phases::Presence::default()
    };
    let ctx = crate::phases::PlanContext {
        inv,
        templates: &templates,
        present: &present,
    };
    let pb = crate::playbook::load("cluster")?;
    let step = crate::playbook::Step {
        phase: "etcd".into(),
        hosts: hosts.to_vec(),
    };
    let plan = crate::engine::plan_step(&ctx, &pb, &step)?;
    let restart =
        |a: &&crate::plan::Action| matches!(a.op, crate::plan::Op::RestartEtcdMember { .. });
    let host_steps: Vec<&crate::plan::Action> = plan
        .actions
        .iter()
        .filter(|a| a.host.is_some() && !restart(a))
        .collect();
    let restarts: Vec<&crate::plan::Action> = plan.actions.iter().filter(restart).collect();
    let changed = exec.host_actions(&host_steps).await?;
    Ok(changed + exec.restart_etcd_members(&restarts).await?)
}

/// The cluster's state dir (made on first use).
pub(crate) fn state_dir(
    inv: &Loaded,
    opts: &Options,
) -> Result<crate::state::StateDir, CommandError> {
    let base = crate::state::base_dir(opts.state_dir.as_deref())?;
    Ok(crate::state::StateDir::open(&base, &inv.inventory.name)?)
}
