//! `forgectl node drain|uncordon` against a REAL control plane (kube-apiserver, the
//! controller-manager's ReplicaSet, DaemonSet and disruption controllers, kube-scheduler; the pods
//! run by the node stand-in of tests/support/node_standin.rs): a pod no controller would make
//! again stops the drain before anything is evicted, a PodDisruptionBudget that allows nothing
//! holds it and is named, and once the budget allows one at a time the drain empties the node
//! while the ready replicas never drop below the budget's minAvailable.

mod support;

use assert_cmd::Command;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLUSTER: &str = "fgtest-drain";
const NS: &str = "fgtest-drain";
const A: &str = "fgtest-drain-a";
const B: &str = "fgtest-drain-b";

fn forgectl(base: &Path, inv: &Path, args: &[&str]) -> (bool, String) {
    let t = Instant::now();
    let out = Command::cargo_bin("forgectl")
        .unwrap()
        .env("NO_COLOR", "1")
        .env_remove("FORGECTL_INVENTORY")
        .arg("--state-dir")
        .arg(base)
        .arg("-f")
        .arg(inv)
        .args(args)
        .output()
        .unwrap();
    eprintln!("forgectl {args:?}: {:.1} s", t.elapsed().as_secs_f64());
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{what}: {:.1} s", t.elapsed().as_secs_f64());
}

/// Ready, not terminating pods of app=web, as the disruption controller counts them.
fn healthy(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

fn on_node(api: &support::kube::ControlPlane, node: &str, app: &str) -> usize {
    api.list("pods", &format!("app={app}"))
        .iter()
        .filter(|p| p["metadata"]["namespace"] == NS && p["spec"]["nodeName"] == node)
        .count()
}

#[test]
fn drain_respects_budgets_and_refuses_to_lose_pods() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("state");
    let state = forgectl::state::StateDir::open(&base, CLUSTER).unwrap();
    let api = support::kube::shared();
    let admin: PathBuf = api.admin_kubeconfig("fgtest-drain", &state.path().join("admin.conf"));
    drop(state);
    let _nodes =
        support::node_standin::Nodes::start(&admin, &[A, B], std::net::Ipv4Addr::LOCALHOST.into());
    let inv = tmp.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "name: {CLUSTER}\nprovider: static\n\
             network:\n  machine_cidr: 192.0.2.0/24\ningress:\n  enabled: false\n\
             groups:\n  - name: etcd\n    roles: [etcd]\n    hosts: [{{name: fgtest-drain-etcd, address: 192.0.2.10}}]\n\
             \x20 - name: control\n    roles: [control-plane]\n    hosts: [{{name: {A}, address: 192.0.2.11}}]\n\
             \x20 - name: worker\n    roles: [worker]\n    hosts: [{{name: {B}, address: 192.0.2.12}}]\n"
        ),
    )
    .unwrap();

    // Every pod on A: B is cordoned while they are made.
    let (ok, out) = forgectl(&base, &inv, &["node", "drain", B, "--timeout", "30"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{B}: cordoned; 0 pod(s) evicted")),
        "{out}"
    );
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {NS}\nspec:\n  replicas: 3\n\
         \x20 selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n\
         \x20   spec:\n      containers: [{{name: web, image: registry.k8s.io/pause:3.10}}]\n---\n\
         apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\n  namespace: {NS}\nspec:\n\
         \x20 selector:\n    matchLabels: {{app: agent}}\n  template:\n    metadata:\n      labels: {{app: agent}}\n\
         \x20   spec:\n      containers: [{{name: agent, image: registry.k8s.io/pause:3.10}}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: lonely\n  namespace: {NS}\n  labels: {{app: lonely}}\nspec:\n\
         \x20 nodeName: {A}\n  containers: [{{name: c, image: registry.k8s.io/pause:3.10}}]\n---\n\
         apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\n  namespace: {NS}\nspec:\n\
         \x20 minAvailable: 3\n  selector:\n    matchLabels: {{app: web}}\n"
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(api.client("fgtest-drain-watch", &["system:masters"]));
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let web = ListParams::default().labels("app=web");
    let list = |lp: &ListParams| rt.block_on(pods.list(lp)).unwrap().items;
    wait_until("3 web pods ready on A", Duration::from_secs(60), || {
        healthy(&list(&web)) == 3 && on_node(api, A, "web") == 3
    });
    wait_until("the agent on both nodes", Duration::from_secs(60), || {
        on_node(api, A, "agent") == 1 && on_node(api, B, "agent") == 1
    });
    wait_until("the budget counted", Duration::from_secs(60), || {
        api.get("poddisruptionbudgets", Some(NS), "web")
            .is_some_and(|b| b["status"]["currentHealthy"] == 3)
    });
    let (ok, out) = forgectl(&base, &inv, &["node", "uncordon", B]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{B}: schedulable again")), "{out}");

    // A pod no controller would make again: refused before anything is evicted.
    let (ok, out) = forgectl(&base, &inv, &["node", "drain", A, "--timeout", "20"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("belong to no controller and would be lost, so nothing was evicted"),
        "{out}"
    );
    assert!(out.contains(&format!("{NS}/lonely")), "{out}");
    assert_eq!(on_node(api, A, "web"), 3);
    assert_eq!(
        api.get("nodes", None, A).unwrap()["spec"]["unschedulable"],
        true,
        "the node stays cordoned"
    );
    api.kubectl(&["-n", NS, "delete", "pod", "lonely", "--wait=true"]);

    // A budget that allows no disruption holds the drain, and is named.
    let (ok, out) = forgectl(&base, &inv, &["node", "drain", A, "--timeout", "5"]);
    assert!(!ok, "{out}");
    assert!(out.contains("pod(s) still on it"), "{out}");
    assert!(
        out.contains(&format!(
            "held by PodDisruptionBudget {NS}/web (minAvailable 3: 3 healthy, 3 needed, 0 disruption(s) allowed)"
        )),
        "{out}"
    );
    assert_eq!(on_node(api, A, "web"), 3);

    // One at a time: the drain empties A, and the ready replicas never go below 2.
    api.kubectl(&[
        "-n",
        NS,
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        "{\"spec\":{\"minAvailable\":2}}",
    ]);
    wait_until("the budget allows one", Duration::from_secs(60), || {
        api.get("poddisruptionbudgets", Some(NS), "web")
            .is_some_and(|b| b["status"]["disruptionsAllowed"] == 1)
    });
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (lowest, stop) = (lowest.clone(), stop.clone());
        let pods = pods.clone();
        let web = web.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(l) = rt.block_on(pods.list(&web)) {
                    lowest.fetch_min(healthy(&l.items), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (ok, out) = forgectl(&base, &inv, &["node", "drain", A, "--timeout", "120"]);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{A}: was cordoned already; 3 pod(s) evicted")),
        "{out}"
    );
    assert!(out.contains(&format!("kept: {NS}/agent-")), "{out}");
    assert!(out.contains("(DaemonSet)"), "{out}");
    let low = lowest.load(Ordering::Relaxed);
    assert!((2..=3).contains(&low), "ready replicas fell to {low}");
    assert_eq!(on_node(api, A, "web"), 0);
    wait_until("3 web pods ready on B", Duration::from_secs(60), || {
        healthy(&list(&web)) == 3 && on_node(api, B, "web") == 3
    });
    assert_eq!(on_node(api, A, "agent"), 1, "DaemonSet pods stay");

    let (ok, out) = forgectl(&base, &inv, &["node", "uncordon", A]);
    assert!(ok, "{out}");
    let (ok, out) = forgectl(&base, &inv, &["node", "uncordon", A]);
    assert!(ok && out.contains("was schedulable already"), "{out}");
    let (ok, out) = forgectl(&base, &inv, &["node", "drain", "nope"]);
    assert!(!ok && out.contains("no machine named nope"), "{out}");
}
