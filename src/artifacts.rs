//! What a cluster installs and where it comes from: one declarative list (name, version, file,
//! upstream URL, where its checksum is published). Sources: upstream URLs, a mirror with the same
//! layout (`BASE/NAME/VERSION/FILE`), a local directory with that layout, or Debian's packages.
//! Checksums are always verified (SHA-256), against the checksum file the project publishes
//! beside each release.

use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::inventory::model::{ArtifactSource, Inventory};
use crate::plan::sha256_hex;

/// Versions forgectl pins for parts the inventory does not version.
pub const RUNC_VERSION: &str = "1.3.3";
/// CNI plugins version.
pub const CNI_VERSION: &str = "1.8.0";
/// crictl (cri-tools) version; kubeadm's preflight checks need crictl.
pub const CRICTL_VERSION: &str = "1.35.0";

/// How an artifact is packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A .tar.gz / .tgz with binaries.
    Tarball,
    /// A single binary.
    Binary,
    /// A Debian package (from Debian's archive).
    Deb,
}

/// One thing a cluster installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Short name (`etcd`, `kubeadm`, …); also the mirror's directory.
    pub name: String,
    /// Version (Debian's for `debian`).
    pub version: String,
    /// Tarball, binary or Debian package.
    pub kind: Kind,
    /// File name.
    pub file: String,
    /// Where it comes from under the inventory's source.
    pub url: String,
    /// The published checksum file, whose line for `file` is checked (None for Debian packages,
    /// which apt verifies).
    pub checksums: Option<String>,
}

fn upstream(inv: &Inventory) -> Vec<Artifact> {
    let v = &inv.versions;
    let k = format!("v{}", v.kubernetes);
    let kubelet = format!("v{}", v.kubelet.as_ref().unwrap_or(&v.kubernetes));
    let kubectl = format!("v{}", v.kubectl.as_ref().unwrap_or(&v.kubernetes));
    let e = format!("v{}", v.etcd);
    let c = v.containerd.to_string();
    let mut out = vec![
        art(
            "etcd",
            &v.etcd.to_string(),
            Kind::Tarball,
            &format!("etcd-{e}-linux-amd64.tar.gz"),
            &format!("https://github.com/etcd-io/etcd/releases/download/{e}"),
            Some("SHA256SUMS"),
        ),
        art(
            "containerd",
            &c,
            Kind::Tarball,
            &format!("containerd-{c}-linux-amd64.tar.gz"),
            &format!("https://github.com/containerd/containerd/releases/download/v{c}"),
            Some("{file}.sha256sum"),
        ),
        art(
            "runc",
            RUNC_VERSION,
            Kind::Binary,
            "runc.amd64",
            &format!("https://github.com/opencontainers/runc/releases/download/v{RUNC_VERSION}"),
            Some("runc.sha256sum"),
        ),
        art(
            "cni-plugins",
            CNI_VERSION,
            Kind::Tarball,
            &format!("cni-plugins-linux-amd64-v{CNI_VERSION}.tgz"),
            &format!(
                "https://github.com/containernetworking/plugins/releases/download/v{CNI_VERSION}"
            ),
            Some("{file}.sha256"),
        ),
        art(
            "crictl",
            CRICTL_VERSION,
            Kind::Tarball,
            &format!("crictl-v{CRICTL_VERSION}-linux-amd64.tar.gz"),
            &format!(
                "https://github.com/kubernetes-sigs/cri-tools/releases/download/v{CRICTL_VERSION}"
            ),
            Some("{file}.sha256"),
        ),
    ];
    for (name, ver) in [
        ("kubeadm", &k),
        ("kubectl", &kubectl),
        ("kubelet", &kubelet),
    ] {
        out.push(art(
            name,
            ver.trim_start_matches('v'),
            Kind::Binary,
            name,
            &format!("https://dl.k8s.io/release/{ver}/bin/linux/amd64"),
            Some("{file}.sha256"),
        ));
    }
    out
}

fn art(
    name: &str,
    version: &str,
    kind: Kind,
    file: &str,
    base: &str,
    sums: Option<&str>,
) -> Artifact {
    Artifact {
        name: name.into(),
        version: version.into(),
        kind,
        file: file.into(),
        url: format!("{base}/{file}"),
        checksums: sums.map(|s| format!("{base}/{}", s.replace("{file}", file))),
    }
}

/// Debian's packages the `debian` source installs in place of release artifacts.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "etcd-server",
    "containerd",
    "runc",
    "containernetworking-plugins",
];

/// True when etcd comes from Debian's package: the `debian` source without `artifacts.dir` or
/// `artifacts.mirror_url`. With one of them, etcd (at `versions.etcd`) and the Kubernetes
/// binaries come from there, and Debian gives containerd, runc and the CNI plugins.
pub fn etcd_from_debian(inv: &Inventory) -> bool {
    inv.artifacts.source == ArtifactSource::Debian && laid_out_base(inv).is_none()
}

/// The Kubernetes binaries, which Debian does not package (its kubernetes-client is 1.20, and it
/// has no kubeadm, kubelet or crictl).
pub const KUBE_BINARIES: &[&str] = &["kubeadm", "kubelet", "kubectl", "crictl"];

/// The Kubernetes binaries a node cannot do without. crictl is a debugging aid (kubeadm talks to
/// the CRI itself): installed when the artifact source has it, else left out with a note.
pub const KUBE_REQUIRED: &[&str] = &["kubeadm", "kubelet", "kubectl"];

/// Everything the inventory's cluster installs, with URLs for its artifact source. With `debian`,
/// etcd and the Kubernetes binaries come from `artifacts.dir` or `artifacts.mirror_url` when one
/// is set (else etcd is Debian's and the Kubernetes binaries come from upstream).
pub fn list(inv: &Inventory) -> Vec<Artifact> {
    let a = &inv.artifacts;
    match a.source {
        ArtifactSource::Debian => {
            let base = laid_out_base(inv);
            let mut out: Vec<Artifact> = DEBIAN_PACKAGES
                .iter()
                .filter(|p| base.is_none() || **p != "etcd-server")
                .map(|p| Artifact {
                    name: (*p).into(),
                    version: "Debian's".into(),
                    kind: Kind::Deb,
                    file: (*p).into(),
                    url: format!("apt: {p}"),
                    checksums: None,
                })
                .collect();
            out.extend(
                upstream(inv)
                    .into_iter()
                    // With a dir or mirror, etcd comes from there too.
                    .filter(|x| {
                        KUBE_BINARIES.contains(&x.name.as_str())
                            || (base.is_some() && x.name == "etcd")
                    })
                    .map(|x| match &base {
                        Some(b) => relocate(b, x),
                        None => x,
                    }),
            );
            out
        }
        ArtifactSource::Upstream => upstream(inv),
        ArtifactSource::Mirror | ArtifactSource::Local => {
            let base = laid_out_base(inv).unwrap_or_default();
            upstream(inv)
                .into_iter()
                .map(|x| relocate(&base, x))
                .collect()
        }
    }
}

/// The base of a mirror or directory laid out as `BASE/NAME/VERSION/FILE`, when one is set
/// (`mirror_url` first, for the `mirror` and `debian` sources; `dir` for `local` and `debian`).
fn laid_out_base(inv: &Inventory) -> Option<String> {
    let a = &inv.artifacts;
    let mirror = || {
        a.mirror_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string())
    };
    let dir = || a.dir.as_ref().map(|d| format!("file://{}", d.display()));
    match a.source {
        ArtifactSource::Mirror => mirror(),
        ArtifactSource::Local => dir(),
        ArtifactSource::Debian => mirror().or_else(dir),
        ArtifactSource::Upstream => None,
    }
}

/// `x` as it lies under `base` (`BASE/NAME/VERSION/FILE`, its checksum file beside it).
fn relocate(base: &str, x: Artifact) -> Artifact {
    let dir = format!("{base}/{}/{}", x.name, x.version);
    let sums = x
        .checksums
        .as_ref()
        .and_then(|c| c.rsplit('/').next())
        .map(|f| format!("{dir}/{f}"));
    Artifact {
        url: format!("{dir}/{}", x.file),
        checksums: sums,
        ..x
    }
}

/// An artifact that cannot be fetched from where the inventory says, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    /// The artifact's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where it was looked for.
    pub url: String,
    /// Why it cannot be fetched.
    pub cause: String,
}

/// Which of `list` cannot be fetched: a local file that is missing, or a checksum file that does
/// not answer within a few seconds (no internet, no mirror). Debian packages are not checked here
/// (apt fetches them). Looks at all of them at once.
pub async fn unavailable(list: &[Artifact]) -> Vec<Unavailable> {
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
    else {
        return Vec::new();
    };
    let checks = list.iter().filter(|a| a.kind != Kind::Deb).map(|a| {
        let client = client.clone();
        async move {
            let sums = a.checksums.clone().unwrap_or_default();
            let cause = reachable(&client, &sums)
                .await
                .and(reachable(&client, &a.url).await)
                .err()?;
            Some(Unavailable {
                name: a.name.clone(),
                version: a.version.clone(),
                url: a.url.clone(),
                cause,
            })
        }
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn reachable(client: &reqwest::Client, url: &str) -> Result<(), String> {
    if let Some(path) = url.strip_prefix("file://") {
        return match Path::new(path).is_file() {
            true => Ok(()),
            false => Err(format!("{path} does not exist")),
        };
    }
    match client.head(url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{url}: HTTP {}", r.status())),
        Err(e) => Err(format!("{url}: {}", crate::error_chain::bottom(&e).0)),
    }
}

/// What to tell people when artifacts cannot be fetched: which, why, and how to provide them.
pub fn explain_unavailable(missing: &[&Unavailable]) -> String {
    let list = missing
        .iter()
        .map(|u| format!("{} {} ({})", u.name, u.version, u.cause))
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "artifacts that cannot be fetched: {list}. Provide them: on a machine that reaches the \
         release URLs run `forgectl artifacts fetch --to DIR` (each file verified against its \
         published checksum), then set `artifacts.dir: DIR` (or serve DIR over HTTP and set \
         `artifacts.mirror_url`) and run again"
    )
}

/// Why an artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The download failed.
    #[error("{url}: {cause}")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        cause: String,
    },
    /// The checksum file has no line for the file.
    #[error("{checksums} lists no checksum for {file}")]
    NoChecksum {
        /// The checksum file.
        checksums: String,
        /// The artifact file.
        file: String,
    },
    /// The content does not match its published checksum.
    #[error(
        "{file}: sha256 {got} does not match the published {want} ({checksums}); nothing was kept"
    )]
    Mismatch {
        /// The file.
        file: String,
        /// Published.
        want: String,
        /// Downloaded.
        got: String,
        /// Where it was published.
        checksums: String,
    },
    /// Writing failed.
    #[error("{path}: {cause}")]
    Write {
        /// The path.
        path: String,
        /// Why.
        cause: String,
    },
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, ArtifactError> {
    let err = |cause: String| ArtifactError::Download {
        url: url.into(),
        cause,
    };
    if let Some(path) = url.strip_prefix("file://") {
        return tokio::fs::read(path).await.map_err(|e| err(e.to_string()));
    }
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    Ok(resp.bytes().await.map_err(|e| err(e.to_string()))?.to_vec())
}

/// The SHA-256 for `file` in a checksum file (`HASH  NAME` lines, or a lone hash).
pub fn checksum_for(text: &str, file: &str) -> Option<String> {
    let mut lone = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(hash), name) = (parts.next(), parts.next()) else {
            continue;
        };
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        match name {
            Some(n) if n.trim_start_matches('*').rsplit('/').next() == Some(file) => {
                return Some(hash.to_lowercase());
            }
            None => lone = Some(hash.to_lowercase()),
            _ => {}
        }
    }
    lone
}

fn client() -> Result<reqwest::Client, ArtifactError> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| ArtifactError::Download {
            url: String::new(),
            cause: e.to_string(),
        })
}

/// Downloads one artifact and checks it against its published checksum. Returns the content and
/// the checksum file's text.
pub async fn get_verified(a: &Artifact) -> Result<(Vec<u8>, String), ArtifactError> {
    let client = client()?;
    let sums_url = a
        .checksums
        .clone()
        .ok_or_else(|| ArtifactError::NoChecksum {
            checksums: "(none published)".into(),
            file: a.file.clone(),
        })?;
    let sums = String::from_utf8_lossy(&get(&client, &sums_url).await?).into_owned();
    let want = checksum_for(&sums, &a.file).ok_or_else(|| ArtifactError::NoChecksum {
        checksums: sums_url.clone(),
        file: a.file.clone(),
    })?;
    let data = get(&client, &a.url).await?;
    let got = sha256_hex(&data);
    if got != want {
        return Err(ArtifactError::Mismatch {
            file: a.file.clone(),
            want,
            got,
            checksums: sums_url,
        });
    }
    Ok((data, sums))
}

/// Downloads every artifact with a checksum into `to/NAME/VERSION/` (the layout `mirror` and
/// `local` sources read), verifying each against its published checksum. Returns the files.
pub async fn fetch(artifacts: &[Artifact], to: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut written = Vec::new();
    for a in artifacts
        .iter()
        .filter(|a| a.kind != Kind::Deb && a.checksums.is_some())
    {
        let (data, sums) = get_verified(a).await?;
        let dir = to.join(&a.name).join(&a.version);
        let werr = |p: &Path, e: std::io::Error| ArtifactError::Write {
            path: p.display().to_string(),
            cause: e.to_string(),
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| werr(&dir, e))?;
        let target = dir.join(&a.file);
        let tmp = dir.join(format!(".{}.partial", a.file));
        tokio::fs::write(&tmp, &data)
            .await
            .map_err(|e| werr(&tmp, e))?;
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(|e| werr(&target, e))?;
        let sums_name = a
            .checksums
            .as_deref()
            .and_then(|u| u.rsplit('/').next())
            .unwrap_or("SHA256SUMS");
        let sums_path = dir.join(sums_name);
        tokio::fs::write(&sums_path, sums.as_bytes())
            .await
            .map_err(|e| werr(&sums_path, e))?;
        written.push(target);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::checksum_for;

    #[test]
    fn checksum_lines() {
        let h = "a".repeat(64);
        assert_eq!(
            checksum_for(
                &format!("{h}  etcd.tar.gz\n{}  other\n", "b".repeat(64)),
                "etcd.tar.gz"
            ),
            Some(h.clone())
        );
        assert_eq!(
            checksum_for(&format!("{h} *bin/runc.amd64\n"), "runc.amd64"),
            Some(h.clone())
        );
        assert_eq!(checksum_for(&format!("{h}\n"), "kubeadm"), Some(h));
        assert_eq!(checksum_for("nonsense\n", "x"), None);
    }
}
