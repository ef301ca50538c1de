//! Playbooks: ordered phase lists with host selectors, kept as data in `playbooks/*.yaml`.
//!
//! The defaults are embedded in the binary; `--playbook FILE` runs one from disk instead.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::inventory::{Loaded, Machine, Role};

/// Embedded playbooks, by name.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("cluster", include_str!("../playbooks/cluster.yaml")),
    ("scale", include_str!("../playbooks/scale.yaml")),
    ("upgrade", include_str!("../playbooks/upgrade.yaml")),
    ("reset", include_str!("../playbooks/reset.yaml")),
    ("down", include_str!("../playbooks/down.yaml")),
];

/// A playbook: a name and its phases in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Name, as given to `--playbook`.
    pub name: String,
    /// One line on what it does.
    #[serde(default)]
    pub description: String,
    /// Phases in the order they run.
    pub phases: Vec<Step>,
}

/// One phase of a playbook and the machines it works on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Phase name (see `forgectl plan` for the list).
    pub phase: String,
    /// Host selectors: `all`, a role, `first:ROLE` or a machine name. Empty: the phase works on
    /// the cluster as a whole (provider, API), not on hosts.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// Why a playbook could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// No embedded playbook has that name and no such file exists.
    #[error("no playbook named `{name}`; built-in playbooks: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// The file could not be read.
    #[error("cannot read playbook {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not describe a playbook.
    #[error("playbook {name} is malformed: {message}")]
    Malformed {
        /// The playbook's name or path.
        name: String,
        /// The parser's message, with its position.
        message: String,
    },
    /// A host selector names nothing in this inventory.
    #[error(
        "playbook {playbook}, phase {phase}: host selector `{selector}` matches no role or machine"
    )]
    BadSelector {
        /// The playbook.
        playbook: String,
        /// The phase.
        phase: String,
        /// The selector.
        selector: String,
    },
}

/// Loads a playbook by built-in name, or from a file when `name` is a path (contains `/` or ends in `.yaml`).
pub fn load(name: &str) -> Result<Playbook, PlaybookError> {
    let is_path = name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml");
    let (label, text) = if is_path {
        let text = std::fs::read_to_string(Path::new(name)).map_err(|e| PlaybookError::Read {
            path: name.into(),
            source: e,
        })?;
        (name.to_string(), text)
    } else {
        match EMBEDDED.iter().find(|(n, _)| *n == name) {
            Some((n, t)) => ((*n).to_string(), (*t).to_string()),
            None => {
                return Err(PlaybookError::Unknown {
                    name: name.into(),
                    known: EMBEDDED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    };
    serde_saphyr::from_str::<Playbook>(&text).map_err(|e| PlaybookError::Malformed {
        name: label,
        message: e.to_string(),
    })
}

/// The machines a step's selectors pick, in inventory order, each once.
pub fn select<'a>(
    inv: &'a Loaded,
    playbook: &str,
    step: &Step,
) -> Result<Vec<&'a Machine>, PlaybookError> {
    let mut chosen: Vec<&Machine> = Vec::new();
    for sel in &step.hosts {
        let matched: Vec<&Machine> = if sel == "all" {
            inv.machines.iter().collect()
        } else if let Some(role) = sel.strip_prefix("first:") {
            match parse_role(role) {
                Some(r) => inv.with_role(r).take(1).collect(),
                None => Vec::new(),
            }
        } else if let Some(r) = parse_role(sel) {
            inv.with_role(r).collect()
        } else {
            inv.machines.iter().filter(|m| &m.name == sel).collect()
        };
        let known_role = parse_role(sel.strip_prefix("first:").unwrap_or(sel)).is_some();
        if matched.is_empty() && !known_role && sel != "all" {
            return Err(PlaybookError::BadSelector {
                playbook: playbook.into(),
                phase: step.phase.clone(),
                selector: sel.clone(),
            });
        }
        for m in matched {
            if !chosen.iter().any(|c| c.name == m.name) {
                chosen.push(m);
            }
        }
    }
    // Keep inventory order whatever the selector order.
    chosen.sort_by_key(|m| inv.machines.iter().position(|x| x.name == m.name));
    Ok(chosen)
}

fn parse_role(s: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_playbook_parses_and_is_named_after_itself() {
        for (name, _) in EMBEDDED {
            let pb = load(name).unwrap();
            assert_eq!(pb.name, *name);
            assert!(!pb.phases.is_empty());
        }
    }

    #[test]
    fn unknown_playbook_lists_known_ones() {
        let e = load("nope").unwrap_err().to_string();
        assert!(e.contains("cluster, scale"), "{e}");
    }
}
