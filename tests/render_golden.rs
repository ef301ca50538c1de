//! Golden-file tests: every file a run would push, for the example inventories, byte for byte.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --test render_golden`
//! and review the diff.

mod support;

use forgectl::inventory;
use forgectl::render::{RenderError, Templates};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const INVENTORIES: &[&str] = &["local", "static", "openstack", "vagrant", "toolforge-like"];
/// Inventories whose every rendered file is kept as a golden file.
const GOLDEN: &[&str] = &["local", "static", "toolforge-like"];
/// Of these, only the cluster's manifests are kept (their machines' files are many and alike).
const MANIFESTS_ONLY: &[&str] = &["toolforge-like"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// host/path → (template, content) for `cluster.yaml` of inventories/NAME.
fn render(name: &str, templates: &Templates) -> BTreeMap<PathBuf, (String, String)> {
    let path = root().join("inventories").join(name).join("cluster.yaml");
    let inv = inventory::load(Some(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
    support::rendered::files(&inv, templates)
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[test]
fn rendered_files_match_golden_files() {
    let templates = Templates::load(None).unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for name in GOLDEN {
        let dir = root().join("tests/golden").join(name);
        let mut rendered = render(name, &templates);
        if MANIFESTS_ONLY.contains(name) {
            rendered.retain(|k, _| k.starts_with(forgectl::plan::MANIFESTS_HOST));
        }
        assert!(!rendered.is_empty(), "{name} renders nothing");
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            for (rel, (_, content)) in &rendered {
                let p = dir.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, content).unwrap();
            }
        }
        for (rel, (_, content)) in &rendered {
            let golden = std::fs::read_to_string(dir.join(rel))
                .unwrap_or_else(|e| panic!("{name}: missing golden file {}: {e}", rel.display()));
            assert_eq!(
                content,
                &golden,
                "{name}: {} differs from its golden file",
                rel.display()
            );
        }
        let stale: Vec<_> = files_under(&dir)
            .into_iter()
            .filter(|f| !rendered.contains_key(f))
            .collect();
        assert!(
            stale.is_empty(),
            "{name}: golden files no longer rendered: {stale:?}"
        );
    }
}

#[test]
fn every_template_is_used_by_an_example_inventory() {
    let templates = Templates::load(None).unwrap();
    let mut used = BTreeSet::new();
    for name in INVENTORIES {
        used.extend(render(name, &templates).into_values().map(|(t, _)| t));
    }
    // The reset playbook's script, tested below.
    let local = inventory::load(Some(&root().join("inventories/local/cluster.yaml"))).unwrap();
    used.extend(
        support::rendered::files_of(&local, &templates, "reset")
            .into_values()
            .map(|(t, _)| t),
    );
    // Templates forgectl renders for itself, not for a host, have golden tests of their own.
    used.insert("vagrant/Vagrantfile.tera".to_string()); // tests/vagrant.rs
    used.insert("openstack/user-data.tera".to_string()); // tests/openstack_spec.rs
    let all: BTreeSet<String> = templates.names().iter().cloned().collect();
    assert_eq!(used, all, "templates without a golden test");
}

#[test]
fn reset_script_matches_its_golden_file_and_parses() {
    let templates = Templates::load(None).unwrap();
    let inv = inventory::load(Some(&root().join("inventories/local/cluster.yaml"))).unwrap();
    let files = support::rendered::files_of(&inv, &templates, "reset");
    let (template, script) = &files[Path::new("worker-1/usr/local/lib/forgectl/node-reset")];
    assert_eq!(template, "kube/node-reset.sh.tera");
    let golden = root().join("tests/golden/reset/worker-1/node-reset");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, script).unwrap();
    }
    assert_eq!(script, &std::fs::read_to_string(&golden).unwrap());
    // Every node gets one, and Debian's /bin/sh (dash) reads it.
    let scripts: Vec<_> = files
        .iter()
        .filter(|(_, (t, _))| t == "kube/node-reset.sh.tera")
        .collect();
    assert_eq!(scripts.len(), 3, "control-1, worker-1, worker-2");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node-reset");
    std::fs::write(&file, script).unwrap();
    support::succeeds(
        std::process::Command::new("sh").arg("-n").arg(&file),
        "sh -n node-reset",
    );
}

#[test]
fn haproxy_balances_to_every_control_plane_and_ingress_node() {
    let templates = Templates::load(None).unwrap();
    let files = render("static", &templates);
    let (_, cfg) = &files[Path::new("lb-1/etc/haproxy/haproxy.cfg")];
    for server in [
        "server control-1 192.0.2.21:6443",
        "server control-2 192.0.2.22:6443",
        "server control-3 192.0.2.23:6443",
        "server worker-2 192.0.2.32:80",
    ] {
        assert!(cfg.contains(server), "missing `{server}` in:\n{cfg}");
    }
    // With the TLS front, nginx has :443 and haproxy does not bind it.
    assert!(!cfg.contains("bind *:443"), "{cfg}");
    let (_, front) = &files[Path::new("lb-1/etc/nginx/nginx.conf")];
    assert!(
        front.contains("server_name toolforge.test *.toolforge.test;"),
        "{front}"
    );
    assert!(front.contains("server 127.0.0.1:8081;"), "{front}");
    assert!(
        cfg.contains("bind 127.0.0.1:8081") && cfg.contains("redirect scheme https"),
        "{cfg}"
    );
    // Without it haproxy passes :443 through to the ingress nodes.
    let files = render("local", &templates);
    let (_, cfg) = &files[Path::new("lb-1/etc/haproxy/haproxy.cfg")];
    assert!(
        cfg.contains("bind *:443") && cfg.contains("server worker-1 10.77.0.14:443"),
        "{cfg}"
    );
}

#[test]
fn etcd_members_list_each_other_over_tls() {
    let templates = Templates::load(None).unwrap();
    let files = render("local", &templates);
    let (_, env) = &files[Path::new("etcd-2/etc/etcd/etcd.env")];
    assert!(env.contains("ETCD_NAME=etcd-2\n"));
    assert!(env.contains(
        "ETCD_INITIAL_CLUSTER=etcd-1=https://10.77.0.10:2380,etcd-2=https://10.77.0.11:2380,etcd-3=https://10.77.0.12:2380\n"
    ));
    assert!(
        env.contains("ETCD_LISTEN_CLIENT_URLS=https://10.77.0.11:2379,https://127.0.0.1:2379\n")
    );
    assert!(
        env.contains("ETCD_CLIENT_CERT_AUTH=true")
            && env.contains("ETCD_PEER_CLIENT_CERT_AUTH=true")
    );
}

#[test]
fn override_dir_replaces_one_template_and_bad_overrides_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etcd")).unwrap();
    std::fs::write(dir.path().join("etcd/etcd.env.tera"), "NAME={{ name }}\n").unwrap();
    let templates = Templates::load(Some(dir.path())).unwrap();
    let files = render("local", &templates);
    assert_eq!(
        files[Path::new("etcd-1/etc/etcd/etcd.env")].1,
        "NAME=etcd-1\n"
    );
    // Other templates keep their embedded text.
    assert!(
        files[Path::new("etcd-1/etc/systemd/system/etcd.service")]
            .1
            .contains("[Service]")
    );

    std::fs::write(dir.path().join("etcd/etcd.env.tera"), "{% if %}\n").unwrap();
    match Templates::load(Some(dir.path())) {
        Err(RenderError::Parse { name, .. }) => assert_eq!(name, "etcd/etcd.env.tera"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn real_haproxy_accepts_the_rendered_config() {
    let templates = Templates::load(None).unwrap();
    let files = render("static", &templates);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, &files[Path::new("lb-1/etc/haproxy/haproxy.cfg")].1).unwrap();
    let out = std::process::Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("haproxy is needed for this test: apt-get install haproxy (.ci/run installs it)");
    assert!(
        out.status.success(),
        "haproxy -c refused the config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
