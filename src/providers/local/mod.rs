//! The `local` provider: throwaway machines on this Linux box, each with real systemd and sshd,
//! on a private bridge. Used by the tests and by people who want a cluster on a laptop.

mod cgroup;
mod host;
mod machine;
pub mod mirror;
pub mod net;
pub mod rootfs;

use serde::Serialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::interrupt::Interrupt;
use crate::inventory::{Loaded, Machine};
use cgroup::MachineCgroup;
pub use host::is_root;
pub use machine::new_ed25519;
use machine::{Dirs, Record};
use net::MachineNet;

/// Why the local provider failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Namespaces, mounts and cgroups need root.
    #[error("the local provider needs root (it creates namespaces, mounts and cgroups)")]
    NotRoot,
    /// A host package is missing and could not be installed.
    #[error("host prerequisites are missing; install them with: {command}")]
    Missing {
        /// The command to run.
        command: String,
    },
    /// A host command failed.
    #[error("`{command}` failed: {cause}")]
    Command {
        /// The command.
        command: String,
        /// Its error output.
        cause: String,
    },
    /// A file operation failed.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        cause: String,
    },
    /// No cgroup hierarchy to put machines in.
    #[error("no cgroup v2 or name=systemd hierarchy is mounted; machines need their own cgroup")]
    NoCgroups,
    /// Key generation failed.
    #[error("cannot make an SSH key: {0}")]
    Key(String),
    /// A machine did not boot in time.
    #[error(
        "machine {machine} did not finish booting within {after:?} (state: {state}); last console lines:\n{console}"
    )]
    Boot {
        /// Machine.
        machine: String,
        /// How long it waited.
        after: Duration,
        /// Last state systemd reported.
        state: String,
        /// The end of the console log.
        console: String,
    },
    /// The machine is not known to this cluster's state.
    #[error("no local machine named {0} in this cluster (see `forgectl machines list`)")]
    Unknown(String),
    /// The machine is not in a state where the verb makes sense.
    #[error("machine {machine} is {state}; cannot {verb} it")]
    WrongState {
        /// Machine.
        machine: String,
        /// Current state.
        state: String,
        /// The verb.
        verb: String,
    },
    /// Another state dir already runs a machine with the same names on this host.
    #[error(
        "machine {machine}: network namespace {netns} already exists but this state dir ({state}) did not make it; \
         another forgectl state dir probably runs a cluster with the same name on this host"
    )]
    Conflict {
        /// Machine.
        machine: String,
        /// The namespace in the way.
        netns: String,
        /// This state dir.
        state: String,
    },
    /// The machines' network is used on this host already (another local cluster's bridge, or a
    /// network of the host's own).
    #[error(
        "network.machine_cidr {network} overlaps {other} on {iface}, which this host uses already \
         (another local cluster's bridge, or one of the host's networks): give this cluster a network \
         of its own (`forgectl init` picks a free 10.77.N.0/24)"
    )]
    NetworkInUse {
        /// This cluster's machine network.
        network: String,
        /// The interface in the way.
        iface: String,
        /// Its network.
        other: String,
    },
    /// Interrupted (Ctrl-C) while creating machines; what was created was removed again.
    #[error("interrupted; the machines created by this run were removed")]
    Interrupted,
}

impl LocalError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            cause: e.to_string(),
        }
    }
}

/// The last `n` lines of a console log, indented.
fn console_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `sig` to `pid` (only PIDs verified to be ours are passed here).
pub(crate) fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; a wrong PID is an error code, not UB.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// What a machine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Booted (or booting) and reachable.
    Running,
    /// Running but its processes are frozen.
    Frozen,
    /// Running but cut off the network.
    Cut,
    /// Exists (disk kept) but not running.
    Stopped,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Frozen => "frozen",
            Self::Cut => "cut",
            Self::Stopped => "stopped",
        })
    }
}

/// A local machine as `machines list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Name.
    pub name: String,
    /// Address on the bridge.
    pub address: IpAddr,
    /// State.
    pub state: State,
    /// systemd-nspawn's PID when running.
    pub pid: Option<i32>,
}

/// The fault and lifecycle verbs of `forgectl machines`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Clean poweroff (keeps the disk).
    Stop,
    /// Boot a stopped machine.
    Start,
    /// Crash: SIGKILL to the machine's PID 1.
    Kill,
    /// Hang: freeze every process.
    Freeze,
    /// Undo freeze.
    Thaw,
    /// Unplug the network.
    Cut,
    /// Plug it back in.
    Heal,
}

/// The local provider for one cluster.
pub struct LocalProvider {
    cluster: String,
    state_dir: PathBuf,
    bridge: String,
    network: ipnet::IpNet,
    host_address: IpAddr,
    recipe: rootfs::Recipe,
    quiet: bool,
    boot_timeout: Duration,
}

impl LocalProvider {
    /// The provider for `inv`, keeping its machines under `state_dir/local`.
    pub fn new(inv: &Loaded, state_dir: &Path, quiet: bool) -> Self {
        let i = &inv.inventory;
        let local = i.local.clone().unwrap_or_default();
        let network = i.network.machine_cidr.0;
        Self {
            cluster: i.name.clone(),
            state_dir: state_dir.to_path_buf(),
            bridge: net::bridge_name(&i.name, local.bridge.as_deref()),
            host_address: network.hosts().next().unwrap_or(network.addr()),
            network,
            recipe: rootfs::Recipe::new(&local.suite, &local.extra_packages),
            quiet,
            boot_timeout: Duration::from_secs(90),
        }
    }

    fn machines_dir(&self) -> PathBuf {
        self.state_dir.join("local/machines")
    }

    /// The known_hosts file with every machine's host key (forgectl makes the keys, so it knows them).
    pub fn known_hosts(&self) -> PathBuf {
        self.state_dir.join("known_hosts")
    }

    /// Names of every machine directory, finished or not.
    fn all_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.machines_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Names of machines that exist (running or stopped).
    pub fn existing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.machines_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("machine.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Makes sure every machine exists and runs, booted, with `authorized_key` for root. Machines that
    /// already run are left alone. If anything fails or Ctrl-C arrives, the machines this call
    /// created are removed again (machines that existed before are kept).
    pub async fn ensure(
        &self,
        machines: &[&Machine],
        authorized_key: &str,
        interrupt: &Interrupt,
    ) -> Result<Vec<Status>, LocalError> {
        host::prerequisites().await?;
        if let Some((iface, other)) = net::overlaps(self.network, &self.bridge).into_iter().next() {
            return Err(LocalError::NetworkInUse {
                network: self.network.to_string(),
                iface,
                other: other.to_string(),
            });
        }
        host::ensure_inotify(machines.len().max(self.existing().len()))?;
        let rootfs = tokio::select! {
            r = rootfs::ensure(&self.recipe, self.quiet) => r?,
            _ = interrupt.wait() => return Err(LocalError::Interrupted),
        };
        let made_bridge = net::ensure_bridge(&self.bridge, self.host_address, self.network).await?;
        let before = self.existing();
        let work = async {
            let starts = machines
                .iter()
                .map(|m| self.bring_up(m, &rootfs, authorized_key));
            let results = futures::future::join_all(starts).await;
            results.into_iter().collect::<Result<Vec<_>, _>>()
        };
        let outcome = tokio::select! {
            r = work => r,
            _ = interrupt.wait() => Err(LocalError::Interrupted),
        };
        match outcome {
            Ok(statuses) => {
                self.write_known_hosts()?;
                Ok(statuses)
            }
            Err(e) => {
                // Every directory this call made goes, including machines interrupted before
                // their record was written (their root may already be mounted).
                let created: Vec<String> = self
                    .all_dirs()
                    .into_iter()
                    .filter(|n| !before.contains(n))
                    .collect();
                for name in &created {
                    self.remove(name).await;
                }
                // Only a bridge this call made goes: it may carry machines of another state dir.
                if made_bridge && self.existing().is_empty() {
                    net::remove_bridge(&self.bridge).await;
                }
                Err(e)
            }
        }
    }

    async fn bring_up(
        &self,
        m: &Machine,
        rootfs: &Path,
        authorized_key: &str,
    ) -> Result<Status, LocalError> {
        let address = m.address.ok_or_else(|| LocalError::Io {
            path: m.name.clone(),
            cause: "the machine has no address".into(),
        })?;
        let dirs = Dirs::new(&self.machines_dir(), &m.name);
        let cg = MachineCgroup::new(&self.cluster, &m.name);
        let mut record = machine::load_record(&dirs);
        if let Some(r) = &record
            && r.nspawn_pid
                .is_some_and(|p| machine::is_our_nspawn(p, &dirs))
        {
            return Ok(self.status_of(r, &dirs, &cg).await);
        }
        let mnet = MachineNet::new(&self.cluster, &m.name, address);
        if record.is_none() && net::netns_exists(&mnet.netns).await? {
            return Err(LocalError::Conflict {
                machine: m.name.clone(),
                netns: mnet.netns,
                state: self.state_dir.display().to_string(),
            });
        }
        std::fs::create_dir_all(&dirs.base).map_err(|e| LocalError::io(&dirs.base, e))?;
        machine::mount_root(&dirs, rootfs).await?;
        let host_key = match &record {
            Some(r) => r.host_key.clone(),
            None => machine::customize(&dirs, &m.name, authorized_key)?,
        };
        let mut rec = record.take().unwrap_or(Record {
            name: m.name.clone(),
            net: mnet.clone(),
            host_key,
            nspawn_pid: None,
        });
        machine::save_record(&dirs, &rec)?;
        net::ensure_machine(&self.bridge, &rec.net, self.network.prefix_len()).await?;
        let pid = machine::spawn(&dirs, &m.name, &rec.net, &cg)?;
        rec.nspawn_pid = Some(pid);
        machine::save_record(&dirs, &rec)?;
        self.wait_booted(&m.name, &dirs, &cg, &rec).await?;
        Ok(self.status_of(&rec, &dirs, &cg).await)
    }

    async fn wait_booted(
        &self,
        name: &str,
        dirs: &Dirs,
        cg: &MachineCgroup,
        rec: &Record,
    ) -> Result<(), LocalError> {
        let started = Instant::now();
        let mut last = String::from("not started");
        let mut gone = 0;
        while started.elapsed() < self.boot_timeout {
            // /proc/PID/cmdline is briefly empty while the shell execs systemd-nspawn: only a
            // process missing three times in a row has exited.
            if !rec
                .nspawn_pid
                .is_some_and(|p| machine::is_our_nspawn(p, dirs))
            {
                gone += 1;
                if gone >= 3 {
                    last = "systemd-nspawn exited".into();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            gone = 0;
            if let Some(pid1) = cg.init_pid()
                && let Some(state) = machine::system_state(pid1).await
            {
                if matches!(state.as_str(), "running" | "degraded") {
                    let sshd = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio::net::TcpStream::connect((rec.net.address, 22)),
                    )
                    .await;
                    if matches!(sshd, Ok(Ok(_))) {
                        return Ok(());
                    }
                    last = format!("{state}, sshd not answering yet");
                } else {
                    last = state;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(LocalError::Boot {
            machine: name.into(),
            after: self.boot_timeout,
            state: last,
            console: console_tail(&dirs.console(), 15),
        })
    }

    async fn status_of(&self, rec: &Record, dirs: &Dirs, cg: &MachineCgroup) -> Status {
        let running = rec.nspawn_pid.filter(|p| machine::is_our_nspawn(*p, dirs));
        let state = match running {
            None => State::Stopped,
            Some(_) if cg.is_frozen() => State::Frozen,
            Some(_) if !net::link_up(&rec.net).await => State::Cut,
            Some(_) => State::Running,
        };
        Status {
            name: rec.name.clone(),
            address: rec.net.address,
            state,
            pid: running,
        }
    }

    fn write_known_hosts(&self) -> Result<(), LocalError> {
        let mut lines = String::new();
        for name in self.existing() {
            if let Some(r) = machine::load_record(&Dirs::new(&self.machines_dir(), &name)) {
                lines.push_str(&format!("{} {}\n", r.net.address, r.host_key.trim()));
            }
        }
        let p = self.known_hosts();
        std::fs::write(&p, lines).map_err(|e| LocalError::io(&p, e))
    }

    /// Every machine this cluster has, with its state.
    pub async fn list(&self) -> Vec<Status> {
        let mut out = Vec::new();
        for name in self.existing() {
            let dirs = Dirs::new(&self.machines_dir(), &name);
            if let Some(r) = machine::load_record(&dirs) {
                out.push(
                    self.status_of(&r, &dirs, &MachineCgroup::new(&self.cluster, &name))
                        .await,
                );
            }
        }
        out
    }

    /// Applies a lifecycle or fault verb to one machine.
    pub async fn apply(&self, name: &str, verb: Verb) -> Result<Status, LocalError> {
        let dirs = Dirs::new(&self.machines_dir(), name);
        let mut rec =
            machine::load_record(&dirs).ok_or_else(|| LocalError::Unknown(name.into()))?;
        let cg = MachineCgroup::new(&self.cluster, name);
        let status = self.status_of(&rec, &dirs, &cg).await;
        let wrong = |state: State| LocalError::WrongState {
            machine: name.into(),
            state: state.to_string(),
            verb: format!("{verb:?}").to_lowercase(),
        };
        match (verb, status.state) {
            (Verb::Start, State::Stopped) => {
                let rootfs = rootfs::ensure(&self.recipe, self.quiet).await?;
                net::ensure_bridge(&self.bridge, self.host_address, self.network).await?;
                machine::mount_root(&dirs, &rootfs).await?;
                net::ensure_machine(&self.bridge, &rec.net, self.network.prefix_len()).await?;
                cg.remove().await;
                let pid = machine::spawn(&dirs, name, &rec.net, &cg)?;
                rec.nspawn_pid = Some(pid);
                machine::save_record(&dirs, &rec)?;
                self.wait_booted(name, &dirs, &cg, &rec).await?;
            }
            (Verb::Start, _) => {}
            (Verb::Stop, State::Stopped) | (Verb::Kill, State::Stopped) => {}
            (Verb::Stop, _) => self.stop(&dirs, &rec, &cg, Duration::from_secs(20)).await,
            (Verb::Kill, _) => {
                cg.kill_all();
                if let Some(pid) = status.pid {
                    machine::wait_exit(pid, &dirs, Duration::from_secs(10)).await;
                }
            }
            (Verb::Freeze, State::Running | State::Cut) => cg.freeze(true).await?,
            (Verb::Thaw, State::Frozen) => cg.freeze(false).await?,
            (Verb::Cut, State::Running | State::Frozen) => net::set_link(&rec.net, false).await?,
            (Verb::Heal, _) if status.state != State::Stopped => {
                net::set_link(&rec.net, true).await?
            }
            (Verb::Freeze | Verb::Thaw | Verb::Cut | Verb::Heal, s) if s == State::Stopped => {
                return Err(wrong(s));
            }
            _ => {}
        }
        Ok(self.status_of(&rec, &dirs, &cg).await)
    }

    /// Clean poweroff (SIGRTMIN+4 to the machine's systemd); after `grace`, kill everything.
    async fn stop(&self, dirs: &Dirs, rec: &Record, cg: &MachineCgroup, grace: Duration) {
        let _ = cg.freeze(false).await;
        let Some(pid) = rec.nspawn_pid.filter(|p| machine::is_our_nspawn(*p, dirs)) else {
            return;
        };
        if let Some(pid1) = cg.init_pid() {
            signal(pid1, libc::SIGRTMIN() + 4);
        }
        if !machine::wait_exit(pid, dirs, grace).await {
            cg.kill_all();
            signal(pid, libc::SIGKILL);
            machine::wait_exit(pid, dirs, Duration::from_secs(10)).await;
        }
    }

    /// Builds (or reuses) the package mirror for `packages` (with their dependencies, minus what
    /// the machines' rootfs has) and `files`, and serves it on the bridge address until the
    /// returned server is dropped. Machines use it with `Server::apt_source()`.
    pub async fn mirror(
        &self,
        packages: &[String],
        files: &[PathBuf],
    ) -> Result<mirror::Server, LocalError> {
        let rootfs = rootfs::ensure(&self.recipe, self.quiet).await?;
        let repo = mirror::build(packages, files, &rootfs).await?;
        mirror::serve(
            &repo,
            std::net::SocketAddr::new(self.host_address, mirror::PORT),
        )
        .await
    }

    /// Serves `dir` read-only over HTTP to the machines, on the bridge address and a free port,
    /// until the returned server is dropped (image archives, which the mirror would copy).
    pub async fn serve_dir(&self, dir: &Path) -> Result<mirror::Server, LocalError> {
        mirror::serve(dir, std::net::SocketAddr::new(self.host_address, 0)).await
    }

    /// Removes one machine completely: processes, mount, network, cgroups, files.
    pub async fn remove(&self, name: &str) {
        let dirs = Dirs::new(&self.machines_dir(), name);
        let cg = MachineCgroup::new(&self.cluster, name);
        if let Some(rec) = machine::load_record(&dirs) {
            self.stop(&dirs, &rec, &cg, Duration::from_secs(10)).await;
            net::remove_machine(&rec.net).await;
        } else {
            net::remove_machine(&MachineNet::new(&self.cluster, name, self.host_address)).await;
        }
        cg.kill_all();
        machine::unmount_root(&dirs).await;
        cg.remove().await;
        if !machine::is_mounted(&dirs.root()) {
            let _ = tokio::fs::remove_dir_all(&dirs.base).await;
        }
    }

    /// Removes every machine, the bridge and the local state. A second call finds nothing to do.
    pub async fn destroy(&self) -> Vec<String> {
        let names = self.existing();
        futures::future::join_all(names.iter().map(|n| self.remove(n))).await;
        net::remove_bridge(&self.bridge).await;
        let _ = std::fs::remove_file(self.known_hosts());
        let local = self.state_dir.join("local");
        if self.existing().is_empty() {
            let _ = tokio::fs::remove_dir_all(&local).await;
        }
        names
    }
}

/// The address each local machine of the cluster was made with, by name, from the records in the
/// cluster's state dir (`cluster_state`): machines keep it whatever the inventory's groups become.
pub fn recorded_addresses(cluster_state: &Path) -> std::collections::BTreeMap<String, IpAddr> {
    let dir = cluster_state.join("local/machines");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            machine::load_record(&Dirs::new(&dir, &name)).map(|r| (name, r.net.address))
        })
        .collect()
}
