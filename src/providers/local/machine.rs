//! One local machine: an overlay root over the shared rootfs, its own host key, the cluster's SSH
//! key, and systemd-nspawn running real systemd as PID 1 in the machine's own namespaces.

use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::LocalError;
use super::cgroup::MachineCgroup;
use super::host::run;
use super::net::MachineNet;

/// What forgectl records about a machine it made (`machine.json` in its directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Machine name.
    pub name: String,
    /// Network pieces.
    pub net: MachineNet,
    /// The machine's public host key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    /// PID of its systemd-nspawn process while running.
    pub nspawn_pid: Option<i32>,
}

/// Paths of a machine's directory.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The machine's directory.
    pub base: PathBuf,
}

impl Dirs {
    /// `machines_dir/NAME`.
    pub fn new(machines_dir: &Path, name: &str) -> Self {
        Self {
            base: machines_dir.join(name),
        }
    }
    /// Overlay upper dir: everything the machine writes (its disk).
    pub fn upper(&self) -> PathBuf {
        self.base.join("upper")
    }
    /// Overlay work dir.
    pub fn work(&self) -> PathBuf {
        self.base.join("work")
    }
    /// The machine's root (overlay mount point).
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }
    /// Console output of systemd-nspawn.
    pub fn console(&self) -> PathBuf {
        self.base.join("console.log")
    }
    /// The record.
    pub fn record(&self) -> PathBuf {
        self.base.join("machine.json")
    }
    /// containerd's state, bind-mounted at /var/lib/containerd: its overlay snapshots cannot live
    /// on the machine's overlay root (overlay on overlay).
    pub fn containerd(&self) -> PathBuf {
        self.base.join("containerd")
    }
}

/// Kernel settings kubelet checks at start and would change when they differ (it fails when it
/// cannot: /proc/sys is read-only in a machine). They are host-wide, and a panic setting changed
/// behind the user's back could reboot the host, so the host keeps its values: a machine whose
/// host differs sees kubelet's value in a read-only file over the setting, and only there.
pub const KUBELET_KERNEL_SETTINGS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// Capabilities a machine gets beyond systemd-nspawn's default set: CAP_NET_ADMIN (kube-proxy,
/// CNI plugins, containerd's network namespaces), CAP_IPC_LOCK (etcd, kubelet), and
/// CAP_SYS_RESOURCE where the host has it (lower OOM scores for system pods).
fn capabilities() -> String {
    let mut caps = vec!["CAP_NET_ADMIN", "CAP_IPC_LOCK"];
    if host_has_capability(24) {
        caps.push("CAP_SYS_RESOURCE");
    }
    caps.join(",")
}

/// True when this process's bounding set holds capability number `bit`.
pub fn host_has_capability(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << bit) != 0)
}

/// Where a machine keeps the files of its kernel setting views (inside its root: systemd-nspawn
/// mounts over /proc from inside the machine).
const KERNEL_VIEWS: &str = "etc/forgectl/kernel";

/// The `--bind-ro` arguments that show kubelet's kernel settings where the host's differ, after
/// writing their files into the machine's root.
fn kernel_views(dirs: &Dirs) -> Result<Vec<String>, LocalError> {
    let dir = dirs.root().join(KERNEL_VIEWS);
    let mut args = Vec::new();
    for (setting, want) in KUBELET_KERNEL_SETTINGS {
        let host =
            std::fs::read_to_string(Path::new("/proc/sys").join(setting)).unwrap_or_default();
        if host.trim() == *want {
            continue;
        }
        let name = setting.replace('/', ".");
        write_mode(&dir.join(&name), &format!("{want}\n"), 0o444)?;
        args.push(format!(
            "--bind-ro=/{KERNEL_VIEWS}/{name}:/proc/sys/{setting}"
        ));
    }
    Ok(args)
}

/// Reads a machine's record.
pub fn load_record(dirs: &Dirs) -> Option<Record> {
    let text = std::fs::read_to_string(dirs.record()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes a machine's record (0600).
pub fn save_record(dirs: &Dirs, rec: &Record) -> Result<(), LocalError> {
    let p = dirs.record();
    let text = serde_json::to_string_pretty(rec).unwrap_or_default();
    std::fs::write(&p, text).map_err(|e| LocalError::io(&p, e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LocalError::io(&p, e))
}

/// True when `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let target = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(target.as_str()))
}

/// Mounts the overlay root if it is not mounted yet.
pub async fn mount_root(dirs: &Dirs, rootfs: &Path) -> Result<(), LocalError> {
    for d in [dirs.upper(), dirs.work(), dirs.root()] {
        std::fs::create_dir_all(&d).map_err(|e| LocalError::io(&d, e))?;
    }
    std::fs::set_permissions(&dirs.base, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| LocalError::io(&dirs.base, e))?;
    if is_mounted(&dirs.root()) {
        return Ok(());
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        rootfs.display(),
        dirs.upper().display(),
        dirs.work().display()
    );
    let root = dirs.root().display().to_string();
    run(
        "mount",
        &["-t", "overlay", "overlay", "-o", &opts, &root],
        Duration::from_secs(30),
    )
    .await?;
    Ok(())
}

/// Unmounts the overlay root (lazily if busy; no error if not mounted).
pub async fn unmount_root(dirs: &Dirs) {
    let root = dirs.root().display().to_string();
    if is_mounted(&dirs.root())
        && run("umount", &[&root], Duration::from_secs(30))
            .await
            .is_err()
    {
        let _ = run("umount", &["-l", &root], Duration::from_secs(30)).await;
    }
}

fn random_seed() -> Result<[u8; 32], LocalError> {
    let mut seed = [0u8; 32];
    let p = Path::new("/dev/urandom");
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| LocalError::io(p, e))?;
    Ok(seed)
}

/// A new ed25519 key pair: (private key in OpenSSH format, public key line).
pub fn new_ed25519(comment: &str) -> Result<(String, String), LocalError> {
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&random_seed()?));
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| LocalError::Key(e.to_string()))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| LocalError::Key(e.to_string()))?;
    Ok((private, public))
}

fn write_mode(path: &Path, data: &str, mode: u32) -> Result<(), LocalError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| LocalError::io(parent, e))?;
    }
    std::fs::write(path, data).map_err(|e| LocalError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LocalError::io(path, e))
}

/// The script that makes the machine's cgroup v1 controller mounts writable.
const CGROUP_RW_SCRIPT: &str = "/usr/local/lib/forgectl/cgroup-rw";
/// Its text: every cgroup v1 mount under /sys/fs/cgroup, remounted writable (this mount only;
/// the hierarchy is the host's, seen from the machine's own cgroup down).
const CGROUP_RW: &str = "#!/bin/sh\n# Written by forgectl's local provider.\n\
for d in /sys/fs/cgroup/*; do\n\
    if [ \"$(stat -fc %T \"$d\")\" = cgroupfs ]; then mount -o remount,bind,rw \"$d\"; fi\n\
done\n";

/// First-boot setup in the machine's root: its own host key (the shared rootfs' keys are removed),
/// the cluster's key for root, and its host name. Returns the public host key line.
pub fn customize(dirs: &Dirs, name: &str, authorized_key: &str) -> Result<String, LocalError> {
    let root = dirs.root();
    let ssh = root.join("etc/ssh");
    if let Ok(entries) = std::fs::read_dir(&ssh) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let (private, public) = new_ed25519(&format!("root@{name}"))?;
    write_mode(&ssh.join("ssh_host_ed25519_key"), &private, 0o600)?;
    write_mode(
        &ssh.join("ssh_host_ed25519_key.pub"),
        &format!("{public}\n"),
        0o644,
    )?;
    let dot_ssh = root.join("root/.ssh");
    write_mode(
        &dot_ssh.join("authorized_keys"),
        &format!("{}\n", authorized_key.trim()),
        0o600,
    )?;
    std::fs::set_permissions(&dot_ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| LocalError::io(&dot_ssh, e))?;
    write_mode(&root.join("etc/hostname"), &format!("{name}\n"), 0o644)?;
    // systemd-nspawn mounts the host's cgroup v1 controllers read-only (each rooted at the
    // machine's own cgroup, in its cgroup namespace); kubelet and runc create cgroups there.
    write_mode(
        &root.join(CGROUP_RW_SCRIPT.trim_start_matches('/')),
        CGROUP_RW,
        0o755,
    )?;
    write_mode(
        &root.join("etc/systemd/system/forgectl-cgroup-rw.service"),
        &format!(
            "[Unit]\nDescription=forgectl: this machine's own cgroup v1 controllers writable\n\
             DefaultDependencies=no\nBefore=sysinit.target containerd.service kubelet.service\n\n\
             [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart={CGROUP_RW_SCRIPT}\n\n\
             [Install]\nWantedBy=sysinit.target\n"
        ),
        0o644,
    )?;
    let wants = root.join("etc/systemd/system/sysinit.target.wants");
    std::fs::create_dir_all(&wants).map_err(|e| LocalError::io(&wants, e))?;
    let link = wants.join("forgectl-cgroup-rw.service");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("/etc/systemd/system/forgectl-cgroup-rw.service", &link)
            .map_err(|e| LocalError::io(&link, e))?;
    }
    // A throwaway machine keeps its journal in memory: journald writing and syncing files on a
    // busy host disk has stalled everything that logs (sshd, a starting service) for a minute.
    write_mode(
        &root.join("etc/systemd/journald.conf.d/forgectl.conf"),
        "# Written by forgectl's local provider: the journal of a throwaway machine lives in memory.\n\
         [Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n",
        0o644,
    )?;
    // kubelet's OOM watcher reads /dev/kmsg, which a machine has not: it reads the machine's
    // console instead (as kind does), never the host's kernel log.
    write_mode(
        &root.join("etc/tmpfiles.d/forgectl-kmsg.conf"),
        "L /dev/kmsg - - - - /dev/console\n",
        0o644,
    )?;
    Ok(public)
}

/// Starts systemd-nspawn for the machine, detached from forgectl (it keeps running after forgectl
/// exits), inside the machine's own cgroup. Returns its PID. Open files: 1024 soft, 524288 hard, as
/// systemd gives a real machine (haproxy, containerd and kubelet raise their soft limit). What
/// containerd, runc and kubelet need beyond a plain machine: the capabilities above, the keyring
/// system calls (runc gives each container its own session keyring), containerd's state on the
/// host's file system, and kubelet's kernel settings.
pub fn spawn(
    dirs: &Dirs,
    name: &str,
    net: &MachineNet,
    cg: &MachineCgroup,
) -> Result<i32, LocalError> {
    cg.create()?;
    let containerd = dirs.containerd();
    std::fs::create_dir_all(&containerd).map_err(|e| LocalError::io(&containerd, e))?;
    let mut extra = kernel_views(dirs)?;
    extra.push(format!(
        "--bind={}:/var/lib/containerd",
        containerd.display()
    ));
    let console = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dirs.console())
        .map_err(|e| LocalError::io(&dirs.console(), e))?;
    let console2 = console
        .try_clone()
        .map_err(|e| LocalError::io(&dirs.console(), e))?;
    // Every argument quoted for the shell: a state dir with a space in its path stays one word.
    let q = |arg: String| crate::ssh::shell_quote(&arg);
    let script = format!(
        "{} && exec systemd-nspawn --quiet --boot {} {} {} --register=no --keep-unit \
         --console=read-only --rlimit=NOFILE=1024:524288 --capability={} \
         '--system-call-filter=add_key keyctl request_key' {}",
        cg.join_script(),
        q(format!("--directory={}", dirs.root().display())),
        q(format!("--machine={name}")),
        q(format!("--network-namespace-path=/run/netns/{}", net.netns)),
        capabilities(),
        extra.into_iter().map(q).collect::<Vec<_>>().join(" ")
    );
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::from(console))
        .stderr(Stdio::from(console2))
        // Its own process group: a Ctrl-C meant for forgectl does not reach the machine.
        .process_group(0)
        .spawn()
        .map_err(|e| LocalError::Command {
            command: script.clone(),
            cause: e.to_string(),
        })?;
    Ok(child.id() as i32)
}

/// True when `pid` is a live (not zombie) systemd-nspawn for this machine's root.
pub fn is_our_nspawn(pid: i32, dirs: &Dirs) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
    if matches!(state, None | Some('Z') | Some('X')) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline.contains("systemd-nspawn")
        && cmdline.contains(&format!("--directory={}", dirs.root().display()))
}

/// Waits until `pid` is gone or `limit` passes; true when gone.
pub async fn wait_exit(pid: i32, dirs: &Dirs, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if !is_our_nspawn(pid, dirs) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !is_our_nspawn(pid, dirs)
}

/// Asks the machine's systemd for its state (`running`, `degraded`, `starting` …) from the host.
pub async fn system_state(init_pid: i32) -> Option<String> {
    let pid = init_pid.to_string();
    let out = tokio::process::Command::new("nsenter")
        .args([
            "--target",
            &pid,
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--",
            "systemctl",
            "is-system-running",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), out)
        .await
        .ok()?
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}
