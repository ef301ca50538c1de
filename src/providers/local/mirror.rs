//! The machines' package mirror: Debian packages the host downloads (with their dependencies,
//! minus what the rootfs already has), indexed as a flat apt repository, and any files (tarballs)
//! beside them, served over HTTP on the bridge address while forgectl works. The machines have no
//! route out; this is how software reaches them, as on an air-gapped site.

use flate2::{Compression, write::GzEncoder};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::LocalError;
use super::host::run;
use super::rootfs::cache_dir;
use crate::plan::sha256_hex;

/// The mirror's port on the bridge address (the address belongs to the cluster's bridge, so the
/// pair is the cluster's own).
pub const PORT: u16 = 8079;

const T: Duration = Duration::from_secs(600);

/// Names of the packages installed in a rootfs.
fn installed(rootfs: &Path) -> BTreeSet<String> {
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap_or_default();
    let mut out = BTreeSet::new();
    for para in status.split("\n\n") {
        let name = para.lines().find_map(|l| l.strip_prefix("Package: "));
        let ok = para.lines().any(|l| l == "Status: install ok installed");
        if let (Some(n), true) = (name, ok) {
            out.insert(n.to_string());
        }
    }
    out
}

async fn dependencies(packages: &[String]) -> Result<BTreeSet<String>, LocalError> {
    let mut args = vec![
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
    ];
    args.extend(packages.iter().map(String::as_str));
    let text = match run("apt-cache", &args, T).await {
        Ok(t) => t,
        Err(_) => {
            // The host's package lists may be missing or stale.
            run("apt-get", &["update", "-qq"], T).await?;
            run("apt-cache", &args, T).await?
        }
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(|l| l.split(':').next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Builds (or reuses) the repository for `packages` and `files`, keyed by their names, without
/// the packages `rootfs` already has. Returns its directory.
pub async fn build(
    packages: &[String],
    files: &[PathBuf],
    rootfs: &Path,
) -> Result<PathBuf, LocalError> {
    let mut names: Vec<String> = packages.to_vec();
    names.sort();
    names.dedup();
    let file_names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let key = sha256_hex(
        format!(
            "{}\n{}\n{}",
            rootfs.display(),
            names.join(","),
            file_names.join(",")
        )
        .as_bytes(),
    );
    let dir = cache_dir().join("mirror").join(&key[..16]);
    if dir.join("Release").exists() {
        return Ok(dir);
    }
    let tmp = dir.with_extension(format!("build-{}", std::process::id()));
    let pool = tmp.join("pool");
    std::fs::create_dir_all(&pool).map_err(|e| LocalError::io(&pool, e))?;
    let have = installed(rootfs);
    let want: Vec<String> = if names.is_empty() {
        Vec::new()
    } else {
        dependencies(&names)
            .await?
            .into_iter()
            .filter(|p| !have.contains(p))
            .collect()
    };
    if !want.is_empty() {
        let mut args = vec!["download", "-qq"];
        args.extend(want.iter().map(String::as_str));
        let out = tokio::process::Command::new("apt-get")
            .args(&args)
            .current_dir(&pool)
            .output()
            .await
            .map_err(|e| LocalError::Command {
                command: format!("apt-get {}", args.join(" ")),
                cause: e.to_string(),
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(LocalError::Command {
                command: format!("apt-get {}", args.join(" ")),
                cause: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    index(&tmp).await?;
    let files_dir = tmp.join("files");
    std::fs::create_dir_all(&files_dir).map_err(|e| LocalError::io(&files_dir, e))?;
    for f in files {
        let name = f.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        std::fs::copy(f, files_dir.join(name)).map_err(|e| LocalError::io(f, e))?;
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another run built it meanwhile.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// Writes `Packages`, `Packages.gz` and `Release` for the .deb files in `repo/pool`.
async fn index(repo: &Path) -> Result<(), LocalError> {
    let pool = repo.join("pool");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&pool)
        .map_err(|e| LocalError::io(&pool, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    let mut packages = String::new();
    for deb in &debs {
        let control = run("dpkg-deb", &["-f", &deb.display().to_string()], T).await?;
        let bytes = std::fs::read(deb).map_err(|e| LocalError::io(deb, e))?;
        let name = deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        packages.push_str(control.trim_end());
        packages.push_str(&format!(
            "\nFilename: pool/{name}\nSize: {}\nSHA256: {}\n\n",
            bytes.len(),
            sha256_hex(&bytes)
        ));
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(packages.as_bytes())
        .and_then(|_| gz.flush())
        .map_err(|e| LocalError::io(repo, e))?;
    let gz = gz.finish().map_err(|e| LocalError::io(repo, e))?;
    let release = format!(
        "Origin: forgectl\nLabel: forgectl local mirror\nSuite: local\nCodename: local\nSHA256:\n {} {} Packages\n {} {} Packages.gz\n",
        sha256_hex(packages.as_bytes()),
        packages.len(),
        sha256_hex(&gz),
        gz.len()
    );
    for (name, data) in [
        ("Packages", packages.as_bytes()),
        ("Packages.gz", &gz[..]),
        ("Release", release.as_bytes()),
    ] {
        let p = repo.join(name);
        std::fs::write(&p, data).map_err(|e| LocalError::io(&p, e))?;
    }
    Ok(())
}

/// A running mirror server; stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// The apt source line for machines.
    pub fn apt_source(&self) -> String {
        format!("deb [trusted=yes] http://{}/ ./", self.addr)
    }

    /// Stops serving now and returns once the port is free again (so another mirror can take
    /// it). Only for when no machine is downloading: open connections are cut.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serves `repo` read-only over HTTP on `addr` until the returned [`Server`] is dropped.
pub async fn serve(repo: &Path, addr: SocketAddr) -> Result<Server, LocalError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| LocalError::Command {
            command: format!("listen on {addr} for the package mirror"),
            cause: e.to_string(),
        })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(repo));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "package mirror stopped");
        }
    });
    Ok(Server {
        addr,
        stop: Some(tx),
        task: Some(task),
    })
}
