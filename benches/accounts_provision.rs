//! Provisioning tool accounts against a REAL control plane (kube-apiserver, etcd and
//! kube-controller-manager from `$FORGECTL_TEST_KUBE_ASSETS` or `../shared/kube`, started by
//! tests/support/kube.rs), in one run on the same server:
//! 1. a plain client creating the five objects of each tool (Namespace, ResourceQuota,
//!    LimitRange, RoleBinding to the tools' ClusterRole, NetworkPolicy) with 8 requests in
//!    flight: the best a simple client does there;
//! 2. `accounts sync` from scratch (objects, certificates through the CSR API signed by the
//!    controller-manager, kubeconfigs written to the homes);
//! 3. steady-state passes over the unchanged tools;
//! 4. `accounts run` (the controller, in-process) over them: a tool added to the accounts file
//!    until its kubeconfig is in its home.
//!
//! Budgets (ARCHITECTURE §8): 3,500 tools from scratch ≤ 60 s and ≥ 0.9× the plain client's
//! writes/s; steady state ≤ 1 s with zero writes; a new tool's kubeconfig ≤ 2 s. Prints figures, asserts nothing. Needs root
//! (the kubeconfigs are chowned to each tool).
//! Run: `cargo bench --bench accounts_provision` (FORGECTL_BENCH_TOOLS=N for another size).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use forgectl::accounts::{Cluster, FileSource, PassOptions, Summary, sync};
use forgectl::inventory::accounts::Accounts;
use futures::stream::{self, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

/// Requests the plain client keeps in flight.
const PLAIN_IN_FLIGHT: usize = 8;

fn line(what: &str, secs: f64, s: &Summary) {
    println!(
        "{what:<22} {secs:>8.2} s  created {:>5}  renewed {:>5}  unchanged {:>5}  problems {:>3}  writes {:>6}  ({:>6.0} writes/s)",
        s.created.len(),
        s.renewed.len(),
        s.unchanged,
        s.problems.len(),
        s.writes,
        s.writes as f64 / secs.max(1e-9),
    );
}

/// The five objects a tool gets, as a plain client would write them.
fn plain_objects(cfg: &Accounts, name: &str) -> Vec<Value> {
    let ns = format!("plain-{name}");
    let meta = |n: &str| json!({"name": n, "namespace": ns});
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("tool-quota"),
            "spec": {"hard": cfg.quota}}),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta("tool-limits"),
            "spec": {"limits": [{"type": "Container", "default": cfg.limits.default,
                "defaultRequest": cfg.limits.default_request, "max": cfg.limits.max}]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta("tool"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": forgectl::accounts::desired::TOOL_CLUSTER_ROLE},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                "name": format!("plain-{name}")}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta("tool-isolate"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {}}]}]}}),
    ]
}

fn resource(obj: &Value) -> ApiResource {
    let (group, version) = match obj["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            obj["apiVersion"].as_str().unwrap().to_string(),
        ),
    };
    let kind = obj["kind"].as_str().unwrap();
    ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(&group, &version, kind))
}

/// Creates each tool's objects (its namespace first), `PLAIN_IN_FLIGHT` tools at a time; the
/// number of objects written.
async fn plain_client(client: &kube::Client, cfg: &Accounts, n: usize) -> usize {
    let written: Vec<usize> = stream::iter(0..n)
        .map(|i| async move {
            let objs = plain_objects(cfg, &format!("tool{i:04}"));
            let mut done = 0;
            for o in objs {
                let ar = resource(&o);
                let api: Api<DynamicObject> = match o["metadata"]["namespace"].as_str() {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                    None => Api::all_with(client.clone(), &ar),
                };
                let obj: DynamicObject = serde_json::from_value(o).unwrap();
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => done += 1,
                    Err(e) => eprintln!("plain client: {e}"),
                }
            }
            done
        })
        .buffer_unordered(PLAIN_IN_FLIGHT)
        .collect()
        .await;
    written.iter().sum()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FORGECTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("forgectl=debug")),
        )
        .with_writer(std::io::stderr)
        .init();
    let n: usize = std::env::var("FORGECTL_BENCH_TOOLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3500);
    let dir = tempfile::tempdir().unwrap();
    let api = support::kube::ControlPlane::start(support::kube::Options {
        scheduler: false,
        audit: false,
        ..Default::default()
    });
    let admin = api.admin_kubeconfig("fgtest-bench", &dir.path().join("admin.conf"));
    let (file, mut tools) = support::accounts_bed::numbered_tools(dir.path(), n);
    let source = FileSource { path: file.clone() };
    let cfg = Accounts::default();
    let cluster = Cluster {
        name: "bench".into(),
        server: api.url.clone(),
        ca_pem: api.ca.0.clone(),
    };
    let kube = forgectl::kube::Kube::from_kubeconfig(&admin).await.unwrap();
    println!(
        "{n} tools; real kube-apiserver at {} (binaries: {}); forgectl concurrency {}, plain client {PLAIN_IN_FLIGHT} in flight",
        api.url,
        support::kube::assets().display(),
        cfg.concurrency
    );

    let start = Instant::now();
    let plain = plain_client(kube.client(), &cfg, n).await;
    let plain_secs = start.elapsed().as_secs_f64();
    let plain_rate = plain as f64 / plain_secs;
    println!(
        "{:<22} {plain_secs:>8.2} s  objects {plain:>6}  ({plain_rate:>6.0} writes/s)",
        "plain client"
    );

    let mut scratch = None;
    for what in ["from scratch", "steady state", "steady state (again)"] {
        let start = Instant::now();
        let s = sync(
            kube.client(),
            &cfg,
            &cluster,
            &source,
            &PassOptions::default(),
        )
        .await
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        line(what, secs, &s);
        for p in s.problems.iter().take(3) {
            println!("  problem: {p}");
        }
        scratch.get_or_insert((secs, s.writes));
    }
    // The controller: one more tool in the file, until its kubeconfig is written.
    let port = support::kube::free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let opts = forgectl::accounts::controller::RunOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        interval: std::time::Duration::from_secs(3600),
        lease_namespace: "kube-system".into(),
        lease_name: "forgectl-accounts-bench".into(),
        identity: "bench".into(),
        lease_duration: std::time::Duration::from_secs(15),
        watch_file: Some(file.clone()),
        pass_timeout: std::time::Duration::from_secs(600),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = {
        let (client, cfg, cluster, source) = (
            kube.client().clone(),
            cfg.clone(),
            cluster.clone(),
            FileSource { path: file.clone() },
        );
        tokio::spawn(async move {
            forgectl::accounts::controller::run(&client, &cfg, &cluster, &source, &opts, async {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    // Its first pass (a steady one) done, as its metrics say.
    let first = Instant::now();
    loop {
        let metrics = match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if metrics.contains("forgectl_accounts_passes_total{result=\"ok\"} 1") {
            break;
        }
        assert!(
            first.elapsed() < std::time::Duration::from_secs(120),
            "no first pass"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let home = dir.path().join("homes/newtool");
    std::fs::create_dir_all(&home).unwrap();
    tools.push(
        json!({"name": "newtool", "uid": 49999, "gid": 49999, "home": home,
        "maintainers": ["alice"]}),
    );
    let added = Instant::now();
    std::fs::write(
        &file,
        serde_json::to_string(&json!({"tools": tools})).unwrap(),
    )
    .unwrap();
    let kubeconfig = home.join(".kube/config");
    while !kubeconfig.exists() && added.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!(
        "{:<22} {:>8.2} s  a tool added to the file until its kubeconfig is in its home (budget: <= 2 s){}",
        "accounts run",
        added.elapsed().as_secs_f64(),
        if kubeconfig.exists() {
            ""
        } else {
            "  NOT WRITTEN"
        }
    );
    let _ = stop_tx.send(());
    let _ = controller.await;

    if let Some((secs, writes)) = scratch {
        let rate = writes as f64 / secs;
        println!(
            "from scratch: {:.1} writes per tool, {rate:.0} writes/s = {:.2}x the plain client's {plain_rate:.0} writes/s \
             (budget: {n} tools <= {:.0} s at 3,500 tools' scale, >= 0.9x; steady state <= 1 s, 0 writes)",
            writes as f64 / n as f64,
            rate / plain_rate,
            60.0 * n as f64 / 3500.0,
        );
    }
}
