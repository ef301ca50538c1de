//! `forgectl accounts run`, two replicas against a REAL control plane (tests/support/kube.rs):
//! one Lease holder at a time (the other waits), the leader provisions, picks up a change of the accounts file
//! within seconds, metrics and health endpoints answer; when the leader is killed the other
//! takes the Lease over once it expires and carries on; SIGTERM gives the Lease up.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::accounts_bed::bed;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Replica {
    child: Child,
    port: u16,
    id: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bed: &support::accounts_bed::Bed, inv: &std::path::Path, id: &str) -> Replica {
    let port = free_port();
    let log = std::fs::File::create(bed.path(&format!("{id}.log"))).unwrap();
    let child = Command::new(assert_cmd::cargo::cargo_bin("forgectl"))
        .args(["-f", inv.to_str().unwrap(), "accounts", "run"])
        .args(["--kubeconfig", bed.admin.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--interval",
            "30s",
            "--lease-duration",
            "3s",
            "--identity",
            id,
        ])
        .env("FORGECTL_LOG", "forgectl=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Replica {
        child,
        port,
        id: id.into(),
    }
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.ok()?))
}

async fn leader_metric(r: &Replica) -> Option<i64> {
    let (_, m) = get(r.port, "/metrics").await?;
    m.lines()
        .find(|l| l.starts_with("forgectl_accounts_leader "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

fn holder(bed: &support::accounts_bed::Bed) -> Option<String> {
    bed.object(
        "coordination.k8s.io",
        "leases",
        "kube-system",
        "forgectl-accounts",
    )
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

async fn until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {} s", timeout.as_secs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_file_changes_picked_up_and_failover() {
    let bed = bed();
    bed.tools(8, &["tool07", "tool06"], &[]);
    let inv = bed.inventory("");
    let a = start(&bed, &inv, "replica-a");
    let b = start(&bed, &inv, "replica-b");

    until(
        "the first pass by the leader",
        Duration::from_secs(20),
        async || {
            bed.object("", "namespaces", "", "tool-tool05").is_some()
                && bed.home("tool05").join(".kube/config").exists()
        },
    )
    .await;
    let first = holder(&bed).expect("a Lease holder");
    assert!(first == "replica-a" || first == "replica-b", "{first}");
    until(
        "metrics on both replicas",
        Duration::from_secs(10),
        async || leader_metric(&a).await.is_some() && leader_metric(&b).await.is_some(),
    )
    .await;
    let (la, lb) = (
        leader_metric(&a).await.unwrap(),
        leader_metric(&b).await.unwrap(),
    );
    assert_eq!(la + lb, 1, "exactly one leader (a {la}, b {lb})");
    for r in [&a, &b] {
        let (code, body) = get(r.port, "/healthz").await.unwrap();
        assert_eq!(code, 200, "{} /healthz: {body}", r.id);
    }
    let (leader, standby) = if first == a.id { (a, b) } else { (b, a) };
    // The files are there before the pass ends (it then syncs the homes' file system).
    until(
        "the leader's first pass counted",
        Duration::from_secs(20),
        async || {
            get(leader.port, "/metrics")
                .await
                .is_some_and(|(_, m)| m.contains("forgectl_accounts_passes_total{result=\"ok\"} 1"))
        },
    )
    .await;
    let (_, m) = get(leader.port, "/metrics").await.unwrap();
    assert!(
        m.contains("forgectl_accounts_passes_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("forgectl_accounts_accounts 7"),
        "6 tools and an admin: {m}"
    );

    // The accounts file changes: picked up without waiting for the resync interval.
    bed.tools(8, &["tool07"], &[]);
    until(
        "tool06 after the file changed",
        Duration::from_secs(10),
        async || bed.object("", "namespaces", "", "tool-tool06").is_some(),
    )
    .await;
    // Only the leader ran passes: the standby has none on record.
    let (_, m) = get(standby.port, "/metrics").await.unwrap();
    assert!(
        !m.contains("forgectl_accounts_passes_total{"),
        "the standby ran a pass: {m}"
    );

    // The leader dies without a word: the standby takes over once the Lease expires.
    let standby_id = standby.id.clone();
    drop(leader);
    until(
        "failover to the standby",
        Duration::from_secs(15),
        async || holder(&bed).as_deref() == Some(standby_id.as_str()),
    )
    .await;
    bed.tools(8, &[], &[]);
    until(
        "tool07 by the new leader",
        Duration::from_secs(10),
        async || bed.object("", "namespaces", "", "tool-tool07").is_some(),
    )
    .await;
    assert_eq!(leader_metric(&standby).await, Some(1));

    // SIGTERM: the Lease is given up.
    let pid = standby.child.id() as i32;
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    until("the Lease released", Duration::from_secs(10), async || {
        holder(&bed).as_deref() == Some("")
    })
    .await;
}

/// A metric's value on the replica's /metrics.
async fn metric(r: &Replica, name: &str) -> Option<f64> {
    let (_, m) = get(r.port, "/metrics").await?;
    m.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_by_hand_is_put_back_within_seconds_not_at_the_resync() {
    use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let bed = bed();
    bed.tools(3, &[], &[]);
    let inv = bed.inventory("");
    // The resync is 30 s away: anything sooner comes from the watches.
    let r = start(&bed, &inv, "replica-w");
    let passes = "forgectl_accounts_passes_total{result=\"ok\"}";
    until("the first pass", Duration::from_secs(20), async || {
        metric(&r, passes).await == Some(1.0)
    })
    .await;
    let quota = || bed.object("", "resourcequotas", "tool-tool01", "tool-quota");
    let hard = quota().unwrap()["spec"]["hard"].clone();
    let admin = {
        let kc = kube::config::Kubeconfig::read_from(&bed.admin).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    };
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let ar = kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ResourceQuota>(&());
    Api::<DynamicObject>::namespaced_with(admin.clone(), "tool-tool01", &ar)
        .patch(
            "tool-quota",
            &edit,
            &Patch::Merge(serde_json::json!({"spec": {"hard": {"pods": "999"}}})),
        )
        .await
        .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin, "tool-tool02")
        .delete("tool", &DeleteParams::default())
        .await
        .unwrap();
    until(
        "the quota and the RoleBinding put back",
        Duration::from_secs(15),
        async || {
            quota().is_some_and(|q| q["spec"]["hard"] == hard)
                && bed.tool_binding("tool02").is_some()
        },
    )
    .await;
    let after = metric(&r, passes).await.unwrap();
    assert!(after >= 2.0, "a pass for the drift: {after}");
    let drift = metric(&r, "forgectl_accounts_drift_events_total")
        .await
        .unwrap();
    assert!(
        drift >= 2.0,
        "the edit and the deletion seen: {drift}\n{}",
        std::fs::read_to_string(bed.path("replica-w.log")).unwrap_or_default()
    );
    // forgectl's own repairs are no drift: no further passes follow (the resync is far).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(metric(&r, passes).await, Some(after), "passes went on");
    assert_eq!(
        metric(&r, "forgectl_accounts_drift_events_total").await,
        Some(drift)
    );
    // A pass's own deletions are no drift either: disabling tool02 deletes its RoleBinding.
    bed.tools(3, &[], &["tool02"]);
    until("the disabling pass", Duration::from_secs(15), async || {
        metric(&r, passes).await == Some(after + 1.0)
    })
    .await;
    assert!(bed.tool_binding("tool02").is_none());
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        metric(&r, passes).await,
        Some(after + 1.0),
        "passes went on"
    );
    assert_eq!(
        metric(&r, "forgectl_accounts_drift_events_total").await,
        Some(drift)
    );
}
