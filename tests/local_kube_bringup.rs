//! The Kubernetes bring-up on local machines up to the first phase still to come: host-prep,
//! haproxy in front of three control planes, containerd from Debian's packages started by systemd,
//! kubeadm / kubelet / kubectl / crictl installed from an artifact directory that holds clearly
//! named TEST DOUBLES (tests/support/doubles: the real binaries cannot be had here), kubeadm init
//! and joins (control planes one by one, a failed join resumed, tokens deleted), the admin
//! kubeconfig in the state dir; then, behind the kubelet double's forward of each control plane's
//! :6443, a REAL kube-apiserver, controller-manager and scheduler (tests/support/kube.rs) with the
//! cluster's own CA, the node stand-in (tests/support/node_standin.rs) playing the kubelets, for
//! the phases that go through the API. haproxy is shown balancing to a tiny TLS listener on each control
//! plane's 6443 and taking a stopped one out; a second run changes nothing and calls no double
//! but read-only checks. Needs root, like `.ci/run`.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CLUSTER: &str = "fgtest-kube";

fn inventory(artifacts: &Path) -> String {
    format!(
        "name: {CLUSTER}\nprovider: local\nlocal:\n  bridge: fgtest-kube0\nnetwork:\n  machine_cidr: 10.77.64.0/24\n  pod_cidr: 10.77.192.0/18\n  service_cidr: 10.77.128.0/20\n\
         artifacts:\n  source: debian\n  dir: {}\ningress:\n  enabled: true\n  tls_front:\n    enabled: true\n\
         runtime:\n  registry_mirrors:\n    docker.io: [https://mirror.fgtest.invalid]\n\
         kubeadm:\n  ignore_preflight_errors: [ExternalEtcdVersion]   # Debian's etcd is 3.4\n\
         accounts:\n  file: accounts.yaml\nplatform:\n  images:\n    python3.11: registry.fgtest.invalid/toolforge/python311:latest\n\
         groups:\n  - name: etcd\n    roles: [etcd]\n    count: 1\n  - name: control\n    roles: [control-plane]\n    count: 3\n\
         \x20 - name: worker\n    roles: [worker, ingress]\n    count: 1\n  - name: lb\n    roles: [lb, bastion]\n    count: 1\n",
        artifacts.display()
    )
}

struct Bed {
    inv: PathBuf,
    state: PathBuf,
}

impl Bed {
    fn forgectl(&self) -> Command {
        let mut c = Command::cargo_bin("forgectl").unwrap();
        c.env("NO_COLOR", "1")
            .arg("--state-dir")
            .arg(&self.state)
            .arg("-f")
            .arg(&self.inv);
        c
    }

    /// Output of `cmd` on `host`, each line without forgectl's `host | ` prefix.
    fn on(&self, host: &str, cmd: &str) -> String {
        let out = self
            .forgectl()
            .args(["exec", "--hosts", host, "--", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{host}: {cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{host} | ")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.forgectl().args(["down", "--yes"]).output();
    }
}

/// A TLS listener on :6443 answering every request with the machine's name (a stand-in for a
/// kube-apiserver's /readyz), as a transient systemd unit.
const LISTENER: &str = r#"cd /root && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=fgtest -days 1 -keyout t.key -out t.crt 2>/dev/null && systemd-run --unit fgtest-api python3 -c '
import http.server, socket, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = socket.gethostname().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("0.0.0.0", 6443), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain("/root/t.crt", "/root/t.key")
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()'"#;

/// Names that answer 12 requests to the API through haproxy, asked from the worker.
fn answers(bed: &Bed) -> Vec<String> {
    let out = bed.on(
        "worker-1",
        "for i in $(seq 12); do curl -sk --max-time 2 https://lb-1:6443/readyz; echo; done",
    );
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn wait_for_answers(bed: &Bed, want: &[&str], what: &str) {
    let t = Instant::now();
    loop {
        let got = answers(bed);
        if got == want {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "{what}: haproxy answers from {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An AdmissionReview v1 for creating `pod` in `namespace`, as an API server sends it.
fn pod_review(namespace: &str, pod: serde_json::Value) -> String {
    serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "fgtest-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p", "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "tool-alpha", "groups": ["forgectl:tools"]},
            "object": pod, "dryRun": false}})
    .to_string()
}

/// The platform phase's work: forgectl's services on the control planes, the webhooks answering
/// over TLS with the cluster CA's certificate on each control plane's loopback (where its API
/// server calls them), the objects in the API, and the accounts controller (one leader, as
/// user forgectl:accounts with only its ClusterRole) provisioning the tools of the file.
/// lb-1 is also the bastion: toolctl is there under both names, and a tool owner who has become
/// the tool reaches the API with the tool's kubeconfig, through haproxy. Without NFS here, the
/// home the controller wrote on the leader is copied over as the homes export would show it.
fn bastion_checks(bed: &Bed, leader: &str) {
    assert_eq!(
        bed.on(
            "lb-1",
            "stat -c '%a %U' /usr/local/bin/toolctl; readlink /usr/local/bin/webservice"
        ),
        "755 root\ntoolctl"
    );
    let home = bed.on(
        leader,
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
    assert_eq!(
        as_tool("toolctl jobs list -o json"),
        "[]",
        "the tool's own namespace, read with its own certificate"
    );
}

fn platform_checks(bed: &Bed, api: &support::kube::ControlPlane) {
    for cp in ["control-1", "control-2", "control-3"] {
        assert_eq!(
            bed.on(
                cp,
                "systemctl is-active forgectl-admission forgectl-accounts; stat -c '%a %U' /etc/forgectl/platform /etc/forgectl/platform/admission.key /etc/forgectl/platform/accounts.key"
            ),
            "active\nactive\n700 root\n600 root\n600 root",
            "{cp}"
        );
    }
    // The webhooks as the API server on control-1 would call them.
    let ask = |pod: serde_json::Value| -> serde_json::Value {
        let out = bed.on(
            "control-1",
            &format!(
                "curl -s --max-time 5 --cacert /etc/forgectl/platform/ca.crt -H 'Content-Type: application/json' \
                 --data-binary @- https://127.0.0.1:8443/validate/images <<'EOF'\n{}\nEOF",
                pod_review("tool-alpha", pod)
            ),
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
            ["response"]
            .clone()
    };
    let good = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "tool-alpha"},
        "spec": {"containers": [{"name": "web", "image": "registry.fgtest.invalid/toolforge/python311:latest"}]}});
    let r = ask(good.clone());
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["uid"], "fgtest-1");
    let mut evil = good.clone();
    evil["spec"]["initContainers"] =
        serde_json::json!([{"name": "x", "image": "evil.example/miner"}]);
    let r = ask(evil);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("initContainers x: evil.example/miner"),
        "{r}"
    );
    let mut host = good;
    host["spec"]["volumes"] = serde_json::json!([{"name": "root", "hostPath": {"path": "/"}}]);
    let r = ask(host);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("root (hostPath)"),
        "{r}"
    );
    // The objects.
    let ca = std::fs::read(bed.state.join(CLUSTER).join("pki/ca.crt")).unwrap();
    let hooks = api.list("validatingwebhookconfigurations", "");
    assert_eq!(hooks.len(), 1);
    for (hook, path) in hooks[0]["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["images", "ingress"])
    {
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(
            hook["clientConfig"]["url"],
            format!("https://127.0.0.1:8443/validate/{path}")
        );
        use base64::Engine;
        assert_eq!(
            hook["clientConfig"]["caBundle"],
            base64::engine::general_purpose::STANDARD.encode(&ca)
        );
        assert_eq!(
            hook["namespaceSelector"]["matchExpressions"][0]["key"],
            "forgectl.io/tenant"
        );
    }
    let settings = api
        .get("configmaps", Some("forgectl-platform"), "toolctl")
        .unwrap();
    assert_eq!(settings["metadata"]["namespace"], "forgectl-platform");
    assert_eq!(
        settings["data"]["image.python3.11"],
        "registry.fgtest.invalid/toolforge/python311:latest"
    );
    assert_eq!(settings["data"]["tool_domain"], "toolforge.test");
    // The accounts controller: one of the control planes leads and provisions both tools.
    let t = Instant::now();
    let holder = loop {
        let lease = api
            .list("leases", "")
            .into_iter()
            .find(|l| l["metadata"]["name"] == "forgectl-accounts");
        let namespaces: Vec<String> = api
            .list("namespaces", "")
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        if let Some(l) = lease
            && ["tool-alpha", "tool-beta"]
                .iter()
                .all(|n| namespaces.iter().any(|m| m == n))
        {
            break l["spec"]["holderIdentity"].as_str().unwrap().to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the accounts controller provisioned no tools: {namespaces:?}; {}",
            bed.on(
                "control-1",
                "journalctl -u forgectl-accounts --no-pager | tail -n 20"
            )
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let leader = ["control-1", "control-2", "control-3"]
        .into_iter()
        .find(|cp| holder.starts_with(cp))
        .unwrap_or_else(|| panic!("Lease held by {holder:?}"));
    let t = Instant::now();
    while bed.on(
        leader,
        "test -s /srv/homes/beta/.kube/config && echo yes || true",
    ) != "yes"
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no kubeconfig for beta on {leader}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        bed.on(
            leader,
            "stat -c '%a %u:%g' /srv/homes/alpha/.kube/config /srv/homes/alpha/.kube/client.key"
        ),
        "600 52001:52001\n600 52001:52001"
    );
    assert!(
        bed.on(leader, "curl -s --max-time 3 http://127.0.0.1:9105/metrics")
            .contains("forgectl_accounts_leader 1")
    );
    bastion_checks(bed, leader);
    // It acted as itself, with its ClusterRole: the API's authorizer let it (escalation checks
    // included) create the tools' Roles and approve their certificates.
    let reqs = api.requests();
    for write in ["create", "patch"] {
        assert!(
            reqs.iter()
                .any(|r| r.user == "forgectl:accounts" && r.verb == write),
            "no {write} as forgectl:accounts"
        );
    }
}

#[test]
fn bring_up_to_kubeadm_with_test_doubles() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let artifacts = work.path().join("artifacts");
    support::kube_doubles::lay_out(&artifacts, "1.35.0");
    let inv = work.path().join("cluster.yaml");
    std::fs::write(&inv, inventory(&artifacts)).unwrap();
    // Two tools whose homes are on the control planes' disks (NFS on a real site).
    std::fs::write(
        work.path().join("accounts.yaml"),
        "tools:\n\
         - {name: alpha, uid: 52001, gid: 52001, home: /srv/homes/alpha, maintainers: [alice]}\n\
         - {name: beta, uid: 52002, gid: 52002, home: /srv/homes/beta, maintainers: [alice]}\n",
    )
    .unwrap();
    let bed = Bed {
        inv,
        state: work.path().join("state"),
    };

    let started = Instant::now();
    bed.forgectl()
        .args(["up", "--yes", "--until", "kube-packages"])
        .assert()
        .success()
        .stdout(predicate::str::contains("up: done — 8 phase(s), "));
    eprintln!(
        "up to kube-packages, 6 machines: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // lb: haproxy balances the API to every control plane that answers /readyz over TLS …
    assert_eq!(bed.on("lb-1", "systemctl is-active haproxy"), "active");
    for cp in ["control-1", "control-2", "control-3"] {
        bed.on(cp, LISTENER);
    }
    wait_for_answers(
        &bed,
        &["control-1", "control-2", "control-3"],
        "every control plane up",
    );
    // … and takes one out when it stops answering.
    bed.on("control-1", "systemctl stop fgtest-api");
    wait_for_answers(&bed, &["control-2", "control-3"], "control-1 stopped");
    for cp in ["control-2", "control-3"] {
        bed.on(cp, "systemctl stop fgtest-api");
    }

    // The TLS front: nginx on lb-1 terminates TLS for *.toolforge.test with the certificate
    // forgectl issued and passes plain HTTP (with the forwarding headers) to haproxy's ingress
    // frontend, which hands it to worker-1's :80 (a stand-in for nginx-ingress that echoes what
    // it got). Other names get no certificate.
    bed.on(
        "worker-1",
        r#"systemd-run --unit fgtest-ingress python3 -c '
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("%s %s %s" % (self.headers["Host"], self.headers["X-Forwarded-Proto"], self.path)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()'"#,
    );
    let front_ca =
        std::fs::read_to_string(bed.state.join(CLUSTER).join("pki/tls-front-ca.crt")).unwrap();
    bed.on(
        "worker-1",
        &format!("cat > /root/front-ca.crt <<'EOF'\n{front_ca}EOF"),
    );
    let t = Instant::now();
    let curl = "curl -s --max-time 3 --cacert /root/front-ca.crt --resolve mytool.toolforge.test:443:10.77.64.15 https://mytool.toolforge.test/hello || true";
    loop {
        let got = bed.on("worker-1", curl);
        if got == "mytool.toolforge.test https /hello" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the TLS front answered {got:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        bed.on(
            "worker-1",
            "curl -sk --max-time 3 --resolve other.example:443:10.77.64.15 https://other.example/ >/dev/null; echo $?"
        ),
        "35",
        "a name outside the tool domain gets no TLS handshake"
    );
    // Plain HTTP is sent to the front (nginx-ingress then trusts the forwarding headers).
    assert_eq!(
        bed.on(
            "worker-1",
            "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' --max-time 3 --resolve mytool.toolforge.test:80:10.77.64.15 http://mytool.toolforge.test/x"
        ),
        "301 https://mytool.toolforge.test/x"
    );
    assert_eq!(
        bed.on("lb-1", "systemctl is-active nginx haproxy"),
        "active\nactive"
    );
    bed.on("worker-1", "systemctl stop fgtest-ingress");

    // A real control plane on the bridge's host address, with the cluster's CA and Service
    // network; the kubelet double forwards each control plane's :6443 to it once kubeadm wrote
    // the API server manifest.
    let pki = bed.state.join(CLUSTER).join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let sans: Vec<String> = [
        "lb-1",
        "control-1",
        "control-2",
        "control-3",
        "10.77.64.15",
        "10.77.64.11",
        "10.77.64.12",
        "10.77.64.13",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let api = support::kube::ControlPlane::start(support::kube::Options {
        ca: Some((read("ca.crt"), read("ca.key"))),
        bind: "10.77.64.1".parse().unwrap(),
        sans,
        service_cidr: "10.77.128.0/20".into(),
        ..Default::default()
    });
    // What kubeadm init would make: its admins' group bound to cluster-admin.
    api.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: \"kubeadm:cluster-admins\"}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n\
         subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: \"kubeadm:cluster-admins\"}]\n",
    );
    for cp in ["control-1", "control-2", "control-3"] {
        bed.on(
            cp,
            &format!(
                "mkdir -p /etc/forgectl-test-doubles && echo {} > /etc/forgectl-test-doubles/apiserver",
                api.addr
            ),
        );
    }

    // kubeadm: init on control-1, control-2 joins, control-3's join fails: the run stops there,
    // the token made for the joins is deleted anyway and the worker has not joined yet.
    bed.on(
        "control-3",
        "mkdir -p /etc/forgectl-test-doubles && touch /etc/forgectl-test-doubles/fail-join",
    );
    bed.forgectl()
        .args(["up", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("up: phase `kubeadm-join` failed: control-3: `kubeadm join --config /etc/kubernetes/forgectl/kubeadm-join.yaml`"))
        .stderr(predicate::str::contains("told to fail"));
    let joins = |host: &str| {
        bed.on(
            host,
            "grep -c '^kubeadm\tjoin' /var/log/forgectl-test-doubles/calls.log || true",
        )
    };
    assert_eq!(joins("control-2"), "1");
    assert_eq!(joins("control-3"), "1");
    assert_eq!(joins("worker-1"), "0");
    assert_eq!(
        bed.on("control-1", "cat /var/lib/forgectl-test-doubles/tokens"),
        ""
    );
    // Fixed, the next run goes on where it stopped.
    bed.on("control-3", "rm /etc/forgectl-test-doubles/fail-join");
    bed.forgectl()
        .args(["up", "--yes", "--until", "kubeadm-join"])
        .assert()
        .success()
        .stdout(predicate::str::contains("up: done — 10 phase(s), "));
    assert_eq!(joins("control-2"), "1");
    assert_eq!(joins("control-3"), "2");
    assert_eq!(joins("worker-1"), "1");
    assert_eq!(
        bed.on("control-1", "cat /var/lib/forgectl-test-doubles/tokens"),
        ""
    );
    assert_eq!(
        bed.on(
            "control-1",
            "grep -c '^kubeadm\tinit' /var/log/forgectl-test-doubles/calls.log"
        ),
        "1"
    );
    // The rest of the bring-up through the API: admin.conf → haproxy on lb-1 → a control plane's
    // :6443 → the real kube-apiserver; then the cluster-ready gate, whose DNS question goes from
    // control-1 to the cluster DNS Service IP, answered by a DNS double (CoreDNS cannot run here).
    let t = Instant::now();
    while answers(&bed).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "haproxy never saw an API server"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // The Service IP is made reachable on control-1 from the host side (machines may not change
    // their network; kube-proxy would make it reachable on a real node).
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("fg-{CLUSTER}-control-1")])
        .args(["ip", "addr", "add", "10.77.128.10/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(status.success());
    bed.on(
        "control-1",
        &format!(
            "mkdir -p /var/log/forgectl-test-doubles && \
             cat > /root/dns-double.py <<'EOF'\n{}EOF\n\
             systemd-run --unit fgtest-dns python3 /root/dns-double.py 10.77.128.10 \
             kubernetes.default.svc.cluster.local=10.77.128.1",
            include_str!("support/doubles/dns-double.py")
        ),
    );
    for cp in ["control-1", "control-2", "control-3"] {
        bed.on(
            cp,
            "install -d -o 52001 -g 52001 /srv/homes/alpha && install -d -o 52002 -g 52002 /srv/homes/beta",
        );
    }
    // The kubelets: every node registers Ready and runs what is scheduled to it.
    let admin = bed.state.join(CLUSTER).join("admin.conf");
    let ingress: &[(&str, &str)] = &[("node.forgectl.io/ingress", "true")];
    let nodes = support::node_standin::Nodes::start_labelled(
        &admin,
        &[
            ("control-1", &[]),
            ("control-2", &[]),
            ("control-3", &[]),
            ("worker-1", ingress),
        ],
        "10.77.64.1".parse().unwrap(),
    );
    let out = bed.forgectl().args(["up", "--yes"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("up: done — 16 phase(s), "), "{t}");
    platform_checks(&bed, &api);
    assert_eq!(
        bed.on("control-1", "cat /var/log/forgectl-test-doubles/dns.log"),
        "kubernetes.default.svc.cluster.local 1"
    );
    // Calico: its CRDs served, the pool and Felix configuration as the inventory says.
    let crds = api.list("customresourcedefinitions", "");
    assert_eq!(crds.len(), 24);
    let pool = &api.list("ippools.crd.projectcalico.org", "")[0];
    assert_eq!(pool["spec"]["cidr"], "10.77.192.0/18");
    assert_eq!(pool["spec"]["ipipMode"], "Always");
    let calico = api
        .get("daemonsets", Some("kube-system"), "calico-node")
        .unwrap();
    let env = calico["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let var = |k: &str| {
        env.iter()
            .find(|e| e["name"] == k)
            .map(|e| e["value"].clone())
            .unwrap()
    };
    assert_eq!(var("CALICO_IPV4POOL_CIDR"), "10.77.192.0/18");
    assert_eq!(var("FELIX_IPTABLESBACKEND"), "Auto");
    let config = &api
        .get("configmaps", Some("kube-system"), "calico-config")
        .unwrap();
    assert_eq!(config["data"]["veth_mtu"], "1480");
    // nginx-ingress.
    let ds = api
        .list("daemonsets", "")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "ingress-nginx-controller")
        .unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"]["node.forgectl.io/ingress"],
        "true"
    );
    assert!(
        ds["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["manager"] == "forgectl" && f["operation"] == "Apply"),
        "{ds:#}"
    );
    let class = &api.list("ingressclasses", "")[0];
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert!(
        api.requests()
            .iter()
            .any(|r| r.user == "kubernetes-admin" && r.verb == "patch")
    );
    // A second apply changes nothing: no object forgectl applied has changed.
    let applied = api.applied_by("forgectl");
    assert!(applied.len() > 50, "{applied:?}");
    let out = bed
        .forgectl()
        .args(["up", "--yes", "--only", "cni-calico,ingress"])
        .output()
        .unwrap();
    assert!(
        text(&out).contains("up: done — 2 phase(s), 0 change(s)."),
        "{}",
        text(&out)
    );
    assert_eq!(api.applied_by("forgectl"), applied);
    // `forgectl status`: etcd, every node, the system workloads.
    let out = bed.forgectl().arg("status").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("etcd: 1 of 1 member(s) healthy"), "{t}");
    assert!(t.contains("worker-1   Ready"), "{t}");
    assert!(
        t.contains("DaemonSet kube-system/calico-node") && t.contains("status: healthy"),
        "{t}"
    );
    // A node that stops being Ready holds the gate, which says which one.
    nodes.set_ready("worker-1", false);
    let t = Instant::now();
    while api.get("nodes", None, "worker-1").unwrap()["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "worker-1 stays Ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = bed
        .forgectl()
        .env("FORGECTL_WAIT_TIMEOUT_S", "3")
        .args(["up", "--yes", "--only", "cluster-ready"])
        .output()
        .unwrap();
    assert!(text(&out).contains("not Ready: worker-1"), "{}", text(&out));
    let out = bed.forgectl().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("worker-1   NotReady"), "{}", text(&out));
    nodes.set_ready("worker-1", true);
    assert!(
        bed.on(
            "worker-1",
            "cat /etc/kubernetes/forgectl/*.yaml 2>/dev/null; true"
        )
        .is_empty()
    );
    assert!(
        bed.on(
            "control-1",
            "grep -h node-labels -A1 /etc/kubernetes/forgectl/kubeadm-init.yaml; true"
        )
        .is_empty(),
        "control-1 is not an ingress node"
    );

    // What kubeadm was given: the external etcd, forgectl's CAs, the LB as the endpoint.
    let init = bed.on(
        "control-1",
        "cat /etc/kubernetes/forgectl/kubeadm-init.yaml",
    );
    assert!(
        init.contains("controlPlaneEndpoint: \"10.77.64.15:6443\""),
        "{init}"
    );
    assert!(init.contains("- https://10.77.64.10:2379"), "{init}");
    let ca = std::fs::read_to_string(bed.state.join(CLUSTER).join("pki/ca.crt")).unwrap();
    assert_eq!(
        bed.on("control-3", "cat /etc/kubernetes/pki/ca.crt"),
        ca.trim_end()
    );
    assert_eq!(
        bed.on(
            "control-2",
            "stat -c '%a' /etc/kubernetes/pki/ca.key /etc/kubernetes/forgectl"
        ),
        "600\n700"
    );
    assert_eq!(
        bed.on(
            "worker-1",
            "ls /etc/kubernetes/forgectl/ 2>/dev/null | wc -l"
        ),
        "0",
        "the join configuration (it held the token) is removed"
    );
    // The admin kubeconfig, in the state dir (0600), for the LB, with a client certificate the
    // cluster CA signed.
    let admin = bed.state.join(CLUSTER).join("admin.conf");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&admin).unwrap();
    assert!(text.contains("server: https://10.77.64.15:6443"), "{text}");
    let cert = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .unwrap();
    let pem = String::from_utf8(
        std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(cert.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap()
            .stdout,
    )
    .unwrap();
    let info = forgectl::pki::inspect(&pem).unwrap();
    assert_eq!(
        (info.subject.as_str(), info.issuer.as_str()),
        ("kubernetes-admin", "kubernetes")
    );

    // host-prep
    assert_eq!(bed.on("control-2", "hostname"), "control-2");
    assert_eq!(
        bed.on(
            "control-2",
            "sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables"
        ),
        "1\n1"
    );
    assert!(
        bed.on("worker-1", "getent hosts control-1")
            .starts_with("10.77.64.11")
    );
    assert!(
        bed.on("worker-1", "command -v conntrack socat ipset")
            .contains("/usr/sbin/ipset")
    );
    // runtime: containerd started by systemd and answering on its socket, configured for kubelet.
    assert_eq!(
        bed.on("worker-1", "systemctl is-active containerd"),
        "active"
    );
    assert!(bed.on("worker-1", "ctr version").contains("Server:"));
    let config = bed.on("worker-1", "cat /etc/containerd/config.toml");
    assert!(config.contains("SystemdCgroup = true"), "{config}");
    assert!(config.contains("sandbox_image = \"registry.k8s.io/pause:3.10\""));
    assert!(
        bed.on(
            "worker-1",
            "cat /etc/containerd/certs.d/docker.io/hosts.toml"
        )
        .contains("[host.\"https://mirror.fgtest.invalid\"]")
    );
    // kube-packages: the doubles, installed under their real names, at the asked version.
    assert_eq!(bed.on("control-1", "kubeadm version -o short"), "v1.35.0");
    assert_eq!(
        bed.on("worker-1", "kubelet --version; crictl --version"),
        format!(
            "Kubernetes v1.35.0\ncrictl version v{}",
            forgectl::artifacts::CRICTL_VERSION
        )
    );
    assert_eq!(
        bed.on("worker-1", "systemctl is-enabled kubelet"),
        "enabled"
    );
    assert!(
        bed.on("control-1", "head -n 3 /usr/local/bin/kubeadm")
            .contains("TEST DOUBLE")
    );

    // forgectl was copied to every control plane and the copy marked for the quick check.
    let exe = std::fs::read(assert_cmd::cargo::cargo_bin("forgectl")).unwrap();
    let sha = forgectl::plan::sha256_hex(&exe);
    for cp in ["control-1", "control-2", "control-3"] {
        assert!(
            bed.on(cp, "cat /var/lib/forgectl/installed-self")
                .starts_with(&format!("{sha} /usr/local/bin/forgectl ")),
            "{cp}: no mark of this build"
        );
    }

    // A converged cluster: a second run changes nothing and calls no double but read-only checks.
    for cp in ["control-1", "control-2", "control-3"] {
        bed.on(
            cp,
            "mv /var/log/forgectl-test-doubles/calls.log /var/log/forgectl-test-doubles/before.log",
        );
    }
    let started = Instant::now();
    bed.forgectl()
        .args(["up", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 16 phase(s), 0 change(s).",
        ));
    eprintln!("converged re-run: {:.1} s", started.elapsed().as_secs_f64());
    for cp in ["control-1", "control-2", "control-3"] {
        let after = bed.on(
            cp,
            "cut -f2 /var/log/forgectl-test-doubles/calls.log | sort -u",
        );
        for line in after.lines() {
            assert!(
                [
                    "version -o short",
                    "--version",
                    "version --client -o json",
                    "--kubeconfig /etc/kubernetes/admin.conf get --raw=/readyz",
                ]
                .contains(&line),
                "a converged run called a double on {cp} with `{line}`"
            );
        }
    }

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
    bed.forgectl()
        .args(["up", "--yes", "--only", "pki"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "the control planes already have a CA; run `forgectl certs recover`",
        ));
    bed.forgectl()
        .args(["certs", "recover", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "recovered the Kubernetes and front-proxy CAs and the service-account keys from control-1",
        ));
    for (p, data) in &kept {
        assert_eq!(&std::fs::read(p).unwrap(), data, "{}", p.display());
    }

    // Registry mirrors are reconciled: a registry dropped from the inventory loses its file.
    let text = std::fs::read_to_string(&bed.inv).unwrap().replace(
        "runtime:\n  registry_mirrors:\n    docker.io: [https://mirror.fgtest.invalid]\n",
        "",
    );
    std::fs::write(&bed.inv, text).unwrap();
    bed.forgectl()
        .args(["up", "--yes", "--only", "runtime"])
        .assert()
        .success();
    assert_eq!(
        bed.on("worker-1", "ls /etc/containerd/certs.d | wc -l"),
        "0"
    );
    assert!(bed.on("worker-1", "ctr version").contains("Server:"));
}
