//! `forgectl etcd status`: every member's health, leader, raft index, size and latency.

use serde_json::json;
use std::path::Path;
use std::time::Duration;

use super::{CommandError, ExitCode, load_inventory, load_inventory_quiet};
use crate::etcd;
use crate::executor::{Executor, endpoints};
use crate::interrupt::Interrupt;
use crate::inventory::{ProviderKind, Role};
use crate::output::{Format, Options};
use crate::plan::Action;
use crate::providers::local::{LocalProvider, Verb};

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
    let inv = load_inventory_quiet(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
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
        Format::Json => crate::outln!(
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
            crate::outln!(
                "{:w$}  {:7}  {:6}  {:>10}  {:>9}  {:>8}  VERSION",
                "MEMBER",
                "HEALTH",
                "LEADER",
                "RAFT INDEX",
                "DB SIZE",
                "LATENCY"
            );
            for m in &health {
                let is_leader = leader.as_deref() == Some(m.name.as_str());
                crate::outln!(
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
            crate::outln!(
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

/// Saves a snapshot of the keyspace from a healthy member to `file`.
pub async fn etcd_snapshot_save(
    file: Option<&Path>,
    out: &Path,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
    let exec = Executor::new(&inv, &dir, true, Interrupt::never());
    let (tls, members) = exec.etcd_access()?;
    let saved = etcd::snapshot::save_verified(&members, &tls, out)
        .await
        .map_err(CommandError::Usage)?;
    match opts.format {
        Format::Json => crate::outln!(
            "{}",
            json!({ "file": out.display().to_string(), "bytes": saved.bytes, "member": saved.member, "revision_index": saved.raft_index, "sha256": saved.sha256 })
        ),
        Format::Text => crate::outln!(
            "saved a snapshot of {} bytes from {} (raft index {}) to {} (0600, checksum verified)",
            saved.bytes,
            saved.member,
            saved.raft_index.unwrap_or(0),
            out.display()
        ),
    }
    Ok(ExitCode::Ok)
}

/// Rebuilds the whole etcd cluster from a snapshot (disaster recovery): stops every member, moves
/// its data aside (`DATA.pre-restore-TIME`), restores the snapshot into a fresh data directory per
/// member, re-renders every member's configuration as one new cluster, starts them and waits until
/// all are healthy. Asks first unless `yes`.
pub async fn etcd_snapshot_restore(
    file: Option<&Path>,
    snapshot: &Path,
    yes: bool,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let data = std::fs::read(snapshot)
        .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", snapshot.display())))?;
    if !etcd::snapshot_intact(&data) {
        return Err(CommandError::Usage(format!(
            "{} is not an intact etcd snapshot (its trailing SHA-256 does not match)",
            snapshot.display()
        )));
    }
    let members: Vec<&crate::inventory::Machine> = inv.with_role(Role::Etcd).collect();
    let data_dir = inv.inventory.etcd.data_dir.clone();
    if opts.format == Format::Text {
        crate::outln!(
            "Restore {} ({} bytes) onto {} member(s): {}.\nEvery member stops; its current data moves to {data_dir}.pre-restore-TIME; the cluster starts again from the snapshot.",
            snapshot.display(),
            data.len(),
            members.len(),
            members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !yes {
        super::run::approve("etcd snapshot restore")?;
    }
    let dir = super::state_dir(&inv, opts)?;
    let _lock = dir.lock("etcd snapshot restore")?;
    let step = |what: &str| {
        if opts.verbosity >= 0 && opts.format == Format::Text {
            crate::outln!("• {what}");
        }
    };
    let exec = Executor::new(&inv, &dir, true, Interrupt::never());
    // etcdctl does the offline restore; Debian ships it in etcd-client.
    let tools: Vec<Action> = members
        .iter()
        .map(|m| {
            Action::local(
                Some(&m.name),
                crate::plan::Op::InstallPackages {
                    packages: vec!["etcd-client".into()],
                },
                "etcdctl for the restore",
            )
        })
        .collect();
    exec.host_actions(&tools.iter().collect::<Vec<_>>()).await?;
    let pool = exec.pool().await?;
    let eps = endpoints(&inv, &members);
    let upload = "/var/lib/forgectl-restore.db";
    let fail_hosts = |results: Vec<crate::ssh::HostResult<crate::ssh::Output>>,
                      what: &str|
     -> Result<(), CommandError> {
        for r in results {
            match r.result {
                Ok(o) if o.success() => {}
                Ok(o) => {
                    return Err(CommandError::Usage(format!(
                        "{}: {what} failed: {}",
                        r.host,
                        o.stderr_text()
                    )));
                }
                Err(e) => {
                    return Err(CommandError::Exec(crate::executor::ExecError::Hosts(vec![
                        (r.host, e),
                    ])));
                }
            }
        }
        Ok(())
    };
    let results = pool
        .each(&eps, |s| {
            let d = data.clone();
            async move {
                s.upload(upload, &d, 0o600, "root:root").await?;
                s.exec(&s.as_root("systemctl stop etcd.service")).await
            }
        })
        .await;
    fail_hosts(results, "stopping etcd")?;
    step(&format!(
        "copied the snapshot to {} member(s) and stopped etcd on all of them",
        members.len()
    ));
    let peer_port = inv.inventory.etcd.peer_port;
    let addr = |m: &crate::inventory::Machine| {
        m.address
            .map(|a| a.to_string())
            .unwrap_or_else(|| m.name.clone())
    };
    let initial_cluster = members
        .iter()
        .map(|m| format!("{}=https://{}:{peer_port}", m.name, addr(m)))
        .collect::<Vec<_>>()
        .join(",");
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let q = crate::ssh::shell_quote;
    let scripts: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            let script = format!(
                "set -e; rm -rf {d}.restore; ETCDCTL_API=3 etcdctl snapshot restore {upload} --name {n} \
                 --initial-cluster {ic} --initial-cluster-token {t} --initial-advertise-peer-urls https://{a}:{peer_port} \
                 --data-dir {d}.restore >/dev/null; if [ -d {d} ]; then mv {d} {d}.pre-restore-{stamp}; fi; \
                 mv {d}.restore {d}; chown -R etcd:etcd {d}; chmod 700 {d}; rm -f {upload}",
                d = q(&data_dir),
                n = q(&m.name),
                ic = q(&initial_cluster),
                t = q(&format!("{}-etcd", inv.inventory.name)),
                a = addr(m),
            );
            (m.name.clone(), script)
        })
        .collect();
    let scripts = &scripts;
    let results = pool
        .each(&eps, |s| async move {
            let script = scripts
                .iter()
                .find(|(n, _)| *n == s.endpoint().name)
                .map(|(_, sc)| sc.clone())
                .unwrap_or_default();
            s.exec(&s.as_root(&script)).await
        })
        .await;
    fail_hosts(results, "restoring the snapshot")?;
    step("restored the snapshot into a fresh data directory on every member (old data kept aside)");
    // All members now form one new cluster: forget members that once joined an existing one.
    etcd::bootstrap::write(&dir, &etcd::bootstrap::Record::new())?;
    super::run_etcd_phase_on(&inv, &dir, &exec, &["etcd".to_string()], opts).await?;
    let results = pool
        .each(&eps, |s| async move {
            s.exec(&s.as_root("systemctl start --no-block etcd.service"))
                .await
        })
        .await;
    fail_hosts(results, "starting etcd")?;
    step("started every member");
    let health = exec.wait_etcd().await?;
    exec.close().await;
    step(&format!(
        "all {} members healthy on the restored data",
        health.len()
    ));
    Ok(ExitCode::Ok)
}

/// Errors a membership change may meet while the cluster settles after a failure: a leader
/// election in progress, or etcd's refusal to reconfigure until every member has been connected
/// for a few seconds. Worth retrying.
fn transient(e: &etcd_client::Error) -> bool {
    let t = e.to_string();
    [
        "unhealthy cluster",
        "Timeout expired",
        "leader changed",
        "no leader",
        "timed out",
        "unavailable",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// A change of etcd membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Replace member `name` with a fresh member on its own machine or on `new_machine`.
    Replace {
        /// The member to replace.
        name: String,
        /// Another etcd machine of the inventory to put the new member on.
        new_machine: Option<String>,
    },
    /// Add the inventory's etcd machine `name` as a new member (scaling up).
    Add {
        /// The machine.
        name: String,
    },
    /// Remove member `name`, which the inventory no longer lists as an etcd machine (scaling down).
    Remove {
        /// The member.
        name: String,
    },
}

/// Changes etcd membership one step at a time, each printed, never losing quorum: a member to go is
/// removed first (possible while its host is down), a member to come is added, started joining the
/// existing cluster, and awaited healthy. Refuses when the healthy members could not keep quorum.
pub async fn etcd_membership(
    file: Option<&Path>,
    change: &Membership,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
    let (leaving, joining): (Option<&str>, Option<&str>) = match change {
        Membership::Replace { name, new_machine } => {
            (Some(name), Some(new_machine.as_deref().unwrap_or(name)))
        }
        Membership::Add { name } => (None, Some(name)),
        Membership::Remove { name } => (Some(name), None),
    };
    let is_etcd = |n: &str| inv.with_role(Role::Etcd).any(|m| m.name == n);
    if let Some(j) = joining
        && !is_etcd(j)
    {
        return Err(CommandError::Usage(format!(
            "{j} is not an etcd machine of this inventory; add it to a group with role etcd first"
        )));
    }
    if let Some(l) = leaving
        && joining != Some(l)
        && is_etcd(l)
    {
        return Err(CommandError::Usage(format!(
            "the inventory still lists {l} as an etcd machine; drop it (or its role) first, so later runs do not configure it again"
        )));
    }
    let _lock = dir.lock("etcd membership change")?;
    let exec = Executor::new(&inv, &dir, true, Interrupt::never());
    let (tls, members) = exec.etcd_access()?;
    let health = etcd::health(&members, &tls, Duration::from_secs(5)).await;
    let Some(anchor) = health
        .iter()
        .find(|h| h.ok && Some(h.name.as_str()) != leaving && Some(h.name.as_str()) != joining)
    else {
        return Err(CommandError::Usage(
            "no other healthy etcd member answers: quorum is lost; restore from a snapshot (forgectl etcd snapshot restore)".into(),
        ));
    };
    let step = |what: &str| {
        if opts.verbosity >= 0 && opts.format == Format::Text {
            crate::outln!("• {what}");
        }
    };
    let fail = |what: &str, e: etcd_client::Error| {
        CommandError::Usage(format!(
            "{what}: {}",
            etcd::for_people(&e, &anchor.name, &anchor.endpoint)
        ))
    };
    let client = etcd::connect(&anchor.endpoint, &tls, Duration::from_secs(10))
        .await
        .map_err(|e| fail("connecting to a healthy member", e))?;
    let list = client
        .clone()
        .member_list()
        .await
        .map_err(|e| fail("listing members", e))?;
    let total = list.members().len();
    let current = |n: &str| {
        list.members()
            .iter()
            .find(|m| m.name() == n)
            .map(|m| m.id())
    };
    // Healthy members that stay, against the quorum of the cluster after the change.
    let healthy_staying = health
        .iter()
        .filter(|h| h.ok && Some(h.name.as_str()) != leaving && current(&h.name).is_some())
        .count();
    // Each step must keep quorum with the healthy members that stay: the removal (the cluster
    // shrinks by one), then the addition (it grows by one member that has not started yet).
    let mut size = total;
    let mut checks = Vec::new();
    if let Some(l) = leaving
        && current(l).is_some()
    {
        size -= 1;
        checks.push(size);
    }
    if let Some(j) = joining
        && (current(j).is_none() || leaving == Some(j))
    {
        size += 1;
        checks.push(size);
    }
    for members_then in checks {
        let needed = members_then / 2 + 1;
        if healthy_staying < needed {
            return Err(CommandError::Usage(format!(
                "refusing: only {healthy_staying} other member(s) are healthy; a {members_then}-member cluster needs {needed} for quorum"
            )));
        }
    }
    // The members the cluster has after the change: the ones to wait for.
    let after: Vec<String> = list
        .members()
        .iter()
        .map(|m| m.name().to_string())
        .filter(|n| !n.is_empty() && Some(n.as_str()) != leaving)
        .chain(joining.map(str::to_string))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut record = etcd::bootstrap::read(dir.path());
    // Members that formed the cluster keep the configuration they were started with, whatever
    // the inventory's member list becomes: read it from each reachable member once.
    let pool = exec.pool().await?;
    let unrecorded: Vec<&crate::inventory::Machine> = inv
        .with_role(Role::Etcd)
        .filter(|m| {
            current(&m.name).is_some()
                && !record.contains_key(&m.name)
                && Some(m.name.as_str()) != leaving
        })
        .collect();
    let read_env = "sed -n 's/^ETCD_INITIAL_CLUSTER=//p; s/^ETCD_INITIAL_CLUSTER_STATE=//p' /etc/etcd/etcd.env";
    for r in pool
        .each(&endpoints(&inv, &unrecorded), |s| async move {
            s.exec(&s.as_root(read_env)).await
        })
        .await
    {
        if let Ok(out) = r.result {
            let text = out.stdout_text();
            let mut lines = text.lines();
            if let (Some(ic), Some(st)) = (lines.next(), lines.next()) {
                record.insert(
                    r.host.clone(),
                    etcd::bootstrap::Joined {
                        initial_cluster: ic.to_string(),
                        state: st.to_string(),
                    },
                );
            }
        }
    }

    if let Some(l) = leaving {
        match current(l) {
            Some(id) => {
                retry(
                    || {
                        let mut c = client.clone();
                        async move { c.member_remove(id).await }
                    },
                    true,
                )
                .await
                .map_err(|e| fail("removing the member", e))?;
                step(&format!(
                    "removed member {l} (id {id:x}) from the cluster; {} member(s) left",
                    total - 1
                ));
            }
            None => step(&format!("{l} is not a member (already removed)")),
        }
        record.remove(l);
        etcd::bootstrap::write(&dir, &record)?;
    }
    let wipe = format!(
        "systemctl stop etcd.service 2>/dev/null || true; rm -rf {}/member",
        crate::ssh::shell_quote(&inv.inventory.etcd.data_dir)
    );
    let run_on = |machine: &crate::inventory::Machine, script: String| {
        let pool = pool.clone();
        let eps = endpoints(&inv, &[machine]);
        async move {
            for r in pool
                .each(&eps, |s| {
                    let w = script.clone();
                    async move { s.exec(&s.as_root(&w)).await }
                })
                .await
            {
                r.result.map_err(|e| {
                    CommandError::Exec(crate::executor::ExecError::Hosts(vec![(r.host.clone(), e)]))
                })?;
            }
            Ok::<(), CommandError>(())
        }
    };
    let Some(target) = joining else {
        // Scaling down: stop the old member's etcd when its machine is still around.
        if let Some(l) = leaving
            && let Some(machine) = inv.machines.iter().find(|m| m.name == l)
        {
            match run_on(machine, wipe.clone()).await {
                Ok(()) => step(&format!("stopped etcd on {l} and removed its data")),
                Err(e) => step(&format!("could not clean {l} (left as is): {e}")),
            }
        }
        let health = exec.wait_etcd_members(Some(&after)).await?;
        exec.close().await;
        step(&format!("all {} members healthy", health.len()));
        return Ok(ExitCode::Ok);
    };
    let machine = inv
        .with_role(Role::Etcd)
        .find(|m| m.name == target)
        .ok_or_else(|| CommandError::Usage(format!("{target} is not an etcd machine")))?;
    if inv.inventory.provider == ProviderKind::Local {
        let provider = LocalProvider::new(&inv, dir.path(), true);
        let st = if provider.existing().iter().any(|n| n == target) {
            provider
                .apply(target, Verb::Start)
                .await
                .map_err(|e| CommandError::Exec(e.into()))?
                .state
                .to_string()
        } else {
            exec.create(&[target.to_string()]).await?;
            "created".to_string()
        };
        step(&format!("machine {target} is {st}"));
    }
    run_on(machine, wipe).await?;
    step(&format!("stopped etcd on {target} and wiped its old data"));
    exec.ensure_pki().await?;
    let address = machine
        .address
        .map(|a| a.to_string())
        .unwrap_or_else(|| machine.name.clone());
    let peer = format!("https://{address}:{}", inv.inventory.etcd.peer_port);
    let added = retry(
        || {
            let mut c = client.clone();
            let p = peer.clone();
            async move { c.member_add([p.as_str()], None).await }
        },
        false,
    )
    .await
    .map_err(|e| fail("adding the member", e))?
    .ok_or_else(|| CommandError::Usage("etcd gave no answer to adding the member".into()))?;
    let initial_cluster = added
        .member_list()
        .iter()
        .map(|m| {
            let n = if m.name().is_empty() {
                target
            } else {
                m.name()
            };
            format!("{n}={}", m.peer_urls().first().cloned().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(",");
    record.insert(
        target.to_string(),
        etcd::bootstrap::Joined {
            initial_cluster,
            state: "existing".into(),
        },
    );
    etcd::bootstrap::write(&dir, &record)?;
    step(&format!("added {target} ({peer}) as a new member"));
    super::run_etcd_phase_on(&inv, &dir, &exec, &[target.to_string()], opts).await?;
    step(&format!(
        "configured and started etcd on {target}, joining the existing cluster"
    ));
    let health = exec.wait_etcd_members(Some(&after)).await?;
    exec.close().await;
    step(&format!("all {} members healthy", health.len()));
    Ok(ExitCode::Ok)
}

/// Retries a membership call while the cluster settles (see [`transient`]) for up to a minute.
/// With `gone_ok`, "member not found" after a first attempt counts as done (an earlier attempt
/// whose answer timed out went through).
async fn retry<T, F, Fut>(mut call: F, gone_ok: bool) -> Result<Option<T>, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let started = std::time::Instant::now();
    let mut tried = false;
    loop {
        match call().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if gone_ok && tried && e.to_string().contains("member not found") => {
                return Ok(None);
            }
            Err(e) if transient(&e) && started.elapsed() < Duration::from_secs(60) => {
                tried = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
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
