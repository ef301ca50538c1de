//! Changing a running etcd cluster safely: the version rule before anything changes, then
//! members restarted one at a time, each back and the whole cluster healthy before the next.

use std::time::Duration;

use super::{ExecError, Executor};
use crate::phases::etcd::STARTED_MARK;
use crate::plan::{Action, Op};

/// How long a member's blocking restart may take.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the cluster may take to be healthy again after one member's restart.
const HEALTHY_AGAIN: Duration = Duration::from_secs(120);
/// How long a member may take to answer a status request when deciding what to do.
const ASK: Duration = Duration::from_secs(3);

impl Executor<'_> {
    /// Refuses (changing nothing) when a member that answers runs a version from which the
    /// inventory's is more than one minor release ahead, or a newer minor release.
    pub async fn check_etcd_versions(&self, a: &Action) -> Result<(), ExecError> {
        let Op::CheckEtcdVersions { target } = &a.op else {
            return Ok(());
        };
        let Ok(target) = semver::Version::parse(target) else {
            return Ok(());
        };
        let (tls, members) = self.etcd_access()?;
        let health = crate::etcd::health(&members, &tls, ASK).await;
        let running = crate::etcd::versions::running(&health);
        let problems = crate::etcd::versions::problems(&target, &running);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ExecError::EtcdVersion(problems))
        }
    }

    /// Restarts the members of `actions` that need it, one after the other; returns how many.
    pub async fn restart_etcd_members(&self, actions: &[&Action]) -> Result<usize, ExecError> {
        let mut changed = 0;
        for a in actions {
            let (Some(member), Op::RestartEtcdMember { current }) = (a.host.as_deref(), &a.op)
            else {
                continue;
            };
            if self
                .on_node(member, current, Duration::from_secs(30))
                .await
                .is_ok()
            {
                continue;
            }
            let (tls, members) = self.etcd_access()?;
            let health = crate::etcd::health(&members, &tls, ASK).await;
            let others_up = health.iter().filter(|h| h.name != member && h.ok).count();
            let all_up = health.iter().filter(|h| h.ok).count();
            let quorum = members.len() / 2 + 1;
            if all_up >= quorum && others_up < quorum {
                let down: Vec<&str> = health
                    .iter()
                    .filter(|h| h.name != member && !h.ok)
                    .map(|h| h.name.as_str())
                    .collect();
                return Err(ExecError::EtcdQuorum(format!(
                    "{member}: etcd must restart (its files changed), but without it only {others_up} of {} members would answer, fewer than the quorum of {quorum}; {} must be back first",
                    members.len(),
                    down.join(", ")
                )));
            }
            let start = "systemctl daemon-reload && systemctl enable etcd.service";
            let mark = format!("mkdir -p /var/lib/forgectl && touch {STARTED_MARK}");
            if others_up >= quorum {
                // A formed cluster that keeps quorum without this member: restart it, wait for
                // the process to be replaced, then for every member to be healthy.
                self.on_node(
                    member,
                    &format!("{start} && systemctl restart etcd.service && {mark}"),
                    RESTART_TIMEOUT,
                )
                .await?;
                // Healthy again: every member that answered before, and this one. (Members of
                // the inventory not in the cluster yet, as during `etcd add`, are not waited for.)
                let again: Vec<(String, String)> = members
                    .iter()
                    .filter(|(n, _)| n == member || health.iter().any(|h| &h.name == n && h.ok))
                    .cloned()
                    .collect();
                let names: Vec<String> = again.iter().map(|(n, _)| n.clone()).collect();
                match crate::etcd::wait_healthy(&again, &tls, HEALTHY_AGAIN).await {
                    Ok(_) => {}
                    Err(cause) => {
                        let journal = self.etcd_journal(&names).await;
                        return Err(ExecError::EtcdStuck { cause, journal });
                    }
                }
                // A member that did not answer before was started, not restarted (the last
                // member of a new cluster, once the others have formed it).
                let verb = if health.iter().any(|h| h.name == member && h.ok) {
                    "restarted"
                } else {
                    "started"
                };
                tracing::info!(member, "changed: etcd {verb}, the cluster healthy again");
                if !self.quiet {
                    crate::errln!(
                        "  {member}  etcd {verb}; {} of {} members healthy again",
                        again.len(),
                        again.len()
                    );
                }
            } else {
                // The cluster forms (or has lost quorum): members start together and wait for
                // each other.
                self.on_node(
                    member,
                    &format!("{start} && systemctl restart --no-block etcd.service && {mark}"),
                    Duration::from_secs(60),
                )
                .await?;
                tracing::info!(member, "changed: etcd started");
            }
            changed += 1;
        }
        Ok(changed)
    }
}
