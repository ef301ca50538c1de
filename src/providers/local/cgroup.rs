//! Each machine's own cgroup, made before systemd-nspawn starts so the machine's systemd never
//! touches the host's root cgroups: `forgectl/CLUSTER/MACHINE` in the cgroup v2 hierarchy and, on
//! hybrid hosts, in the v1 `name=systemd` one and in every v1 controller (cpu, memory, pids …),
//! so that a kubelet in the machine, which mounts those controllers in the machine's cgroup
//! namespace, sees the machine's own cgroup as its root and never another machine's pods.

use std::path::{Path, PathBuf};

use super::LocalError;

/// Mount points of the hierarchies: (v2 unified, v1 name=systemd, v1 controllers).
fn hierarchies() -> (Option<PathBuf>, Option<PathBuf>, Vec<PathBuf>) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v2 = None;
    let mut v1 = None;
    let mut controllers: Vec<PathBuf> = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = pre.split_whitespace().nth(4).map(PathBuf::from);
        let mut post = post.split_whitespace();
        let fstype = post.next().unwrap_or("");
        let options = post.nth(1).unwrap_or("");
        if fstype == "cgroup2" && v2.is_none() {
            v2 = mount_point;
        } else if fstype == "cgroup" && options.split(',').any(|o| o == "name=systemd") {
            v1 = mount_point;
        } else if fstype == "cgroup"
            && let Some(p) = mount_point
            && !controllers.contains(&p)
        {
            controllers.push(p);
        }
    }
    (v2, v1, controllers)
}

/// The machine's cgroup directories.
#[derive(Debug, Clone)]
pub struct MachineCgroup {
    /// In the v2 hierarchy (freeze, kill).
    pub v2: Option<PathBuf>,
    /// In the v1 name=systemd hierarchy (hybrid hosts).
    pub v1: Option<PathBuf>,
    /// In each v1 controller's hierarchy (hybrid and legacy hosts).
    pub controllers: Vec<PathBuf>,
}

impl MachineCgroup {
    /// The cgroup paths for `machine` of `cluster` (not created yet).
    pub fn new(cluster: &str, machine: &str) -> Self {
        let (v2, v1, controllers) = hierarchies();
        let rel = Path::new("forgectl").join(cluster).join(machine);
        Self {
            v2: v2.map(|p| p.join(&rel)),
            v1: v1.map(|p| p.join(&rel)),
            controllers: controllers.into_iter().map(|p| p.join(&rel)).collect(),
        }
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.v2
            .iter()
            .chain(self.v1.iter())
            .chain(self.controllers.iter())
    }

    /// Creates the directories, level by level. A new cpuset cgroup starts with no CPUs and no
    /// memory nodes, so each level gets its parent's.
    pub fn create(&self) -> Result<(), LocalError> {
        if self.v2.is_none() && self.v1.is_none() {
            return Err(LocalError::NoCgroups);
        }
        for d in self.dirs() {
            let levels: Vec<&Path> = d.ancestors().take(3).collect();
            for level in levels.into_iter().rev() {
                std::fs::create_dir_all(level).map_err(|e| LocalError::io(level, e))?;
                inherit_cpuset(level)?;
            }
        }
        Ok(())
    }

    /// Shell lines that move the current shell into the machine's cgroups.
    pub fn join_script(&self) -> String {
        self.dirs()
            .map(|d| {
                let procs = d.join("cgroup.procs");
                format!(
                    "echo $$ > {}",
                    crate::ssh::shell_quote(&procs.display().to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" && ")
    }

    /// PIDs in the machine's v1 (or v2) cgroup tree, deepest first.
    pub fn pids(&self) -> Vec<i32> {
        let Some(root) = self.v1.as_ref().or(self.v2.as_ref()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for dir in walk(root) {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out
    }

    /// The machine's PID 1 (its systemd), if running.
    pub fn init_pid(&self) -> Option<i32> {
        let root = self.v1.as_ref().or(self.v2.as_ref())?;
        std::fs::read_to_string(root.join("payload/init.scope/cgroup.procs"))
            .ok()?
            .lines()
            .find_map(|l| l.trim().parse().ok())
    }

    /// Freezes (true) or thaws (false) every process of the machine (cgroup v2 freezer) and
    /// waits up to five seconds for the kernel to report it done (freezing is asynchronous).
    pub async fn freeze(&self, frozen: bool) -> Result<(), LocalError> {
        self.request_freeze(frozen)?;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.is_frozen() != frozen && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn request_freeze(&self, frozen: bool) -> Result<(), LocalError> {
        let d = self.v2.as_ref().ok_or(LocalError::NoCgroups)?;
        let f = d.join("cgroup.freeze");
        std::fs::write(&f, if frozen { "1" } else { "0" }).map_err(|e| LocalError::io(&f, e))
    }

    /// True when the machine's cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        self.v2
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.events")).ok())
            .is_some_and(|t| t.lines().any(|l| l == "frozen 1"))
    }

    /// Kills every process of the machine (cgroup v2 `cgroup.kill`, else SIGKILL to each PID).
    pub fn kill_all(&self) {
        let _ = self.request_freeze(false);
        if let Some(d) = &self.v2
            && std::fs::write(d.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for pid in self.pids() {
            super::signal(pid, libc::SIGKILL);
        }
    }

    /// Removes the cgroup directories, deepest first, in every hierarchy (no error if already
    /// gone). A cgroup whose last process is still exiting cannot be removed yet: this retries for
    /// up to ten seconds, so no empty cgroup of the machine's containers is left behind.
    pub async fn remove(&self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut left = 0;
            for d in self.dirs() {
                let mut all = walk(d);
                all.reverse();
                for dir in all {
                    if std::fs::remove_dir(&dir).is_err() && dir.exists() {
                        left += 1;
                    }
                }
                // Remove forgectl/CLUSTER and forgectl/ when empty.
                let mut parent = d.parent();
                for _ in 0..2 {
                    if let Some(p) = parent {
                        let _ = std::fs::remove_dir(p);
                        parent = p.parent();
                    }
                }
            }
            if left == 0 || std::time::Instant::now() >= until {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent when `dir` is a v1 cpuset cgroup that
/// has none yet (no process can join it before).
fn inherit_cpuset(dir: &Path) -> Result<(), LocalError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let Ok(current) = std::fs::read_to_string(&own) else {
            return Ok(());
        };
        if !current.trim().is_empty() {
            continue;
        }
        let Some(parent) = dir.parent() else {
            continue;
        };
        let value = std::fs::read_to_string(parent.join(file))
            .map_err(|e| LocalError::io(&parent.join(file), e))?;
        std::fs::write(&own, value.trim()).map_err(|e| LocalError::io(&own, e))?;
    }
    Ok(())
}

/// `root` and every directory below it, parents before children.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if !d.is_dir() {
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
        out.push(d);
    }
    out.sort_by_key(|p| p.components().count());
    out
}
