//! etcd installed from a release tarball (`artifacts.source: local`): forgectl verifies the tarball
//! against its published checksum, copies it to the machines (which have no route out), checks it
//! again there and installs the binaries. The tarball is made here in upstream's layout from
//! Debian's etcd binaries (the only etcd this machine can download). Needs root.

mod support;

use assert_cmd::Command;
use forgectl::plan::sha256_hex;
use predicates::prelude::*;
use std::path::Path;

/// DIR/etcd/VERSION/etcd-vVERSION-linux-amd64.tar.gz + SHA256SUMS, from Debian's packages.
fn release_tree(dir: &Path) -> String {
    let work = dir.join("build");
    std::fs::create_dir_all(&work).unwrap();
    let ok = std::process::Command::new("apt-get")
        .args(["download", "-qq", "etcd-server", "etcd-client"])
        .current_dir(&work)
        .status()
        .unwrap();
    assert!(ok.success(), "apt-get download etcd-server etcd-client");
    let root = work.join("root");
    for deb in std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "deb"))
    {
        let ok = std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb.path())
            .arg(&root)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let out = std::process::Command::new(root.join("usr/bin/etcd"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .expect("etcd --version")
        .trim()
        .to_string();
    let top = work.join(format!("etcd-v{version}-linux-amd64"));
    std::fs::create_dir_all(&top).unwrap();
    for b in ["etcd", "etcdctl"] {
        std::fs::copy(root.join("usr/bin").join(b), top.join(b)).unwrap();
    }
    let release = dir.join("etcd").join(&version);
    std::fs::create_dir_all(&release).unwrap();
    let file = format!("etcd-v{version}-linux-amd64.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(release.join(&file))
        .arg("-C")
        .arg(&work)
        .arg(format!("etcd-v{version}-linux-amd64"))
        .status()
        .unwrap();
    assert!(ok.success());
    let sum = sha256_hex(&std::fs::read(release.join(&file)).unwrap());
    std::fs::write(release.join("SHA256SUMS"), format!("{sum}  {file}\n")).unwrap();
    version
}

#[test]
fn etcd_from_a_release_tarball() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let releases = work.path().join("releases");
    let version = release_tree(&releases);
    let inv = work.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "name: fgtest-tar\nprovider: local\nlocal:\n  bridge: fgtest-tar0\nnetwork:\n  machine_cidr: 10.77.63.0/24\n\
             versions:\n  etcd: {version}\nartifacts:\n  source: local\n  dir: {}\ningress:\n  enabled: false\n\
             groups:\n  - name: etcd\n    roles: [etcd]\n    count: 3\n  - name: cp\n    roles: [control-plane]\n    count: 1\n",
            releases.display()
        ),
    )
    .unwrap();
    let state = work.path().join("state");
    let forgectl = || {
        let mut c = Command::cargo_bin("forgectl").unwrap();
        c.env("NO_COLOR", "1")
            .arg("--state-dir")
            .arg(&state)
            .arg("-f")
            .arg(&inv);
        c
    };
    struct Down<'a>(&'a dyn Fn() -> Command);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)().args(["down", "--yes"]).output();
        }
    }
    let _down = Down(&forgectl);

    forgectl()
        .args(["plan", "--only", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "install etcd, etcdctl from etcd {version} into /usr/local/bin (checksum verified)"
        )));
    forgectl()
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains("up: done — 4 phase(s), "))
        // Members of a new cluster are started, none restarted (the last one may start after
        // the others formed the cluster).
        .stderr(predicate::str::contains("etcd restarted").not());
    forgectl()
        .args(["etcd", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3/3 members healthy"))
        .stdout(predicate::str::contains(version.as_str()));
    forgectl()
        .args([
            "exec",
            "--hosts",
            "etcd",
            "--",
            "command -v etcd; ls /var/lib/dpkg/info | grep -c etcd || true",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("etcd-1 | /usr/local/bin/etcd"))
        .stdout(predicate::str::contains("etcd-1 | 0"));
    forgectl()
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 4 phase(s), 0 change(s).",
        ));

    // A changed binary on every member: the members are restarted one at a time, each one
    // stopped only after the one before it was back and the cluster healthy.
    forgectl()
        .args(["exec", "--hosts", "etcd", "--", "touch /usr/local/bin/etcd"])
        .assert()
        .success();
    let out = forgectl()
        .args(["up", "--yes", "--until", "etcd"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let members = ["etcd-1", "etcd-2", "etcd-3"];
    for m in members {
        assert!(
            said.contains(&format!(
                "{m}  etcd restarted; 3 of 3 members healthy again"
            )),
            "{m}: {said}"
        );
    }
    let times: Vec<(u64, u64)> = members
        .iter()
        .map(|m| {
            let out = forgectl()
                .args([
                    "exec",
                    "--hosts",
                    m,
                    "--",
                    "systemctl show etcd.service --timestamp=unix -p InactiveEnterTimestamp -p ActiveEnterTimestamp",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let at = |key: &str| -> u64 {
                text.lines()
                    .find_map(|l| l.split_once(&format!("{key}=@")).map(|(_, v)| v))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{key} on {m}: {text}"))
            };
            (at("InactiveEnterTimestamp"), at("ActiveEnterTimestamp"))
        })
        .collect();
    for pair in times.windows(2) {
        let ((_, back), (stopped, _)) = (pair[0], pair[1]);
        assert!(
            stopped >= back,
            "a member stopped before the one before it was back: {times:?}"
        );
    }
    forgectl()
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 4 phase(s), 0 change(s).",
        ));

    // etcd goes one minor release at a time: 3.4 to 3.6 is refused before anything changes.
    let (_, newer) = support::kube_artifacts::lay_out(&releases, &support::kube::assets());
    let text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        text.replace(&format!("etcd: {version}\n"), &format!("etcd: {newer}\n")),
    )
    .unwrap();
    forgectl()
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "etcd-1 runs etcd {version}: etcd is upgraded one minor release at a time, so set versions.etcd to a 3.5.x release first"
        )));
    forgectl()
        .args([
            "exec",
            "--hosts",
            "etcd",
            "--",
            "etcd --version | head -n 1",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "etcd-3 | etcd Version: {version}"
        )));
    std::fs::write(&inv, text).unwrap();

    // A tampered release is refused before anything reaches the machines.
    let file = releases
        .join("etcd")
        .join(&version)
        .join(format!("etcd-v{version}-linux-amd64.tar.gz"));
    std::fs::write(&file, b"tampered").unwrap();
    forgectl()
        .args(["exec", "--hosts", "etcd-2", "--", "rm /usr/local/bin/etcd"])
        .assert()
        .success();
    forgectl()
        .args(["up", "--yes", "--until", "etcd"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not match the published"));
}
