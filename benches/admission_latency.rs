//! Admission webhook latency at a steady 500 requests/s for 10 s over HTTPS (in-process server,
//! keep-alive clients as the API server uses): p50 / p99 / max, alternating an allowed pod, a
//! denied pod and an ingress. Budget (ARCHITECTURE.md §7): p99 ≤ 5 ms. Prints figures, asserts
//! nothing. Run: `cargo bench --bench admission_latency`.

use forgectl::admission::server::request_body;
use forgectl::admission::{Policy, ServeOptions, serve};
use serde_json::json;
use std::time::{Duration, Instant};

const RATE: u64 = 500;
const SECONDS: u64 = 10;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::NoCa;
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let policy = Policy {
        allowed_registries: vec!["registry.toolforge.test".into(), "quay.io/toolforge".into()],
        tool_domain: "toolforge.test".into(),
        namespace_prefix: "tool-".into(),
    };
    let opts = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        reload_every: Duration::from_secs(30),
    };
    tokio::spawn(serve(policy, opts, Some(tx)));
    let port = rx.await.unwrap().port();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let pod = |image: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "init", "image": "registry.toolforge.test/base"}],
                     "containers": [{"name": "main", "image": image}]}})
    };
    let bodies = [
        (
            "images",
            request_body(
                "u",
                ("", "v1", "Pod"),
                "pods",
                "tool-a",
                &pod("registry.toolforge.test/python:3.12"),
            ),
        ),
        (
            "images",
            request_body(
                "u",
                ("", "v1", "Pod"),
                "pods",
                "tool-a",
                &pod("docker.io/evil/miner"),
            ),
        ),
        (
            "ingress",
            request_body(
                "u",
                ("networking.k8s.io", "v1", "Ingress"),
                "ingresses",
                "tool-a",
                &json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
                    "spec": {"rules": [{"host": "a.toolforge.test"}]}}),
            ),
        ),
    ];
    let bodies: Vec<(String, Vec<u8>)> = bodies
        .iter()
        .map(|(r, b)| {
            (
                format!("https://127.0.0.1:{port}/validate/{r}"),
                serde_json::to_vec(b).unwrap(),
            )
        })
        .collect();
    // Warm the connection pool.
    for (url, body) in &bodies {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
    }
    let total = RATE * SECONDS;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut tasks = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let (url, body) = bodies[(i % 3) as usize].clone();
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let ok = matches!(&r, Ok(r) if r.status().is_success());
            if let Ok(r) = r {
                let _ = r.bytes().await;
            }
            (t.elapsed(), ok)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await.unwrap();
        if !ok {
            failed += 1;
        }
        lat.push(d);
    }
    let wall = started.elapsed();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "admission webhooks: {total} reviews at {RATE}/s over HTTPS in {:.1} s, {failed} failed",
        wall.as_secs_f64()
    );
    println!(
        "latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (budget: p99 ≤ 5 ms)",
        q(0.50).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
}
