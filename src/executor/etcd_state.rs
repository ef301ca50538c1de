//! The executor's etcd work that touches only forgectl's own state dir: safety snapshots before
//! playbooks that change or remove etcd, and forgetting the members' first start after a reset.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::{ExecError, Executor};
use crate::plan::{Action, Op};

/// Where snapshots go, under the cluster's state dir.
pub const BACKUPS_DIR: &str = "backups";

impl Executor<'_> {
    /// Saves the snapshot the action asks for into `backups/etcd-LABEL-TIME.db`; returns 1 when
    /// one was saved. When no member answers: an error if it is required, else a warning.
    pub async fn snapshot_etcd(&self, a: &Action) -> Result<usize, ExecError> {
        let Op::SnapshotEtcd { label, required } = &a.op else {
            return Ok(0);
        };
        let (tls, members) = self.etcd_access()?;
        let dir = self.state.path().join(BACKUPS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| state_io(&dir, source))?;
        // 2026-12-06T18:40:00Z → 20261206T184000Z
        let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let file = dir.join(format!("etcd-{label}-{stamp}.db"));
        match crate::etcd::snapshot::save_verified(&members, &tls, &file).await {
            Ok(saved) => {
                tracing::info!(
                    file = %file.display(),
                    bytes = saved.bytes,
                    member = %saved.member,
                    "etcd snapshot saved (checksum verified)"
                );
                Ok(1)
            }
            Err(why) if *required => Err(ExecError::Check(format!(
                "no {label} etcd snapshot could be taken, so nothing was changed: {why}"
            ))),
            Err(why) => {
                tracing::warn!("no {label} etcd snapshot: {why}");
                Ok(0)
            }
        }
    }

    /// Forgets how the etcd members first started; returns 1 when there was a record.
    pub fn forget_etcd_cluster(&self) -> Result<usize, ExecError> {
        let file = self.state.path().join(crate::etcd::bootstrap::FILE);
        match std::fs::remove_file(&file) {
            Ok(()) => Ok(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(state_io(&file, e)),
        }
    }
}

fn state_io(path: &Path, source: std::io::Error) -> ExecError {
    crate::state::StateError::Io {
        path: path.to_path_buf(),
        source,
    }
    .into()
}
