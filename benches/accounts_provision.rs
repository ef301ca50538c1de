//! Provisioning 3,500 tool accounts from scratch, then a steady-state pass over them, against
//! the API-server TEST DOUBLE (tests/support/apiserver: server-side apply, CSR approval with an
//! asynchronous signer, RBAC) over HTTPS, homes in a temporary directory. Budgets
//! (ARCHITECTURE.md §7): from scratch ≤ 30 s, steady state ≤ 2 s with zero writes. Prints
//! figures, asserts nothing. Needs root (the kubeconfigs are chowned to each tool).
//! Run: `cargo bench --bench accounts_provision` (FORGECTL_BENCH_TOOLS=N for another size).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use forgectl::accounts::{Cluster, FileSource, PassOptions, Summary, sync};
use forgectl::inventory::accounts::Accounts;
use serde_json::json;
use support::apiserver::start_with_admin;

fn line(what: &str, secs: f64, s: &Summary, writes: usize, requests: usize) {
    println!(
        "{what:<28} {secs:>7.2} s  created {:>5}  renewed {:>5}  unchanged {:>5}  problems {:>3}  writes {writes:>6}  requests {requests:>6}",
        s.created.len(),
        s.renewed.len(),
        s.unchanged,
        s.problems.len(),
    );
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
    let (api, admin, ca) = start_with_admin(dir.path());
    let server = format!("https://{}", api.addr);
    let tools: Vec<_> = (0..n)
        .map(|i| {
            let home = dir.path().join(format!("homes/tool{i:04}"));
            std::fs::create_dir_all(&home).unwrap();
            json!({"name": format!("tool{i:04}"), "uid": 50000 + i, "gid": 50000 + i,
                "home": home, "maintainers": ["alice"]})
        })
        .collect();
    let file = dir.path().join("tools.yaml");
    std::fs::write(
        &file,
        serde_json::to_string(&json!({"tools": tools})).unwrap(),
    )
    .unwrap();
    let source = FileSource { path: file };
    let cfg = Accounts::default();
    let cluster = Cluster {
        name: "bench".into(),
        server,
        ca_pem: ca.0.clone(),
    };
    let kube = forgectl::kube::Kube::from_kubeconfig(&admin).await.unwrap();
    println!(
        "{n} tools, concurrency {}, API-server test double on {}",
        cfg.concurrency, api.addr
    );
    let mut last = (0, 0);
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
        let (w, r) = (api.writes(), api.requests().len());
        line(what, secs, &s, w - last.0, r - last.1);
        for p in s.problems.iter().take(3) {
            println!("  problem: {p}");
        }
        last = (w, r);
    }
}
