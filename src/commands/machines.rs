//! `forgectl machines`: list the local machines and apply lifecycle and fault verbs to them.

use serde_json::json;
use std::path::Path;

use super::{CommandError, ExitCode, load_inventory_quiet};
use crate::inventory::ProviderKind;
use crate::output::{Format, Options};
use crate::providers::local::{LocalProvider, Verb};
use crate::state;

fn provider(file: Option<&Path>, opts: &Options) -> Result<LocalProvider, CommandError> {
    let inv = load_inventory_quiet(file, opts)?;
    if inv.inventory.provider != ProviderKind::Local {
        return Err(CommandError::Usage(format!(
            "`forgectl machines` works on local machines; this inventory uses the {} provider",
            inv.inventory.provider.key()
        )));
    }
    let dir = state::base_dir(opts.state_dir.as_deref())?.join(&inv.inventory.name);
    Ok(LocalProvider::new(&inv, &dir, opts.verbosity < 0))
}

/// Lists the cluster's machines with their state: local machines, or what the cloud has for
/// an OpenStack inventory (server status, fixed and floating IP, data volume).
pub async fn machines_list(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let inv = load_inventory_quiet(file, opts)?;
    if inv.inventory.provider == ProviderKind::Openstack {
        return openstack_list(&inv, opts).await;
    }
    let list = provider(file, opts)?.list().await;
    match opts.format {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        ),
        Format::Text => {
            if list.is_empty() {
                crate::outln!("no machines (run `forgectl up` to make them)");
            }
            let width = list.iter().map(|m| m.name.len()).max().unwrap_or(4).max(4);
            if !list.is_empty() {
                crate::outln!("{:width$}  {:15}  {:8}  PID", "NAME", "ADDRESS", "STATE");
            }
            for m in &list {
                let pid = m.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                crate::outln!(
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
        Format::Json => crate::outln!("{}", json!(status)),
        Format::Text => crate::outln!("{}: {}", status.name, status.state),
    }
    Ok(ExitCode::Ok)
}

async fn openstack_list(
    inv: &crate::inventory::Loaded,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    use crate::providers::openstack::OpenStack;
    let err = |e: crate::providers::openstack::OpenStackError| CommandError::Exec(e.into());
    let found = OpenStack::connect(inv)
        .await
        .map_err(err)?
        .find()
        .await
        .map_err(err)?;
    let rows: Vec<serde_json::Value> = inv
        .machines
        .iter()
        .map(|m| {
            let server = found.server(&m.name);
            let fixed = found
                .ports_of(&m.name)
                .first()
                .and_then(|p| p.fixed_ips.first())
                .map(|f| f.ip_address.clone());
            let volume = found.volume_of(&m.name).map(|v| {
                let device = v.attachments.first().and_then(|a| a.device.clone());
                json!({"id": v.id, "size_gb": v.size, "status": v.status, "device": device})
            });
            json!({
                "name": m.name,
                "roles": m.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "server": server.map(|s| s.name.clone()),
                "status": server.map(|s| s.status.clone()).unwrap_or_else(|| "absent".into()),
                "fault": server.and_then(|s| s.fault.as_ref().map(|f| f.message.clone())),
                "address": fixed,
                "floating_address": found.floating_ip_of(&m.name).map(|f| f.floating_ip_address.clone()),
                "volume": volume,
            })
        })
        .collect();
    match opts.format {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        ),
        Format::Text => {
            let width = inv
                .machines
                .iter()
                .map(|m| m.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            crate::outln!(
                "{:width$}  {:8}  {:15}  {:15}  VOLUME",
                "NAME",
                "STATUS",
                "ADDRESS",
                "FLOATING"
            );
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
            for r in &rows {
                let volume = match &r["volume"] {
                    serde_json::Value::Null => "-".to_string(),
                    v => format!("{} GiB at {}", v["size_gb"], s(&v["device"])),
                };
                crate::outln!(
                    "{:width$}  {:8}  {:15}  {:15}  {volume}",
                    s(&r["name"]),
                    s(&r["status"]),
                    s(&r["address"]),
                    s(&r["floating_address"]),
                );
            }
            if !found.is_empty() && found.servers.is_empty() {
                crate::outln!(
                    "no servers; left over from an earlier run: {}",
                    found.summary()
                );
            }
        }
    }
    Ok(ExitCode::Ok)
}
