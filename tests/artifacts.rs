//! Artifacts: the list per source, and `fetch` against a real HTTP server laid out like a mirror:
//! every file verified against its published checksum, a tampered file refused.

use assert_cmd::Command;
use forgectl::artifacts::{self, Kind};
use forgectl::inventory;
use forgectl::plan::sha256_hex;
use std::path::Path;

fn inventory_text(source: &str) -> String {
    format!(
        "name: arts\nprovider: static\nartifacts:\n{source}\ningress:\n  enabled: false\n\
         groups:\n  - name: etcd\n    roles: [etcd]\n    hosts: [{{ name: e1, address: 192.0.2.1 }}]\n\
         \x20 - name: cp\n    roles: [control-plane]\n    hosts: [{{ name: c1, address: 192.0.2.2 }}]\n"
    )
}

/// Lays out every artifact of `list` under `root/NAME/VERSION/` with its checksum file.
fn lay_out(root: &Path, list: &[artifacts::Artifact]) {
    for a in list {
        let dir = root.join(&a.name).join(&a.version);
        std::fs::create_dir_all(&dir).unwrap();
        let data = format!("pretend {} {}", a.name, a.version).into_bytes();
        std::fs::write(dir.join(&a.file), &data).unwrap();
        let sums = a
            .checksums
            .as_ref()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let line = if sums == "SHA256SUMS" || sums.ends_with(".sha256sum") {
            format!(
                "{}  other-file\n{}  {}\n",
                "0".repeat(64),
                sha256_hex(&data),
                a.file
            )
        } else {
            format!("{}\n", sha256_hex(&data))
        };
        std::fs::write(dir.join(sums), line).unwrap();
    }
}

#[test]
fn lists_follow_the_source() {
    let up = inventory::load_str(
        "a.yaml",
        &inventory_text("  source: upstream"),
        Path::new("."),
    )
    .unwrap();
    let list = artifacts::list(&up.inventory);
    let names: Vec<&str> = list.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "etcd",
            "containerd",
            "runc",
            "cni-plugins",
            "crictl",
            "kubeadm",
            "kubectl",
            "kubelet"
        ]
    );
    assert_eq!(
        list[0].url,
        "https://github.com/etcd-io/etcd/releases/download/v3.6.13/etcd-v3.6.13-linux-amd64.tar.gz"
    );
    assert_eq!(
        list[0].checksums.as_deref(),
        Some("https://github.com/etcd-io/etcd/releases/download/v3.6.13/SHA256SUMS")
    );
    assert_eq!(
        list[5].url,
        "https://dl.k8s.io/release/v1.36.2/bin/linux/amd64/kubeadm"
    );
    let deb = inventory::load_str(
        "a.yaml",
        &inventory_text("  source: debian"),
        Path::new("."),
    )
    .unwrap();
    // Debian's packages, and the Kubernetes binaries Debian does not have from upstream …
    let list = artifacts::list(&deb.inventory);
    let (debs, rest): (Vec<_>, Vec<_>) = list.iter().partition(|a| a.kind == Kind::Deb);
    assert_eq!(
        debs.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        artifacts::DEBIAN_PACKAGES
    );
    assert!(debs.iter().all(|a| a.checksums.is_none()));
    let mut names: Vec<&str> = rest.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["crictl", "kubeadm", "kubectl", "kubelet"]);
    assert!(rest.iter().all(|a| a.url.starts_with("https://")));
    // … or from a directory laid out like a mirror, when one is given.
    let dir = tempfile::tempdir().unwrap();
    let deb_dir = inventory::load_str(
        "a.yaml",
        &inventory_text(&format!(
            "  source: debian\n  dir: {}",
            dir.path().display()
        )),
        Path::new("."),
    )
    .unwrap();
    let kubeadm = artifacts::list(&deb_dir.inventory)
        .into_iter()
        .find(|a| a.name == "kubeadm")
        .unwrap();
    assert_eq!(
        kubeadm.url,
        format!("file://{}/kubeadm/1.36.2/kubeadm", dir.path().display())
    );
}

#[tokio::test]
async fn unavailable_artifacts_are_named_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory::load_str(
        "a.yaml",
        &inventory_text(&format!("  source: local\n  dir: {}", dir.path().display())),
        Path::new("."),
    )
    .unwrap();
    let list = artifacts::list(&inv.inventory);
    let missing = artifacts::unavailable(&list).await;
    assert_eq!(missing.len(), list.len(), "{missing:?}");
    assert!(missing[0].cause.contains("does not exist"), "{missing:?}");
    lay_out(dir.path(), &list);
    std::fs::remove_file(dir.path().join("kubelet/1.36.2/kubelet")).unwrap();
    let missing = artifacts::unavailable(&list).await;
    assert_eq!(
        missing.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["kubelet"]
    );
    let text = artifacts::explain_unavailable(&missing.iter().collect::<Vec<_>>());
    assert!(text.contains("kubelet 1.36.2"), "{text}");
    assert!(text.contains("forgectl artifacts fetch --to DIR"), "{text}");
    // An HTTP source that does not answer (a closed port on loopback).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let inv = inventory::load_str(
        "a.yaml",
        &inventory_text(&format!(
            "  source: mirror\n  mirror_url: http://127.0.0.1:{port}"
        )),
        Path::new("."),
    )
    .unwrap();
    let missing = artifacts::unavailable(&artifacts::list(&inv.inventory)).await;
    assert_eq!(missing.len(), 8, "{missing:?}");
    assert!(missing.iter().all(|u| u.cause.contains("127.0.0.1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_verifies_every_checksum_from_a_mirror() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let work = tempfile::tempdir().unwrap();
    let mirror = work.path().join("mirror");
    let up = inventory::load_str(
        "a.yaml",
        &inventory_text("  source: upstream"),
        Path::new("."),
    )
    .unwrap();
    lay_out(&mirror, &artifacts::list(&up.inventory));
    let server = forgectl::providers::local::mirror::serve(&mirror, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let inv = work.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        inventory_text(&format!(
            "  source: mirror\n  mirror_url: http://{}/",
            server.addr
        )),
    )
    .unwrap();
    let out = work.path().join("out");
    let fetch_cli = |to: std::path::PathBuf| {
        let inv = inv.clone();
        tokio::task::spawn_blocking(move || {
            Command::cargo_bin("forgectl")
                .unwrap()
                .env("NO_COLOR", "1")
                .args(["artifacts", "fetch", "-f"])
                .arg(&inv)
                .arg("--to")
                .arg(&to)
                .output()
                .unwrap()
        })
    };
    let o = fetch_cli(out.clone()).await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("8 artifact(s) downloaded and verified"));
    assert_eq!(
        std::fs::read(out.join("etcd/3.6.13/etcd-v3.6.13-linux-amd64.tar.gz")).unwrap(),
        b"pretend etcd 3.6.13"
    );
    assert!(out.join("etcd/3.6.13/SHA256SUMS").exists());

    // A file that does not match its published checksum is refused and not kept.
    std::fs::write(mirror.join("runc/1.3.3/runc.amd64"), b"tampered").unwrap();
    let out3 = work.path().join("out-tampered");
    let o = fetch_cli(out3.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("runc.amd64: sha256") && stderr.contains("does not match the published"),
        "{stderr}"
    );
    assert!(!out3.join("runc/1.3.3/runc.amd64").exists());

    // The fetched tree works as a `local` source (read straight from disk).
    let local = inventory::load_str(
        "a.yaml",
        &inventory_text(&format!("  source: local\n  dir: {}", out.display())),
        Path::new("."),
    )
    .unwrap();
    let again = artifacts::fetch(
        &artifacts::list(&local.inventory),
        &work.path().join("copy"),
    )
    .await
    .unwrap();
    assert_eq!(again.len(), 8);
    drop(server);
}
