//! How each etcd member was (or will be) started the first time. Members of the original cluster
//! start with `initial-cluster-state new`; members added later (replace, add) join an existing
//! cluster with the member list etcd gave when they were added. The record lives in the state dir
//! so every later run renders the same configuration (and changes nothing).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::state::{StateDir, StateError};

/// The record's file in the state dir.
pub const FILE: &str = "etcd/bootstrap.json";

/// How a member was first started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// `name=peer-url,…`: the formation set, or what etcd returned when the member was added.
    pub initial_cluster: String,
    /// `new` (formed the cluster) or `existing` (joined it later).
    #[serde(default = "existing")]
    pub state: String,
}

fn existing() -> String {
    "existing".into()
}

/// How members were first started, by name; members without an entry formed the cluster with
/// the inventory's member list.
pub type Record = BTreeMap<String, Joined>;

/// Reads the record from a state dir path (empty when missing or unreadable).
pub fn read(state_dir: &Path) -> Record {
    std::fs::read_to_string(state_dir.join(FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes the record.
pub fn write(state: &StateDir, record: &Record) -> Result<(), StateError> {
    let text = serde_json::to_string_pretty(record).unwrap_or_default();
    state.write_secret(FILE, text.as_bytes())?;
    Ok(())
}
