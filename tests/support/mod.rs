//! Shared pieces of the test bed: starters of real parts (local machines, slapd, minicloud, a
//! real Kubernetes control plane in `kube`) and the few labelled stand-ins of parts with no real
//! version here yet (what kubelets write to the API where no real kubelet runs: `node_standin`;
//! images that cannot be had here: the CoreDNS stand-in of `node_images`).

#![allow(dead_code)]

pub mod accounts_bed;
pub mod ingress_metrics_standin;
pub mod kube;
pub mod kube_artifacts;
pub mod node_images;
pub mod node_standin;
pub mod openstack;
pub mod real_cluster;
pub mod registry;
pub mod rendered;
pub mod schema_walk;
pub mod slapd;
pub mod tool_policy;
pub mod x509;

use std::path::Path;

/// What local machines could leave behind on the host: network namespaces, links, overlay and
/// state-dir mounts, the cluster's cgroups, and processes that mention `state`.
pub fn host_snapshot(cluster: &str, state: &Path) -> Vec<String> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut snap: Vec<String> = run(&["ip", "netns", "list"])
        .lines()
        .map(|l| format!("netns {l}"))
        .collect();
    snap.extend(
        run(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(|n| format!("link {}", n.trim()))),
    );
    let state = state.display().to_string();
    snap.extend(
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&state) || l.contains("forgectl") || l.contains(" overlay "))
            .map(|l| format!("mount {}", l.split_whitespace().nth(4).unwrap_or(""))),
    );
    // Every hierarchy: v2, and each v1 controller and name=systemd on hybrid hosts.
    let mut hierarchies = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    hierarchies.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for h in hierarchies {
        let dir = h.join("forgectl").join(cluster);
        if dir.exists() {
            snap.push(format!("cgroup {}", dir.display()));
        }
    }
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&state) {
            snap.push(format!("process {}", p.file_name().to_string_lossy()));
        }
    }
    snap.sort();
    snap
}

/// Fails clearly unless the test runs as root.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (namespaces, mounts, cgroups); .ci/run runs it as root"
    );
}

/// Runs `cmd` and asserts it exited 0; a failure names `what` and shows both output streams.
pub fn succeeds(cmd: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
