//! `up` on local machines: refused without root before anything is written; interrupted with
//! Ctrl-C while machines are being made, it removes what it made and leaves the host as before.
//! Needs root (the test drops it for the first check), like `.ci/run`.

mod support;

use assert_cmd::cargo::CommandCargoExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INVENTORY: &str = "\
name: fgtest-int
provider: local
local:
  bridge: fgtest-int0
network:
  machine_cidr: 10.77.51.0/24
ingress:
  enabled: false
groups:
  - name: etcd
    roles: [etcd]
    count: 3
  - name: cp
    roles: [control-plane]
    count: 1
  - name: w
    roles: [worker]
    count: 4
";

/// The tests here change the host's links and compare snapshots of them: one at a time.
static HOST_NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn refused_without_root_and_clean_after_ctrl_c() {
    support::require_root();
    let _one_at_a_time = HOST_NETWORK.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let inv = work.path().join("cluster.yaml");
    std::fs::write(&inv, INVENTORY).unwrap();
    // World-readable so the unprivileged run below can read the inventory.
    let perm = |_: &Path, m: u32| std::os::unix::fs::PermissionsExt::from_mode(m);
    std::fs::set_permissions(work.path(), perm(work.path(), 0o755)).unwrap();
    std::fs::set_permissions(&inv, perm(&inv, 0o644)).unwrap();

    // Without root: a clear refusal, nothing written. (A copy of the binary: the build directory
    // may sit under a home directory the unprivileged user cannot enter.)
    let state = work.path().join("state");
    let bin = work.path().join("forgectl");
    std::fs::copy(assert_cmd::cargo::cargo_bin("forgectl"), &bin).unwrap();
    let out = Command::new(&bin)
        .env("NO_COLOR", "1")
        .arg("--state-dir")
        .arg(&state)
        .arg("-f")
        .arg(&inv)
        .args(["up", "--yes"])
        .env("HOME", "/nonexistent")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the local provider needs root"),
        "{stderr}"
    );
    assert!(
        stderr.contains("next: run forgectl as root (sudo)"),
        "{stderr}"
    );
    assert!(!state.exists());

    // Ctrl-C while the machines are being made.
    let before = support::host_snapshot("fgtest-int", &state);
    let child = Command::cargo_bin("forgectl")
        .unwrap()
        .env("NO_COLOR", "1")
        .arg("--state-dir")
        .arg(&state)
        .arg("-f")
        .arg(&inv)
        .args(["up", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let machines = state.join("fgtest-int/local/machines");
    let t = Instant::now();
    while !machines.exists() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(machines.exists(), "machines were never started");
    // SAFETY: kill(2) on the PID of the child this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interrupted; the machines created by this run were removed"),
        "{stderr}"
    );
    assert_eq!(support::host_snapshot("fgtest-int", &state), before);
    let left: Vec<_> = std::fs::read_dir(&machines)
        .map(|d| d.flatten().count())
        .into_iter()
        .collect();
    assert!(
        left.iter().all(|n| *n == 0),
        "machine directories left: {left:?}"
    );
}

/// A second local cluster never shares a network with the first: `init` picks a machine network
/// no interface of the host uses, and `up` refuses one that overlaps a network in use, naming the
/// interface, before it makes anything. (A bridge of its own stands for the other cluster.)
#[test]
fn a_second_cluster_gets_a_network_of_its_own() {
    support::require_root();
    let _one_at_a_time = HOST_NETWORK.lock().unwrap_or_else(|e| e.into_inner());
    struct Link;
    impl Drop for Link {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", "fgtest-net0"])
                .status();
        }
    }
    let ip = |args: &[&str]| {
        assert!(
            Command::new("ip").args(args).status().unwrap().success(),
            "ip {args:?}"
        );
    };
    let _ = Command::new("ip")
        .args(["link", "del", "fgtest-net0"])
        .status();
    ip(&["link", "add", "fgtest-net0", "type", "bridge"]);
    let _link = Link;
    ip(&["addr", "add", "10.77.0.1/24", "dev", "fgtest-net0"]);
    ip(&["addr", "add", "10.77.1.1/24", "dev", "fgtest-net0"]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("second");
    let out = Command::cargo_bin("forgectl")
        .unwrap()
        .args(["init", "--provider", "local"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(dir.join("cluster.yaml")).unwrap();
    let cidr = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("machine_cidr: "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(
        cidr.starts_with("10.77.") && cidr.ends_with(".0/24"),
        "{cidr}"
    );
    assert!(
        !["10.77.0.0/24", "10.77.1.0/24"].contains(&cidr.as_str()),
        "{cidr}"
    );
    // An inventory on a network in use is refused before any machine exists.
    let inv = work.path().join("taken.yaml");
    std::fs::write(
        &inv,
        INVENTORY
            .replace("fgtest-int", "fgtest-taken")
            .replace("10.77.51.0/24", "10.77.1.0/24"),
    )
    .unwrap();
    let state = work.path().join("state");
    let out = Command::cargo_bin("forgectl")
        .unwrap()
        .env("NO_COLOR", "1")
        .arg("--state-dir")
        .arg(&state)
        .args(["up", "--yes", "-f"])
        .arg(&inv)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("network.machine_cidr 10.77.1.0/24 overlaps 10.77.1.0/24 on fgtest-net0"),
        "{text}"
    );
    assert!(!Path::new("/sys/class/net/fgtest-taken0").exists());
}
