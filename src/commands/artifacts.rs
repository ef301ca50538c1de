//! `forgectl artifacts list|fetch`: what the cluster installs, and downloading it for an offline site.

use std::path::Path;

use super::{CommandError, ExitCode, load_inventory};
use crate::artifacts;
use crate::output::{Format, Options};

/// Prints every artifact with its version, URL and checksum source.
pub fn artifacts_list(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let list = artifacts::list(&inv.inventory);
    match opts.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        ),
        Format::Text => {
            let nw = list.iter().map(|a| a.name.len()).max().unwrap_or(4).max(4);
            let vw = list
                .iter()
                .map(|a| a.version.len())
                .max()
                .unwrap_or(7)
                .max(7);
            println!("{:nw$}  {:vw$}  {:8}  URL", "NAME", "VERSION", "KIND");
            for a in &list {
                let kind = format!("{:?}", a.kind).to_lowercase();
                println!("{:nw$}  {:vw$}  {:8}  {}", a.name, a.version, kind, a.url);
                if let Some(c) = &a.checksums {
                    println!("{:nw$}  {:vw$}  {:8}  sha256 from {c}", "", "", "");
                }
            }
            println!(
                "source: {:?} ({} artifacts); `forgectl artifacts fetch --to DIR` downloads and verifies them for an offline site",
                inv.inventory.artifacts.source,
                list.len()
            );
        }
    }
    Ok(ExitCode::Ok)
}

/// Downloads every artifact into `to/NAME/VERSION/`, each verified against its published checksum.
pub async fn artifacts_fetch(
    file: Option<&Path>,
    to: &Path,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let list = artifacts::list(&inv.inventory);
    let written = artifacts::fetch(&list, to)
        .await
        .map_err(|e| CommandError::Usage(format!("fetching artifacts failed: {e}")))?;
    for w in &written {
        println!("{}", w.display());
    }
    println!(
        "{} artifact(s) downloaded and verified under {}; use it with `artifacts: {{ source: local, dir: {} }}` or serve it as a mirror",
        written.len(),
        to.display(),
        to.display()
    );
    Ok(ExitCode::Ok)
}
