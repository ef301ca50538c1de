//! The OpenStack provider against real OpenStack APIs (minicloud: Keystone, Nova with the fake
//! hypervisor, Neutron, Cinder, Glance, Placement). Fake servers have no SSH, so these tests
//! stop at `--until provision` and check every resource through an independent client.

mod support;

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;
use support::openstack::{Cleanup, cloud, counts, fixture, forgectl, script};

/// A cluster's test bed: the fixture's network (named after the cluster), an inventory, a state
/// dir, and a cleanup (`down`, then the network) that runs even when the test fails.
struct Bed {
    python: PathBuf,
    cluster: &'static str,
    inv: PathBuf,
    state: PathBuf,
    _cleanup: Cleanup,
    _tmp: tempfile::TempDir,
}

impl Bed {
    fn new(python: &Path, cluster: &'static str, cidr: &str, groups: &str, extra: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fixture(python, &["setup", cluster, cidr]);
        let inv = tmp.path().join("cluster.yaml");
        let ingress = if groups.contains("ingress") {
            ""
        } else {
            "ingress:\n  enabled: false\n"
        };
        std::fs::write(
            &inv,
            format!(
                "name: {cluster}\nprovider: openstack\nopenstack:\n  network: {cluster}-net\n  image: cirros-fake\n  flavor: m1.tiny\n  floating_network: {cluster}-ext\n{extra}{ingress}artifacts:\n  source: debian\nnetwork:\n  machine_cidr: {cidr}\ngroups:\n{groups}"
            ),
        )
        .unwrap();
        let state = tmp.path().join("state");
        Self {
            python: python.to_path_buf(),
            cluster,
            _cleanup: Cleanup {
                python: python.to_path_buf(),
                prefix: cluster.into(),
                state: state.clone(),
                inventory: inv.clone(),
            },
            inv,
            state,
            _tmp: tmp,
        }
    }

    /// `forgectl ARGS… -f INVENTORY` with the bed's state dir.
    fn forgectl(&self, args: &[&str]) -> assert_cmd::Command {
        let mut c = forgectl(&self.state);
        c.args(args).arg("-f").arg(&self.inv);
        c
    }

    /// `forgectl up --until provision --yes`.
    fn provision(&self) -> assert_cmd::Command {
        self.forgectl(&["up", "--until", "provision", "--yes"])
    }

    /// What the cloud has of the cluster, through the independent client.
    fn tagged(&self) -> serde_json::Value {
        fixture(&self.python, &["tagged", self.cluster])
    }

    /// Fails unless nothing of the cluster exists.
    fn assert_empty(&self) {
        let t = self.tagged();
        assert!(counts(&t).iter().all(|(_, n)| *n == 0), "left behind: {t}");
    }
}

const CLUSTER_GROUPS: &str = "  - name: etcd\n    roles: [etcd]\n    count: 3\n    openstack:\n      volume_gb: 1\n  - name: lb\n    roles: [lb]\n    count: 1\n    openstack:\n      floating_ip: true\n  - name: control\n    roles: [control-plane]\n    count: 2\n  - name: worker\n    roles: [worker, ingress]\n    count: 2\n";

#[test]
fn cluster_machines_up_rerun_down_down() {
    let Some(python) = cloud() else { return };
    let cluster = "fgt-os-main";
    let bed = Bed::new(
        &python,
        cluster,
        "10.251.0.0/24",
        CLUSTER_GROUPS,
        "api:\n  vip: 10.251.0.250\n",
    );

    let t = Instant::now();
    bed.provision()
        .assert()
        .success()
        .stdout(predicate::str::contains("up: done"))
        .stderr(predicate::str::contains(
            "etcd-1  server fgt-os-main-etcd-1 at 10.251.0.",
        ))
        .stderr(predicate::str::contains("1 GiB volume at /dev/"))
        .stderr(predicate::str::contains("floating 203.0.113."));
    eprintln!("up --until provision: {:.1} s", t.elapsed().as_secs_f64());

    let got = bed.tagged();
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
    // The API's VIP: the lb machine's port may use it (keepalived moves it), and VRRP is let
    // through between the lb machines; no other port gets it.
    for p in got["ports"].as_array().unwrap() {
        let want: &[&str] = if p["name"].as_str().unwrap().contains("-lb-") {
            &["10.251.0.250"]
        } else {
            &[]
        };
        assert_eq!(p["allowed"], serde_json::json!(want), "{p}");
    }
    let lb = sgs
        .iter()
        .find(|g| g["name"] == format!("forgectl-{cluster}-lb"))
        .unwrap();
    let protocols = lb["protocols"].as_array().unwrap();
    assert!(
        protocols.contains(&"112".into()) || protocols.contains(&"vrrp".into()),
        "{lb}"
    );

    // The engine learns the addresses: the record is there (0600) and `machines` shows them.
    let record = bed.state.join(cluster).join("openstack-machines.json");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("\"address\": \"10.251.0."), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // `machines list` reports them from the cloud.
    bed.forgectl(&["machines", "list"])
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
    bed.provision()
        .assert()
        .success()
        .stdout(predicate::str::contains("all 8 machines run"))
        .stdout(predicate::str::contains("0 change(s)"));
    eprintln!("converged re-run: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(counts(&bed.tagged()), counts(&got));

    // down deletes exactly what carries the tag; a second down is a no-op.
    let t = Instant::now();
    bed.forgectl(&["down", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("down: done"));
    eprintln!("down: {:.1} s", t.elapsed().as_secs_f64());
    bed.assert_empty();
    assert!(!record.exists());
    bed.forgectl(&["down", "--yes"])
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
    let groups = "  - name: control\n    roles: [etcd, control-plane]\n    count: 1\n    openstack:\n      flavor: no-such-flavor\n      image: no-such-image\n";
    let bed = Bed::new(&python, "fgt-os-names", "10.252.0.0/24", groups, "");
    bed.provision()
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "not found in the cloud (nothing was created)",
        ))
        .stderr(predicate::str::contains("flavor `no-such-flavor`"))
        .stderr(predicate::str::contains("image `no-such-image`"))
        .stderr(predicate::str::contains("next:"));
    bed.assert_empty();
}

#[test]
fn quota_too_small_is_named_before_anything_is_made() {
    let Some(python) = cloud() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let project = "fgt-os-quota-project";
    let clouds = tmp.path().join("clouds.yaml");
    fixture(
        &python,
        &["quota-project", project, "2", clouds.to_str().unwrap()],
    );
    struct Drop_(std::path::PathBuf, &'static str);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0)
                .arg(script())
                .args(["drop-project", self.1])
                .output();
        }
    }
    let _project = Drop_(python.clone(), project);
    let groups = "  - name: etcd\n    roles: [etcd]\n    count: 1\n  - name: control\n    roles: [control-plane]\n    count: 1\n  - name: worker\n    roles: [worker]\n    count: 1\n";
    // The fixture's network is shared, so the quota project sees it by name.
    let bed = Bed::new(
        &python,
        "fgt-os-quota",
        "10.253.0.0/24",
        groups,
        "  cloud: forgectl-quota\n",
    );
    bed.provision()
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("OS_CLIENT_CONFIG_PATH", &clouds)
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
    let flavor = "fgt-os-nohost";
    fixture(&python, &["error-flavor", flavor]);
    let groups = format!(
        "  - name: worker\n    roles: [etcd, control-plane, worker]\n    count: 1\n    openstack:\n      flavor: {flavor}\n"
    );
    let bed = Bed::new(&python, "fgt-os-error", "10.254.0.0/24", &groups, "");
    let mut ids = Vec::new();
    for _ in 0..2 {
        bed.provision()
            .assert()
            .failure()
            .stderr(predicate::str::contains(
                "server fgt-os-error-worker-1 (worker-1) went to ERROR",
            ))
            .stderr(predicate::str::contains("No valid host"))
            .stderr(predicate::str::contains("replaces servers in ERROR"));
        let got = bed.tagged();
        let servers = got["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 1, "one server, never a second: {got}");
        ids.push(servers[0]["id"].as_str().unwrap().to_string());
    }
    assert_ne!(
        ids[0], ids[1],
        "the second run replaced the server in ERROR"
    );
    bed.forgectl(&["down", "--yes"]).assert().success();
    fixture(&python, &["drop-flavor", flavor]);
    bed.assert_empty();
}
