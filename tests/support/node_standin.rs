//! STAND-IN for kubelets (what KWOK does), until real kubelets run in the tests: it registers
//! Node objects through the REAL API server and keeps them Ready (status heartbeats and Leases
//! in kube-node-lease, as a kubelet does), gives the pods the real scheduler binds to them a
//! running status (ready containers, a pod IP; pods of a Job complete), finishes their graceful
//! deletion, and answers the API server's log requests (`kubectl logs`) over TLS with the text a
//! test set. No container runs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Log text by namespace (every pod of it answers with it).
type Logs = Arc<Mutex<HashMap<String, String>>>;

/// Nodes that report NotReady, and whether that changed since the last heartbeat.
#[derive(Default)]
struct Health {
    not_ready: Mutex<std::collections::HashSet<String>>,
    changed: AtomicBool,
}

/// Running stand-in kubelets; stopped on drop.
pub struct Nodes {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    logs: Logs,
    health: Arc<Health>,
}

impl Nodes {
    /// Registers `names` as Nodes at `address` (where their log endpoints listen), with the
    /// admin `kubeconfig`, and keeps them and their pods going until dropped.
    pub fn start(kubeconfig: &Path, names: &[&str], address: IpAddr) -> Self {
        let nodes: Vec<(&str, &[(&str, &str)])> = names.iter().map(|n| (*n, &[][..])).collect();
        Self::start_labelled(kubeconfig, &nodes, address)
    }

    /// As [`Nodes::start`], each node registering with its labels (as kubelet's `--node-labels`).
    pub fn start_labelled(
        kubeconfig: &Path,
        nodes: &[(&str, &[(&str, &str)])],
        address: IpAddr,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let logs: Logs = Arc::default();
        let health: Arc<Health> = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, logs, health) = (stop.clone(), logs.clone(), health.clone());
            let kubeconfig = kubeconfig.to_path_buf();
            let names: Vec<(String, Vec<(String, String)>)> = nodes
                .iter()
                .map(|(n, l)| {
                    let labels = l.iter().map(|(k, v)| (k.to_string(), v.to_string()));
                    (n.to_string(), labels.collect())
                })
                .collect();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(run(
                    kubeconfig, names, address, stop, logs, health, ready_tx,
                ));
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the node stand-in registered no nodes");
        Self {
            stop,
            thread: Some(thread),
            logs,
            health,
        }
    }

    /// Makes node `name` report Ready or NotReady (at once, as a kubelet whose runtime broke).
    pub fn set_ready(&self, name: &str, ready: bool) {
        let mut not_ready = self.health.not_ready.lock().unwrap();
        if ready {
            not_ready.remove(name);
        } else {
            not_ready.insert(name.to_string());
        }
        self.health.changed.store(true, Ordering::Relaxed);
    }

    /// What the containers of every pod in `namespace` have logged.
    pub fn set_log(&self, namespace: &str, text: &str) {
        self.logs
            .lock()
            .unwrap()
            .insert(namespace.to_string(), text.to_string());
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn micro_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

async fn run(
    kubeconfig: std::path::PathBuf,
    nodes: Vec<(String, Vec<(String, String)>)>,
    address: IpAddr,
    stop: Arc<AtomicBool>,
    logs: Logs,
    health: Arc<Health>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = forgectl::kube::Kube::from_kubeconfig(&kubeconfig)
        .await
        .unwrap()
        .client()
        .clone();
    let port = serve_logs(address, logs).await;
    let api: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    for (n, extra) in &nodes {
        let mut labels = json!({"kubernetes.io/hostname": n, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64"});
        for (k, v) in extra {
            labels[k] = json!(v);
        }
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": labels}});
        match api
            .create(
                &PostParams::default(),
                &serde_json::from_value(node).unwrap(),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("register node {n}: {e}"),
        }
    }
    let mut last_beat = std::time::Instant::now() - Duration::from_secs(60);
    let mut ip_of: HashMap<String, String> = HashMap::new();
    let mut registered = false;
    while !stop.load(Ordering::Relaxed) {
        if last_beat.elapsed() >= Duration::from_secs(10)
            || health.changed.swap(false, Ordering::Relaxed)
        {
            for n in &names {
                let ready = !health.not_ready.lock().unwrap().contains(n);
                heartbeat(&client, n, address, port, ready).await;
            }
            last_beat = std::time::Instant::now();
            if !registered {
                registered = true;
                let _ = ready.send(());
            }
        }
        pods(&client, &names, address, &mut ip_of).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The node's status (Ready, room for plenty of pods) and its Lease.
async fn heartbeat(client: &kube::Client, name: &str, address: IpAddr, port: u16, ready: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    let t = now();
    let cond = |kind: &str, status: &str, reason: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": "node stand-in",
            "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    let resources =
        json!({"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({"status": {
        "conditions": [
            if ready {
                cond("Ready", "True", "KubeletReady")
            } else {
                cond("Ready", "False", "KubeletNotReady")
            },
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [{"type": "InternalIP", "address": address.to_string()},
            {"type": "Hostname", "address": name}],
        "capacity": resources, "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"machineID": name, "systemUUID": name, "bootID": name,
            "kernelVersion": "stand-in", "osImage": "node stand-in",
            "containerRuntimeVersion": "stand-in://0", "kubeletVersion": "v1.36.2",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
    }});
    if let Err(e) = nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        eprintln!("node stand-in: status of {name}: {e}");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}});
    if let Err(e) = leases
        .patch(
            name,
            &PatchParams::apply("fgtest-node-standin").force(),
            &Patch::Apply(&lease),
        )
        .await
    {
        eprintln!("node stand-in: lease of {name}: {e}");
    }
}

/// Pods bound to the nodes: running (or, in a Job, completed), deletions finished.
async fn pods(
    client: &kube::Client,
    names: &[String],
    address: IpAddr,
    ip_of: &mut HashMap<String, String>,
) {
    let all: Api<Pod> = Api::all(client.clone());
    let Ok(list) = all
        .list(&ListParams::default().fields("spec.nodeName!="))
        .await
    else {
        return;
    };
    for pod in list.items {
        let spec = pod.spec.as_ref();
        let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
        if !names.contains(&node) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
            continue;
        }
        let in_job = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Job");
        let want = if in_job { "Succeeded" } else { "Running" };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == want {
            continue;
        }
        let n = ip_of.len();
        let ip = ip_of
            .entry(format!("{ns}/{name}"))
            .or_insert_with(|| format!("10.244.{}.{}", n / 250, n % 250 + 2))
            .clone();
        let t = now();
        let running = !in_job;
        let containers: Vec<Value> = spec
            .map(|s| s.containers.clone())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let state = if running {
                    json!({"running": {"startedAt": t}})
                } else {
                    json!({"terminated": {"exitCode": 0, "reason": "Completed",
                        "startedAt": t, "finishedAt": t}})
                };
                json!({"name": c.name, "image": c.image.clone().unwrap_or_default(),
                    "imageID": format!("{}@sha256:{}", c.image.clone().unwrap_or_default(), "0".repeat(64)),
                    "containerID": format!("containerd://{}", "1".repeat(64)),
                    "ready": running, "started": running, "restartCount": 0, "state": state})
            })
            .collect();
        let ready = if running { "True" } else { "False" };
        let cond = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastTransitionTime": t, "lastProbeTime": null});
        let status = json!({"status": {"phase": want, "hostIP": address.to_string(),
            "hostIPs": [{"ip": address.to_string()}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": t, "containerStatuses": containers,
            "conditions": [cond("PodScheduled", "True"), cond("Initialized", "True"),
                cond("ContainersReady", ready), cond("Ready", ready)]}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            eprintln!("node stand-in: status of pod {ns}/{name}: {e}");
        }
    }
}

/// The kubelet's log endpoint (`/containerLogs/NS/POD/CONTAINER`) over TLS on a free port of
/// `address`; the API server calls it for `pods/log`.
async fn serve_logs(address: IpAddr, logs: Logs) -> u16 {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["node-standin".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(address, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, logs) = (acceptor.clone(), logs.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let logs = logs.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let parts: Vec<&str> = path.split('/').collect();
                        let text = match parts.as_slice() {
                            ["", "containerLogs", ns, _pod, _container] => {
                                logs.lock().unwrap().get(*ns).cloned()
                            }
                            _ => None,
                        };
                        let (code, body) = match text {
                            Some(t) => (200, t),
                            None => (404, format!("no logs for {path}")),
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(code)
                                .header("Content-Type", "text/plain")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}
