//! `forgectl machines`: list the local machines and apply lifecycle and fault verbs to them.

use serde_json::json;
use std::path::Path;

use super::{CommandError, ExitCode, load_inventory};
use crate::inventory::ProviderKind;
use crate::output::{Format, Options};
use crate::providers::local::{LocalProvider, Verb};
use crate::state;

fn provider(file: Option<&Path>, opts: &Options) -> Result<LocalProvider, CommandError> {
    let inv = load_inventory(file, opts)?;
    if inv.inventory.provider != ProviderKind::Local {
        return Err(CommandError::Usage(format!(
            "`forgectl machines` works on local machines; this inventory uses the {} provider",
            inv.inventory.provider.key()
        )));
    }
    let dir = state::base_dir(opts.state_dir.as_deref())?.join(&inv.inventory.name);
    Ok(LocalProvider::new(&inv, &dir, opts.verbosity < 0))
}

/// Lists the cluster's local machines with their state.
pub async fn machines_list(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let list = provider(file, opts)?.list().await;
    match opts.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        ),
        Format::Text => {
            if list.is_empty() {
                println!("no machines (run `forgectl up` to make them)");
            }
            let width = list.iter().map(|m| m.name.len()).max().unwrap_or(4).max(4);
            if !list.is_empty() {
                println!("{:width$}  {:15}  {:8}  PID", "NAME", "ADDRESS", "STATE");
            }
            for m in &list {
                let pid = m.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "{:width$}  {:15}  {:8}  {pid}",
                    m.name,
                    m.address.to_string(),
                    m.state.to_string()
                );
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// Applies `verb` to machine `name`.
pub async fn machines_apply(
    file: Option<&Path>,
    name: &str,
    verb: Verb,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let p = provider(file, opts)?;
    let status = p
        .apply(name, verb)
        .await
        .map_err(|e| CommandError::Exec(e.into()))?;
    match opts.format {
        Format::Json => println!("{}", json!(status)),
        Format::Text => println!("{}: {}", status.name, status.state),
    }
    Ok(ExitCode::Ok)
}
