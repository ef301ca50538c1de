//! The machines' shared, read-only root filesystem: Debian from debootstrap, built once and cached
//! under a key made of its suite, mirror and package list.

use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::LocalError;
use crate::plan::sha256_hex;
use crate::ssh::shell_quote;

/// Packages every local machine has.
pub const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "python3",
    "curl",
    "sudo",
    "ca-certificates",
];

/// Where caches live: `$FORGECTL_CACHE_DIR`, else `$XDG_CACHE_HOME/forgectl`, else `~/.cache/forgectl`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FORGECTL_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("forgectl");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .join(".cache/forgectl")
}

/// The Debian mirror the host's apt uses (the machines' rootfs comes from the same place).
pub fn host_mirror() -> String {
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    if let Some(uri) = sources
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|u| !u.contains("security"))
    {
        return uri.to_string();
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .filter(|l| l.starts_with("deb "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("http")))
        .find(|u| !u.contains("security"))
        .map(str::to_string)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// What a rootfs is built from.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Debian suite.
    pub suite: String,
    /// Mirror URL.
    pub mirror: String,
    /// Packages, sorted, without duplicates.
    pub packages: Vec<String>,
}

impl Recipe {
    /// The base packages plus `extra`, for `suite` from the host's mirror.
    pub fn new(suite: &str, extra: &[String]) -> Self {
        let mut packages: Vec<String> = BASE_PACKAGES
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .collect();
        packages.sort();
        packages.dedup();
        Self {
            suite: suite.into(),
            mirror: host_mirror(),
            packages,
        }
    }

    /// The cache key: changes whenever the suite, mirror or package list does.
    pub fn key(&self) -> String {
        let text = format!(
            "{}\n{}\n{}",
            self.suite,
            self.mirror,
            self.packages.join(",")
        );
        format!("{}-{}", self.suite, &sha256_hex(text.as_bytes())[..12])
    }
}

/// Removes a directory when dropped (a no-op once it was renamed away).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Returns the cached rootfs for `recipe`, building it first if needed. Builds go to a temporary
/// directory renamed into place at the end, so an interrupted build never leaves a broken cache.
pub async fn ensure(recipe: &Recipe, quiet: bool) -> Result<PathBuf, LocalError> {
    let base = cache_dir().join("rootfs");
    let target = base.join(recipe.key());
    if target.join("usr/sbin/sshd").exists() {
        return Ok(target);
    }
    tokio::fs::create_dir_all(&base)
        .await
        .map_err(|e| LocalError::io(&base, e))?;
    let tmp = base.join(format!(".build-{}-{}", recipe.key(), std::process::id()));
    let _ = tokio::fs::remove_dir_all(&tmp).await;
    // Removes the half-built tree if this future is dropped (Ctrl-C) or fails.
    let _cleanup = RemoveOnDrop(tmp.clone());
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_message(format!(
        "building the machines' root filesystem ({} from {}), once",
        recipe.suite, recipe.mirror
    ));
    let result = debootstrap(recipe, &tmp, &bar).await;
    match result {
        Ok(()) => {
            bar.finish_with_message(format!("root filesystem ready: {}", target.display()));
            if let Err(e) = tokio::fs::rename(&tmp, &target).await {
                // Another run finished first: use its result.
                let _ = tokio::fs::remove_dir_all(&tmp).await;
                if !target.join("usr/sbin/sshd").exists() {
                    return Err(LocalError::io(&target, e));
                }
            }
            Ok(target)
        }
        Err(e) => {
            bar.abandon_with_message("root filesystem build failed");
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            Err(e)
        }
    }
}

async fn debootstrap(recipe: &Recipe, dir: &Path, bar: &ProgressBar) -> Result<(), LocalError> {
    let include = format!("--include={}", recipe.packages.join(","));
    let shown = format!(
        "debootstrap --variant=minbase {include} {} {} {}",
        recipe.suite,
        dir.display(),
        recipe.mirror
    );
    // stderr joins stdout so the error lines end up in the message, and the pipe never fills.
    let script = format!(
        "exec debootstrap --variant=minbase {} {} {} {} 2>&1",
        shell_quote(&include),
        shell_quote(&recipe.suite),
        shell_quote(&dir.display().to_string()),
        shell_quote(&recipe.mirror)
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LocalError::Command {
            command: shown.clone(),
            cause: e.to_string(),
        })?;
    let mut log = Vec::new();
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(step) = line.strip_prefix("I: ") {
                bar.set_message(format!("rootfs: {step}"));
            }
            log.push(line);
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(1200), child.wait())
        .await
        .map_err(|_| LocalError::Command {
            command: shown.clone(),
            cause: "did not finish within 20 minutes".into(),
        })?
        .map_err(|e| LocalError::Command {
            command: shown.clone(),
            cause: e.to_string(),
        })?;
    if !status.success() {
        let tail: Vec<&String> = log.iter().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().map(String::as_str).collect();
        return Err(LocalError::Command {
            command: shown,
            cause: tail.join("\n"),
        });
    }
    Ok(())
}
