//! `forgectl artifacts list|fetch`: what the cluster installs, and downloading it for an offline site.

use std::path::Path;

use super::{CommandError, ExitCode, load_inventory};
use crate::artifacts;
use crate::output::{Format, Options};

/// An image the cluster needs, and whether `artifacts.images` has it.
#[derive(serde::Serialize)]
struct ImageRow {
    #[serde(flatten)]
    image: crate::cluster_images::NeededImage,
    /// The archive of `artifacts.images` that holds it (None: not there, or no directory set).
    archive: Option<String>,
}

/// Prints every artifact with its version, URL and checksum source, then every image the cluster
/// runs with its exact reference (and the archive of `artifacts.images` that holds it).
pub fn artifacts_list(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let list = artifacts::list(&inv.inventory);
    let archives = match &inv.inventory.artifacts.images {
        Some(d) => crate::images::scan(d).unwrap_or_default(),
        None => Vec::new(),
    };
    let images: Vec<ImageRow> = crate::cluster_images::needed(&inv.inventory)
        .into_iter()
        .map(|image| ImageRow {
            archive: archives
                .iter()
                .find(|a| a.refs.contains(&image.reference))
                .map(|a| a.file.clone()),
            image,
        })
        .collect();
    match opts.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"artifacts": list, "images": images}))
                .unwrap_or_default()
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
            println!();
            let rw = images
                .iter()
                .map(|i| i.image.reference.len())
                .max()
                .unwrap_or(5)
                .max(5);
            println!(
                "{:rw$}  {:14}  {:32}  IN artifacts.images",
                "IMAGE", "NODES", "USED BY"
            );
            for i in &images {
                println!(
                    "{:rw$}  {:14}  {:32}  {}",
                    i.image.reference,
                    i.image.nodes,
                    i.image.used_by,
                    match (&inv.inventory.artifacts.images, &i.archive) {
                        (None, _) => "-",
                        (Some(_), Some(a)) => a.as_str(),
                        (Some(_), None) => "MISSING",
                    }
                );
            }
            let missing = images.iter().filter(|i| i.archive.is_none()).count();
            match &inv.inventory.artifacts.images {
                Some(d) if missing > 0 => println!(
                    "{missing} of {} image(s) are not in {}: nodes that cannot pull will not run them",
                    images.len(),
                    d.display()
                ),
                Some(d) => println!("every image is in {}", d.display()),
                None => println!(
                    "{} image(s), pulled by the nodes; for nodes that cannot pull, put their archives in a directory and set artifacts.images",
                    images.len()
                ),
            }
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
