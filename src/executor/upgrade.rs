//! The rolling upgrade, node by node: the preflight (skew policy, health, release files, an etcd
//! snapshot) and each node's steps (kubeadm, cordon, drain, `kubeadm upgrade`, kubelet and
//! kubectl, restart, Ready at the target, uncordon). A node that runs the target already is
//! skipped, so a run that stopped anywhere is resumed by running it again.

use std::time::{Duration, Instant};

use super::upgrade_skew;
use super::{ExecError, Executor, failed};
use crate::kube::{CONTROL_PLANE_COMPONENTS, ComponentPod, NodeState};
use crate::plan::{Action, Op};
use crate::ssh::{SshError, shell_quote};

/// The annotation forgectl puts on a node it cordoned for the upgrade (its value: the target),
/// so that a resumed run uncordons it, and a node an admin cordoned stays cordoned.
pub const CORDONED_FOR_UPGRADE: &str = "forgectl.io/cordoned-for-upgrade";
/// Where a node keeps the output of its last `kubeadm upgrade`.
pub const KUBEADM_LOG: &str = "/var/log/forgectl/kubeadm-upgrade.log";
/// How long `kubeadm upgrade apply` / `node` may take.
const KUBEADM_UPGRADE_TIMEOUT: Duration = Duration::from_secs(900);
/// How long a node may take to be Ready at the target after kubelet restarted.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between readiness polls.
const POLL: Duration = Duration::from_secs(2);

/// Why one node is where it is, for the run's output.
fn say(quiet: bool, node: &str, what: &str) {
    tracing::info!(node, "{what}");
    if !quiet {
        crate::errln!("  {node}  {what}");
    }
}

/// The node's kubelet and (for control planes) its components run `kubernetes`/`kubelet`.
fn at_target(
    state: &NodeState,
    pods: &[ComponentPod],
    control_plane: bool,
    kubernetes: &str,
    kubelet: &str,
) -> bool {
    state.kubelet == format!("v{kubelet}")
        && (!control_plane
            || CONTROL_PLANE_COMPONENTS.iter().all(|c| {
                pods.iter()
                    .any(|p| p.component == *c && p.tag == format!("v{kubernetes}") && p.ready)
            }))
}

/// What is still behind on a node (for the wait's error).
fn behind(
    state: &NodeState,
    pods: &[ComponentPod],
    control_plane: bool,
    kubernetes: &str,
    kubelet: &str,
) -> String {
    let mut out = Vec::new();
    if !state.ready {
        out.push("not Ready".to_string());
    }
    if state.kubelet != format!("v{kubelet}") {
        out.push(format!("kubelet {}", state.kubelet));
    }
    if control_plane {
        for c in CONTROL_PLANE_COMPONENTS {
            match pods.iter().find(|p| p.component == c) {
                None => out.push(format!("no {c} pod")),
                Some(p) if p.tag != format!("v{kubernetes}") => {
                    out.push(format!("{c} at {}", p.tag))
                }
                Some(p) if !p.ready => out.push(format!("{c} not ready")),
                Some(_) => {}
            }
        }
    }
    out.join(", ")
}

impl Executor<'_> {
    /// The preflight: refuses (changing nothing) when the skew policy forbids the step, a node
    /// is missing or not Ready, a control-plane pod is down or a release file cannot be
    /// verified; else, when any node is behind, saves an etcd snapshot. Returns 1 when it saved
    /// one.
    pub async fn upgrade_preflight(&self, a: &Action) -> Result<usize, ExecError> {
        let Op::UpgradePreflight {
            kubernetes,
            kubelet,
            nodes,
            etcd,
        } = &a.op
        else {
            return Ok(0);
        };
        let kube = self.kube().await?;
        let (Some(target_k), Some(target_kl)) = (
            upgrade_skew::parse(kubernetes),
            upgrade_skew::parse(kubelet),
        ) else {
            return Err(ExecError::UpgradeRefused(vec![format!(
                "versions {kubernetes} / {kubelet} are not versions"
            )]));
        };
        let mut problems = Vec::new();
        let mut apiservers = Vec::new();
        let mut kubelets = Vec::new();
        let mut behind_nodes = Vec::new();
        for node in nodes {
            let control_plane = self
                .inv
                .machines
                .iter()
                .any(|m| &m.name == node && m.has(crate::inventory::Role::ControlPlane));
            let Some(state) = kube.node_state(node, CORDONED_FOR_UPGRADE).await? else {
                problems.push(format!(
                    "{node} is not a node of the cluster: `forgectl up` joins it, `forgectl node remove {node}` forgets it"
                ));
                continue;
            };
            if !state.ready {
                problems.push(format!(
                    "{node} is NotReady: bring it back (`forgectl machines start {node}`, `forgectl status`) or remove it (`forgectl node remove {node}`)"
                ));
            }
            let pods = if control_plane {
                kube.component_pods(node).await?
            } else {
                Vec::new()
            };
            if control_plane {
                for c in CONTROL_PLANE_COMPONENTS {
                    match pods.iter().find(|p| p.component == c) {
                        None => problems.push(format!("{node} runs no {c} pod")),
                        Some(p) if !p.ready && state.ready => {
                            problems.push(format!("{c} on {node} is not ready"))
                        }
                        Some(p) => {
                            if c == "kube-apiserver"
                                && let Some(v) = upgrade_skew::parse(&p.tag)
                            {
                                apiservers.push((node.clone(), v));
                            }
                        }
                    }
                }
            }
            if let Some(v) = upgrade_skew::parse(&state.kubelet) {
                kubelets.push((node.clone(), v));
            }
            if !at_target(&state, &pods, control_plane, kubernetes, kubelet)
                || state.annotation.is_some()
            {
                behind_nodes.push(node.clone());
            }
        }
        problems.extend(upgrade_skew::problems(
            &target_k,
            &target_kl,
            &apiservers,
            &kubelets,
        ));
        for name in crate::artifacts::KUBE_REQUIRED {
            let Some(art) = crate::artifacts::list(&self.inv.inventory)
                .into_iter()
                .find(|x| x.name == *name)
            else {
                continue;
            };
            if let Err(e) = crate::artifacts::get_verified(&art).await {
                problems.push(format!("{name} {}: {e}", art.version));
            }
        }
        // etcd members that run another version than the inventory's (the etcd phase rolls
        // them, one at a time, after the snapshot); every member must answer.
        if let Some(target) = etcd {
            let (tls, members) = self.etcd_access()?;
            let health = crate::etcd::health(&members, &tls, Duration::from_secs(3)).await;
            let running = crate::etcd::versions::running(&health);
            for h in health {
                match h.version.as_deref() {
                    Some(v) if v != target => behind_nodes.push(format!("{} (etcd {v})", h.name)),
                    Some(_) => {}
                    None => problems.push(format!(
                        "etcd member {} does not answer: {}",
                        h.name,
                        h.error.unwrap_or_default()
                    )),
                }
            }
            if let Ok(t) = semver::Version::parse(target) {
                problems.extend(crate::etcd::versions::problems(&t, &running));
            }
        }
        problems.extend(self.missing_target_images());
        if !problems.is_empty() {
            return Err(ExecError::UpgradeRefused(problems));
        }
        if behind_nodes.is_empty() {
            say(
                self.quiet,
                "forgectl",
                &format!(
                    "every node runs v{kubernetes}{} already; no snapshot needed",
                    etcd.as_ref()
                        .map(|e| format!(" and every etcd member {e}"))
                        .unwrap_or_default()
                ),
            );
            return Ok(0);
        }
        say(
            self.quiet,
            "forgectl",
            &format!(
                "preflight passed; to upgrade: {} — saving etcd first",
                behind_nodes.join(", ")
            ),
        );
        let snapshot = Action::local(
            None,
            Op::SnapshotEtcd {
                label: "pre-upgrade".into(),
                required: true,
            },
            "etcd before the upgrade",
        );
        self.snapshot_etcd(&snapshot).await
    }

    /// Where nodes cannot pull (`artifacts.images` set): the images the target's kubeadm
    /// deploys (control plane, kube-proxy, CoreDNS) and the pause image that the directory lacks.
    fn missing_target_images(&self) -> Vec<String> {
        let Some(dir) = &self.inv.inventory.artifacts.images else {
            return Vec::new();
        };
        let archives = match crate::images::scan(dir) {
            Ok(a) => a,
            Err(e) => return vec![format!("artifacts.images: {e}")],
        };
        crate::cluster_images::needed(&self.inv.inventory)
            .into_iter()
            .filter(|i| i.used_by.starts_with("kubeadm") || i.used_by.starts_with("containerd"))
            .filter(|i| !archives.iter().any(|a| a.refs.contains(&i.reference)))
            .map(|i| {
                format!(
                    "{} ({}) is not in artifacts.images ({}), and the nodes cannot pull: `forgectl artifacts fetch --images` puts it there",
                    i.reference,
                    i.used_by,
                    dir.display()
                )
            })
            .collect()
    }

    /// Upgrades the nodes of `actions` (all `UpgradeNode`): batch after batch, the nodes of a
    /// batch together. The first batch with a failure ends the run, after its other nodes
    /// finished.
    pub async fn upgrade_nodes(&self, actions: &[&Action]) -> Result<usize, ExecError> {
        let mut batches: Vec<(usize, Vec<&Action>)> = Vec::new();
        for a in actions {
            let Op::UpgradeNode { batch, .. } = &a.op else {
                continue;
            };
            match batches.iter_mut().find(|(b, _)| b == batch) {
                Some((_, list)) => list.push(a),
                None => batches.push((*batch, vec![a])),
            }
        }
        let mut changed = 0;
        for (_, batch) in batches {
            let results =
                futures::future::join_all(batch.iter().map(|a| self.upgrade_node(a))).await;
            let mut first_error = None;
            for r in results {
                match r {
                    Ok(n) => changed += n,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        Ok(changed)
    }

    /// One node's upgrade; returns 1 when it changed the node.
    async fn upgrade_node(&self, a: &Action) -> Result<usize, ExecError> {
        let Op::UpgradeNode {
            control_plane,
            kubernetes,
            kubelet,
            drain_timeout_s,
            ignore_preflight,
            kubeadm,
            packages,
            ..
        } = &a.op
        else {
            return Ok(0);
        };
        let Some(node) = a.host.as_deref() else {
            return Ok(0);
        };
        let stop = |step: &str, why: String| ExecError::Upgrade {
            node: node.to_string(),
            step: step.to_string(),
            why,
        };
        let kube = self.kube().await?;
        let state = kube
            .node_state(node, CORDONED_FOR_UPGRADE)
            .await?
            .ok_or_else(|| {
                stop(
                    "its first check",
                    "it is not a node of the cluster (`forgectl up` joins it)".into(),
                )
            })?;
        let pods = match control_plane {
            true => kube.component_pods(node).await?,
            false => Vec::new(),
        };
        if at_target(&state, &pods, *control_plane, kubernetes, kubelet) {
            if state.annotation.is_some() {
                kube.mark_node(node, CORDONED_FOR_UPGRADE, None, false)
                    .await?;
                say(
                    self.quiet,
                    node,
                    &format!("at v{kubelet} already; uncordoned (a run before stopped there)"),
                );
                return Ok(1);
            }
            say(self.quiet, node, &format!("at v{kubelet} already; skipped"));
            return Ok(0);
        }
        if !state.ready {
            return Err(stop(
                "its first check",
                format!(
                    "it is NotReady (kubelet {}), so nothing was done to it; nodes before it are upgraded",
                    state.kubelet
                ),
            ));
        }
        self.on_node(node, "true", Duration::from_secs(30))
            .await
            .map_err(|e| {
                stop(
                    "its first check",
                    format!("it cannot be reached, so nothing was done to it: {e}"),
                )
            })?;
        let started = Instant::now();
        say(
            self.quiet,
            node,
            &format!("upgrading from kubelet {} to v{kubelet}", state.kubelet),
        );
        let kubeadm_refs: Vec<&Action> = kubeadm.iter().collect();
        self.host_actions(&kubeadm_refs).await?;

        // Cordoned by an admin before: it stays cordoned after.
        let ours = state.annotation.is_some() || !state.unschedulable;
        if ours {
            kube.mark_node(
                node,
                CORDONED_FOR_UPGRADE,
                Some(&format!("v{kubelet}")),
                true,
            )
            .await?;
        }
        let drained = kube
            .drain(node, super::kube_api::wait_limit(*drain_timeout_s))
            .await
            .map_err(|e| stop("the drain", e.to_string()))?;
        say(
            self.quiet,
            node,
            &format!(
                "cordoned and drained: {} pod(s) evicted, {} kept (DaemonSet, static)",
                drained.evicted.len(),
                drained.kept.len()
            ),
        );

        let first = match control_plane {
            true => kube.kubeadm_version().await?.as_deref() != Some(&format!("v{kubernetes}")),
            false => false,
        };
        let ignore = if ignore_preflight.is_empty() {
            String::new()
        } else {
            format!(
                " --ignore-preflight-errors={}",
                shell_quote(&ignore_preflight.join(","))
            )
        };
        let command = match first {
            true => format!("kubeadm upgrade apply v{kubernetes} --yes{ignore}"),
            false => format!("kubeadm upgrade node{ignore}"),
        };
        // kubeadm's whole output stays on the node; an error shows its end.
        let logged = format!(
            "mkdir -p /var/log/forgectl && {{ {command}; }} > {KUBEADM_LOG} 2>&1; rc=$?; tail -n 12 {KUBEADM_LOG}; exit $rc"
        );
        self.on_node(node, &logged, KUBEADM_UPGRADE_TIMEOUT)
            .await
            .map_err(|e| stop(&format!("`{command}`"), e.to_string()))?;
        say(self.quiet, node, &format!("{command}: done"));

        let package_refs: Vec<&Action> = packages.iter().collect();
        self.host_actions(&package_refs).await?;
        self.on_node(
            node,
            "systemctl daemon-reload && systemctl restart kubelet.service",
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| stop("the kubelet restart", e.to_string()))?;

        // The restarted kubelet may restart the node's API server too: while it starts, the
        // API may refuse (RBAC not loaded yet: 403) or answer oddly. Those answers are waited
        // out like a node that is not Ready yet.
        let t = Instant::now();
        let limit = super::kube_api::wait_limit(READY_TIMEOUT.as_secs());
        loop {
            let seen = async {
                let state = kube.node_state(node, CORDONED_FOR_UPGRADE).await?;
                let pods = match control_plane {
                    true => kube.component_pods(node).await?,
                    false => Vec::new(),
                };
                Ok::<_, crate::kube::KubeError>((state, pods))
            }
            .await;
            let last = match seen {
                Ok((Some(s), pods))
                    if s.ready && at_target(&s, &pods, *control_plane, kubernetes, kubelet) =>
                {
                    break;
                }
                Ok((Some(s), pods)) => behind(&s, &pods, *control_plane, kubernetes, kubelet),
                Ok((None, _)) => {
                    return Err(stop(
                        "the wait for Ready at the target",
                        "the Node object is gone".into(),
                    ));
                }
                Err(e) => format!("the API did not answer: {e}"),
            };
            if t.elapsed() >= limit {
                return Err(stop(
                    "the wait for Ready at the target",
                    format!(
                        "after {} s: {last} (it stays cordoned; `forgectl exec --hosts {node} -- journalctl -u kubelet -n 50`)",
                        t.elapsed().as_secs()
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        if ours {
            kube.mark_node(node, CORDONED_FOR_UPGRADE, None, false)
                .await?;
        }
        say(
            self.quiet,
            node,
            &format!(
                "at v{kubelet}, Ready{}{} ({:.0} s)",
                if *control_plane {
                    ", control-plane pods at the target"
                } else {
                    ""
                },
                if ours {
                    ", uncordoned"
                } else {
                    "; left cordoned as it was before"
                },
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(1)
    }

    /// Runs `command` as root on `node`, bounded by `limit`; a failure is an error with the end
    /// of its output.
    pub(super) async fn on_node(
        &self,
        node: &str,
        command: &str,
        limit: Duration,
    ) -> Result<(), ExecError> {
        let machines = self.named(&[node.to_string()]);
        let eps = super::endpoints(self.inv, &machines);
        let ep = eps
            .first()
            .ok_or_else(|| ExecError::Unsupported(format!("{node} is not in the inventory")))?;
        let pool = self.pool().await?;
        let ssh = |e: SshError| ExecError::Hosts(vec![(node.to_string(), e)]);
        let s = pool.session(ep).await.map_err(ssh)?;
        let out = s
            .exec_with(&s.as_root(command), None, limit)
            .await
            .map_err(ssh)?;
        if !out.success() {
            return Err(failed(node, command, &out));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kubelet: &str, ready: bool) -> NodeState {
        NodeState {
            ready,
            kubelet: kubelet.into(),
            unschedulable: false,
            annotation: None,
        }
    }
    fn pods(tag: &str) -> Vec<ComponentPod> {
        CONTROL_PLANE_COMPONENTS
            .iter()
            .map(|c| ComponentPod {
                component: c.to_string(),
                tag: tag.into(),
                ready: true,
            })
            .collect()
    }

    #[test]
    fn a_control_plane_is_done_when_its_pods_are_too() {
        let s = state("v1.36.2", true);
        assert!(at_target(&s, &pods("v1.36.2"), true, "1.36.2", "1.36.2"));
        assert!(!at_target(&s, &pods("v1.35.3"), true, "1.36.2", "1.36.2"));
        assert!(at_target(&s, &[], false, "1.36.2", "1.36.2"));
        assert!(!at_target(
            &state("v1.35.3", true),
            &[],
            false,
            "1.36.2",
            "1.36.2"
        ));
        let mut p = pods("v1.36.2");
        p[2].ready = false;
        assert!(!at_target(&s, &p, true, "1.36.2", "1.36.2"));
        assert_eq!(
            behind(&state("v1.35.3", false), &p[..2], true, "1.36.2", "1.36.2"),
            "not Ready, kubelet v1.35.3, no kube-scheduler pod"
        );
    }
}
