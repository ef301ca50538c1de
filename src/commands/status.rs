//! `forgectl status`: the cluster at a glance — etcd quorum, every node (registered, Ready,
//! kubelet version, roles), the system workloads (rolled out or not) and the system pods that
//! are not running. Exit 1 when any of it is not as it should be.

use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

use super::{CommandError, ExitCode, load_inventory_quiet};
use crate::executor::Executor;
use crate::interrupt::Interrupt;
use crate::inventory::Role;
use crate::kube::Kube;
use crate::output::{Format, Options};
use crate::phases::kubeadm_init::STATE_ADMIN_CONF;

/// Namespaces whose workloads and pods the summary shows.
const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "ingress-nginx"];

/// One node as the summary shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLine {
    /// Name.
    pub name: String,
    /// `Ready`, `NotReady` or `not registered`.
    pub state: String,
    /// Roles from the `node-role.kubernetes.io/*` labels.
    pub roles: Vec<String>,
    /// kubelet version.
    pub version: String,
}

/// One DaemonSet or Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadLine {
    /// `DaemonSet ns/name`.
    pub name: String,
    /// Ready / wanted.
    pub ready: String,
    /// Rolled out.
    pub ok: bool,
}

/// The nodes of `want` (the inventory's) and any others the API knows, in that order.
pub fn node_lines(nodes: &[Value], want: &[String]) -> Vec<NodeLine> {
    let line = |n: &Value| {
        let ready = n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let roles = n["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
            .map(str::to_string)
            .collect();
        NodeLine {
            name: n["metadata"]["name"].as_str().unwrap_or_default().into(),
            state: if ready { "Ready" } else { "NotReady" }.into(),
            roles,
            version: n["status"]["nodeInfo"]["kubeletVersion"]
                .as_str()
                .unwrap_or("-")
                .into(),
        }
    };
    let mut out: Vec<NodeLine> = want
        .iter()
        .map(|w| {
            nodes
                .iter()
                .find(|n| n["metadata"]["name"] == w.as_str())
                .map(line)
                .unwrap_or_else(|| NodeLine {
                    name: w.clone(),
                    state: "not registered".into(),
                    roles: Vec::new(),
                    version: "-".into(),
                })
        })
        .collect();
    out.extend(
        nodes
            .iter()
            .filter(|n| !want.iter().any(|w| n["metadata"]["name"] == w.as_str()))
            .map(line),
    );
    out
}

/// A workload's line.
pub fn workload_line(kind: &str, w: &Value) -> WorkloadLine {
    let st = &w["status"];
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    let ready = match kind {
        "DaemonSet" => format!("{}/{}", n("numberReady"), n("desiredNumberScheduled")),
        _ => format!(
            "{}/{}",
            n("availableReplicas"),
            w["spec"]["replicas"].as_i64().unwrap_or(1)
        ),
    };
    WorkloadLine {
        name: format!(
            "{kind} {}/{}",
            w["metadata"]["namespace"].as_str().unwrap_or_default(),
            w["metadata"]["name"].as_str().unwrap_or_default()
        ),
        ready,
        ok: crate::kube::rolled_out(kind, w).is_ok(),
    }
}

/// Prints the summary; exit 1 when etcd, a node, a workload or a system pod is not well.
pub async fn status(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let inv = load_inventory_quiet(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
    let exec = Executor::new(&inv, &dir, true, Interrupt::never());
    // etcd
    let etcd = match exec.etcd_access() {
        Ok((tls, members)) => {
            let health = crate::etcd::health(&members, &tls, Duration::from_secs(5)).await;
            let healthy = health.iter().filter(|m| m.ok).count();
            Some((healthy, members.len()))
        }
        Err(_) => None,
    };
    // The API
    let admin = dir.path().join(STATE_ADMIN_CONF);
    let want: Vec<String> = inv
        .machines
        .iter()
        .filter(|m| m.has(Role::ControlPlane) || m.has(Role::Worker))
        .map(|m| m.name.clone())
        .collect();
    let mut api_error = None;
    let mut nodes = Vec::new();
    let mut workloads = Vec::new();
    let mut pods_behind = Vec::new();
    if admin.exists() {
        let listed = async {
            let kube = Kube::from_kubeconfig(&admin).await?;
            let n = kube.list(("", "v1", "Node"), None).await?;
            let mut w = Vec::new();
            let mut p = Vec::new();
            for ns in SYSTEM_NAMESPACES {
                for kind in ["DaemonSet", "Deployment"] {
                    for o in kube.list(("apps", "v1", kind), Some(ns)).await? {
                        w.push(workload_line(kind, &o));
                    }
                }
                let pods = kube.list(("", "v1", "Pod"), Some(ns)).await?;
                p.extend(
                    pods.iter()
                        .filter_map(crate::kube::pod_behind)
                        .map(|b| format!("{ns}/{b}")),
                );
            }
            Ok::<_, crate::kube::KubeError>((n, w, p))
        };
        match tokio::time::timeout(Duration::from_secs(30), listed).await {
            Ok(Ok((n, w, p))) => {
                nodes = node_lines(&n, &want);
                workloads = w;
                pods_behind = p;
            }
            Ok(Err(e)) => api_error = Some(e.to_string()),
            Err(_) => api_error = Some("the API server did not answer within 30 s".into()),
        }
    } else {
        api_error = Some(format!(
            "no admin kubeconfig at {} (the kubeadm-init phase fetches it)",
            admin.display()
        ));
    }
    let etcd_ok = etcd
        .is_some_and(|(h, t)| crate::commands::quorum(t, h) == crate::commands::Quorum::Healthy);
    let ok = etcd_ok
        && api_error.is_none()
        && nodes.iter().all(|n| n.state == "Ready")
        && workloads.iter().all(|w| w.ok)
        && pods_behind.is_empty();
    match opts.format {
        Format::Json => crate::outln!(
            "{}",
            json!({
                "cluster": inv.inventory.name,
                "ok": ok,
                "etcd": etcd.map(|(h, t)| json!({"healthy": h, "members": t})),
                "api_error": api_error,
                "nodes": nodes,
                "workloads": workloads,
                "pods_not_running": pods_behind,
            })
        ),
        Format::Text => {
            crate::outln!("Cluster {}", inv.inventory.name);
            match etcd {
                Some((h, t)) => crate::outln!("etcd: {h} of {t} member(s) healthy"),
                None => crate::outln!("etcd: no PKI in the state dir yet"),
            }
            if let Some(e) = &api_error {
                crate::outln!("API: {e}");
            }
            if !nodes.is_empty() {
                let w = nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
                crate::outln!("\n{:w$}  {:14}  {:10}  ROLES", "NODE", "STATE", "KUBELET");
                for n in &nodes {
                    crate::outln!(
                        "{:w$}  {:14}  {:10}  {}",
                        n.name,
                        n.state,
                        n.version,
                        if n.roles.is_empty() {
                            "-".into()
                        } else {
                            n.roles.join(",")
                        }
                    );
                }
            }
            if !workloads.is_empty() {
                let w = workloads
                    .iter()
                    .map(|l| l.name.len())
                    .max()
                    .unwrap_or(8)
                    .max(8);
                crate::outln!("\n{:w$}  {:7}  STATE", "WORKLOAD", "READY");
                for l in &workloads {
                    crate::outln!(
                        "{:w$}  {:7}  {}",
                        l.name,
                        l.ready,
                        if l.ok { "rolled out" } else { "rolling out" }
                    );
                }
            }
            if !pods_behind.is_empty() {
                crate::outln!("\nPods not running and ready: {}", pods_behind.join(", "));
            }
            crate::outln!(
                "\n{}",
                if ok {
                    "status: healthy"
                } else {
                    "status: NOT healthy (see above; `forgectl up` converges what forgectl manages)"
                }
            );
        }
    }
    Ok(if ok { ExitCode::Ok } else { ExitCode::Failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_in_inventory_order_then_the_others() {
        let nodes = [
            json!({"metadata": {"name": "w1", "labels": {}}, "status": {"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": {"kubeletVersion": "v1.35.0"}}}),
            json!({"metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.35.0"}}}),
            json!({"metadata": {"name": "stray"}, "status": {}}),
        ];
        let want = ["cp1".to_string(), "w1".to_string(), "w2".to_string()];
        let lines = node_lines(&nodes, &want);
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.name.as_str(), l.state.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("cp1", "Ready"),
                ("w1", "NotReady"),
                ("w2", "not registered"),
                ("stray", "NotReady")
            ]
        );
        assert_eq!(lines[0].roles, ["control-plane"]);
    }
}
