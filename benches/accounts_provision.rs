//! Provisioning tool accounts against a REAL control plane (kube-apiserver, etcd and
//! kube-controller-manager from `$FORGECTL_TEST_KUBE_ASSETS` or `../shared/kube`, started by
//! tests/support/kube.rs), in one run on the same box, each client on a fresh control plane of
//! the same binaries and flags (none pays for the objects of the one before):
//! 1. a plain client making the writes forgectl makes for each tool: its five objects
//!    (Namespace, ResourceQuota, LimitRange, RoleBinding to the tools' ClusterRole,
//!    NetworkPolicy), a CertificateSigningRequest and its approval (so the controller-manager's
//!    signer does the same work for both clients), with 8 requests in flight: the best a simple
//!    client does there;
//! 2. `accounts sync` from scratch (objects, certificates through the CSR API signed by the
//!    controller-manager, kubeconfigs written to the homes);
//! 3. steady-state passes over the unchanged tools;
//! 4. `accounts run` (the controller, in-process) over them: a tool added to the accounts file
//!    until its kubeconfig is in its home.
//!
//! Budgets (ARCHITECTURE §8): 3,500 tools from scratch ≤ 60 s and ≥ 0.9× the plain client's
//! writes/s; steady state ≤ 1 s with zero writes; a new tool's kubeconfig ≤ 2 s. Prints figures, asserts nothing. Needs root
//! (the kubeconfigs are chowned to each tool).
//! Run: `cargo bench --bench accounts_provision` (FORGECTL_BENCH_TOOLS=N for another size,
//! FORGECTL_BENCH_CONCURRENCY=N for another number of forgectl's tools in flight).

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

fn line(what: &str, secs: f64, cpu: f64, s: &Summary) {
    println!(
        "{what:<22} {secs:>8.2} s  created {:>5}  renewed {:>5}  unchanged {:>5}  problems {:>3}  writes {:>6}  ({:>6.0} writes/s)  client CPU {cpu:.2} s",
        s.created.len(),
        s.renewed.len(),
        s.unchanged,
        s.problems.len(),
        s.writes,
        s.writes as f64 / secs.max(1e-9),
    );
}

/// What the control plane's processes spent between two readings of `cpu_seconds`.
fn server_cpu(before: &[(String, f64)], after: &[(String, f64)]) -> String {
    let spent: Vec<String> = after
        .iter()
        .map(|(name, secs)| {
            let was = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, s)| *s);
            format!("{name} {:.1}", secs - was)
        })
        .collect();
    format!("server CPU s: {}", spent.join(", "))
}

/// CPU seconds (user + system) this process has used so far: the client's own share of the
/// box's two cores (the control plane runs in processes of its own).
fn client_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The five objects a tool gets, as a plain client would write them, in namespace `ns`.
fn plain_objects(cfg: &Accounts, ns: &str) -> Vec<Value> {
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
                "name": format!("user-{ns}")}]}),
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

/// A certificate request for `user` (PEM, base64 for the API), as forgectl makes one.
fn plain_request(user: &str) -> String {
    use base64::Engine;
    let id = forgectl::accounts::credentials::Identity {
        user: user.into(),
        group: "forgectl:tools".into(),
    };
    let (_, pem) = forgectl::accounts::credentials::new_request(&id).unwrap();
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// Creates a certificate request for the tool and approves it: 2 writes (the signer then signs
/// it, as it signs forgectl's).
async fn plain_certificate(client: &kube::Client, name: &str, request: &str) -> usize {
    let name = format!("plain-{name}");
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"request": request, "signerName": forgectl::accounts::desired::SIGNER,
            "expirationSeconds": 86400, "usages": ["client auth", "digital signature"]}}))
    .unwrap();
    let mut created = match api.create(&PostParams::default(), &csr).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("plain client: {e}");
            return 0;
        }
    };
    created
        .status
        .get_or_insert_with(Default::default)
        .conditions = Some(vec![
        k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("PlainClient".into()),
            ..Default::default()
        },
    ]);
    match api
        .replace_subresource("approval", &name, &PostParams::default(), &created)
        .await
    {
        Ok(_) => 2,
        Err(e) => {
            eprintln!("plain client: {e}");
            1
        }
    }
}

/// Makes each tool's objects (its namespace, named PREFIX-NAME, first) and, when
/// `certificates`, its certificate request; `PLAIN_IN_FLIGHT` tools at a time. Returns how long
/// it took and the number of writes.
async fn plain_client(
    client: &kube::Client,
    cfg: &Accounts,
    n: usize,
    prefix: &str,
    certificates: bool,
) -> (f64, usize) {
    let start = Instant::now();
    // One request made ahead for every tool: making keys is not what is measured.
    let request = plain_request("plain-tool");
    let request = &request;
    let written: Vec<usize> = stream::iter(0..n)
        .map(|i| async move {
            let name = format!("{prefix}-tool{i:04}");
            let objs = plain_objects(cfg, &name);
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
            if certificates {
                done += plain_certificate(client, &name, request).await;
            }
            done
        })
        .buffer_unordered(PLAIN_IN_FLIGHT)
        .collect()
        .await;
    (start.elapsed().as_secs_f64(), written.iter().sum())
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
    // Every client starts on a fresh control plane of its own: none pays for the objects of the
    // one before (a fuller watch cache and etcd, the quota controller's resyncs).
    let fresh = |name: &str| {
        let api = support::kube::ControlPlane::start(support::kube::Options {
            scheduler: false,
            audit: false,
            ..Default::default()
        });
        let admin = api.admin_kubeconfig("fgtest-bench", &dir.path().join(format!("{name}.conf")));
        (api, admin)
    };
    let mut cfg = Accounts::default();
    // Another number of tools in flight, to see what the server takes (the default otherwise).
    if let Some(c) = std::env::var("FORGECTL_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.concurrency = c;
    }
    println!(
        "{n} tools; real kube-apiserver, etcd and controller-manager (binaries: {}), a fresh one for each client; \
         forgectl concurrency {}, plain client {PLAIN_IN_FLIGHT} in flight",
        support::kube::assets().display(),
        cfg.concurrency
    );

    // For scale, the objects alone (no certificates: the signer idles); then the baseline of the
    // budget: the same writes as forgectl's for a tool.
    let mut rates = Vec::new();
    for (what, prefix, certificates) in [
        ("plain, objects only", "objects", false),
        ("plain, same writes", "plain", true),
    ] {
        let (api, admin) = fresh(prefix);
        let kube = forgectl::kube::Kube::from_kubeconfig(&admin).await.unwrap();
        let (cpu, server) = (client_cpu(), api.cpu_seconds());
        let (secs, writes) = plain_client(kube.client(), &cfg, n, prefix, certificates).await;
        let cpu = client_cpu() - cpu;
        let server = server_cpu(&server, &api.cpu_seconds());
        drop(api);
        let rate = writes as f64 / secs;
        println!(
            "{what:<22} {secs:>8.2} s  writes {writes:>6} ({})  ({rate:>6.0} writes/s)  client CPU {cpu:.2} s",
            if certificates {
                "5 objects, a CSR and its approval a tool"
            } else {
                "5 objects a tool"
            }
        );
        println!("{:<22} {server}", "");
        rates.push(rate);
    }
    let (objects_rate, plain_rate) = (rates[0], rates[1]);

    let (api, admin) = fresh("forgectl");
    let (file, mut tools) = support::accounts_bed::numbered_tools(dir.path(), n);
    let source = FileSource { path: file.clone() };
    let cluster = Cluster {
        name: "bench".into(),
        server: api.url.clone(),
        ca_pem: api.ca.0.clone(),
    };
    let kube = forgectl::kube::Kube::from_kubeconfig(&admin).await.unwrap();

    let mut scratch = None;
    for what in ["from scratch", "steady state", "steady state (again)"] {
        let (start, cpu, server) = (Instant::now(), client_cpu(), api.cpu_seconds());
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
        line(what, secs, client_cpu() - cpu, &s);
        println!("{:<22} {}", "", server_cpu(&server, &api.cpu_seconds()));
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
             making the same writes ({:.2}x its {objects_rate:.0} writes/s making the objects alone) \
             (budget: {n} tools <= {:.0} s at 3,500 tools' scale, >= 0.9x; steady state <= 1 s, 0 writes)",
            writes as f64 / n as f64,
            rate / plain_rate,
            rate / objects_rate,
            60.0 * n as f64 / 3500.0,
        );
    }
}
