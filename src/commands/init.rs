//! `forgectl init`: writes a commented starting inventory.

use std::path::Path;

use super::{CommandError, ExitCode};
use crate::inventory::{self, ProviderKind, validate::is_dns_label};

fn example(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Local => include_str!("../../inventories/local/cluster.yaml"),
        ProviderKind::Openstack => include_str!("../../inventories/openstack/cluster.yaml"),
        ProviderKind::Vagrant => include_str!("../../inventories/vagrant/cluster.yaml"),
        ProviderKind::Static => include_str!("../../inventories/static/cluster.yaml"),
    }
}

/// Writes `dir/cluster.yaml` for `provider`, named after the directory when that is a valid name.
pub fn init(provider: ProviderKind, dir: &Path, force: bool) -> Result<ExitCode, CommandError> {
    let target = dir.join("cluster.yaml");
    if target.exists() && !force {
        return Err(CommandError::Exists(target.display().to_string()));
    }
    let mut text = example(provider).to_string();
    let dir_name = std::fs::canonicalize(dir)
        .ok()
        .or_else(|| Some(dir.to_path_buf()))
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_lowercase()));
    if let Some(name) = dir_name.filter(|n| is_dns_label(n, 40)) {
        text = text
            .lines()
            .map(|l| {
                if l.starts_with("name: ") {
                    format!("name: {name}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    // A local cluster gets a machine network no interface of this host uses (another local
    // cluster's bridge among them), and the bridge address and the lb's with it.
    if provider == ProviderKind::Local
        && let Some(net) = crate::providers::local::net::free_machine_network()
        && net.to_string() != "10.77.0.0/24"
    {
        let prefix = net.to_string().trim_end_matches(".0/24").to_string();
        text = text.replace("10.77.0.", &format!("{prefix}."));
    }
    // Never write an inventory that would not validate.
    inventory::load_str(&target.display().to_string(), &text, dir)?;
    let err = |e: std::io::Error| CommandError::Write {
        path: target.display().to_string(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::write(&target, text).map_err(err)?;
    crate::outln!(
        "wrote {} ({} provider). Next: edit it, then `forgectl validate -f {}` and `forgectl plan -f {}`.",
        target.display(),
        provider.key(),
        target.display(),
        target.display()
    );
    Ok(ExitCode::Ok)
}
