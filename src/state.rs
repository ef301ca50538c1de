//! The state directory of a cluster: what cannot be recovered from the hosts (CA keys, provider
//! ids, the admin kubeconfig), written 0600, and a lock so two runs cannot overlap.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory operation failed.
    #[error("state dir {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another run holds the lock.
    #[error("another forgectl run is working on cluster {cluster}: {holder}")]
    Locked {
        /// The cluster.
        cluster: String,
        /// Who holds it and since when, as written by the holder.
        holder: String,
    },
    /// No base directory could be determined.
    #[error(
        "cannot tell where to keep state: neither --state-dir, FORGECTL_STATE_DIR, XDG_STATE_HOME nor HOME is set"
    )]
    NoBase,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The base directory: `--state-dir`, else `$FORGECTL_STATE_DIR`, else `$XDG_STATE_HOME/forgectl`,
/// else `~/.local/state/forgectl`.
pub fn base_dir(flag: Option<&Path>) -> Result<PathBuf, StateError> {
    // Absolute, so that what is recorded with paths under it (local machines' directories, which
    // their running processes name) is found again from another working directory.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    if let Some(p) = flag {
        return Ok(absolute(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("FORGECTL_STATE_DIR") {
        return Ok(absolute(PathBuf::from(p)));
    }
    if let Some(p) = std::env::var_os("XDG_STATE_HOME") {
        return Ok(PathBuf::from(p).join("forgectl"));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/state/forgectl"))
        .ok_or(StateError::NoBase)
}

/// A cluster's state directory (`BASE/CLUSTER`), created 0700 on first use.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
    cluster: String,
}

impl StateDir {
    /// The state dir of `cluster` under `base`, created (0700) if missing.
    pub fn open(base: &Path, cluster: &str) -> Result<Self, StateError> {
        let path = base.join(cluster);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(io(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(io(&path))?;
        Ok(Self {
            path,
            cluster: cluster.into(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the cluster's lock, or says who holds it. Released when the guard is dropped, and by
    /// the kernel if the process dies, so a crashed run never leaves a stale lock.
    pub fn lock(&self, command: &str) -> Result<Lock, StateError> {
        let path = self.path.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StateError::Locked {
                    cluster: self.cluster.clone(),
                    holder: if holder.is_empty() {
                        "the holder did not say who it is".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        let since = humantime::format_rfc3339_seconds(SystemTime::now());
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let who = format!(
            "pid {} on {} (`forgectl {command}`) since {since}",
            std::process::id(),
            host.trim()
        );
        file.set_len(0).map_err(io(&path))?;
        file.write_all(who.as_bytes()).map_err(io(&path))?;
        file.flush().map_err(io(&path))?;
        Ok(Lock { _file: file })
    }

    /// Writes `name` (a relative path; missing directories are made 0700) atomically with mode
    /// 0600: temp file in the same directory, fsync, rename.
    pub fn write_secret(&self, name: &str, data: &[u8]) -> Result<PathBuf, StateError> {
        let target = self.path.join(name);
        let parent = target.parent().unwrap_or(&self.path).to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(io(&parent))?;
        let file = target
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{file}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &target)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(&target)(e)
        })?;
        Ok(target)
    }

    /// Reads `name` if it exists.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let p = self.path.join(name);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }
}

/// Holds a cluster's lock while alive.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relative `--state-dir` is made absolute against the working directory: local machines
    /// are recognised by the absolute paths their processes were started with.
    #[test]
    fn a_relative_state_dir_becomes_absolute() {
        let base = base_dir(Some(Path::new("state"))).unwrap();
        assert!(base.is_absolute(), "{}", base.display());
        assert_eq!(base, std::env::current_dir().unwrap().join("state"));
    }

    #[test]
    fn second_lock_names_the_holder_and_first_release_frees_it() {
        let base = tempfile::tempdir().unwrap();
        let dir = StateDir::open(base.path(), "demo").unwrap();
        let held = dir.lock("up").unwrap();
        match dir.lock("plan") {
            Err(StateError::Locked { cluster, holder }) => {
                assert_eq!(cluster, "demo");
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
                assert!(
                    holder.contains("`forgectl up`") && holder.contains("since 20"),
                    "{holder}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        // A child forked by another test in this binary shares the descriptor until its exec
        // closes it (close-on-exec), so the lock can outlive `drop` for a moment: retry briefly.
        let mut again = dir.lock("plan");
        for _ in 0..100 {
            if again.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            again = dir.lock("plan");
        }
        again.unwrap();
    }

    #[test]
    fn secrets_are_0600_in_a_0700_dir_and_replaced_whole() {
        let base = tempfile::tempdir().unwrap();
        let dir = StateDir::open(base.path(), "demo").unwrap();
        let p = dir
            .write_secret("ca.key", b"a much longer first secret")
            .unwrap();
        dir.write_secret("ca.key", b"short").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(dir.path()), 0o700);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ca.key")]);
    }
}
