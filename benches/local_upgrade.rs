//! The rolling upgrade on local machines, the embedded default's shape (3 etcd, 1 control plane,
//! 2 workers, 1 lb): the cluster is built at the previous release (v1.35.3 from
//! `$FORGECTL_TEST_KUBE_ASSETS_PREVIOUS` or `../shared/kube`), then `forgectl upgrade` takes it to
//! the current one (v1.36.2) with the real kubeadm, kubelet and control-plane images (CoreDNS a
//! stand-in), then runs again. Prints the upgrade's time against the budget of ARCHITECTURE §8
//! (≤ 5 min) and the converged re-run's. Asserts nothing. Needs root. Run:
//! `cargo bench --bench local_upgrade`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

fn main() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let inputs = support::kube_artifacts::inputs(work.path(), &support::kube::assets());
    let previous = support::kube::previous_assets();
    let old = support::kube_artifacts::lay_out_node_binaries(&inputs.artifacts, &previous);
    support::node_images::lay_out(&inputs.images, &previous);
    let default = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories/local/cluster.yaml"),
    )
    .unwrap();
    // The embedded default, renamed onto a network of its own, with the artifacts; kubectl of
    // the current release (the previous set has none; kubectl may be one minor away).
    let inventory = |kube: &str| {
        default
            .replace("name: forge-local", "name: fgbench-upg")
            .replace("machine_cidr: 10.77.0.0/24", "machine_cidr: 10.77.77.0/24")
            .replace(
                "local:\n  suite: bookworm\n",
                "local:\n  suite: bookworm\n  bridge: fgbench-upg0\n",
            )
            .replace(
                "ingress:\n  enabled: true\n",
                "ingress:\n  enabled: false   # nginx-ingress's image cannot be had here\n",
            )
            .replace(
                "artifacts:\n  source: debian",
                &format!(
                    "versions:\n  kubernetes: {kube}\n  kubectl: {}\n  etcd: {}\nartifacts:\n  dir: {}\n  images: {}\n  source: debian",
                    inputs.kube,
                    inputs.etcd,
                    inputs.artifacts.display(),
                    inputs.images.display()
                ),
            )
    };
    let file = work.path().join("cluster.yaml");
    std::fs::write(&file, inventory(&old)).unwrap();
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
    let run = |what: &str, args: &[&str]| {
        let t = Instant::now();
        let out = forgectl().args(args).output().unwrap();
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
    let (build, s0) = run("the cluster at the previous release", &["up", "--yes"]);
    std::fs::write(&file, inventory(&inputs.kube)).unwrap();
    let (upgrade, s1) = run("upgrade", &["upgrade", "--yes"]);
    let (again, s2) = run("upgrade again", &["upgrade", "--yes"]);
    let _ = forgectl().args(["down", "--yes"]).output();
    println!(
        "local_upgrade: Kubernetes {old} -> {}, 7 machines (3 etcd, 1 control plane, 2 workers, 1 lb)",
        inputs.kube
    );
    println!("  the cluster at {old} (not the figure):       {build:6.1} s   [{s0}]");
    println!(
        "  rolling upgrade, every node at the target:    {upgrade:6.1} s   budget ≤ 300 s   [{s1}]"
    );
    println!(
        "  upgrade again (nothing behind):               {again:6.1} s   0 changes expected   [{s2}]"
    );
}
