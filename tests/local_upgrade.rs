//! The rolling upgrade on a real cluster of local machines: built at the previous release
//! (v1.35.3 from `$FORGECTL_TEST_KUBE_ASSETS_PREVIOUS` or `../shared/kube`), upgraded by
//! `forgectl upgrade` to the current one (v1.36.2) with real kubeadm, kubelet and control-plane
//! images, while a Deployment guarded by a PodDisruptionBudget (minAvailable 2 of 3) is watched:
//! it never has fewer than 2 ready pods. A worker killed mid-upgrade stops the run with a report
//! naming it; the next run refuses until it is back; then it converges, skipping the nodes
//! done. The only stand-in is CoreDNS's image. Needs root, like `.ci/run`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::real_cluster::{Bed, text, wait_until};

const CLUSTER: &str = "fgtest-upg";
const NODES: [&str; 4] = ["control-1", "control-2", "worker-1", "worker-2"];

fn inventory(inputs: &support::kube_artifacts::Inputs, kube: &str) -> String {
    format!(
        "name: {CLUSTER}\nprovider: local\nlocal:\n  bridge: fgtest-upg0\n\
         network:\n  machine_cidr: 10.77.74.0/24\n  pod_cidr: 10.77.96.0/20\n  service_cidr: 10.77.112.0/20\n\
         versions:\n  kubernetes: {kube}\n  kubectl: {kubectl}\n  etcd: {etcd}\n\
         artifacts:\n  source: debian\n  dir: {}\n  images: {}\n\
         cni:\n  plugin: bridge\n\
         ingress:\n  enabled: false\n\
         upgrade:\n  drain_timeout: 120\n\
         groups:\n  - name: etcd\n    roles: [etcd]\n    count: 1\n  - name: control\n    roles: [control-plane]\n    count: 2\n\
         \x20 - name: worker\n    roles: [worker]\n    count: 2\n  - name: lb\n    roles: [lb]\n    count: 1\n",
        inputs.artifacts.display(),
        inputs.images.display(),
        kubectl = inputs.kube,
        etcd = inputs.etcd,
    )
}

/// The web Deployment (3 replicas, never on worker-2, control planes allowed) and its budget.
fn web(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: fgtest-web, namespace: default}}\n\
         spec:\n  replicas: 3\n  selector: {{matchLabels: {{app: fgtest-web}}}}\n  template:\n    metadata: {{labels: {{app: fgtest-web}}}}\n    spec:\n\
         \x20     terminationGracePeriodSeconds: 1\n\
         \x20     tolerations: [{{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}}]\n\
         \x20     affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/hostname, operator: NotIn, values: [worker-2]}}]}}]}}}}}}\n\
         \x20     containers: [{{name: web, image: \"{image}\", command: [sleep, \"86400\"]}}]\n\
         ---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: fgtest-web, namespace: default}}\n\
         spec: {{minAvailable: 2, selector: {{matchLabels: {{app: fgtest-web}}}}}}\n"
    )
}

/// The web Deployment's pods that are not terminating, as `name@node:ready`, and how many are
/// ready (kubectl with the admin kubeconfig); None when the API did not answer.
fn web_pods(kubectl: &Path, admin: &Path) -> Option<(usize, String)> {
    let out = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(admin)
        .args(["get", "pods", "-l", "app=fgtest-web", "-o", "json"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut ready = 0;
    let mut seen = Vec::new();
    for p in v["items"].as_array()? {
        if !p["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let ok = p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        ready += usize::from(ok);
        seen.push(format!(
            "{}@{}:{}",
            p["metadata"]["name"].as_str().unwrap_or_default(),
            p["spec"]["nodeName"].as_str().unwrap_or("-"),
            if ok { "ready" } else { "not-ready" }
        ));
    }
    seen.sort();
    Some((ready, seen.join(" ")))
}

/// Each node's kubelet version and whether it is cordoned.
fn nodes(bed: &Bed) -> Vec<(String, String, bool)> {
    let v = bed.k_json(&["get", "nodes"]);
    let mut out: Vec<(String, String, bool)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                n["spec"]["unschedulable"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

fn node_ready(bed: &Bed, node: &str) -> bool {
    let v = bed.k_json(&["get", "node", node]);
    v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[test]
fn rolling_upgrade_keeps_the_budget_and_resumes() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let kube_bin = support::kube::assets();
    let previous = support::kube::previous_assets();
    let inputs = support::kube_artifacts::inputs(work.path(), &kube_bin);
    let old = support::kube_artifacts::lay_out_node_binaries(&inputs.artifacts, &previous);
    support::node_images::lay_out(&inputs.images, &previous);
    let new = inputs.kube.clone();
    assert_ne!(old, new);
    let image = support::node_images::kubeadm_images(&kube_bin)
        .into_iter()
        .find(|r| r.contains("/coredns"))
        .unwrap();
    let inv = work.path().join("cluster.yaml");
    std::fs::write(&inv, inventory(&inputs, &old)).unwrap();
    let bed = Bed {
        cluster: CLUSTER,
        inv: inv.clone(),
        state: work.path().join("state"),
        kubectl: kube_bin.join("kubectl"),
    };

    let started = Instant::now();
    let (code, out) = bed.up(&[]);
    assert_eq!(code, Some(0), "{out}");
    eprintln!(
        "cluster at v{old}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (n, v, _) in nodes(&bed) {
        assert_eq!(v, format!("v{old}"), "{n}");
    }
    bed.k_apply(&web(&image));
    bed.k(&[
        "rollout",
        "status",
        "deployment/fgtest-web",
        "--timeout=180s",
    ]);

    // Someone watches the Deployment through the whole upgrade.
    let stop = Arc::new(AtomicBool::new(false));
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let watcher = {
        let (stop, lowest) = (stop.clone(), lowest.clone());
        let (kubectl, admin) = (bed.kubectl.clone(), bed.admin_conf());
        std::thread::spawn(move || {
            // An empty listing is the API's answer, not the pods' state: one came back each
            // time an upgraded kubelet restarted on a control plane, while every pod ran on
            // (the listings before and after name the same ready pods). It is counted apart.
            let (mut samples, mut unanswered, mut empty) = (0, 0, 0);
            let t0 = Instant::now();
            let mut changes: Vec<String> = Vec::new();
            let mut last = String::new();
            while !stop.load(Ordering::SeqCst) {
                match web_pods(&kubectl, &admin) {
                    Some((_, seen)) if seen.is_empty() => {
                        empty += 1;
                        changes.push(format!(
                            "[{:>6.1} s, {}] an empty listing",
                            t0.elapsed().as_secs_f64(),
                            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        ));
                    }
                    Some((n, seen)) => {
                        samples += 1;
                        lowest.fetch_min(n, Ordering::SeqCst);
                        if seen != last {
                            changes.push(format!(
                                "[{:>6.1} s, {}] {n} ready: {seen}",
                                t0.elapsed().as_secs_f64(),
                                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                            ));
                            last = seen;
                        }
                    }
                    None => unanswered += 1,
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            (samples, unanswered, empty, changes)
        })
    };

    // The plan shows the order and the gates; nothing is "not implemented".
    std::fs::write(&inv, inventory(&inputs, &new)).unwrap();
    let out = bed
        .forgectl()
        .args(["upgrade", "--dry-run"])
        .output()
        .unwrap();
    let planned = text(&out);
    assert!(out.status.success(), "{planned}");
    for line in [
        "upgrade-preflight",
        &format!("check  the skew policy for v{new}"),
        &format!("control-1  upgrade to v{new} (batch 1)"),
        &format!("control-2  upgrade to v{new} (batch 2)"),
        &format!("worker-1  upgrade to v{new} (batch 1)"),
        &format!("worker-2  upgrade to v{new} (batch 2)"),
        "0 not implemented yet",
        "Dry run: nothing was changed.",
    ] {
        assert!(planned.contains(line), "{line}: {planned}");
    }

    // The upgrade, with worker-2 killed while the control planes are upgraded.
    let log = work.path().join("upgrade-1.log");
    let mut run = bed
        .process()
        .env("FORGECTL_LOG", "forgectl=info")
        .args(["upgrade", "--yes"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let t_upgrade = Instant::now();
    wait_until("control-1 is upgraded", Duration::from_secs(600), || {
        let n = nodes(&bed);
        let c1 = n.iter().find(|(name, _, _)| name == "control-1").unwrap();
        (c1.1 == format!("v{new}"))
            .then_some(())
            .ok_or(format!("{n:?}"))
    });
    let killed = bed
        .forgectl()
        .args(["machines", "kill", "worker-2"])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{}", text(&killed));
    let status = run.wait().unwrap();
    let first = std::fs::read_to_string(&log).unwrap();
    eprintln!(
        "upgrade stopped by the killed worker after {:.1} s",
        t_upgrade.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(1), "{first}");
    assert!(
        first.contains("worker-2: the upgrade stopped at its first check"),
        "{first}"
    );
    assert!(first.contains("nothing was done to it"), "{first}");
    assert!(first.contains("run `forgectl upgrade` again"), "{first}");
    assert!(first.contains("worker-1  at v"), "{first}");
    let after_first = nodes(&bed);
    for (n, v, cordoned) in &after_first {
        let want = if n == "worker-2" { &old } else { &new };
        assert_eq!(v, &format!("v{want}"), "{n}: {after_first:?}");
        assert!(!cordoned, "{n} is left cordoned: {after_first:?}");
    }

    // While worker-2 is down, the next run refuses before changing anything.
    wait_until("worker-2 NotReady", Duration::from_secs(180), || {
        (!node_ready(&bed, "worker-2"))
            .then_some(())
            .ok_or_default()
    });
    let out = bed.forgectl().args(["upgrade", "--yes"]).output().unwrap();
    let refused = text(&out);
    assert_eq!(out.status.code(), Some(1), "{refused}");
    assert!(
        refused.contains("the upgrade cannot start, nothing was changed")
            && refused.contains("worker-2 is NotReady: bring it back"),
        "{refused}"
    );

    // Back up, the next run converges: the nodes done are skipped.
    let started = bed
        .forgectl()
        .args(["machines", "start", "worker-2"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started));
    wait_until("worker-2 Ready", Duration::from_secs(300), || {
        node_ready(&bed, "worker-2").then_some(()).ok_or_default()
    });
    let resumed = Instant::now();
    let out = bed.forgectl().args(["upgrade", "--yes"]).output().unwrap();
    let second = text(&out);
    assert_eq!(out.status.code(), Some(0), "{second}");
    eprintln!(
        "resumed upgrade (worker-2 only): {:.1} s",
        resumed.elapsed().as_secs_f64()
    );
    for n in ["control-1", "control-2", "worker-1"] {
        assert!(
            second.contains(&format!("{n}  at v{new} already; skipped")),
            "{n}: {second}"
        );
    }
    for (n, v, cordoned) in nodes(&bed) {
        assert_eq!(v, format!("v{new}"), "{n}");
        assert!(!cordoned, "{n}");
    }
    let pods = bed.k_json(&[
        "-n",
        "kube-system",
        "get",
        "pods",
        "-l",
        "tier=control-plane",
    ]);
    let images: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap())
        .collect();
    assert_eq!(images.len(), 6, "{images:?}");
    assert!(
        images.iter().all(|i| i.ends_with(&format!(":v{new}"))),
        "{images:?}"
    );
    let config = bed.k(&[
        "-n",
        "kube-system",
        "get",
        "configmap",
        "kubeadm-config",
        "-o",
        "jsonpath={.data.ClusterConfiguration}",
    ]);
    assert!(
        config.contains(&format!("kubernetesVersion: v{new}")),
        "{config}"
    );
    for n in NODES {
        assert_eq!(
            bed.on(n, "kubelet --version; kubeadm version -o short"),
            format!("Kubernetes v{new}\nv{new}"),
            "{n}"
        );
    }

    // Done: another run changes nothing and takes no snapshot.
    let out = bed.forgectl().args(["upgrade", "--yes"]).output().unwrap();
    let third = text(&out);
    assert_eq!(out.status.code(), Some(0), "{third}");
    assert!(third.contains("0 change(s)."), "{third}");
    assert!(
        third.contains(&format!(
            "every node runs v{new} and every etcd member {} already",
            inputs.etcd
        )),
        "{third}"
    );
    let backups = bed.state.join(CLUSTER).join("backups");
    let snapshots: Vec<std::path::PathBuf> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("etcd-pre-upgrade-")
        })
        .collect();
    assert_eq!(
        snapshots.len(),
        2,
        "one per run that upgraded: {snapshots:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    for s in &snapshots {
        assert_eq!(
            std::fs::metadata(s).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    stop.store(true, Ordering::SeqCst);
    let (samples, unanswered, empty, changes) = watcher.join().unwrap();
    let low = lowest.load(Ordering::SeqCst);
    eprintln!(
        "web Deployment watched: {samples} samples, {unanswered} unanswered, {empty} empty listing(s), lowest ready {low} (budget: minAvailable 2)\n{}",
        changes.join("\n")
    );
    assert!(samples > 50, "{samples}");
    assert!(
        low >= 2,
        "the budget was broken: {low} ready pods. What the watcher saw:\n{}\nThe first run:\n{first}",
        changes.join("\n")
    );

    // The inventory's own playbook agrees the cluster is where it says.
    let (code, out) = bed.up(&[]);
    assert_eq!(code, Some(0), "{out}");
}

trait OkOrDefault {
    fn ok_or_default(self) -> Result<(), String>;
}

impl OkOrDefault for Option<()> {
    fn ok_or_default(self) -> Result<(), String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}
