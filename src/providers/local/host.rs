//! Running host commands for the local provider, and its prerequisites.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

use super::LocalError;

/// Runs `program args…`, failing with its stderr when it exits non-zero or runs past `limit`.
pub async fn run(program: &str, args: &[&str], limit: Duration) -> Result<String, LocalError> {
    let shown = format!("{program} {}", args.join(" "));
    tracing::debug!(command = %shown, "host command");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LocalError::Command {
            command: shown.clone(),
            cause: e.to_string(),
        })?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| LocalError::Command {
            command: shown.clone(),
            cause: format!("did not finish within {limit:?}"),
        })?
        .map_err(|e| LocalError::Command {
            command: shown.clone(),
            cause: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LocalError::Command {
            command: shown,
            cause: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], but a failure is only logged (for idempotent cleanup of things that may be gone).
pub async fn run_quiet(program: &str, args: &[&str]) -> bool {
    match run(program, args, Duration::from_secs(30)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cleanup step had nothing to do");
            false
        }
    }
}

/// Host programs the local provider needs, and the Debian package of each.
const NEEDED: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("ip", "iproute2"),
    ("mount", "mount"),
];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// True when this process runs with effective UID 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Checks that we are root and the host programs exist; installs missing packages with apt-get.
pub async fn prerequisites() -> Result<(), LocalError> {
    if !is_root() {
        return Err(LocalError::NotRoot);
    }
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(prog, _)| !on_path(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    crate::errln!(
        "installing host packages the local provider needs: {}",
        missing.join(" ")
    );
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    let installed = run("apt-get", &args, Duration::from_secs(600)).await;
    if installed.is_err() {
        run("apt-get", &["update"], Duration::from_secs(300)).await?;
        run("apt-get", &args, Duration::from_secs(600))
            .await
            .map_err(|_| LocalError::Missing {
                command: format!("apt-get install -y {}", missing.join(" ")),
            })?;
    }
    Ok(())
}

/// Each machine's systemd needs several inotify instances; the kernel's default per-user limit
/// (128) runs out at about 20 machines. Raises the limits when they are below what `machines`
/// need (never lowers them) and says so.
pub fn ensure_inotify(machines: usize) -> Result<(), LocalError> {
    let needed_instances = (machines as u64 * 32 + 256).max(1024);
    let needed_watches = (machines as u64 * 8192 + 65536).max(524_288);
    for (name, needed) in [
        ("max_user_instances", needed_instances),
        ("max_user_watches", needed_watches),
    ] {
        let path = std::path::Path::new("/proc/sys/fs/inotify").join(name);
        let current: u64 = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if current < needed {
            std::fs::write(&path, needed.to_string()).map_err(|e| LocalError::io(&path, e))?;
            tracing::warn!(
                "raised fs.inotify.{name} from {current} to {needed} for {machines} local machines"
            );
        }
    }
    Ok(())
}
