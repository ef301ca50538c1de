//! forgectl's own programs (forgectl itself, and toolctl beside it), as the platform phase copies
//! them to the hosts, made cheap on a converged cluster: a program's sha256 is cached locally by
//! (path, size, mtime, inode), each host remembers the (size, ctime, inode) of the copy it last
//! checked, and the file is read only when some host needs it. A re-run where every host has this
//! build hashes nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::ssh::shell_quote;

/// On the hosts: what forgectl last found installed, one line per path (`SHA PATH SIZE CTIME INODE`,
/// ctime to the nanosecond).
const HOST_MARKS: &str = "/var/lib/forgectl/installed-self";

/// One of the programs this build is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    /// The running forgectl: the platform's services run it.
    Forgectl,
    /// `toolctl`, built beside forgectl (same directory): tool owners run it on the bastions.
    Toolctl,
}

impl Program {
    /// The program's file name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Forgectl => "forgectl",
            Self::Toolctl => "toolctl",
        }
    }

    /// Where it is on this machine: the running executable, or the file of that name beside it.
    fn path(self) -> Result<PathBuf, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        match self {
            Self::Forgectl => Ok(me),
            Self::Toolctl => {
                let p = me.with_file_name(self.name());
                if p.is_file() {
                    Ok(p)
                } else {
                    Err(format!(
                        "{} is not there: toolctl is built and installed beside forgectl (`cargo build --release --bins`, then copy both)",
                        p.display()
                    ))
                }
            }
        }
    }
}

/// One of this build's programs: where it is, its sha256, its bytes once read.
pub struct OwnExecutable {
    path: PathBuf,
    /// Hex sha256 of the file.
    pub sha256: String,
    data: OnceCell<Vec<u8>>,
}

impl OwnExecutable {
    /// `program` of this build, its hash from the cache when the file did not change.
    pub async fn locate(program: Program) -> Result<Self, String> {
        let cache = match program {
            Program::Forgectl => "self-sha256".to_string(),
            other => format!("{}-sha256", other.name()),
        };
        let cache = crate::providers::local::rootfs::cache_dir().join(cache);
        let (path, sha256) = tokio::task::spawn_blocking(move || {
            let path = program.path()?;
            cached_sha256(&path, &cache).map(|sha| (path, sha))
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(Self {
            path,
            sha256,
            data: OnceCell::new(),
        })
    }

    /// The file's bytes, read once (checked against the hash: a build replaced while forgectl
    /// runs is refused, not copied under the wrong name).
    pub async fn data(&self) -> Result<&[u8], String> {
        self.data
            .get_or_try_init(|| async {
                let path = self.path.clone();
                let (data, sha) = tokio::task::spawn_blocking(move || {
                    std::fs::read(&path).map(|d| {
                        let sha = crate::plan::sha256_hex(&d);
                        (d, sha)
                    })
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
                if sha != self.sha256 {
                    return Err(format!(
                        "{} changed while forgectl ran (a new build?): run it again",
                        self.path.display()
                    ));
                }
                Ok(data)
            })
            .await
            .map(Vec::as_slice)
    }
}

/// Shell: exit 0 when `path` on the host is this build. Quick when the host's mark says the
/// file was checked and has not changed since (size, ctime and inode: any write, rename or
/// chmod moves ctime); otherwise it hashes the file and, if it matches, marks it.
pub fn host_is_current(path: &str, sha256: &str) -> String {
    let p = shell_quote(path);
    format!(
        "cur=\"$(stat -c '%s %z %i' -- {p} 2>/dev/null)\" || exit 1; \
         grep -qxF \"{sha256} \"{p}\" $cur\" {HOST_MARKS} 2>/dev/null && exit 0; \
         test \"$(sha256sum -- {p} | cut -d' ' -f1)\" = {sha256} || exit 1; {}",
        host_mark(path, sha256)
    )
}

/// Shell: records on the host that `path` is the build with `sha256`, as it is now.
pub fn host_mark(path: &str, sha256: &str) -> String {
    let p = shell_quote(path);
    format!(
        "cur=\"$(stat -c '%s %z %i' -- {p})\" && mkdir -p \"$(dirname {HOST_MARKS})\" && \
         {{ grep -vF \" \"{p}\" \" {HOST_MARKS} 2>/dev/null; echo \"{sha256} \"{p}\" $cur\"; }} > {HOST_MARKS}.new && \
         mv {HOST_MARKS}.new {HOST_MARKS}"
    )
}

/// The sha256 of `path`, from `cache` when its line names the same file unchanged; else hashed
/// (streamed) and the cache written again. A cache that cannot be written is only slower.
fn cached_sha256(path: &Path, cache: &Path) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let m = std::fs::metadata(path).map_err(fail)?;
    let key = format!(
        "{} {} {}.{} {}",
        path.display(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    );
    if let Ok(line) = std::fs::read_to_string(cache)
        && let Some((k, sha)) = line.trim_end().rsplit_once(' ')
        && k == key
        && sha.len() == 64
    {
        return Ok(sha.to_string());
    }
    let mut f = std::fs::File::open(path).map_err(fail)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(fail)?;
    let sha = crate::plan::hex_lower(&h.finalize());
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = cache.with_extension("new");
    if std::fs::write(&tmp, format!("{key} {sha}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, cache);
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_cached_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (exe, cache) = (dir.path().join("exe"), dir.path().join("c/self-sha256"));
        std::fs::write(&exe, b"build one").unwrap();
        let one = cached_sha256(&exe, &cache).unwrap();
        assert_eq!(one, crate::plan::sha256_hex(b"build one"));
        let line = std::fs::read_to_string(&cache).unwrap();
        assert!(line.ends_with(&format!(" {one}\n")), "{line}");
        // A cached hash is used as it stands (proved by planting one).
        let planted = format!(
            "{} {}\n",
            line.trim_end().rsplit_once(' ').unwrap().0,
            "a".repeat(64)
        );
        std::fs::write(&cache, planted).unwrap();
        assert_eq!(cached_sha256(&exe, &cache).unwrap(), "a".repeat(64));
        // A new build (other size, mtime or inode) is hashed again.
        std::fs::remove_file(&exe).unwrap();
        std::fs::write(&exe, b"build two!").unwrap();
        assert_eq!(
            cached_sha256(&exe, &cache).unwrap(),
            crate::plan::sha256_hex(b"build two!")
        );
    }

    #[test]
    fn the_host_check_trusts_its_mark_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let marks = dir.path().join("marks");
        let bin = dir.path().join("forgectl");
        let run = |script: String| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script.replace(HOST_MARKS, marks.to_str().unwrap()))
                .status()
                .unwrap()
                .success()
        };
        let path = bin.to_str().unwrap();
        let sha = crate::plan::sha256_hex(b"build");
        assert!(!run(host_is_current(path, &sha)), "no file");
        std::fs::write(&bin, b"build").unwrap();
        assert!(run(host_is_current(path, &sha)), "hashed and marked");
        assert!(std::fs::read_to_string(&marks).unwrap().starts_with(&sha));
        // With the mark, a lying file content is not read again: prove the quick path by a
        // mark for a hash the file does not have.
        let other = "b".repeat(64);
        assert!(!run(host_is_current(path, &other)));
        assert!(run(host_mark(path, &other)));
        assert!(run(host_is_current(path, &other)), "the mark answers");
        assert_eq!(std::fs::read_to_string(&marks).unwrap().lines().count(), 1);
        // Any change to the file (here a chmod) moves ctime: the mark no longer holds.
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        assert!(!run(host_is_current(path, &other)));
        assert!(run(host_is_current(path, &sha)));
    }
}
