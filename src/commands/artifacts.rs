//! `forgectl artifacts list|fetch`: what the cluster installs, and downloading it for an offline site.

use std::path::Path;

use super::{CommandError, ExitCode, load_inventory, load_inventory_quiet};
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
    let inv = load_inventory_quiet(file, opts)?;
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
                .find(|a| {
                    let q = crate::image_fetch::qualified(&image.reference);
                    a.refs.iter().any(|r| crate::image_fetch::qualified(r) == q)
                })
                .map(|a| a.file.clone()),
            image,
        })
        .collect();
    match opts.format {
        Format::Json => crate::outln!(
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
            crate::outln!("{:nw$}  {:vw$}  {:8}  URL", "NAME", "VERSION", "KIND");
            for a in &list {
                let kind = format!("{:?}", a.kind).to_lowercase();
                crate::outln!("{:nw$}  {:vw$}  {:8}  {}", a.name, a.version, kind, a.url);
                if let Some(c) = &a.checksums {
                    crate::outln!("{:nw$}  {:vw$}  {:8}  sha256 from {c}", "", "", "");
                }
            }
            crate::outln!(
                "source: {:?} ({} artifacts); `forgectl artifacts fetch --to DIR` downloads and verifies them for an offline site",
                inv.inventory.artifacts.source,
                list.len()
            );
            crate::outln!();
            let rw = images
                .iter()
                .map(|i| i.image.reference.len())
                .max()
                .unwrap_or(5)
                .max(5);
            crate::outln!(
                "{:rw$}  {:14}  {:32}  IN artifacts.images",
                "IMAGE",
                "NODES",
                "USED BY"
            );
            for i in &images {
                crate::outln!(
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
                Some(d) if missing > 0 => crate::outln!(
                    "{missing} of {} image(s) are not in {}: nodes that cannot pull will not run them",
                    images.len(),
                    d.display()
                ),
                Some(d) => crate::outln!("every image is in {}", d.display()),
                None => crate::outln!(
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
        crate::outln!("{}", w.display());
    }
    crate::outln!(
        "{} artifact(s) downloaded and verified under {}; use it with `artifacts: {{ source: local, dir: {} }}` or serve it as a mirror",
        written.len(),
        to.display(),
        to.display()
    );
    Ok(ExitCode::Ok)
}

/// Pulls every image the cluster runs into `to` (for `artifacts.images`), each checked against
/// its digest; exit 1 when one could not be had, naming where it was looked for.
pub async fn artifacts_fetch_images(
    file: Option<&Path>,
    to: &Path,
    arch: &str,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    use crate::image_fetch::{Fetched, fetch};
    let inv = load_inventory(file, opts)?;
    let results = fetch(&inv.inventory, to, arch)
        .await
        .map_err(|e| CommandError::Usage(format!("fetching images failed: {e}")))?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    match opts.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = results
                .iter()
                .map(|r| match r {
                    Ok(f) => serde_json::to_value(f).unwrap_or_default(),
                    Err(e) => serde_json::json!({"result": "failed", "error": e.to_string()}),
                })
                .collect();
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        Format::Text => {
            for r in &results {
                match r {
                    Ok(Fetched::Pulled {
                        reference,
                        file,
                        digest,
                        bytes,
                        from,
                    }) => crate::outln!(
                        "pulled   {reference}  {file}  {:.1} MB  {digest}  from {from}",
                        *bytes as f64 / 1e6
                    ),
                    Ok(Fetched::Present { reference, file }) => {
                        crate::outln!("present  {reference}  {file}")
                    }
                    Err(e) => crate::outln!("FAILED   {e}"),
                }
            }
            let ok = results.len() - failed;
            crate::outln!(
                "{ok} of {} image(s) in {} (linux/{arch}); use it with `artifacts: {{ images: {} }}`",
                results.len(),
                to.display(),
                to.display()
            );
        }
    }
    if failed > 0 {
        crate::errln!(
            "error: {failed} image(s) could not be pulled (above: where each was looked for and why)\n  next: make them reachable (a mirror under runtime.registry_mirrors), or put their archives in {} by hand (`artifacts list` names them), then run this again: images already there are kept",
            to.display()
        );
        return Ok(ExitCode::Failed);
    }
    Ok(ExitCode::Ok)
}
