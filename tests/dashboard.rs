//! `forgectl dashboard` against the REAL control plane (tests/support/kube.rs): tools made by a
//! real `accounts sync`, workloads of a tool scheduled by the real scheduler and given status by
//! the node stand-in, a real etcd with TLS from the state dir's PKI, and the ingress
//! controller's metrics from a stand-in. The dashboard runs as a process with a kubeconfig
//! bound only to its own read-only ClusterRole. Pages are read as JSON, as HTML, as Prometheus
//! metrics, and as a person sees them: headless Chromium takes a screenshot and tesseract reads
//! the numbers off it.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forgectl::pki::{Member, Pki};
use serde_json::Value;
use support::accounts_bed::bed_named;
use support::ingress_metrics_standin::IngressMetrics;
use support::kube::free_port;
use support::node_standin::Nodes;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A child process ended on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A one-member etcd with client TLS from the state dir's PKI, on free ports.
fn start_etcd(state: &Path, dir: &Path) -> (Running, u16) {
    let pki = |rel: &str, ext: &str| state.join(format!("{rel}.{ext}")).display().to_string();
    let server = forgectl::pki::paths::etcd_server("etcd-1");
    let (client, peer) = (free_port(LOCALHOST), free_port(LOCALHOST));
    let child = Command::new(support::kube::assets().join("etcd"))
        .args([
            "--name=etcd-1".to_string(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=https://127.0.0.1:{client}"),
            format!("--advertise-client-urls=https://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=etcd-1=http://127.0.0.1:{peer}"),
            format!("--cert-file={}", pki(&server, "crt")),
            format!("--key-file={}", pki(&server, "key")),
            format!(
                "--trusted-ca-file={}",
                pki(forgectl::pki::paths::ETCD_CA, "crt")
            ),
            "--client-cert-auth".into(),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("etcd.log")).unwrap())
        .spawn()
        .unwrap();
    (Running(child), client)
}

/// An HTTP GET with an `Accept` header: (status, body, milliseconds to the first byte).
fn get(url: &str, accept: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .header("Accept", accept)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    })
}

fn json(url: &str) -> Value {
    let (status, body) = get(url, "application/json");
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `url`'s JSON until `ok` holds (60 s at most); returns the last answer.
fn wait_json(url: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let v = json(url);
        if ok(&v) {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what}: not seen within 60 s; last: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Headless Chromium's screenshot of `url`, read back by tesseract: the text a person sees.
fn screenshot_text(url: &str, dir: &Path, name: &str) -> String {
    let png = dir.join(format!("{name}.png"));
    let profile = dir.join(format!("chromium-{name}"));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .expect("chromium is not installed (.ci/run installs Debian's chromium)");
    assert!(
        png.exists(),
        "chromium made no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // FORGECTL_KEEP_SCREENSHOTS=DIR keeps them, to look at.
    if let Some(keep) = std::env::var_os("FORGECTL_KEEP_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&png, Path::new(&keep).join(format!("{name}.png"))).unwrap();
    }
    let ocr = Command::new("tesseract")
        .arg(&png)
        .arg("stdout")
        .output()
        .expect("tesseract is not installed (.ci/run installs tesseract-ocr)");
    assert!(
        ocr.status.success(),
        "{}",
        String::from_utf8_lossy(&ocr.stderr)
    );
    String::from_utf8_lossy(&ocr.stdout).into_owned()
}

/// The static inventory the dashboard reads: the cluster's name and its one etcd member.
fn dashboard_inventory(dir: &Path, etcd_port: u16) -> PathBuf {
    let inv = format!(
        r#"name: fgtest-dash
provider: static
network:
  machine_cidr: 127.0.0.0/24
ingress:
  enabled: false
etcd:
  client_port: {etcd_port}
groups:
  - name: etcd
    roles: [etcd]
    hosts:
      - {{ name: etcd-1, address: 127.0.0.1 }}
  - name: control
    roles: [control-plane]
    hosts:
      - {{ name: control-1, address: 127.0.0.2 }}
"#
    );
    let p = dir.join("dashboard.yaml");
    std::fs::write(&p, inv).unwrap();
    p
}

const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: tool-tool00}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.example.test/tool00/web:1
          resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {cpu: 500m, memory: 512Mi}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: tool-tool00}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: run, image: registry.example.test/tool00/job:1}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: tool-tool00}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: run, image: registry.example.test/tool00/job:1}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: tool-tool00}
spec:
  rules:
    - host: tool00.toolforge.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {number: 8000}}}
"#;

#[test]
fn the_dashboard_shows_the_cluster_and_each_tool() {
    let bed = bed_named("dashboard");
    // Twelve tools, one disabled, through the real provisioner.
    bed.tools(12, &[], &["tool11"]);
    let inv = bed.inventory("");
    let (code, summary, stderr) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{stderr}");
    // Twelve tools and the admin alice.
    assert_eq!(
        summary["created"].as_array().unwrap().len(),
        13,
        "{summary}"
    );
    let nodes = Nodes::start(&bed.admin, &["dash-node-1", "dash-node-2"], LOCALHOST);
    bed.api.apply(WORKLOADS);

    // The state dir's PKI (etcd CA, member and client certificates) and a real etcd using it.
    let base = bed.path("state");
    let state = forgectl::state::StateDir::open(&base, "fgtest-dash").unwrap();
    Pki::new(&state)
        .ensure(&[Member {
            name: "etcd-1".into(),
            addresses: vec![LOCALHOST],
        }])
        .unwrap();
    let (_etcd, etcd_port) = start_etcd(state.path(), bed.dir.path());
    let dash_inv = dashboard_inventory(bed.dir.path(), etcd_port);
    let ingress = IngressMetrics::start(40.0);

    // Its own read-only rights, and nothing more.
    let reader = "fgtest-dashboard-reader";
    let rbac = Command::new(env!("CARGO_BIN_EXE_forgectl"))
        .args(["dashboard", "--print-rbac", reader])
        .output()
        .unwrap();
    assert!(rbac.status.success());
    bed.api.apply(&String::from_utf8(rbac.stdout).unwrap());
    let (_, can, _) = bed
        .api
        .kubectl(&["auth", "can-i", "list", "secrets", "--as", reader]);
    assert_eq!(can.trim(), "no");
    let (_, can, _) = bed
        .api
        .kubectl(&["auth", "can-i", "delete", "pods", "--as", reader]);
    assert_eq!(can.trim(), "no");
    let kubeconfig = bed.path("reader.conf");
    std::fs::write(&kubeconfig, bed.api.kubeconfig(reader, &[])).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_forgectl"))
        .arg("-f")
        .arg(&dash_inv)
        .arg("--state-dir")
        .arg(&base)
        .args(["dashboard", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--ingress-metrics", &ingress.url])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(bed.path("dashboard.log")).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let dashboard = Running(child);
    let url = first.trim().trim_end_matches('/').to_string();
    let log = || std::fs::read_to_string(bed.path("dashboard.log")).unwrap_or_default();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "stdout: {first:?}; stderr: {}",
        log()
    );

    // The cluster: tools, pods, nodes, CPU and memory requested, etcd, certificates, traffic.
    let v = wait_json(&format!("{url}/"), "every number in", |v| {
        v["tools"] == 12
            && v["tool_pods"]["running"] == 2
            && v["tool_pods"]["succeeded"] == 1
            && v["etcd"].is_array()
            && v["ingress_requests_per_second"].is_number()
    });
    assert_eq!(v["cluster"], "fgtest-dash");
    assert_eq!(v["tools_disabled"], 1);
    assert_eq!(v["nodes_ready"], 2);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(v["kubelet_versions"]["v1.36.2"], 2);
    assert_eq!(v["cpu"]["allocatable"], 32.0);
    assert_eq!(v["memory"]["allocatable"], 2.0 * 64.0 * 1024f64.powi(3));
    // The two web pods' requests (the finished Job pod no longer counts).
    assert!(
        (v["cpu"]["requested"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "{v:#}"
    );
    assert_eq!(v["memory"]["requested"], 512.0 * 1024f64.powi(2));
    let etcd = &v["etcd"][0];
    assert_eq!(etcd["name"], "etcd-1");
    assert_eq!(etcd["healthy"], true, "{etcd}");
    assert!(etcd["db_size"].as_i64().unwrap() > 0);
    let certs = v["certificates"].as_array().unwrap();
    assert!(
        certs
            .iter()
            .any(|c| c["name"] == "pki/etcd/ca.crt" && c["days_left"].as_i64().unwrap() > 3000),
        "{certs:?}"
    );
    let rps = v["ingress_requests_per_second"].as_f64().unwrap();
    assert!((30.0..50.0).contains(&rps), "ingress requests/s {rps}");

    // A tool's page: quota used against hard, its Deployment, pods, web service and jobs.
    let t = json(&format!("{url}/tools/tool00"));
    assert_eq!(t["namespace"], "tool-tool00");
    assert_eq!(t["disabled"], false);
    assert_eq!(
        t["urls"],
        serde_json::json!(["https://tool00.toolforge.test/"])
    );
    assert_eq!(t["workloads"][0]["name"], "web");
    assert_eq!(t["workloads"][0]["wanted"], 2);
    let pods = t["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert_eq!(
        pods.iter().filter(|p| p["phase"] == "Running").count(),
        2,
        "{pods:?}"
    );
    let quota_pods = t["quota"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == "pods")
        .cloned()
        .unwrap();
    assert_eq!(quota_pods["hard"], "16", "{quota_pods}");
    let jobs: Vec<(String, String)> = t["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["kind"].as_str().unwrap().into(),
                j["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        jobs.contains(&("CronJob".into(), "scheduled".into())),
        "{jobs:?}"
    );
    assert!(
        jobs.contains(&("Job".into(), "complete".into())),
        "{jobs:?}"
    );
    assert_eq!(json(&format!("{url}/tools/tool11"))["disabled"], true);
    assert_eq!(
        get(&format!("{url}/tools/no-such-tool"), "text/html").0,
        404
    );

    // Fed by watches: a change shows without a restart.
    let (ok, _, err) = bed.api.kubectl(&[
        "-n",
        "tool-tool00",
        "scale",
        "deployment/web",
        "--replicas=3",
    ]);
    assert!(ok, "{err}");
    wait_json(&format!("{url}/tools/tool00"), "the third web pod", |t| {
        t["pod_counts"]["running"] == 3
    });

    // The index, with a filter.
    let index = json(&format!("{url}/tools?q=tool0"));
    assert_eq!(index["total"], 10);
    assert_eq!(index["tools"][0]["name"], "tool00");
    assert_eq!(index["tools"][0]["running"], 3);

    // The HTML pages, with the same numbers, escaped, small.
    let (status, html) = get(&format!("{url}/"), "text/html");
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<div class="n" id="tools">12</div>"#),
        "{html}"
    );
    assert!(html.contains(r#"<div class="n" id="nodes">2/2</div>"#));
    assert!(html.contains("etcd-1") && html.contains("pki/etcd/ca.crt"));
    assert!(!html.contains("<script"));
    let (_, tool_html) = get(&format!("{url}/tools/tool00"), "text/html");
    assert!(tool_html.contains("https://tool00.toolforge.test/"));
    assert!(tool_html.contains("nightly") && tool_html.contains("0 3 * * *"));
    // The CronJob never ran; the finished Job's pod is done, not "not ready".
    assert!(tool_html.contains("<td>never</td>"), "{tool_html}");
    assert!(
        tool_html.contains("<td>Succeeded</td><td>done</td>"),
        "{tool_html}"
    );

    // The metrics carry the same numbers.
    let (status, metrics) = get(&format!("{url}/metrics"), "text/plain");
    assert_eq!(status, 200);
    for line in [
        "forgectl_tools{state=\"enabled\"} 11",
        "forgectl_tools{state=\"disabled\"} 1",
        "forgectl_nodes{ready=\"true\"} 2",
        "forgectl_cpu_allocatable_cores 32",
        "forgectl_etcd_member_healthy{member=\"etcd-1\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    for name in forgectl::dashboard::metrics::NAMES {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{metrics}"
        );
    }

    // As a person sees it: the numbers read off a screenshot.
    let seen = screenshot_text(&format!("{url}/"), bed.dir.path(), "cluster");
    for text in ["Tools", "Pods running", "Nodes Ready", "etcd-1"] {
        assert!(
            seen.contains(text),
            "{text:?} not read off the screenshot:\n{seen}"
        );
    }
    // The cards' numbers as whole words ("12" alone: "128 GiB" holds it too).
    for number in ["12", "3", "2/2"] {
        assert!(
            seen.split_whitespace().any(|w| w == number),
            "{number:?} not read off the screenshot as a card's number:\n{seen}"
        );
    }
    let seen = screenshot_text(&format!("{url}/tools/tool00"), bed.dir.path(), "tool");
    // OCR reads words and numbers well; punctuation in URLs less so (`.` as `,`).
    for text in ["tool00", "Pods running", "nightly", "Quota", "pods 3 16"] {
        assert!(
            seen.contains(text),
            "{text:?} not read off the screenshot:\n{seen}"
        );
    }

    drop(dashboard);
    drop(nodes);
}
