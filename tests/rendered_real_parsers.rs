//! The files forgectl renders, from an inventory full of values at the edge of what validation
//! lets through (wildcard SANs, mirrors with ports and paths, labels with prefixes, NFS options with
//! `=` and `:`, quantities), read back by their real parsers: kubeadm's own `config validate`
//! (`../shared/kube`; haproxy -c is in tests/render_golden.rs), keepalived's --config-test,
//! nginx -t for the TLS front, a YAML parser for every YAML file and manifest, and the exports
//! file checked to hold exactly the intended entries (issue #24).

mod support;

use forgectl::inventory;
use forgectl::render::Templates;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The static example, with edge values added.
fn inventory_text() -> String {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories/static/cluster.yaml"),
    )
    .unwrap();
    base.replace(
        "  vip_interface: eth0\n",
        "  vip_interface: eth0.100\n  extra_sans: [\"*.api.example.org\", api.example.org, 192.0.2.100]\n",
    )
    .replace(
        "    enabled: true                # tool homes",
        "    export_options: rw,sync,no_subtree_check,root_squash,anonuid=65534,anongid=65534,sec=sys:krb5p\n    mount_options: vers=4.2,hard,timeo=600,retrans=2,noatime,clientaddr=192.0.2.31\n    enabled: true                # tool homes",
    )
    .replace(
        "    roles: [worker, ingress]\n",
        "    roles: [worker, ingress]\n    labels:\n      toolforge.org/role: ingress\n      node.kubernetes.io/exclude-from-external-load-balancers: \"true\"\n",
    ) + "kubeadm:\n  admission_plugins: [NodeRestriction, PodSecurity]\n  ignore_preflight_errors: [Swap, FileContent--proc-sys-net-ipv4-ip_forward]\n\
         runtime:\n  registry_mirrors:\n    docker.io: [\"https://mirror.example.org:8443/v2\", \"http://192.0.2.9:5000\"]\n    registry.example.org:5000: [\"https://m.example.org\"]\n"
}

/// host/path → content of every file a run would push.
fn render() -> BTreeMap<PathBuf, String> {
    let dir = tempfile::tempdir().unwrap();
    let inv = match inventory::load_str("edge.yaml", &inventory_text(), dir.path()) {
        Ok(i) => i,
        Err(inventory::LoadError::Invalid { diagnostics, .. }) => panic!("{diagnostics:#?}"),
        Err(e) => panic!("{e}"),
    };
    support::rendered::files(&inv, &Templates::load(None).unwrap())
        .into_iter()
        .map(|(k, (_, content))| (k, content))
        .collect()
}

/// A Debian tool the test needs, with what to install when it is missing.
fn tool(name: &str) -> PathBuf {
    let p = Path::new("/usr/sbin").join(name);
    assert!(
        p.exists(),
        "{} is missing: install Debian's nginx-light and keepalived packages (.ci/run does; their services are never started)",
        p.display()
    );
    p
}

#[test]
fn real_parsers_read_what_was_meant() {
    let files = render();
    let work = tempfile::tempdir().unwrap();
    let kubeadm = support::kube::assets().join("kubeadm");
    let mut kubeadm_files = 0;
    for (path, content) in &files {
        let name = path.to_string_lossy();
        if name.ends_with(".yaml")
            || name.ends_with(".yml")
            || name.ends_with(".conf") && content.contains("apiVersion:")
        {
            let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(content)
                .unwrap_or_else(|e| panic!("{name} is not YAML: {e}\n{content}"));
            assert!(!docs.is_empty(), "{name}");
        }
        if name.ends_with("kubeadm-init.yaml") || name.ends_with("kubeadm-join.yaml") {
            // The join token is put in right before kubeadm runs; any well-formed one will do.
            let text = content.replace("@FORGECTL_BOOTSTRAP_TOKEN@", "abcdef.0123456789abcdef");
            let file = work.path().join(format!("kubeadm-{kubeadm_files}.yaml"));
            std::fs::write(&file, &text).unwrap();
            let out = Command::new(&kubeadm)
                .args(["config", "validate", "--config"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "kubeadm config validate refused {name}:\n{}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            kubeadm_files += 1;
        }
    }
    // control-1 init; control-2, control-3, worker-1, worker-2 join.
    assert_eq!(kubeadm_files, 5, "kubeadm configs");

    // Every label and SAN arrived as meant.
    let join = &files[Path::new("worker-1/etc/kubernetes/forgectl/kubeadm-join.yaml")];
    assert!(
        join.contains("node.forgectl.io/ingress=true,node.forgectl.io/nfs=true,node.kubernetes.io/exclude-from-external-load-balancers=true,toolforge.org/role=ingress"),
        "{join}"
    );
    let init = &files[Path::new("control-1/etc/kubernetes/forgectl/kubeadm-init.yaml")];
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(init).unwrap();
    let sans: Vec<String> = docs
        .iter()
        .find(|d| d["kind"] == "ClusterConfiguration")
        .and_then(|d| d["apiServer"]["certSANs"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    for san in ["*.api.example.org", "api.example.org", "192.0.2.100"] {
        assert!(sans.iter().any(|s| s == san), "{san} not in {sans:?}");
    }

    // keepalived's own configuration test reads the VRRP instance. It also wants the interface
    // to exist here and not be a loopback: one of this machine's stands in for the lb machines'
    // eth0.100 (only read, never changed).
    let ka_text = &files[Path::new("lb-1/etc/keepalived/keepalived.conf")];
    assert!(ka_text.contains("interface eth0.100\n"), "{ka_text}");
    let here = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| {
            std::fs::read_to_string(format!("/sys/class/net/{n}/type"))
                .is_ok_and(|t| t.trim() == "1")
        })
        .expect("an Ethernet interface on this machine");
    let ka = work.path().join("keepalived.conf");
    std::fs::write(
        &ka,
        ka_text.replace("interface eth0.100\n", &format!("interface {here}\n")),
    )
    .unwrap();
    let log = work.path().join("keepalived-test.log");
    let out = Command::new(tool("keepalived"))
        .arg(format!("--config-test={}", log.display()))
        .arg("-f")
        .arg(&ka)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keepalived --config-test: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // nginx -t reads the TLS front, with a certificate of its own where forgectl puts the
    // cluster's.
    let cert = rcgen::generate_simple_self_signed(vec!["toolforge.test".into()]).unwrap();
    let (crt, key, pid) = (
        work.path().join("tls.crt"),
        work.path().join("tls.key"),
        work.path().join("nginx.pid"),
    );
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let conf = files[Path::new("lb-1/etc/nginx/nginx.conf")]
        .replace("/etc/nginx/forgectl/tls.crt", &crt.display().to_string())
        .replace("/etc/nginx/forgectl/tls.key", &key.display().to_string())
        .replace("/run/nginx.pid", &pid.display().to_string());
    let nginx_conf = work.path().join("nginx.conf");
    std::fs::write(&nginx_conf, conf).unwrap();
    let out = Command::new(tool("nginx"))
        .arg("-t")
        .arg("-c")
        .arg(&nginx_conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The exports hold exactly the two intended entries, each for the machine network only.
    let exports = &files[Path::new("nfs-1/etc/exports.d/forgectl.exports")];
    let entries: Vec<&str> = exports
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    let opts = "rw,sync,no_subtree_check,root_squash,anonuid=65534,anongid=65534,sec=sys:krb5p";
    assert_eq!(
        entries,
        [
            format!("/srv/tools/home 192.0.2.0/24({opts})"),
            format!("/srv/tools/project 192.0.2.0/24({opts})"),
        ],
        "{exports}"
    );

    // containerd's hosts.toml: one file per registry, named by it, with the mirrors in order.
    let hosts = &files[Path::new("worker-1/etc/containerd/certs.d/docker.io/hosts.toml")];
    let a = hosts
        .find("[host.\"https://mirror.example.org:8443/v2\"]")
        .expect(hosts);
    let b = hosts.find("[host.\"http://192.0.2.9:5000\"]").expect(hosts);
    assert!(a < b, "{hosts}");
    assert!(files.contains_key(Path::new(
        "worker-1/etc/containerd/certs.d/registry.example.org:5000/hosts.toml"
    )));
}
