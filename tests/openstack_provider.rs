//! The OpenStack provider against real OpenStack APIs (minicloud: Keystone, Nova with the fake
//! hypervisor, Neutron, Cinder, Glance, Placement). Fake servers have no SSH, so these tests
//! stop at `--until provision` and check every resource through an independent client.

mod support;

use predicates::prelude::*;
use std::path::Path;
use std::time::Instant;
use support::openstack::{Cleanup, cloud, counts, fixture, forgectl};

fn inventory(
    dir: &Path,
    cluster: &str,
    prefix: &str,
    cidr: &str,
    groups: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("cluster.yaml");
    let ingress = if groups.contains("ingress") {
        ""
    } else {
        "ingress:\n  enabled: false\n"
    };
    std::fs::write(
        &path,
        format!(
            "name: {cluster}\nprovider: openstack\nopenstack:\n  network: {prefix}-net\n  image: cirros-fake\n  flavor: m1.tiny\n  floating_network: {prefix}-ext\n{extra}{ingress}artifacts:\n  source: debian\nnetwork:\n  machine_cidr: {cidr}\ngroups:\n{groups}"
        ),
    )
    .unwrap();
    path
}

const CLUSTER_GROUPS: &str = "  - name: etcd\n    roles: [etcd]\n    count: 3\n    openstack:\n      volume_gb: 1\n  - name: lb\n    roles: [lb]\n    count: 1\n    openstack:\n      floating_ip: true\n  - name: control\n    roles: [control-plane]\n    count: 2\n  - name: worker\n    roles: [worker, ingress]\n    count: 2\n";

#[test]
fn cluster_machines_up_rerun_down_down() {
    let Some(python) = cloud() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, prefix) = ("fgt-os-main", "fgt-os-main");
    fixture(&python, &["setup", prefix, "10.251.0.0/24"]);
    let inv = inventory(
        tmp.path(),
        cluster,
        prefix,
        "10.251.0.0/24",
        CLUSTER_GROUPS,
        "",
    );
    let state = tmp.path().join("state");
    let _cleanup = Cleanup {
        python: python.clone(),
        prefix: prefix.into(),
        state: state.clone(),
        inventory: inv.clone(),
    };

    let t = Instant::now();
    forgectl(&state)
        .args(["up", "--until", "provision", "--yes", "-f"])
        .arg(&inv)
        .assert()
        .success()
        .stdout(predicate::str::contains("up: done"))
        .stderr(predicate::str::contains(
            "etcd-1  server fgt-os-main-etcd-1 at 10.251.0.",
        ))
        .stderr(predicate::str::contains("1 GiB volume at /dev/"))
        .stderr(predicate::str::contains("floating 203.0.113."));
    eprintln!("up --until provision: {:.1} s", t.elapsed().as_secs_f64());

    let got = fixture(&python, &["tagged", cluster]);
    let servers = got["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 7 + 1, "{got}");
    assert!(
        servers
            .iter()
            .all(|s| s["status"] == "ACTIVE" && s["key_name"] == "forgectl-fgt-os-main"),
        "{got}"
    );
    // Anti-affinity: etcd members and control planes never share a hypervisor.
    for group in ["etcd", "control"] {
        let hosts: std::collections::BTreeSet<&str> = servers
            .iter()
            .filter(|s| s["machine"].as_str().unwrap().starts_with(group))
            .map(|s| s["host"].as_str().unwrap())
            .collect();
        let n = if group == "etcd" { 3 } else { 2 };
        assert_eq!(hosts.len(), n, "{group} spread over {hosts:?}");
    }
    let groups = got["server_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "{got}");
    for g in groups {
        let name = g["name"].as_str().unwrap();
        let policy = g["policies"][0].as_str().unwrap();
        let want = if name.ends_with("-etcd") || name.ends_with("-control") {
            "anti-affinity"
        } else {
            "soft-anti-affinity"
        };
        assert_eq!(policy, want, "{name}");
    }
    let sgs = got["security_groups"].as_array().unwrap();
    let names: Vec<&str> = sgs.iter().map(|g| g["name"].as_str().unwrap()).collect();
    for s in ["node", "etcd", "control-plane", "kube", "lb", "ingress"] {
        assert!(
            names.contains(&format!("forgectl-{cluster}-{s}").as_str()),
            "{names:?}"
        );
    }
    assert!(
        sgs.iter()
            .all(|g| g["undocumented"].as_array().unwrap().is_empty()
                && g["ingress_rules"].as_u64().unwrap() > 0),
        "every rule has its reason: {got}"
    );
    let volumes = got["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 3);
    assert!(volumes.iter().all(|v| v["status"] == "in-use"
        && v["size"] == 1
        && v["attached_to"].as_array().unwrap().len() == 1));
    assert_eq!(got["floating_ips"].as_array().unwrap().len(), 1);
    assert!(got["floating_ips"][0]["port_id"].is_string());
    assert_eq!(
        got["ports"].as_array().unwrap().len(),
        8,
        "ports are tagged: {got}"
    );
    assert_eq!(got["keypairs"].as_array().unwrap().len(), 1);

    // The engine learns the addresses: the record is there (0600) and `machines` shows them.
    let record = state.join(cluster).join("openstack-machines.json");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("\"address\": \"10.251.0."), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // `machines list` reports them from the cloud.
    forgectl(&state)
        .args(["machines", "list", "-f"])
        .arg(&inv)
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(r"etcd-1 +ACTIVE +10\.251\.0\.\d+ +- +1 GiB at /dev/")
                .unwrap(),
        )
        .stdout(
            predicate::str::is_match(r"lb-1 +ACTIVE +10\.251\.0\.\d+ +203\.0\.113\.\d+").unwrap(),
        );

    // A re-run creates nothing.
    let t = Instant::now();
    forgectl(&state)
        .args(["up", "--until", "provision", "--yes", "-f"])
        .arg(&inv)
        .assert()
        .success()
        .stdout(predicate::str::contains("all 8 machines run"))
        .stdout(predicate::str::contains("0 change(s)"));
    eprintln!("converged re-run: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(
        counts(&fixture(&python, &["tagged", cluster])),
        counts(&got)
    );

    // down deletes exactly what carries the tag; a second down is a no-op.
    let t = Instant::now();
    forgectl(&state)
        .args(["down", "--yes", "-f"])
        .arg(&inv)
        .assert()
        .success()
        .stdout(predicate::str::contains("down: done"));
    eprintln!("down: {:.1} s", t.elapsed().as_secs_f64());
    let after = fixture(&python, &["tagged", cluster]);
    assert!(
        counts(&after).iter().all(|(_, n)| *n == 0),
        "left behind: {after}"
    );
    assert!(!record.exists());
    forgectl(&state)
        .args(["down", "--yes", "-f"])
        .arg(&inv)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "nothing in the cloud carries the tag",
        ))
        .stdout(predicate::str::contains("0 change(s)"));
}

#[test]
fn unknown_flavor_and_image_stop_before_anything_is_made() {
    let Some(python) = cloud() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, prefix) = ("fgt-os-names", "fgt-os-names");
    fixture(&python, &["setup", prefix, "10.252.0.0/24"]);
    let groups = "  - name: control\n    roles: [etcd, control-plane]\n    count: 1\n    openstack:\n      flavor: no-such-flavor\n      image: no-such-image\n";
    let inv = inventory(tmp.path(), cluster, prefix, "10.252.0.0/24", groups, "");
    let state = tmp.path().join("state");
    let _cleanup = Cleanup {
        python: python.clone(),
        prefix: prefix.into(),
        state: state.clone(),
        inventory: inv.clone(),
    };
    forgectl(&state)
        .args(["up", "--until", "provision", "--yes", "-f"])
        .arg(&inv)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "not found in the cloud (nothing was created)",
        ))
        .stderr(predicate::str::contains("flavor `no-such-flavor`"))
        .stderr(predicate::str::contains("image `no-such-image`"))
        .stderr(predicate::str::contains("next:"));
    let after = fixture(&python, &["tagged", cluster]);
    assert!(
        counts(&after).iter().all(|(_, n)| *n == 0),
        "made something: {after}"
    );
}

#[test]
fn quota_too_small_is_named_before_anything_is_made() {
    let Some(python) = cloud() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, prefix, project) = ("fgt-os-quota", "fgt-os-quota", "fgt-os-quota-project");
    let clouds = tmp.path().join("clouds.yaml");
    fixture(
        &python,
        &["quota-project", project, "2", clouds.to_str().unwrap()],
    );
    struct Drop_(std::path::PathBuf, &'static str);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0)
                .arg(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/support/openstack_fixture.py"),
                )
                .args(["drop-project", self.1])
                .output();
        }
    }
    let _project = Drop_(python.clone(), project);
    // The fixture's network is shared, so the quota project sees it by name.
    fixture(&python, &["setup", prefix, "10.253.0.0/24"]);
    let groups = "  - name: etcd\n    roles: [etcd]\n    count: 1\n  - name: control\n    roles: [control-plane]\n    count: 1\n  - name: worker\n    roles: [worker]\n    count: 1\n";
    let inv = inventory(
        tmp.path(),
        cluster,
        prefix,
        "10.253.0.0/24",
        groups,
        "  cloud: forgectl-quota\n",
    );
    let state = tmp.path().join("state");
    let _cleanup = Cleanup {
        python: python.clone(),
        prefix: prefix.into(),
        state: state.clone(),
        inventory: inv.clone(),
    };
    forgectl(&state)
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("OS_CLIENT_CONFIG_PATH", &clouds)
        .args(["up", "--until", "provision", "--yes", "-f"])
        .arg(&inv)
        .assert()
        .failure()
        .stderr(predicate::str::contains("quota too small"))
        .stderr(predicate::str::contains(
            "compute instances: needs 3, 2 left (limit 2)",
        ))
        .stderr(predicate::str::contains("ask for a larger quota"));
}

#[test]
fn server_in_error_is_reported_with_its_fault_and_replaced_on_rerun() {
    let Some(python) = cloud() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (cluster, prefix, flavor) = ("fgt-os-error", "fgt-os-error", "fgt-os-nohost");
    fixture(&python, &["setup", prefix, "10.254.0.0/24"]);
    fixture(&python, &["error-flavor", flavor]);
    let groups = format!(
        "  - name: worker\n    roles: [etcd, control-plane, worker]\n    count: 1\n    openstack:\n      flavor: {flavor}\n"
    );
    let inv = inventory(tmp.path(), cluster, prefix, "10.254.0.0/24", &groups, "");
    let state = tmp.path().join("state");
    let cleanup = Cleanup {
        python: python.clone(),
        prefix: prefix.into(),
        state: state.clone(),
        inventory: inv.clone(),
    };
    for _ in 0..2 {
        forgectl(&state)
            .args(["up", "--until", "provision", "--yes", "-f"])
            .arg(&inv)
            .assert()
            .failure()
            .stderr(predicate::str::contains(
                "server fgt-os-error-worker-1 (worker-1) went to ERROR",
            ))
            .stderr(predicate::str::contains("No valid host"))
            .stderr(predicate::str::contains("replaces servers in ERROR"));
    }
    // The second run replaced the ERROR server instead of keeping a second one.
    let got = fixture(&python, &["tagged", cluster]);
    assert_eq!(got["servers"].as_array().unwrap().len(), 1, "{got}");
    drop(cleanup);
    fixture(&python, &["drop-flavor", flavor]);
    let after = fixture(&python, &["tagged", cluster]);
    assert!(
        counts(&after).iter().all(|(_, n)| *n == 0),
        "left behind: {after}"
    );
}
