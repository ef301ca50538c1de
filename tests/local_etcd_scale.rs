//! Scaling the external etcd cluster 3 → 5 → 3 on real local machines, data intact, without
//! losing quorum; and a converged re-run after scaling changes nothing. Needs root.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;
use std::time::Duration;

fn inventory(etcd_members: usize) -> String {
    inventory_of(&(1..=etcd_members).collect::<Vec<_>>())
}

fn inventory_of(members: &[usize]) -> String {
    let mut hosts = String::new();
    for &i in members {
        hosts.push_str(&format!(
            "      - {{ name: etcd-{i}, address: 10.77.62.{} }}\n",
            9 + i
        ));
    }
    format!(
        "name: fgtest-scale\nprovider: local\nlocal:\n  bridge: fgtest-scale0\nnetwork:\n  machine_cidr: 10.77.62.0/24\n\
         artifacts:\n  source: debian\ningress:\n  enabled: false\ngroups:\n  - name: etcd\n    roles: [etcd]\n    hosts:\n{hosts}\
         \x20 - name: cp\n    roles: [control-plane]\n    hosts:\n      - {{ name: cp-1, address: 10.77.62.30 }}\n"
    )
}

struct Down<'a>(&'a Path, &'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::cargo_bin("forgectl")
            .unwrap()
            .arg("--state-dir")
            .arg(self.0)
            .arg("-f")
            .arg(self.1)
            .args(["down", "--yes"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_scales_three_five_three() {
    support::require_root();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let three = work.path().join("three.yaml");
    let five = work.path().join("five.yaml");
    std::fs::write(&three, inventory(3)).unwrap();
    std::fs::write(&five, inventory(5)).unwrap();
    let _down = Down(&state, &five);
    let forgectl = |inv: &Path| {
        let mut c = Command::cargo_bin("forgectl").unwrap();
        c.env("NO_COLOR", "1")
            .arg("--state-dir")
            .arg(&state)
            .arg("-f")
            .arg(inv);
        c
    };

    forgectl(&three)
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains("up: done — 4 phase(s)"));
    let read = |p: &str| std::fs::read_to_string(state.join("fgtest-scale/pki").join(p)).unwrap();
    let tls = forgectl::etcd::Tls {
        ca: read("etcd/ca.crt"),
        cert: read("etcd/forgectl-client.crt"),
        key: read("etcd/forgectl-client.key"),
    };
    let mut c = forgectl::etcd::connect("https://10.77.62.10:2379", &tls, Duration::from_secs(5))
        .await
        .unwrap();
    c.put("/scale/key", "kept", None).await.unwrap();

    // Not an etcd machine of the inventory: refused before anything happens.
    forgectl(&three)
        .args(["etcd", "add", "etcd-4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "etcd-4 is not an etcd machine of this inventory",
        ));

    // 3 → 5 with the five-member inventory.
    for name in ["etcd-4", "etcd-5"] {
        forgectl(&five)
            .args(["etcd", "add", name])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("• added {name}")))
            .stdout(predicate::str::contains("members healthy"));
    }
    forgectl(&five)
        .args(["etcd", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("5/5 members healthy"));
    forgectl(&five)
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 4 phase(s), 0 change(s).",
        ));

    // Removing a member the inventory still lists is refused.
    forgectl(&five)
        .args(["etcd", "remove", "etcd-5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the inventory still lists etcd-5 as an etcd machine",
        ));

    // 5 → 3 with the three-member inventory.
    for name in ["etcd-5", "etcd-4"] {
        forgectl(&three)
            .args(["etcd", "remove", name])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("• removed member {name}")));
    }
    forgectl(&three)
        .args(["etcd", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3/3 members healthy"));
    let mut c2 = forgectl::etcd::connect("https://10.77.62.12:2379", &tls, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        c2.get("/scale/key", None).await.unwrap().kvs()[0]
            .value_str()
            .unwrap(),
        "kept"
    );
    forgectl(&three)
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 4 phase(s), 0 change(s).",
        ));

    // Certificates renewed from the same CA and rolled member by member: new serial, same issuer,
    // cluster healthy and data intact throughout.
    let serial = |host: &str| {
        let out = forgectl(&three)
            .args(["exec", "--hosts", host, "--", "openssl x509 -noout -serial -in /etc/etcd/pki/server.crt 2>/dev/null || sha256sum /etc/etcd/pki/server.crt"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let before = serial("etcd-2");
    let ca_before = read("etcd/ca.crt");
    forgectl(&three)
        .args(["certs", "renew"])
        .assert()
        .success()
        .stdout(predicate::str::contains("• re-issued"))
        .stdout(predicate::str::contains(
            "• etcd-3: 5 change(s), member restarted, all members healthy",
        ));
    assert_ne!(
        serial("etcd-2"),
        before,
        "the member's certificate was replaced"
    );
    assert_eq!(read("etcd/ca.crt"), ca_before, "the CA stays");
    let tls = forgectl::etcd::Tls {
        ca: read("etcd/ca.crt"),
        cert: read("etcd/forgectl-client.crt"),
        key: read("etcd/forgectl-client.key"),
    };
    let mut c3 = forgectl::etcd::connect("https://10.77.62.11:2379", &tls, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        c3.get("/scale/key", None).await.unwrap().kvs()[0]
            .value_str()
            .unwrap(),
        "kept"
    );

    // A run that stopped half-way (one member never configured) is completed by the next run.
    forgectl(&three)
        .args([
            "exec",
            "--hosts",
            "etcd-3",
            "--",
            "systemctl stop etcd && rm /etc/etcd/etcd.env /etc/etcd/pki/peer.key",
        ])
        .assert()
        .success();
    forgectl(&three)
        .args(["etcd", "status"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("2/3 members healthy"));
    forgectl(&three)
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 4 phase(s), 3 change(s).",
        ));
    forgectl(&three)
        .args(["etcd", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3/3 members healthy"));

    // The state dir loses its PKI: `up` refuses to make a new CA; `certs recover` brings the CA
    // back from a member; `up` re-makes the client certificates and the cluster stays healthy.
    let ca = read("etcd/ca.crt");
    std::fs::remove_dir_all(state.join("fgtest-scale/pki")).unwrap();
    forgectl(&three)
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "run `forgectl certs recover` instead of making a new one",
        ));
    forgectl(&three)
        .args(["certs", "recover", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "recovered the etcd CA from etcd-1",
        ));
    assert_eq!(read("etcd/ca.crt"), ca, "the same CA");
    forgectl(&three)
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains("up: done — 4 phase(s), "));
    forgectl(&three)
        .args(["etcd", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3/3 members healthy"));

    // Replace a member by another machine: the inventory lists etcd-4 instead of etcd-3.
    let swap = work.path().join("swap.yaml");
    std::fs::write(&swap, inventory_of(&[1, 2, 4])).unwrap();
    forgectl(&swap)
        .args(["etcd", "replace", "etcd-3", "--new-machine", "etcd-4"])
        .assert()
        .success()
        .stdout(predicate::str::contains("• removed member etcd-3"))
        .stdout(predicate::str::contains(
            "• added etcd-4 (https://10.77.62.13:2380) as a new member",
        ));
    forgectl(&swap)
        .args(["etcd", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3/3 members healthy"));
    let read = |p: &str| std::fs::read_to_string(state.join("fgtest-scale/pki").join(p)).unwrap();
    let tls = forgectl::etcd::Tls {
        ca: read("etcd/ca.crt"),
        cert: read("etcd/forgectl-client.crt"),
        key: read("etcd/forgectl-client.key"),
    };
    let mut c4 = forgectl::etcd::connect("https://10.77.62.13:2379", &tls, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        c4.get("/scale/key", None).await.unwrap().kvs()[0]
            .value_str()
            .unwrap(),
        "kept"
    );
    forgectl(&swap)
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 4 phase(s), 0 change(s).",
        ));
}
