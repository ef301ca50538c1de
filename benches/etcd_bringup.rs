//! Benchmark (not a test): a 3-member TLS etcd cluster from fresh local machines, wall time per step.
//! Run as root: `cargo bench --bench etcd_bringup`. Budget: ≤ 12 s from fresh machines (install
//! from the local mirror, certificates, configuration, start, healthy).

use forgectl::engine;
use forgectl::executor::Executor;
use forgectl::interrupt::Interrupt;
use forgectl::inventory;
use forgectl::phases::{PlanContext, Presence};
use forgectl::plan::{Action, Op};
use forgectl::playbook::Step;
use forgectl::render::Templates;
use forgectl::state::StateDir;
use std::time::Instant;

const INVENTORY: &str = "name: fgbench-etcd\nprovider: local\nlocal:\n  bridge: fgbench-etcd0\n\
network:\n  machine_cidr: 10.77.61.0/24\nartifacts:\n  source: debian\ningress:\n  enabled: false\n\
groups:\n  - name: etcd\n    roles: [etcd]\n    count: 3\n  - name: cp\n    roles: [control-plane]\n    count: 1\n";

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = inventory::load_str("bench.yaml", INVENTORY, dir.path()).expect("inventory");
    let state = StateDir::open(dir.path(), "fgbench-etcd").expect("state dir");
    let exec = Executor::new(&inv, &state, true, Interrupt::never());
    let names: Vec<String> = inv.machines.iter().map(|m| m.name.clone()).collect();
    let t = Instant::now();
    if let Err(e) = exec.create(&names).await {
        eprintln!("cannot make the machines: {e}");
        exec.delete(&names).await.ok();
        std::process::exit(1);
    }
    println!(
        "machines: {} booted in {:.2} s (not part of the budget)",
        names.len(),
        t.elapsed().as_secs_f64()
    );

    let total = Instant::now();
    let t = Instant::now();
    let made = exec.ensure_pki().await.expect("pki");
    let t_pki = t.elapsed();
    let templates = Templates::load(None).expect("templates");
    let present = Presence {
        state_dir: Some(state.path().to_path_buf()),
        ..Presence::default()
    };
    let ctx = PlanContext {
        inv: &inv,
        templates: &templates,
        present: &present,
    };
    let pb = forgectl::playbook::load("cluster").expect("playbook");
    let step = Step {
        phase: "etcd".into(),
        hosts: vec!["etcd".into()],
    };
    let plan = engine::plan_step(&ctx, &pb, &step).expect("plan");
    let pick =
        |f: fn(&Op) -> bool| -> Vec<&Action> { plan.actions.iter().filter(|a| f(&a.op)).collect() };
    let t = Instant::now();
    exec.host_actions(&pick(|o| matches!(o, Op::InstallPackages { .. })))
        .await
        .expect("install");
    let t_install = t.elapsed();
    let t = Instant::now();
    exec.host_actions(&pick(|o| matches!(o, Op::Upload { .. } | Op::Run { .. })))
        .await
        .expect("configure");
    let t_config = t.elapsed();
    let t = Instant::now();
    let health = exec.wait_etcd().await.expect("healthy");
    let t_healthy = t.elapsed();
    let all = total.elapsed();
    println!(
        "pki:      {:>7.0} ms ({made} files)",
        t_pki.as_secs_f64() * 1000.0
    );
    println!(
        "install:  {:>7.0} ms (etcd-server from the local mirror, 3 machines in parallel)",
        t_install.as_secs_f64() * 1000.0
    );
    println!(
        "config:   {:>7.0} ms (data dir, 5 certificate files, env, unit, start)",
        t_config.as_secs_f64() * 1000.0
    );
    println!(
        "healthy:  {:>7.0} ms (all members answer over mTLS with a leader)",
        t_healthy.as_secs_f64() * 1000.0
    );
    println!("total:    {:>7.2} s  (budget 12 s)", all.as_secs_f64());
    for m in &health {
        println!(
            "  {} {} raft {} latency {:.1} ms",
            m.name,
            m.version.clone().unwrap_or_default(),
            m.raft_index.unwrap_or(0),
            m.latency_ms.unwrap_or(0.0)
        );
    }
    let t = Instant::now();
    let steps = pick(|o| {
        matches!(
            o,
            Op::InstallPackages { .. } | Op::Upload { .. } | Op::Run { .. }
        )
    });
    let changed = exec.host_actions(&steps).await.expect("re-run");
    println!(
        "re-run of the etcd phase: {changed} change(s) in {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    exec.close().await;
    exec.delete(&names).await.ok();
}
