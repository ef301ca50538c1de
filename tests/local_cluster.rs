//! A real Kubernetes cluster from `forgectl up` on local machines, every part real: the embedded
//! default's shape (three etcd members, haproxy in front of the API) with two control planes and
//! two workers; etcd, kubeadm, kubelet, kubectl and kube-proxy from `$FORGECTL_TEST_KUBE_ASSETS`
//! (or `../shared/kube`) laid out as release artifacts; containerd and runc from Debian; images
//! loaded from `artifacts.images` (no registry); `cni.plugin: bridge`. The only stand-in is
//! CoreDNS's image (tests/support/standins, named as such). On the way: a `kubeadm init` killed
//! half-way is finished by the next run, a failing join stops the run and the next one resumes
//! it, no join token is left behind, the platform phase on the real API, a converged re-run
//! changes nothing, and `down` leaves the host as it was. Needs root, like `.ci/run`.

mod support;

use support::real_cluster::{Bed, text, wait_until};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CLUSTER: &str = "fgtest-real";
const CONTROL_PLANES: [&str; 2] = ["control-1", "control-2"];
const NODES: [&str; 4] = ["control-1", "control-2", "worker-1", "worker-2"];
/// The tools' image (platform.images).
const TOOL_IMAGE: &str = "registry.fgtest.invalid/toolforge/python311:latest";

fn inventory(artifacts: &Path, images: &Path, kube: &str, etcd: &str) -> String {
    format!(
        "name: {CLUSTER}\nprovider: local\nlocal:\n  bridge: fgtest-real0\n\
         network:\n  machine_cidr: 10.77.72.0/24\n  pod_cidr: 10.77.160.0/19\n  service_cidr: 10.77.144.0/20\n\
         versions:\n  kubernetes: {kube}\n  etcd: {etcd}\n\
         artifacts:\n  source: debian\n  dir: {}\n  images: {}\n\
         cni:\n  plugin: bridge\n\
         ingress:\n  enabled: false\n\
         runtime:\n  registry_mirrors:\n    docker.io: [https://mirror.fgtest.invalid]\n\
         accounts:\n  file: accounts.yaml\nplatform:\n  images:\n    python3.11: {TOOL_IMAGE}\n\
         groups:\n  - name: etcd\n    roles: [etcd]\n    count: 3\n  - name: control\n    roles: [control-plane]\n    count: 2\n\
         \x20 - name: worker\n    roles: [worker]\n    count: 2\n    labels:\n      fgtest.example/tier: web\n  - name: lb\n    roles: [lb, bastion]\n    count: 1\n",
        artifacts.display(),
        images.display()
    )
}

/// A `kubeadm init` that dies after writing the admin kubeconfig and the API server's manifest
/// (what an init failing in wait-control-plane leaves): the files exist, the cluster does not.
fn kill_init_half_way(bed: &Bed) {
    let mut run = bed
        .process()
        .args(["up", "--yes", "--until", "kubeadm-init"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "kubeadm init wrote its files",
        Duration::from_secs(240),
        || {
            let got = bed.on(
            "control-1",
            "test -f /etc/kubernetes/admin.conf && test -f /etc/kubernetes/manifests/kube-apiserver.yaml \
             && pkill -9 -x kubeadm && echo killed || true",
        );
            (got == "killed").then_some(()).ok_or(got)
        },
    );
    let status = run.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "the run whose kubeadm was killed fails"
    );
    assert_eq!(
        bed.on(
            "control-1",
            "test -e /var/lib/forgectl/kubeadm-init.done && echo done || echo not-done"
        ),
        "not-done"
    );
}

/// Pods on two workers reach each other by pod IP, through a Service's ClusterIP and by the
/// Service's DNS name (kube-proxy, the bridge network's routes, the cluster DNS).
fn pod_network(bed: &Bed, image: &str) {
    bed.k_apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: fgtest-server, namespace: default, labels: {{app: fgtest-server}}}}\n\
         spec: {{nodeName: worker-1, containers: [{{name: s, image: \"{image}\", command: [/coredns]}}]}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: fgtest-client, namespace: default}}\n\
         spec: {{nodeName: worker-2, containers: [{{name: c, image: \"{image}\", command: [sleep, \"3600\"]}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: fgtest-server, namespace: default}}\n\
         spec: {{selector: {{app: fgtest-server}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
    ));
    if let Err(e) = bed.k_try(&[
        "wait",
        "--for=condition=Ready",
        "pod/fgtest-server",
        "pod/fgtest-client",
        "--timeout=120s",
    ]) {
        let described = bed
            .k_try(&["describe", "pod", "fgtest-server", "fgtest-client"])
            .unwrap_or_else(|e| e);
        let images = bed.on("worker-1", "ctr -n k8s.io images ls -q | sort");
        panic!("{e}\n{described}\nworker-1's images:\n{images}");
    }
    let server = bed.k_json(&["get", "pod", "fgtest-server"]);
    let pod_ip = server["status"]["podIP"].as_str().unwrap().to_string();
    let svc = bed.k_json(&["get", "service", "fgtest-server"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let fetch = |url: &str| {
        bed.k(&[
            "exec",
            "fgtest-client",
            "--",
            "python3",
            "-c",
            &format!(
                "import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).read().decode())"
            ),
        ])
        .trim()
        .to_string()
    };
    assert_eq!(
        fetch(&format!("http://{pod_ip}:8080/health")),
        "OK",
        "pod to pod across nodes"
    );
    assert_eq!(
        fetch(&format!("http://{cluster_ip}/health")),
        "OK",
        "pod to ClusterIP"
    );
    assert_eq!(
        fetch("http://fgtest-server.default.svc.cluster.local/health"),
        "OK",
        "pod to a Service by its DNS name"
    );
    // The node's own routes reach a pod on another node too.
    assert_eq!(
        bed.on(
            "control-1",
            &format!("curl -s --max-time 5 http://{pod_ip}:8080/health")
        ),
        "OK"
    );
    bed.k(&[
        "delete",
        "pod/fgtest-server",
        "pod/fgtest-client",
        "service/fgtest-server",
        "--wait=false",
    ]);
}

/// The platform phase on the real API: forgectl's services on both control planes, the webhook
/// registration, the accounts controller provisioning the tools, toolctl on the bastion.
fn platform_checks(bed: &Bed) {
    for cp in CONTROL_PLANES {
        assert_eq!(
            bed.on(
                cp,
                "systemctl is-active forgectl-admission forgectl-accounts forgectl-dashboard"
            ),
            "active\nactive\nactive",
            "{cp}"
        );
    }
    let hooks = bed.k_json(&["get", "validatingwebhookconfigurations"]);
    let ca = std::fs::read(bed.state.join(CLUSTER).join("pki/ca.crt")).unwrap();
    use base64::Engine;
    let hook = &hooks["items"][0]["webhooks"][0];
    assert_eq!(
        hook["clientConfig"]["caBundle"],
        base64::engine::general_purpose::STANDARD.encode(&ca)
    );
    assert_eq!(
        hook["clientConfig"]["url"],
        "https://127.0.0.1:8443/validate/images"
    );
    let mut leader = String::new();
    wait_until(
        "the accounts controller provisions both tools",
        Duration::from_secs(90),
        || {
            let ns = bed.k(&["get", "namespaces", "-o", "name"]);
            let lease = bed.k(&[
                "get",
                "leases",
                "-A",
                "--field-selector=metadata.name=forgectl-accounts",
                "-o",
                "jsonpath={.items[*].spec.holderIdentity}",
            ]);
            leader = CONTROL_PLANES
                .into_iter()
                .find(|cp| lease.starts_with(cp))
                .unwrap_or_default()
                .to_string();
            (ns.contains("namespace/tool-alpha")
                && ns.contains("namespace/tool-beta")
                && !leader.is_empty())
            .then_some(())
            .ok_or(format!("{ns} lease {lease:?}"))
        },
    );
    wait_until("beta's kubeconfig", Duration::from_secs(60), || {
        let got = bed.on(
            &leader,
            "test -s /srv/homes/beta/.kube/config && echo yes || true",
        );
        (got == "yes").then_some(()).ok_or(got)
    });
    assert_eq!(
        bed.on(
            &leader,
            "stat -c '%a %u:%g' /srv/homes/alpha/.kube/config /srv/homes/alpha/.kube/client.key"
        ),
        "600 52001:52001\n600 52001:52001"
    );
    // A tool owner on the bastion, as the tool, with the tool's kubeconfig, through haproxy.
    let home = bed.on(
        &leader,
        "tar -C /srv/homes/alpha --numeric-owner -cz .kube | base64 -w0",
    );
    bed.on(
        "lb-1",
        &format!(
            "mkdir -p /srv/homes/alpha && chown 52001:52001 /srv/homes/alpha && \
             echo {home} | base64 -d | tar -C /srv/homes/alpha --numeric-owner -xz"
        ),
    );
    let as_tool = |cmd: &str| {
        bed.on(
            "lb-1",
            &format!(
                "cd /srv/homes/alpha && setpriv --reuid 52001 --regid 52001 --clear-groups \
                 env HOME=/srv/homes/alpha {cmd} 2>&1"
            ),
        )
    };
    assert_eq!(as_tool("webservice status"), "no web service running");
    assert_eq!(as_tool("toolctl jobs list -o json"), "[]");

    // The dashboard on each control plane, with its own read-only certificate: both tools,
    // every node Ready, kubeadm's certificates; from the lb machine, as the TLS front asks.
    for cp in CONTROL_PLANES {
        wait_until(
            &format!("the dashboard on {cp}"),
            Duration::from_secs(60),
            || {
                let got = bed.on(
                "lb-1",
                &format!(
                    "curl -s --max-time 3 -H 'Accept: application/json' http://{cp}:9110/ || true"
                ),
            );
                let v: serde_json::Value = serde_json::from_str(&got).map_err(|_| got.clone())?;
                let nodes = v["nodes"].as_array().map(Vec::len).unwrap_or(0);
                let certs = v["certificates"].as_array().map(Vec::len).unwrap_or(0);
                (v["tools"] == 2 && nodes >= 3 && v["nodes_ready"] == nodes && certs > 0)
                    .then_some(())
                    .ok_or(got)
            },
        );
    }
    let page = bed.on(
        "lb-1",
        "curl -s --max-time 3 http://control-1:9110/tools/alpha",
    );
    assert!(
        page.contains("Tool alpha") && page.contains("tool-alpha"),
        "{page}"
    );
}

/// haproxy keeps the API answering while one control plane's API server is gone, and sends to it
/// again once it is back.
fn api_survives_a_control_plane(bed: &Bed) {
    let local_ready = "curl -sk --max-time 2 https://127.0.0.1:6443/readyz || true";
    bed.on(
        "control-1",
        "mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/kube-apiserver.yaml",
    );
    wait_until(
        "control-1's API server stopped",
        Duration::from_secs(60),
        || {
            let got = bed.on("control-1", local_ready);
            (got != "ok").then_some(()).ok_or(got)
        },
    );
    // Every request answered, not one lucky one: haproxy has taken control-1 out.
    wait_until("the API through haproxy", Duration::from_secs(30), || {
        (0..10).try_for_each(|_| bed.k_try(&["get", "--raw=/readyz"]).map(drop))
    });
    bed.on(
        "control-1",
        "mv /root/kube-apiserver.yaml /etc/kubernetes/manifests/kube-apiserver.yaml",
    );
    wait_until(
        "control-1's API server back",
        Duration::from_secs(120),
        || {
            let got = bed.on("control-1", local_ready);
            (got == "ok").then_some(()).ok_or(got)
        },
    );
}

/// A node whose kubelet stops becomes NotReady: `status` says so (exit 1) and the gate names it.
fn not_ready_holds_the_gate(bed: &Bed) {
    let ready = |want: &str| {
        wait_until(
            &format!("worker-2 Ready={want}"),
            Duration::from_secs(120),
            || {
                let got = bed.k(&[
                    "get",
                    "node",
                    "worker-2",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ]);
                (got == want).then_some(()).ok_or(got)
            },
        )
    };
    bed.on("worker-2", "systemctl stop kubelet");
    ready("Unknown");
    // Ctrl-C and SIGTERM stop a run at once while the gate waits (it would wait 10 minutes).
    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let child = bed
            .process()
            .args(["up", "--yes", "--only", "cluster-ready"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(4));
        let sent = Instant::now();
        // SAFETY: kill(2) on the child we started.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let took = sent.elapsed();
        eprintln!(
            "{name} during the gate's wait: ended {:.2} s later",
            took.as_secs_f64()
        );
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(
            text(&out).contains("up: interrupted during phase `cluster-ready`; stopped at once")
                && text(&out).contains("Run again to go on"),
            "{name}: {}",
            text(&out)
        );
    }
    let out = bed
        .forgectl()
        .env("FORGECTL_WAIT_TIMEOUT_S", "3")
        .args(["up", "--yes", "--only", "cluster-ready"])
        .output()
        .unwrap();
    assert!(text(&out).contains("not Ready: worker-2"), "{}", text(&out));
    let out = bed.forgectl().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("worker-2   NotReady"), "{}", text(&out));
    bed.on("worker-2", "systemctl start kubelet");
    ready("True");
}

/// Moves the pause archive out of `images`, pushes it to a registry started here, and fetches
/// the cluster's images into `images` through that registry as a mirror of registry.k8s.io (the
/// tools' image too, pushed beside it: nothing is looked for outside this machine).
fn pause_through_a_registry(work: &Path, inv: &Path, images: &Path) {
    let reg = support::registry::Registry::start(work);
    let host = reg.host();
    let seed = work.join("seed-pause.tar");
    let pause_file = std::fs::read_dir(images)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pause_")
        })
        .unwrap();
    std::fs::rename(&pause_file, &seed).unwrap();
    let pause = forgectl::images::read(&seed).unwrap().refs[0].clone();
    reg.push(&seed, pause.strip_prefix("registry.k8s.io/").unwrap());
    let tools = work.join("seed-tools.tar");
    support::registry::tiny_image(&tools, TOOL_IMAGE, "amd64", "a tool's image");
    reg.push(
        &tools,
        TOOL_IMAGE.strip_prefix("registry.fgtest.invalid/").unwrap(),
    );
    let side = work.join("fetch.yaml");
    std::fs::write(
        &side,
        std::fs::read_to_string(inv).unwrap().replacen(
            "  registry_mirrors:\n",
            &format!(
                "  registry_mirrors:\n    registry.k8s.io: [\"http://{host}\"]\n    registry.fgtest.invalid: [\"http://{host}\"]\n"
            ),
            1,
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forgectl"))
        .args(["artifacts", "fetch", "--images", "-f"])
        .arg(&side)
        .arg("--to")
        .arg(images)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("pulled   {pause}"))
            && said.contains(&format!("from http://{host}")),
        "{said}"
    );
}

/// `reset` takes Kubernetes and etcd off the machines and keeps them: nothing of either is left,
/// a last etcd snapshot is in the state dir, a second reset changes nothing, and `up` builds the
/// cluster again on the same machines.
fn reset_and_rebuild(bed: &Bed) {
    let started = Instant::now();
    let out = bed.forgectl().args(["reset", "--yes"]).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("reset deletes, on the nodes: kubeadm reset"),
        "{t}"
    );
    eprintln!(
        "reset: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        t.lines().rev().take(6).collect::<Vec<_>>().join("\n")
    );
    for node in NODES {
        assert_eq!(
            bed.on(node, "/usr/local/lib/forgectl/node-reset left"),
            "",
            "{node}"
        );
        assert_eq!(
            bed.on(
                node,
                "systemctl is-active kubelet; test -e /etc/kubernetes/kubelet.conf && echo conf; \
                 iptables-save | grep -c -E 'KUBE-|CNI-|forgectl-cni-bridge'; \
                 ip link show cni0 >/dev/null 2>&1 && echo cni0; \
                 ctr -n k8s.io containers ls -q | wc -l; true"
            ),
            "inactive\n0\n0",
            "{node}"
        );
    }
    for member in ["etcd-1", "etcd-2", "etcd-3"] {
        assert_eq!(
            bed.on(
                member,
                "systemctl is-active etcd; ls /var/lib/etcd /etc/etcd/pki 2>&1 | grep -c 'No such'; true"
            ),
            "inactive\n2",
            "{member}"
        );
    }
    let cluster_state = bed.state.join(CLUSTER);
    let snapshots: Vec<PathBuf> = std::fs::read_dir(cluster_state.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("etcd-pre-reset-"))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let data = std::fs::read(&snapshots[0]).unwrap();
    assert!(
        forgectl::etcd::snapshot_intact(&data),
        "{}",
        snapshots[0].display()
    );
    assert_eq!(
        std::fs::metadata(&snapshots[0])
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!cluster_state.join("etcd/bootstrap.json").exists());

    // Nothing is left to do.
    let out = bed.forgectl().args(["reset", "--yes"]).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("reset: done — 3 phase(s), 0 change(s)."), "{t}");

    // The machines are kept and take a new cluster.
    let again = Instant::now();
    let out = bed
        .forgectl()
        .env("FORGECTL_LOG", "forgectl=info")
        .args(["up", "--yes"])
        .output()
        .unwrap();
    let (code, out) = (out.status.code(), text(&out));
    assert_eq!(code, Some(0), "{out}");
    eprintln!("up after reset: {:.1} s", again.elapsed().as_secs_f64());
    let nodes = bed.k(&["get", "nodes", "--no-headers"]);
    assert_eq!(
        nodes
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count(),
        NODES.len(),
        "{nodes}"
    );
}

/// `up --playbook scale` after the inventory gained a worker: the machine is made and joined with
/// its group's labels, the nodes already there keep their kubelet running as it was, and a second
/// run changes nothing.
fn scale_adds_a_worker(bed: &Bed) {
    let since = |node: &str| {
        bed.on(
            node,
            "systemctl show kubelet -p ActiveEnterTimestampMonotonic",
        )
    };
    let kept: Vec<(&str, String)> = ["control-1", "worker-1"]
        .into_iter()
        .map(|n| (n, since(n)))
        .collect();
    let text_before = std::fs::read_to_string(&bed.inv).unwrap();
    let grown = text_before.replace(
        "    roles: [worker]\n    count: 2\n",
        "    roles: [worker]\n    count: 3\n",
    );
    assert_ne!(grown, text_before);
    std::fs::write(&bed.inv, grown).unwrap();
    let started = Instant::now();
    let (code, out) = bed.up(&["--playbook", "scale"]);
    assert_eq!(code, Some(0), "{out}");
    eprintln!(
        "scale by one worker: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let node = bed.k_json(&["get", "node", "worker-3", "-o", "json"]);
    assert_eq!(node["metadata"]["labels"]["fgtest.example/tier"], "web");
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{node:#}");
    for (n, t) in kept {
        assert_eq!(since(n), t, "{n}'s kubelet was restarted");
    }
    let (code, out) = bed.up(&["--playbook", "scale"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 change(s)."), "{out}");
}

/// `node remove`: a live worker is drained, reset, deleted as a Node and as a machine; with the
/// inventory's count lowered again, `scale` makes nothing again and then has nothing to do. A dead worker (its machine killed)
/// is removed without drain or reset, and the output says so.
fn remove_nodes(bed: &Bed) {
    let remove = |name: &str| {
        let started = Instant::now();
        let out = bed
            .forgectl()
            .args(["node", "remove", name, "--yes"])
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        eprintln!(
            "node remove {name}: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        t
    };
    let t = remove("worker-3");
    for line in [
        "• drained worker-3",
        "• reset worker-3",
        "• deleted the Node object worker-3",
        "• deleted the machine worker-3",
        "Now take it out of the inventory",
    ] {
        assert!(t.contains(line), "{line}: {t}");
    }
    assert!(!bed.k(&["get", "nodes"]).contains("worker-3"));
    let listed = bed.forgectl().args(["machines", "list"]).output().unwrap();
    assert!(!text(&listed).contains("worker-3"), "{}", text(&listed));
    let back = std::fs::read_to_string(&bed.inv).unwrap().replace(
        "    roles: [worker]\n    count: 3\n",
        "    roles: [worker]\n    count: 2\n",
    );
    std::fs::write(&bed.inv, back).unwrap();
    // The other machines' /etc/hosts lose worker-3; nothing is made again.
    let (code, out) = bed.up(&["--playbook", "scale"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("create machine worker-3"), "{out}");
    let (code, out) = bed.up(&["--playbook", "scale"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 change(s)."), "{out}");

    let killed = bed
        .forgectl()
        .args(["machines", "kill", "worker-2"])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{}", text(&killed));
    let t = remove("worker-2");
    for line in [
        "• not drained: worker-2 is not running",
        "• not reset: worker-2's machine is not running",
        "• deleted the Node object worker-2",
        "• deleted the machine worker-2",
    ] {
        assert!(t.contains(line), "{line}: {t}");
    }
    let nodes = bed.k(&["get", "nodes", "-o", "name"]);
    assert_eq!(
        nodes.lines().collect::<Vec<_>>(),
        ["node/control-1", "node/control-2", "node/worker-1"],
        "{nodes}"
    );
}

#[test]
fn real_cluster_from_forgectl_up() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let kube_bin = support::kube::assets();
    let support::kube_artifacts::Inputs {
        artifacts,
        images,
        kube,
        etcd,
    } = support::kube_artifacts::inputs(work.path(), &kube_bin);
    let standin = support::node_images::kubeadm_images(&kube_bin)
        .into_iter()
        .find(|r| r.contains("/coredns"))
        .unwrap();
    let inv = work.path().join("cluster.yaml");
    std::fs::write(&inv, inventory(&artifacts, &images, &kube, &etcd)).unwrap();
    // The pause image (every pod's sandbox) reaches artifacts.images through a real registry and
    // `artifacts fetch --images`, so containerd on every node imports what fetch writes.
    pause_through_a_registry(work.path(), &inv, &images);
    std::fs::write(
        work.path().join("accounts.yaml"),
        "tools:\n\
         - {name: alpha, uid: 52001, gid: 52001, home: /srv/homes/alpha, maintainers: [alice]}\n\
         - {name: beta, uid: 52002, gid: 52002, home: /srv/homes/beta, maintainers: [alice]}\n",
    )
    .unwrap();
    let state = work.path().join("state");
    let before = support::host_snapshot(CLUSTER, &state);
    let bed = Bed {
        cluster: CLUSTER,
        inv,
        state,
        kubectl: kube_bin.join("kubectl"),
    };

    let started = Instant::now();
    let (code, out) = bed.up(&["--until", "kube-packages"]);
    assert_eq!(code, Some(0), "{out}");
    eprintln!(
        "machines, etcd, lb, runtime (images loaded), kube packages: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for cp in CONTROL_PLANES {
        // The tools' homes (NFS on a real site).
        bed.on(
            cp,
            "install -d -o 52001 -g 52001 /srv/homes/alpha && install -d -o 52002 -g 52002 /srv/homes/beta",
        );
    }
    // The images: loaded once, by digest; control-plane images only on control planes.
    let listed = bed.on(
        "worker-1",
        "ctr -n k8s.io images ls -q | grep -v '^sha256:'",
    );
    assert!(
        listed.contains(&format!("registry.k8s.io/kube-proxy:v{kube}")),
        "{listed}"
    );
    assert!(!listed.contains("kube-apiserver"), "{listed}");
    assert!(
        bed.on("control-1", "ctr -n k8s.io images ls -q")
            .contains(&format!("registry.k8s.io/kube-apiserver:v{kube}"))
    );

    // `artifacts list` names the images kubeadm deploys exactly as the real kubeadm does (they are
    // all in the directory, under the names kubeadm lists).
    let out = bed
        .forgectl()
        .args(["artifacts", "list", "-o", "json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kubeadm_images: Vec<&serde_json::Value> = listed["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            let by = i["used_by"].as_str().unwrap();
            by.starts_with("kubeadm") || by.starts_with("containerd")
        })
        .collect();
    assert_eq!(kubeadm_images.len(), 6, "{listed:#}");
    for i in kubeadm_images {
        assert!(i["archive"].is_string(), "{i} is not in artifacts.images");
    }

    // kubeadm init killed half-way: its files exist, the cluster does not.
    kill_init_half_way(&bed);
    // control-2 cannot join: a file kubeadm join refuses to overwrite.
    bed.on(
        "control-2",
        "mkdir -p /etc/kubernetes && echo stale > /etc/kubernetes/kubelet.conf",
    );
    let (code, out) = bed.up(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("up: phase `kubeadm-join` failed: control-2")
            && out.contains("/etc/kubernetes/kubelet.conf already exists"),
        "{out}"
    );
    // The init was finished (not taken as done because its files existed) …
    assert_eq!(
        bed.on(
            "control-1",
            "test -e /var/lib/forgectl/kubeadm-init.done && echo done"
        ),
        "done"
    );
    bed.k(&["-n", "kube-system", "get", "configmap", "kubeadm-config"]);
    bed.k(&["-n", "kube-public", "get", "configmap", "cluster-info"]);
    // … no join token is left (neither kubeadm's default one nor the one made for the joins) …
    assert_eq!(
        bed.on(
            "control-1",
            "kubeadm token list --kubeconfig /etc/kubernetes/admin.conf 2>&1"
        ),
        ""
    );
    // … and the workers were not joined before the control planes.
    assert_eq!(
        bed.on(
            "worker-1",
            "test -e /etc/kubernetes/kubelet.conf && echo joined || echo no"
        ),
        "no"
    );
    // Fixed, the next run goes on where it stopped.
    bed.on("control-2", "rm /etc/kubernetes/kubelet.conf");
    let resumed = Instant::now();
    let (code, out) = bed.up(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("up: done — 17 phase(s), "), "{out}");
    eprintln!(
        "joins, bridge network, cluster-ready gate, platform: {:.1} s",
        resumed.elapsed().as_secs_f64()
    );

    // Every node Ready at the version asked for; the system pods run.
    let nodes = bed.k_json(&["get", "nodes"]);
    let mut names = Vec::new();
    for n in nodes["items"].as_array().unwrap() {
        names.push(n["metadata"]["name"].as_str().unwrap().to_string());
        assert_eq!(
            n["status"]["nodeInfo"]["kubeletVersion"],
            format!("v{kube}")
        );
        assert!(
            n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            "{n:#}"
        );
        assert!(n["spec"]["podCIDR"].as_str().is_some(), "{n:#}");
        // The group's labels, given by kubelet at registration.
        let name = n["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            n["metadata"]["labels"]["fgtest.example/tier"].as_str(),
            name.starts_with("worker-").then_some("web"),
            "{name}"
        );
    }
    names.sort();
    assert_eq!(names, NODES);
    let pods = bed.k_json(&["-n", "kube-system", "get", "pods"]);
    let mut running: Vec<String> = Vec::new();
    for p in pods["items"].as_array().unwrap() {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert_eq!(p["status"]["phase"], "Running", "{name}");
        running.push(name.to_string());
    }
    for cp in CONTROL_PLANES {
        for part in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            assert!(
                running.iter().any(|r| r == &format!("{part}-{cp}")),
                "{part} on {cp}: {running:?}"
            );
        }
    }
    assert_eq!(
        running
            .iter()
            .filter(|r| r.starts_with("kube-proxy-"))
            .count(),
        4,
        "{running:?}"
    );
    // The apiserver's client certificate from kubeadm and forgectl's CA: the cluster is forgectl's.
    let ca = std::fs::read_to_string(bed.state.join(CLUSTER).join("pki/ca.crt")).unwrap();
    for cp in CONTROL_PLANES {
        assert_eq!(bed.on(cp, "cat /etc/kubernetes/pki/ca.crt"), ca.trim_end());
    }
    pod_network(&bed, &standin);
    platform_checks(&bed);
    let out = bed.forgectl().arg("status").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("etcd: 3 of 3 member(s) healthy"), "{t}");
    assert!(t.contains("worker-2   Ready"), "{t}");

    api_survives_a_control_plane(&bed);
    not_ready_holds_the_gate(&bed);

    // A converged cluster: a second run changes nothing.
    let again = Instant::now();
    let (code, out) = bed.up(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("up: done — 17 phase(s), 0 change(s)."),
        "{out}"
    );
    eprintln!("converged re-run: {:.1} s", again.elapsed().as_secs_f64());

    // A state dir that lost the Kubernetes CAs: `up` refuses to make new ones while the control
    // planes have them; `certs recover` reads them (and the service-account keys) back.
    let pki = bed.state.join(CLUSTER).join("pki");
    let kept: Vec<(PathBuf, Vec<u8>)> = [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "sa.key",
        "sa.pub",
    ]
    .iter()
    .map(|f| (pki.join(f), std::fs::read(pki.join(f)).unwrap()))
    .collect();
    for (p, _) in &kept {
        std::fs::remove_file(p).unwrap();
    }
    let (code, out) = bed.up(&["--only", "pki"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the control planes already have a CA; run `forgectl certs recover`"),
        "{out}"
    );
    bed.forgectl()
        .args(["certs", "recover", "--yes"])
        .assert()
        .success();
    for (p, data) in &kept {
        assert_eq!(&std::fs::read(p).unwrap(), data, "{}", p.display());
    }

    // Registry mirrors are reconciled: a registry dropped from the inventory loses its file, and
    // containerd's restart keeps the node's pods running.
    assert!(
        bed.on(
            "worker-1",
            "cat /etc/containerd/certs.d/docker.io/hosts.toml"
        )
        .contains("[host.\"https://mirror.fgtest.invalid\"]")
    );
    let edited = std::fs::read_to_string(&bed.inv).unwrap().replace(
        "runtime:\n  registry_mirrors:\n    docker.io: [https://mirror.fgtest.invalid]\n",
        "",
    );
    std::fs::write(&bed.inv, edited).unwrap();
    let (code, out) = bed.up(&["--only", "runtime"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        bed.on("worker-1", "ls /etc/containerd/certs.d | wc -l"),
        "0"
    );

    reset_and_rebuild(&bed);
    scale_adds_a_worker(&bed);
    remove_nodes(&bed);

    // `down` leaves the host as it was: no namespace, link, mount, cgroup (in any hierarchy) or
    // process of the cluster.
    let out = bed.forgectl().args(["down", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(support::host_snapshot(CLUSTER, &bed.state), before);
}
