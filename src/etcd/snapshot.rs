//! A snapshot of the keyspace from the first healthy member, checked against the SHA-256 etcd
//! appends to it; shared by `forgectl etcd snapshot save` and the playbooks' safety snapshots.

use std::path::Path;
use std::time::Duration;

use super::{Tls, health, snapshot_intact, snapshot_save};

/// A snapshot that was saved and checked.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Its size in bytes.
    pub bytes: u64,
    /// The member it came from.
    pub member: String,
    /// That member's raft index when asked.
    pub raft_index: Option<u64>,
    /// sha256 of the file, hex.
    pub sha256: String,
}

/// Saves a snapshot from the first member of `members` that answers to `out` (0600) and checks
/// it; nothing is left at `out` when it fails.
pub async fn save_verified(
    members: &[(String, String)],
    tls: &Tls,
    out: &Path,
) -> Result<Saved, String> {
    let checked = health(members, tls, Duration::from_secs(5)).await;
    let Some(source) = checked.iter().find(|h| h.ok) else {
        let why: Vec<String> = checked
            .iter()
            .map(|h| format!("{}: {}", h.name, h.error.clone().unwrap_or_default()))
            .collect();
        return Err(format!(
            "no etcd member is healthy; nothing to snapshot ({})",
            why.join("; ")
        ));
    };
    let bytes = snapshot_save(&source.name, &source.endpoint, tls, out)
        .await
        .map_err(|e| format!("snapshot from {} failed: {e}", source.name))?;
    let data = tokio::fs::read(out)
        .await
        .map_err(|e| format!("{}: {e}", out.display()))?;
    if !snapshot_intact(&data) {
        let _ = tokio::fs::remove_file(out).await;
        return Err(format!(
            "the snapshot from {} failed its checksum; nothing kept",
            source.name
        ));
    }
    Ok(Saved {
        bytes,
        member: source.name.clone(),
        raft_index: source.raft_index,
        sha256: crate::plan::sha256_hex(&data),
    })
}
