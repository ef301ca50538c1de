//! `forgectl etcd status`: every member's health, leader, raft index, size and latency.

use serde_json::json;
use std::path::Path;
use std::time::Duration;

use super::{CommandError, ExitCode, load_inventory};
use crate::etcd;
use crate::executor::Executor;
use crate::interrupt::Interrupt;
use crate::output::{Format, Options};
use crate::state;

/// How the cluster stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// Quorum holds and survives losing a member.
    Healthy,
    /// Quorum holds, but one more failure loses it (or a single member: no redundancy).
    AtRisk,
    /// Not enough members answer: etcd accepts no writes.
    Lost,
}

/// Judges quorum from how many of `members` answer.
pub fn quorum(members: usize, healthy: usize) -> Quorum {
    let needed = members / 2 + 1;
    if healthy < needed {
        Quorum::Lost
    } else if healthy == needed && members > 1 {
        Quorum::AtRisk
    } else {
        Quorum::Healthy
    }
}

/// Prints each member's health; exit 1 when quorum is lost or one failure away.
pub async fn etcd_status(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let dir = state::StateDir::open(
        &state::base_dir(opts.state_dir.as_deref())?,
        &inv.inventory.name,
    )?;
    let exec = Executor::new(&inv, &dir, true, Interrupt::never());
    let (tls, members) = exec.etcd_access()?;
    let health = etcd::health(&members, &tls, Duration::from_secs(5)).await;
    let healthy = health.iter().filter(|m| m.ok).count();
    let q = quorum(members.len(), healthy);
    let leader = health
        .iter()
        .find_map(|m| m.leader.filter(|l| *l != 0))
        .and_then(|l| {
            health
                .iter()
                .find(|m| m.id == Some(l))
                .map(|m| m.name.clone())
        });
    let verdict = match q {
        Quorum::Healthy => "healthy",
        Quorum::AtRisk => "at risk",
        Quorum::Lost => "quorum lost",
    };
    match opts.format {
        Format::Json => println!(
            "{}",
            json!({ "members": health, "healthy": healthy, "total": members.len(), "leader": leader, "quorum": verdict })
        ),
        Format::Text => {
            let w = health
                .iter()
                .map(|m| m.name.len())
                .max()
                .unwrap_or(4)
                .max(6);
            println!(
                "{:w$}  {:7}  {:6}  {:>10}  {:>9}  {:>8}  VERSION",
                "MEMBER", "HEALTH", "LEADER", "RAFT INDEX", "DB SIZE", "LATENCY"
            );
            for m in &health {
                let is_leader = leader.as_deref() == Some(m.name.as_str());
                println!(
                    "{:w$}  {:7}  {:6}  {:>10}  {:>9}  {:>8}  {}",
                    m.name,
                    if m.ok { "ok" } else { "DOWN" },
                    if is_leader { "*" } else { "" },
                    m.raft_index
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    m.db_size
                        .map(|b| format!("{:.1} KiB", b as f64 / 1024.0))
                        .unwrap_or_else(|| "-".into()),
                    m.latency_ms
                        .map(|l| format!("{l:.1} ms"))
                        .unwrap_or_else(|| "-".into()),
                    m.version
                        .clone()
                        .unwrap_or_else(|| m.error.clone().unwrap_or_default()),
                );
            }
            let tolerance = healthy.saturating_sub(members.len() / 2 + 1);
            println!(
                "{healthy}/{} members healthy, leader {}; {verdict} (tolerates {tolerance} more failure(s))",
                members.len(),
                leader.as_deref().unwrap_or("none"),
            );
        }
    }
    Ok(match q {
        Quorum::Healthy => ExitCode::Ok,
        Quorum::AtRisk | Quorum::Lost => ExitCode::Failed,
    })
}

#[cfg(test)]
mod tests {
    use super::{Quorum, quorum};

    #[test]
    fn quorum_judgement() {
        assert_eq!(quorum(3, 3), Quorum::Healthy);
        assert_eq!(quorum(3, 2), Quorum::AtRisk);
        assert_eq!(quorum(3, 1), Quorum::Lost);
        assert_eq!(quorum(5, 4), Quorum::Healthy);
        assert_eq!(quorum(5, 3), Quorum::AtRisk);
        assert_eq!(quorum(1, 1), Quorum::Healthy);
        assert_eq!(quorum(1, 0), Quorum::Lost);
    }
}
