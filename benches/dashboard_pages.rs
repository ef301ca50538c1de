//! The dashboard's pages with 3,500 tools, against a REAL control plane (kube-apiserver, etcd,
//! kube-controller-manager and kube-scheduler from `$FORGECTL_TEST_KUBE_ASSETS` or
//! `../shared/kube`, started by tests/support/kube.rs): the tools made by a real `accounts`
//! pass, 600 pods of 300 tools scheduled by the real scheduler onto 8 nodes of the node
//! stand-in, then every page asked 30 times in a row: time to first byte (p50, max) and size.
//!
//! Budgets (issue #22): ≤ 200 ms to the first byte and ≤ 100 KB of HTML per page.
//! Prints figures, asserts nothing. Needs root (the tools' homes are chowned).
//! Run: `cargo bench --bench dashboard_pages` (FORGECTL_BENCH_TOOLS=N for another size).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use forgectl::accounts::{Cluster, FileSource, PassOptions, sync};
use forgectl::inventory::accounts::Accounts;
use futures::stream::{self, StreamExt};
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

/// Tools that get a Deployment of two replicas.
const WITH_PODS: usize = 300;
/// Requests per page.
const ASKS: usize = 30;

async fn deployments(client: &kube::Client, prefix: &str, n: usize) {
    let ar = kube::api::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    stream::iter(0..n)
        .for_each_concurrent(8, |i| {
            let ar = ar.clone();
            async move {
                let ns = format!("{prefix}tool{i:04}");
                let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": ns},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web",
                                "image": "registry.example.test/web:1"}]}}}});
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
                if let Err(e) = api
                    .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
                    .await
                {
                    eprintln!("deployment in {ns}: {e}");
                }
            }
        })
        .await;
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let n: usize = std::env::var("FORGECTL_BENCH_TOOLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3500);
    let dir = tempfile::tempdir().unwrap();
    let api = support::kube::ControlPlane::start(support::kube::Options {
        audit: false,
        ..Default::default()
    });
    let admin = api.admin_kubeconfig("fgtest-bench", &dir.path().join("admin.conf"));
    let (file, _) = support::accounts_bed::numbered_tools(dir.path(), n);
    let cfg = Accounts::default();
    let cluster = Cluster {
        name: "bench".into(),
        server: api.url.clone(),
        ca_pem: api.ca.0.clone(),
    };
    let kube = forgectl::kube::Kube::from_kubeconfig(&admin).await.unwrap();
    let start = Instant::now();
    let s = sync(
        kube.client(),
        &cfg,
        &cluster,
        &FileSource { path: file },
        &PassOptions::default(),
    )
    .await
    .unwrap();
    println!(
        "{n} tools made by an accounts pass in {:.1} s ({} problems); real kube-apiserver at {}",
        start.elapsed().as_secs_f64(),
        s.problems.len(),
        api.url
    );
    let names: Vec<String> = (1..=8).map(|i| format!("bench-node-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let nodes = support::node_standin::Nodes::start(&admin, &refs, [127, 0, 0, 1].into());
    deployments(kube.client(), &cfg.namespace_prefix, WITH_PODS.min(n)).await;

    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let client = kube.client().clone();
    let started = Instant::now();
    let server = tokio::spawn(async move {
        forgectl::dashboard::run(
            &client,
            "bench",
            forgectl::dashboard::extras::Sources::default(),
            ([127, 0, 0, 1], 0).into(),
            |addr, _| {
                let _ = tx.send(addr);
            },
            async {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    let addr = rx.await.unwrap();
    println!(
        "dashboard ready (first lists of every watch) in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    // Until the pods run (the stand-in gives them status).
    let wanted = 2 * WITH_PODS.min(n);
    let t = Instant::now();
    let mut running = 0;
    while t.elapsed() < Duration::from_secs(300) {
        let v: serde_json::Value = http
            .get(format!("{base}/"))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        running = v["tool_pods"]["running"].as_u64().unwrap_or(0) as usize;
        if running >= wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{running} of {wanted} tool pods running after {:.1} s",
        t.elapsed().as_secs_f64()
    );

    println!(
        "{:<34} {:>9} {:>9} {:>10}   budget: <= 200 ms to the first byte, <= 100 KB",
        "page", "p50 ms", "max ms", "size KB"
    );
    let pages = [
        ("/", "text/html"),
        ("/", "application/json"),
        ("/tools", "text/html"),
        ("/tools?page=9", "text/html"),
        ("/tools?q=tool12", "text/html"),
        ("/tools/tool0001", "text/html"),
        ("/tools/tool0001", "application/json"),
        ("/tools/tool3333", "text/html"),
        ("/metrics", "text/plain"),
    ];
    for (path, accept) in pages {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..ASKS {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .header("Accept", accept)
                .send()
                .await
                .unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            size = r.bytes().await.unwrap().len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:<34} {:>9.1} {:>9.1} {:>10.1}",
            format!("{path} ({accept})"),
            times[ASKS / 2],
            times[ASKS - 1],
            size as f64 / 1024.0
        );
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(nodes);
}
