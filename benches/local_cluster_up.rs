//! A real cluster from nothing on local machines, the embedded default's shape (3 etcd, 1 control
//! plane, 2 workers, 1 lb): `forgectl up` with the real etcd, kubeadm, kubelet, kubectl and
//! kube-proxy of `$FORGECTL_TEST_KUBE_ASSETS` (or `../shared/kube`) as release artifacts and their
//! images in `artifacts.images` (built by tests/support/node_images.rs; CoreDNS a stand-in), the
//! `bridge` pod network, the rootfs cached. Prints the time to every node Ready (the whole `up`,
//! whose `cluster-ready` gate waits for it) and of the converged re-run, against the budgets of
//! ARCHITECTURE §8 (≤ 2 min; re-run ≤ 5 s, 0 changes) and kubespray's ≈15 min for 10 nodes.
//! Asserts nothing. Needs root. Run: `cargo bench --bench local_cluster_up`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

fn main() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let support::kube_artifacts::Inputs {
        artifacts,
        images,
        kube,
        etcd,
    } = support::kube_artifacts::inputs(work.path(), &support::kube::assets());
    let default = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories/local/cluster.yaml"),
    )
    .unwrap();
    // The embedded default, renamed onto a network of its own, with the artifacts.
    let inv = default
        .replace("name: forge-local", "name: fgbench-up")
        .replace("machine_cidr: 10.77.0.0/24", "machine_cidr: 10.77.76.0/24")
        .replace(
            "local:\n  suite: bookworm\n",
            "local:\n  suite: bookworm\n  bridge: fgbench-up0\n",
        )
        .replace(
            "ingress:\n  enabled: true\n",
            "ingress:\n  enabled: false   # nginx-ingress's image cannot be had here\n",
        )
        .replace(
            "artifacts:\n  source: debian",
            &format!(
                "versions:\n  kubernetes: {kube}\n  etcd: {etcd}\nartifacts:\n  dir: {}\n  images: {}\n  source: debian",
                artifacts.display(),
                images.display()
            ),
        );
    let file = work.path().join("cluster.yaml");
    std::fs::write(&file, inv).unwrap();
    let state = work.path().join("state");
    let forgectl = || {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("forgectl"));
        c.env("NO_COLOR", "1")
            .arg("--state-dir")
            .arg(&state)
            .arg("-f")
            .arg(&file);
        c
    };
    let run = |what: &str| {
        let t = Instant::now();
        let out = forgectl().args(["up", "--yes"]).output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let summary = text
            .lines()
            .rfind(|l| l.starts_with("up:"))
            .unwrap_or_default()
            .to_string();
        if !out.status.success() {
            eprintln!(
                "{what} failed: {summary}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (secs, summary)
    };
    let (cold, s1) = run("from nothing");
    let (again, s2) = run("re-run");
    let _ = forgectl().args(["down", "--yes"]).output();
    println!(
        "local_cluster_up: Kubernetes {kube}, etcd {etcd}, 7 machines (3 etcd, 1 control plane, 2 workers, 1 lb)"
    );
    println!(
        "  from nothing to every node Ready (rootfs cached): {cold:6.1} s   budget ≤ 120 s; kubespray ≈ 900 s for 10 nodes   [{s1}]"
    );
    println!(
        "  converged re-run:                                 {again:6.1} s   budget ≤ 5 s, 0 changes                     [{s2}]"
    );
}
