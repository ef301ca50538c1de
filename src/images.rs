//! Container image archives for nodes that cannot pull (`artifacts.images`): a directory of
//! docker-archive (`docker save`) or OCI image layout (`ctr images export`, `skopeo copy
//! oci-archive:`) tarballs. Each archive is read for the image references it carries and a digest
//! that identifies its content (the image config's for docker-archive, the manifest's for OCI),
//! so a node that has that content under those names is not sent the archive again.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One image archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    /// Its path on this machine.
    pub path: PathBuf,
    /// Its file name.
    pub file: String,
    /// The image references it carries (`registry.k8s.io/pause:3.10.2`).
    pub refs: Vec<String>,
    /// `sha256:…` of the content containerd keeps under the references (config or manifest).
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// Why an image directory or archive cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading failed.
    #[error("{path}: {cause}")]
    Read {
        /// The file or directory.
        path: String,
        /// Why.
        cause: String,
    },
    /// Not an image archive forgectl understands.
    #[error(
        "{path} is neither a docker-archive (manifest.json) nor an OCI image layout (index.json) tarball"
    )]
    Format {
        /// The file.
        path: String,
    },
    /// An archive without an image name.
    #[error(
        "{path} names no image (no RepoTags / no io.containerd.image.name annotation): containerd would import it without a reference kubelet can find"
    )]
    Unnamed {
        /// The file.
        path: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Every `*.tar` archive in `dir`, by file name.
pub fn scan(dir: &Path) -> Result<Vec<ImageArchive>, ImageError> {
    let err = |e: std::io::Error| ImageError::Read {
        path: dir.display().to_string(),
        cause: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "tar"))
        .collect();
    files.sort();
    files.iter().map(|f| read(f)).collect()
}

/// Reads one archive's index.
pub fn read(path: &Path) -> Result<ImageArchive, ImageError> {
    let err = |e: std::io::Error| ImageError::Read {
        path: path.display().to_string(),
        cause: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    let mut archive = tar::Archive::new(file);
    let mut manifest = None;
    let mut index = None;
    for entry in archive.entries_with_seek().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let name = entry.path().map_err(err)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./");
        if name == "manifest.json" || name == "index.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(err)?;
            if name == "manifest.json" {
                manifest = Some(text);
            } else {
                index = Some(text);
            }
        }
    }
    let format = || ImageError::Format {
        path: path.display().to_string(),
    };
    let (refs, digest) = if let Some(text) = manifest {
        let entries: Vec<DockerEntry> = serde_json::from_str(&text).map_err(|_| format())?;
        let first = entries.first().ok_or_else(format)?;
        let stem = first
            .config
            .trim_start_matches("blobs/sha256/")
            .trim_end_matches(".json");
        let refs: Vec<String> = entries
            .iter()
            .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
            .collect();
        (refs, format!("sha256:{stem}"))
    } else if let Some(text) = index {
        let idx: OciIndex = serde_json::from_str(&text).map_err(|_| format())?;
        let first = idx.manifests.first().ok_or_else(format)?;
        let refs: Vec<String> = idx
            .manifests
            .iter()
            .filter_map(|m| {
                m.annotations
                    .get("io.containerd.image.name")
                    .or_else(|| m.annotations.get("org.opencontainers.image.ref.name"))
                    .filter(|r| r.contains(':') || r.contains('@'))
                    .cloned()
            })
            .collect();
        (refs, first.digest.clone())
    } else {
        return Err(format());
    };
    if refs.is_empty() {
        return Err(ImageError::Unnamed {
            path: path.display().to_string(),
        });
    }
    Ok(ImageArchive {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        refs,
        digest,
        size,
    })
}

/// A shell check that succeeds when containerd (namespace k8s.io) on a node has the archive's
/// content and every one of its references.
pub fn present_check(a: &ImageArchive) -> String {
    let refs = a
        .refs
        .iter()
        .map(|r| format!(" && echo \"$i\" | grep -qxF {}", crate::ssh::shell_quote(r)))
        .collect::<String>();
    format!(
        "c=$(ctr -n k8s.io content ls -q 2>/dev/null) && i=$(ctr -n k8s.io images ls -q 2>/dev/null) \
         && echo \"$c\" | grep -qxF {}{refs}",
        crate::ssh::shell_quote(&a.digest)
    )
}

/// True when every image of the archive is one only control planes run (kubeadm's static pods).
pub fn control_plane_only(a: &ImageArchive) -> bool {
    a.refs.iter().all(|r| {
        let name = r.rsplit('/').next().unwrap_or(r);
        let name = name.split([':', '@']).next().unwrap_or(name);
        matches!(
            name,
            "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" | "etcd"
        )
    })
}
