//! `forgectl artifacts fetch --images`: pulls every image the cluster needs (as `forgectl
//! artifacts list` names them) into a directory that `artifacts.images` takes, one OCI image
//! layout archive per image. Each image comes from the inventory's registry mirrors in order, then
//! from its registry, as containerd on the nodes would try them. Every manifest and blob is checked
//! against its digest before it is kept; an archive is written under a temporary name and renamed,
//! so the directory never holds half an image. Images already in the directory are not pulled again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

use crate::inventory::Inventory;

/// Images pulled at once.
const PARALLEL: usize = 4;

/// Manifest media types asked for: images and indexes, OCI and Docker's.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Why one image could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an image reference.
    #[error("{reference}: not an image reference ({cause})")]
    Reference {
        /// As the inventory has it.
        reference: String,
        /// The parser's words.
        cause: String,
    },
    /// A mirror URL forgectl cannot use.
    #[error(
        "runtime.registry_mirrors.{registry}: {mirror} is not http(s)://HOST[:PORT] (a mirror with a path is not supported)"
    )]
    Mirror {
        /// The registry it mirrors.
        registry: String,
        /// The URL.
        mirror: String,
    },
    /// No source had it; what each said.
    #[error("{reference}: {}", tried.join("; "))]
    Pull {
        /// The image.
        reference: String,
        /// `from SOURCE: why`, in the order tried.
        tried: Vec<String>,
    },
    /// Writing the archive failed.
    #[error("{path}: {cause}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        cause: String,
    },
    /// The directory holds an archive forgectl cannot read.
    #[error(transparent)]
    Existing(#[from] crate::images::ImageError),
}

/// What became of one image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Fetched {
    /// Pulled and written.
    Pulled {
        /// The image.
        reference: String,
        /// The archive's file name.
        file: String,
        /// The image manifest's digest (what containerd keeps it under).
        digest: String,
        /// The archive's size in bytes.
        bytes: u64,
        /// Where it came from (`https://registry.k8s.io`, a mirror).
        from: String,
    },
    /// Already in the directory.
    Present {
        /// The image.
        reference: String,
        /// The archive that holds it.
        file: String,
    },
}

/// One place to pull an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    /// `host[:port]`.
    host: String,
    /// Plain HTTP (a mirror given as `http://`).
    http: bool,
}

impl Source {
    fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.http { "http" } else { "https" },
            self.host
        )
    }
}

/// The fully qualified form of an image reference, as containerd names it
/// (`nginx:1.25` → `docker.io/library/nginx:1.25`); the input when it does not parse.
pub fn qualified(reference: &str) -> String {
    Reference::try_from(reference)
        .map(|r| r.whole())
        .unwrap_or_else(|_| reference.to_string())
}

/// The archive file name for an image: its qualified reference with `/`, `:` and `@` as `_`.
pub fn archive_name(reference: &str) -> String {
    let q = qualified(reference);
    let safe: String = q
        .chars()
        .map(|c| match c {
            '/' | ':' | '@' => '_',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') => c,
            _ => '_',
        })
        .collect();
    format!("{safe}.tar")
}

/// Where to pull `r` from: the mirrors of its registry in the inventory's order, then the
/// registry itself.
fn sources(inv: &Inventory, r: &Reference) -> Result<Vec<Source>, FetchError> {
    let registry = r.registry();
    let mut out = Vec::new();
    for m in inv
        .runtime
        .registry_mirrors
        .get(registry)
        .into_iter()
        .flatten()
    {
        let bad = || FetchError::Mirror {
            registry: registry.to_string(),
            mirror: m.clone(),
        };
        let (http, rest) = match (m.strip_prefix("http://"), m.strip_prefix("https://")) {
            (Some(rest), _) => (true, rest),
            (_, Some(rest)) => (false, rest),
            _ => return Err(bad()),
        };
        let host = rest.trim_end_matches('/');
        let host = host.strip_suffix("/v2").unwrap_or(host);
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        out.push(Source {
            host: host.to_string(),
            http,
        });
    }
    // The registry itself, unless a mirror is that very host (it was asked already).
    let upstream = r.resolve_registry().to_string();
    if !out.iter().any(|s| s.host == upstream) {
        out.push(Source {
            host: upstream,
            http: false,
        });
    }
    Ok(out)
}

/// The same image at another registry host.
fn at(r: &Reference, host: &str) -> Reference {
    match r.digest() {
        Some(d) => Reference::with_digest(host.to_string(), r.repository().to_string(), d.into()),
        None => Reference::with_tag(
            host.to_string(),
            r.repository().to_string(),
            r.tag().unwrap_or("latest").to_string(),
        ),
    }
}

/// The client: plain HTTP for the mirrors given as `http://`, timeouts on every request.
fn client(http_hosts: Vec<String>) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(http_hosts),
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        platform_resolver: None,
        ..Default::default()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<PlatformField>,
}

#[derive(Deserialize)]
struct PlatformField {
    os: String,
    architecture: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
    #[serde(default)]
    config: Option<BlobRef>,
    #[serde(default)]
    layers: Vec<BlobRef>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct BlobRef {
    media_type: String,
    digest: String,
    size: i64,
}

/// An image manifest as pulled: its bytes (kept exactly, so its digest holds), digest and type.
struct Pulled {
    bytes: Vec<u8>,
    digest: String,
    media_type: String,
    blobs: Vec<BlobRef>,
}

/// A registry client's error for people: what the registry said, or the innermost cause
/// (connection refused, timed out, …).
fn words(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let said: Vec<String> = envelope
                .errors
                .iter()
                .map(|x| match x.code {
                    OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown => {
                        "no such image there (manifest unknown)".to_string()
                    }
                    OciErrorCode::Unauthorized | OciErrorCode::Denied => {
                        "the registry refuses anonymous pulls (unauthorized)".to_string()
                    }
                    _ => format!("{:?}: {}", x.code, x.message),
                })
                .collect();
            said.join("; ")
        }
        OciDistributionError::ServerError { code, message, .. } => {
            format!("HTTP {code}: {message}")
        }
        OciDistributionError::DigestError(d) => {
            format!("its content does not match its digest ({d})")
        }
        other => crate::error_chain::bottom(other).0,
    }
}

fn sha256_ok(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Pulls the image manifest for `arch` (choosing from an index when the tag is one).
async fn manifest(client: &Client, r: &Reference, arch: &str) -> Result<Pulled, String> {
    let auth = RegistryAuth::Anonymous;
    let (bytes, digest) = client
        .pull_manifest_raw(r, &auth, MANIFEST_TYPES)
        .await
        .map_err(|e| words(&e))?;
    let doc: ManifestDoc =
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let (bytes, digest, doc) = match doc.manifests {
        Some(entries) => {
            let entry = entries
                .iter()
                .find(|e| {
                    e.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                })
                .ok_or_else(|| format!("its index has no linux/{arch} image"))?;
            if !sha256_ok(&entry.digest) {
                return Err(format!("unsupported digest {}", entry.digest));
            }
            let one = Reference::with_digest(
                r.registry().to_string(),
                r.repository().to_string(),
                entry.digest.clone(),
            );
            let (bytes, digest) = client
                .pull_manifest_raw(&one, &auth, &[entry.media_type.as_str()])
                .await
                .map_err(|e| words(&e))?;
            if bytes.len() as i64 != entry.size {
                return Err(format!(
                    "manifest {} is {} bytes, its index says {}",
                    entry.digest,
                    bytes.len(),
                    entry.size
                ));
            }
            let doc: ManifestDoc =
                serde_json::from_slice(&bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
            (bytes, digest, doc)
        }
        None => (bytes, digest, doc),
    };
    let media_type = doc
        .media_type
        .clone()
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string());
    let config = doc
        .config
        .ok_or_else(|| "the manifest names no config".to_string())?;
    let blobs: Vec<BlobRef> = std::iter::once(config).chain(doc.layers).collect();
    if let Some(b) = blobs.iter().find(|b| !sha256_ok(&b.digest)) {
        return Err(format!("unsupported digest {}", b.digest));
    }
    if !sha256_ok(&digest) {
        return Err(format!("unsupported manifest digest {digest}"));
    }
    Ok(Pulled {
        bytes: bytes.to_vec(),
        digest,
        media_type,
        blobs,
    })
}

/// Pulls one blob into `dir/HEX`, checked against its digest (oci-client verifies it as it
/// streams) and its size.
async fn blob(client: &Client, r: &Reference, b: &BlobRef, dir: &Path) -> Result<PathBuf, String> {
    let hex = b.digest.trim_start_matches("sha256:");
    let path = dir.join(hex);
    let file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let desc = OciDescriptor {
        media_type: b.media_type.clone(),
        digest: b.digest.clone(),
        size: b.size,
        ..Default::default()
    };
    client
        .pull_blob(r, &desc, file)
        .await
        .map_err(|e| format!("blob {}: {}", b.digest, words(&e)))?;
    let len = tokio::fs::metadata(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len as i64 != b.size {
        return Err(format!(
            "blob {} is {len} bytes, the manifest says {}",
            b.digest, b.size
        ));
    }
    Ok(path)
}

/// Writes the OCI image layout archive `dest` (through `dest.part`).
fn write_archive(
    dest: &Path,
    reference: &str,
    image: &Pulled,
    blobs: &[(String, PathBuf)],
) -> std::io::Result<u64> {
    let tag = Reference::try_from(reference)
        .ok()
        .and_then(|r| r.tag().map(str::to_string));
    let mut annotations = serde_json::Map::new();
    annotations.insert("io.containerd.image.name".into(), reference.into());
    if let Some(t) = tag {
        annotations.insert("org.opencontainers.image.ref.name".into(), t.into());
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": image.media_type,
            "digest": image.digest,
            "size": image.bytes.len(),
            "annotations": annotations,
        }],
    });
    let part = dest.with_extension("tar.part");
    let file = std::fs::File::create(&part)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", index.to_string().as_bytes())?;
    add(
        &format!(
            "blobs/sha256/{}",
            image.digest.trim_start_matches("sha256:")
        ),
        &image.bytes,
    )?;
    let mut seen = std::collections::BTreeSet::new();
    for (digest, path) in blobs {
        if !seen.insert(digest.clone()) {
            continue;
        }
        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        tar.append_path_with_name(path, name)?;
    }
    let out = tar.into_inner()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&part, dest)?;
    Ok(std::fs::metadata(dest)?.len())
}

/// Pulls one image from the first source that has it and writes its archive into `to`.
async fn pull_one(
    client: &Client,
    reference: &str,
    sources: &[Source],
    to: &Path,
    arch: &str,
) -> Result<Fetched, FetchError> {
    let parsed = Reference::try_from(reference).map_err(|e| FetchError::Reference {
        reference: reference.to_string(),
        cause: e.to_string(),
    })?;
    let name = qualified(reference);
    let file = archive_name(reference);
    let dest = to.join(&file);
    let mut tried = Vec::new();
    for s in sources {
        let r = at(&parsed, &s.host);
        let image = match manifest(client, &r, arch).await {
            Ok(i) => i,
            Err(e) => {
                tried.push(format!("from {}: {e}", s.url()));
                continue;
            }
        };
        let staging = to.join(format!(".{file}.blobs"));
        let werr = |e: std::io::Error| FetchError::Write {
            path: staging.display().to_string(),
            cause: e.to_string(),
        };
        tokio::fs::create_dir_all(&staging).await.map_err(werr)?;
        let mut blobs = Vec::new();
        let mut failed = None;
        for b in &image.blobs {
            match blob(client, &r, b, &staging).await {
                Ok(p) => blobs.push((b.digest.clone(), p)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            tried.push(format!("from {}: {e}", s.url()));
            continue;
        }
        let (d, n) = (dest.clone(), name.clone());
        let written = tokio::task::spawn_blocking(move || {
            write_archive(&d, &n, &image, &blobs).map(|b| (b, image.digest))
        })
        .await;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let (bytes, digest) = written
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| FetchError::Write {
                path: dest.display().to_string(),
                cause: e.to_string(),
            })?;
        return Ok(Fetched::Pulled {
            reference: reference.to_string(),
            file,
            digest,
            bytes,
            from: s.url(),
        });
    }
    Err(FetchError::Pull {
        reference: reference.to_string(),
        tried,
    })
}

/// The Go name of this machine's architecture, the default platform to pull.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Pulls every image of `crate::cluster_images::needed` into `to` (created when missing) for
/// `linux/arch`, at most four at once; one result per image, in the list's order.
pub async fn fetch(
    inv: &Inventory,
    to: &Path,
    arch: &str,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    tokio::fs::create_dir_all(to)
        .await
        .map_err(|e| FetchError::Write {
            path: to.display().to_string(),
            cause: e.to_string(),
        })?;
    let dir = to.to_path_buf();
    let have = tokio::task::spawn_blocking(move || crate::images::scan(&dir))
        .await
        .map_err(|e| FetchError::Write {
            path: to.display().to_string(),
            cause: e.to_string(),
        })??;
    let wanted: Vec<String> = crate::cluster_images::needed(inv)
        .into_iter()
        .map(|i| i.reference)
        .collect();
    enum Plan {
        Present(Fetched),
        Bad(FetchError),
        Pull(Vec<Source>),
    }
    let mut plans = Vec::new();
    let mut http_hosts = Vec::new();
    for reference in &wanted {
        let q = qualified(reference);
        let present = have
            .iter()
            .find(|a| a.refs.iter().any(|r| qualified(r) == q));
        let plan = match (present, Reference::try_from(reference.as_str())) {
            (Some(a), _) => Plan::Present(Fetched::Present {
                reference: reference.clone(),
                file: a.file.clone(),
            }),
            (None, Ok(r)) => {
                let s = sources(inv, &r)?;
                http_hosts.extend(s.iter().filter(|s| s.http).map(|s| s.host.clone()));
                Plan::Pull(s)
            }
            (None, Err(e)) => Plan::Bad(FetchError::Reference {
                reference: reference.clone(),
                cause: e.to_string(),
            }),
        };
        plans.push((reference.clone(), plan));
    }
    let client = client(http_hosts);
    let client = &client;
    use futures::StreamExt;
    let results = futures::stream::iter(plans)
        .map(|(reference, plan)| async move {
            match plan {
                Plan::Present(f) => Ok(f),
                Plan::Bad(e) => Err(e),
                Plan::Pull(sources) => pull_one(client, &reference, &sources, to, arch).await,
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_qualified_and_safe() {
        assert_eq!(qualified("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(
            archive_name("registry.k8s.io/pause:3.10.2"),
            "registry.k8s.io_pause_3.10.2.tar"
        );
        assert_eq!(
            archive_name("quay.io/calico/node:v3.29.1"),
            "quay.io_calico_node_v3.29.1.tar"
        );
    }

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let mut inv = crate::inventory::load_str(
            crate::inventory::EMBEDDED_NAME,
            crate::inventory::EMBEDDED_DEFAULT,
            Path::new("."),
        )
        .unwrap()
        .inventory;
        inv.runtime.registry_mirrors.insert(
            "registry.k8s.io".into(),
            vec![
                "http://10.77.0.1:5000/".into(),
                "https://mirror.example".into(),
            ],
        );
        let r = Reference::try_from("registry.k8s.io/pause:3.10.2").unwrap();
        let s = sources(&inv, &r).unwrap();
        let urls: Vec<String> = s.iter().map(Source::url).collect();
        assert_eq!(
            urls,
            [
                "http://10.77.0.1:5000",
                "https://mirror.example",
                "https://registry.k8s.io"
            ]
        );
        inv.runtime
            .registry_mirrors
            .insert("registry.k8s.io".into(), vec!["mirror.example/k8s".into()]);
        assert!(matches!(sources(&inv, &r), Err(FetchError::Mirror { .. })));
    }
}
