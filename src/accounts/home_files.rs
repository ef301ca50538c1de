//! Credentials in an account's home: the kubeconfig and its client certificate and key, written
//! atomically (a temporary file in the same directory, then renamed over the old one, so a
//! shorter file never leaves junk and a crash never leaves half a file), 0600, owned by the
//! account's uid/gid. The home is the account's own, so the directory holding the kubeconfig
//! is opened without following symlinks and every file is made relative to it (openat): a tool
//! cannot point forgectl, which runs as root, at another file.
//!
//! Writes are not synced one by one: a pass writes thousands of files, and syncing each (four
//! flushes a tool) competed with etcd's own flushes on the same disk. A pass syncs the file
//! systems it wrote to once, at its end (`sync_filesystems`). A host that crashes before then may
//! leave a pair that reads as broken; the next pass finds it so and issues it again.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Where an account's credentials live: the kubeconfig file and, beside it, `client.crt` and
/// `client.key`.
#[derive(Debug, Clone)]
pub struct CredentialFiles {
    /// The account's home.
    pub home: PathBuf,
    /// The kubeconfig's path inside the home (e.g. `.kube/config`).
    pub kubeconfig: PathBuf,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The certificate file's name, beside the kubeconfig.
pub const CERT_FILE: &str = "client.crt";
/// The key file's name, beside the kubeconfig.
pub const KEY_FILE: &str = "client.key";

/// What is on disk now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OnDisk {
    /// The kubeconfig's text.
    pub kubeconfig: Option<String>,
    /// The certificate (PEM).
    pub cert: Option<String>,
    /// The key (PEM).
    pub key: Option<String>,
    /// Every file present is 0600 and owned by the account.
    pub owner_and_mode_ok: bool,
}

impl OnDisk {
    /// Whether any of the files is there.
    pub fn any(&self) -> bool {
        self.kubeconfig.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

fn io_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

impl CredentialFiles {
    /// The kubeconfig's directory components under the home, and its file name; refuses
    /// absolute paths and `..`.
    fn parts(&self) -> std::io::Result<(Vec<String>, String)> {
        let mut parts = Vec::new();
        for c in self.kubeconfig.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                _ => {
                    return Err(io_err(
                        "kubeconfig path",
                        format!(
                            "{} must be relative to the home, without ..",
                            self.kubeconfig.display()
                        ),
                    ));
                }
            }
        }
        let file = parts
            .pop()
            .ok_or_else(|| io_err("kubeconfig path", "empty"))?;
        Ok((parts, file))
    }

    /// Opens (and with `create`, makes, owned by the account, 0700) the kubeconfig's
    /// directory without following symlinks. None when it does not exist and `create` is off.
    fn open_dir(&self, create: bool) -> std::io::Result<Option<OwnedFd>> {
        let dir_flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
        let (parts, _) = self.parts()?;
        // The home itself comes from the directory (trusted); what is inside is the account's.
        let mut fd = rustix::fs::open(&self.home, dir_flags - OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| io_err(&format!("home {}", self.home.display()), e))?;
        for p in parts {
            let next = match rustix::fs::openat(&fd, p.as_str(), dir_flags, Mode::empty()) {
                Ok(f) => f,
                Err(rustix::io::Errno::NOENT) if create => {
                    rustix::fs::mkdirat(&fd, p.as_str(), Mode::from_raw_mode(0o700))
                        .map_err(|e| io_err(&format!("mkdir {p}"), e))?;
                    let f = rustix::fs::openat(&fd, p.as_str(), dir_flags, Mode::empty())
                        .map_err(|e| io_err(&format!("open {p}"), e))?;
                    rustix::fs::fchown(&f, Some(uid(self.uid)), Some(gid(self.gid)))
                        .map_err(|e| io_err(&format!("chown {p}"), e))?;
                    f
                }
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Err(io_err(
                        &format!("{}/{p}", self.home.display()),
                        "is not a directory (a symlink?): refusing to write through it",
                    ));
                }
                Err(e) => return Err(io_err(&format!("open {p}"), e)),
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    /// Reads what is there (missing files are None; symlinks are not followed and read as
    /// missing).
    pub fn read(&self) -> std::io::Result<OnDisk> {
        let Some(dir) = self.open_dir(false)? else {
            return Ok(OnDisk {
                owner_and_mode_ok: true,
                ..OnDisk::default()
            });
        };
        let (_, file) = self.parts()?;
        let ok = std::cell::Cell::new(true);
        let read = |name: &str| -> std::io::Result<Option<String>> {
            match rustix::fs::openat(
                &dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(name, e))?;
                    if st.st_mode & 0o777 != 0o600 || st.st_uid != self.uid || st.st_gid != self.gid
                    {
                        ok.set(false);
                    }
                    let mut s = String::new();
                    std::fs::File::from(fd).read_to_string(&mut s)?;
                    Ok(Some(s))
                }
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => Ok(None),
                Err(e) => Err(io_err(name, e)),
            }
        };
        let (kubeconfig, cert, key) = (read(&file)?, read(CERT_FILE)?, read(KEY_FILE)?);
        Ok(OnDisk {
            kubeconfig,
            cert,
            key,
            owner_and_mode_ok: ok.get(),
        })
    }

    /// Writes the key, the certificate and the kubeconfig (in that order: the kubeconfig only
    /// ever points at a complete pair).
    pub fn write(&self, kubeconfig: &str, cert: &str, key: &str) -> std::io::Result<()> {
        let dir = self
            .open_dir(true)?
            .ok_or_else(|| io_err("kubeconfig directory", "missing"))?;
        let (_, file) = self.parts()?;
        self.write_one(&dir, KEY_FILE, key.as_bytes())?;
        self.write_one(&dir, CERT_FILE, cert.as_bytes())?;
        self.write_one(&dir, &file, kubeconfig.as_bytes())
    }

    /// Writes only the kubeconfig (the certificate is still good).
    pub fn write_kubeconfig(&self, kubeconfig: &str) -> std::io::Result<()> {
        let dir = self
            .open_dir(true)?
            .ok_or_else(|| io_err("kubeconfig directory", "missing"))?;
        let (_, file) = self.parts()?;
        self.write_one(&dir, &file, kubeconfig.as_bytes())
    }

    fn write_one(&self, dir: &OwnedFd, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = format!(".{name}.forgectl-{}", std::process::id());
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        let fd = rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(&format!("create {tmp}"), e))?;
        let done = (|| {
            rustix::fs::fchown(&fd, Some(uid(self.uid)), Some(gid(self.gid)))
                .map_err(|e| io_err(&format!("chown {tmp}"), e))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))
                .map_err(|e| io_err(&format!("chmod {tmp}"), e))?;
            let mut f = std::fs::File::from(fd);
            f.write_all(bytes)?;
            rustix::fs::renameat(dir, tmp.as_str(), dir, name)
                .map_err(|e| io_err(&format!("rename {tmp} to {name}"), e))
        })();
        if done.is_err() {
            let _ = rustix::fs::unlinkat(dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        }
        done
    }

    /// Removes the kubeconfig, certificate and key (revoking an account's credentials).
    /// Whether anything was there.
    pub fn remove(&self) -> std::io::Result<bool> {
        let Some(dir) = self.open_dir(false)? else {
            return Ok(false);
        };
        let (_, file) = self.parts()?;
        let mut any = false;
        for name in [file.as_str(), CERT_FILE, KEY_FILE] {
            match rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty()) {
                Ok(()) => any = true,
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(io_err(&format!("remove {name}"), e)),
            }
        }
        Ok(any)
    }

    /// The kubeconfig's full path (for messages).
    pub fn display(&self) -> String {
        Path::new(&self.home)
            .join(&self.kubeconfig)
            .display()
            .to_string()
    }
}

/// Flushes to disk every file system that holds one of `homes` (once each): what a pass wrote
/// is durable when this returns. Homes that cannot be opened are skipped (their writes failed
/// and were reported).
pub fn sync_filesystems<'a>(homes: impl IntoIterator<Item = &'a Path>) -> std::io::Result<()> {
    let mut synced = std::collections::BTreeSet::new();
    for home in homes {
        let Ok(fd) = rustix::fs::open(
            home,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let dev = rustix::fs::fstat(&fd).map_err(|e| io_err(&home.display().to_string(), e))?;
        if synced.insert(dev.st_dev) {
            rustix::fs::syncfs(&fd)
                .map_err(|e| io_err(&format!("sync the file system of {}", home.display()), e))?;
        }
    }
    Ok(())
}

fn uid(n: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(n)
}
fn gid(n: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_whole_and_a_missing_home_does_not_stop_the_sync() {
        let home = tempfile::tempdir().unwrap();
        let files = CredentialFiles {
            home: home.path().to_path_buf(),
            kubeconfig: ".kube/config".into(),
            // SAFETY: getuid and getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        };
        files.write("kubeconfig", "cert", "key").unwrap();
        let missing = home.path().join("gone");
        sync_filesystems([home.path(), home.path(), missing.as_path()]).unwrap();
        let on_disk = files.read().unwrap();
        assert_eq!(on_disk.kubeconfig.as_deref(), Some("kubeconfig"));
        assert_eq!(on_disk.cert.as_deref(), Some("cert"));
        assert_eq!(on_disk.key.as_deref(), Some("key"));
        assert!(on_disk.owner_and_mode_ok);
        // No temporary file is left beside them.
        let names: Vec<String> = std::fs::read_dir(home.path().join(".kube"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
