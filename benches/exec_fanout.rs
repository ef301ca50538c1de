//! Benchmark (not a test): `exec` of `true` on many local machines over SSH.
//! Run as root: `cargo bench --bench exec_fanout [-- MACHINES [ROUNDS]]` (default 50 machines, 5 rounds).
//! Prints wall time per round and per-host latency percentiles. Budget: ≤ 1.5 s wall for 50.

use forgectl::executor::{Executor, endpoints, ssh_settings};
use forgectl::inventory::{self, Machine};
use forgectl::ssh::Pool;
use forgectl::state::StateDir;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let text = format!(
        "name: fgbench\nprovider: local\nlocal:\n  bridge: fgbench0\nnetwork:\n  machine_cidr: 10.77.60.0/24\n\
         ingress:\n  enabled: false\ngroups:\n  - name: etcd\n    roles: [etcd]\n    count: 1\n\
         \x20 - name: cp\n    roles: [control-plane]\n    count: 1\n  - name: w\n    roles: [worker]\n    count: {}\n",
        n.saturating_sub(2).max(1)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = inventory::load_str("bench.yaml", &text, dir.path()).expect("inventory");
    let state = StateDir::open(dir.path(), "fgbench").expect("state dir");
    let exec = Executor::new(&inv, &state, false, forgectl::interrupt::Interrupt::never());
    let names: Vec<String> = inv.machines.iter().map(|m| m.name.clone()).collect();
    let t = Instant::now();
    if let Err(e) = exec.create(&names).await {
        eprintln!("cannot make the machines: {e}");
        exec.delete(&names).await.ok();
        std::process::exit(1);
    }
    println!(
        "{} machines up in {:.1} s",
        names.len(),
        t.elapsed().as_secs_f64()
    );

    let machines: Vec<&Machine> = inv.machines.iter().collect();
    let eps = endpoints(&inv, &machines);
    let pool = Pool::new(ssh_settings(&inv, &state).expect("ssh settings"));
    // Round 0 includes connecting (handshake + auth); later rounds reuse the connections.
    for round in 0..=rounds {
        let t = Instant::now();
        let results = pool
            .each(&eps, |s| async move { s.exec("true").await })
            .await;
        let wall = t.elapsed();
        let mut lat: Vec<Duration> = results
            .iter()
            .filter_map(|r| r.result.as_ref().ok().map(|o| o.duration))
            .collect();
        let failed = results.len() - lat.len();
        lat.sort();
        let label = if round == 0 {
            "connect + exec"
        } else {
            "exec (reused)"
        };
        println!(
            "round {round} ({label}): wall {:>7.1} ms; per host p50 {:>5.1} ms, p90 {:>5.1} ms, p99 {:>5.1} ms, max {:>5.1} ms; failed {failed}",
            wall.as_secs_f64() * 1000.0,
            percentile(&lat, 0.5).as_secs_f64() * 1000.0,
            percentile(&lat, 0.9).as_secs_f64() * 1000.0,
            percentile(&lat, 0.99).as_secs_f64() * 1000.0,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        );
    }
    pool.close().await;

    // The whole CLI, as a user runs it (new process, new connections).
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/forgectl");
    if bin.exists() {
        let inv_file = dir.path().join("bench.yaml");
        std::fs::write(&inv_file, &text).ok();
        let t = Instant::now();
        let st = std::process::Command::new(&bin)
            .arg("-q")
            .arg("--state-dir")
            .arg(dir.path())
            .arg("-f")
            .arg(&inv_file)
            .args(["exec", "--", "true"])
            .stdout(std::process::Stdio::null())
            .status();
        println!(
            "`forgectl exec -- true` on {} machines (release binary, cold process): {:.0} ms, {:?}",
            names.len(),
            t.elapsed().as_secs_f64() * 1000.0,
            st.map(|s| s.code())
        );
    }
    let t = Instant::now();
    exec.delete(&names).await.ok();
    println!(
        "{} machines removed in {:.1} s",
        names.len(),
        t.elapsed().as_secs_f64()
    );
}
