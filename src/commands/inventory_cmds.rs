//! `forgectl validate` and `forgectl schema`.

use serde_json::json;
use std::path::Path;

use super::{CommandError, ExitCode, load_inventory};
use crate::inventory::{self, Role};
use crate::output::{Format, Options};

/// Parses and checks an inventory; prints a summary (text) or every finding (JSON).
pub fn validate(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let loaded = match opts.format {
        Format::Json => match inventory::load(file) {
            Ok(l) => l,
            Err(inventory::LoadError::Invalid { input, diagnostics }) => {
                let doc = json!({ "file": input.name, "valid": false, "diagnostics": diagnostics });
                crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                return Ok(ExitCode::Invalid);
            }
            Err(e) => return Err(e.into()),
        },
        Format::Text => load_inventory(file, opts)?,
    };
    match opts.format {
        Format::Json => {
            let doc = json!({
                "file": loaded.source.name,
                "valid": true,
                "diagnostics": loaded.warnings,
                "cluster": loaded.inventory.name,
                "machines": loaded.machines,
            });
            crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Text => {
            if opts.verbosity >= 0 {
                let roles: Vec<String> = Role::ALL
                    .iter()
                    .map(|r| (r, loaded.with_role(*r).count()))
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| format!("{n} {}", r.as_str()))
                    .collect();
                crate::outln!(
                    "{}: valid — cluster {}, provider {}, {} machines in {} groups ({}){}",
                    loaded.source.name,
                    loaded.inventory.name,
                    loaded.inventory.provider.key(),
                    loaded.machines.len(),
                    loaded.inventory.groups.len(),
                    roles.join(", "),
                    match loaded.warnings.len() {
                        0 => String::new(),
                        n => format!(", {n} warning(s)"),
                    }
                );
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// Prints the inventory's JSON Schema.
pub fn schema() -> Result<ExitCode, CommandError> {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(&inventory::json_schema()).unwrap_or_default()
    );
    Ok(ExitCode::Ok)
}
