//! The files forgectl renders, from an inventory full of values at the edge of what validation
//! lets through (wildcard SANs, mirrors with ports and paths, labels with prefixes, NFS options with
//! `=` and `:`, quantities), read back by their real parsers: kubeadm's own `config validate`
//! (`../shared/kube`; haproxy -c is in tests/render_golden.rs), keepalived's --config-test,
//! nginx -t for the TLS front, a YAML parser for every YAML file and manifest, the exports
//! file checked to hold exactly the intended entries, `systemd-analyze verify` for every unit and
//! drop-in of every example inventory, `cloud-init schema` for the OpenStack user data, and Ruby
//! for the Vagrantfile (issue #24).

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

/// A Debian tool the test needs (a full path), with the package to install when it is missing.
fn tool(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: install Debian's {package} package (.ci/run does; no service of it is ever started)"
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
            support::succeeds(
                Command::new(&kubeadm)
                    .args(["config", "validate", "--config"])
                    .arg(&file),
                &format!("kubeadm config validate of {name}\n{text}\n"),
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
    let out = Command::new(tool("/usr/sbin/keepalived", "keepalived"))
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
    support::succeeds(
        Command::new(tool("/usr/sbin/nginx", "nginx-light"))
            .arg("-t")
            .arg("-c")
            .arg(&nginx_conf),
        "nginx -t",
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

/// The example inventories and the edge one above, loaded.
fn every_inventory() -> Vec<(String, inventory::Loaded)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories");
    let mut out: Vec<(String, inventory::Loaded)> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let inv = inventory::load(Some(&e.path().join("cluster.yaml")))
                .unwrap_or_else(|e| panic!("inventories/{name}: {e}"));
            (name, inv)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let edge = inventory::load_str("edge.yaml", &inventory_text(), dir.path()).unwrap();
    out.push(("edge".into(), edge));
    out
}

/// The absolute programs a unit's Exec lines start (`ExecStart=-/usr/bin/x --flag` → /usr/bin/x).
fn exec_programs(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix("Exec"))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v))
        .map(|v| v.trim_start_matches(['@', '-', ':', '+', '!']))
        .filter_map(|v| v.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn systemd_analyze_verifies_every_unit_and_drop_in() {
    let analyze = tool("/usr/bin/systemd-analyze", "systemd");
    let templates = Templates::load(None).unwrap();
    // A filesystem root holding this machine's own units (sysinit.target and the others every
    // unit is ordered after by default); each host's units and stubs of the programs they start
    // are put in, verified, and taken out again.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/lib/systemd")).unwrap();
    let copied = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(root.path().join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(copied.success());
    let unit_dir = root.path().join("etc/systemd/system");
    let mut templates_seen = std::collections::BTreeSet::new();
    let mut verified = 0;
    for (label, inv) in every_inventory() {
        let mut by_host: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
        for (key, (template, content)) in support::rendered::files(&inv, &templates) {
            let mut parts = key.components();
            let host = parts
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            let rel = parts.as_path().to_path_buf();
            if rel.starts_with("etc/systemd/system") {
                templates_seen.insert(template);
                by_host.entry(host).or_default().push((rel, content));
            }
        }
        for (host, units) in by_host {
            let mut stubs = Vec::new();
            let mut to_verify = Vec::new();
            for (rel, content) in &units {
                let path = root.path().join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, content).unwrap();
                for program in exec_programs(content) {
                    let stub = root.path().join(program.trim_start_matches('/'));
                    std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
                    std::fs::write(&stub, "#!/bin/sh\n").unwrap();
                    std::fs::set_permissions(
                        &stub,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )
                    .unwrap();
                    stubs.push(stub);
                }
                let parent = rel.parent().unwrap();
                if parent.extension().is_some_and(|e| e == "d") {
                    // A drop-in is read with the unit it belongs to, which must be there too.
                    let unit = parent.with_extension("");
                    assert!(
                        units.iter().any(|(r, _)| *r == unit),
                        "{label}/{host}: drop-in {} without its unit",
                        rel.display()
                    );
                } else {
                    to_verify.push(rel.clone());
                }
            }
            let out = Command::new(&analyze)
                .arg(format!("--root={}", root.path().display()))
                .args(["--man=no", "--generators=no", "verify"])
                .args(&to_verify)
                .current_dir(root.path())
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // Warnings (an unknown key, a bad setting) leave the exit status at 0: any word
            // from systemd is a failure here.
            assert!(
                out.status.success() && said.trim().is_empty(),
                "{label}/{host}: systemd-analyze verify {to_verify:?}:\n{said}"
            );
            verified += to_verify.len();
            std::fs::remove_dir_all(&unit_dir).unwrap();
            for stub in stubs {
                let _ = std::fs::remove_file(stub);
            }
        }
    }
    for t in [
        "etcd/etcd.service.tera",
        "kube/kubelet.service.tera",
        "kube/10-kubeadm.conf.tera",
        "runtime/containerd.service.tera",
        "cni/cni-bridge.service.tera",
        "platform/forgectl-accounts.service.tera",
        "platform/forgectl-admission.service.tera",
        "storage/nfs.mount.tera",
    ] {
        assert!(
            templates_seen.contains(t),
            "no inventory renders {t}: {templates_seen:?}"
        );
    }
    assert!(verified > 20, "{verified} units verified");
}

/// A public key as forgectl makes them (the comment names the cluster).
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBreakoutTestKeyOnly0123456789abcdefABCDEF forgectl@forge-os";

#[test]
fn cloud_init_accepts_the_user_data_and_reads_the_intended_values() {
    let cloud_init = tool("/usr/bin/cloud-init", "cloud-init");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("inventories/openstack/cluster.yaml")).unwrap();
    let work = tempfile::tempdir().unwrap();
    // The login user as the example has it, and root (written as a `users:` entry instead).
    for user in ["debian", "root"] {
        let text = text.replacen("  user: debian ", &format!("  user: {user} "), 1);
        let inv = inventory::load_str(
            "os.yaml",
            &text,
            root.join("inventories/openstack").as_path(),
        )
        .unwrap();
        assert_eq!(inv.inventory.ssh.user, user, "the example's ssh.user moved");
        let all =
            forgectl::providers::openstack::user_data(&inv, &Templates::load(None).unwrap(), KEY)
                .unwrap();
        assert_eq!(all.len(), inv.machines.len());
        for (name, data) in &all {
            let file = work.path().join(format!("{user}-{name}"));
            std::fs::write(&file, data).unwrap();
            support::succeeds(
                Command::new(&cloud_init)
                    .args(["schema", "--config-file"])
                    .arg(&file),
                &format!("cloud-init schema of {name}'s user data\n{data}\n"),
            );
            let doc: serde_json::Value = serde_saphyr::from_str(data).unwrap();
            assert_eq!(doc["hostname"], name.as_str(), "{data}");
            assert_eq!(doc["ssh_pwauth"], false, "{data}");
            let keys = if user == "root" {
                assert_eq!(doc["disable_root"], false, "{data}");
                assert_eq!(doc["users"][0]["name"], "root", "{data}");
                &doc["users"][0]["ssh_authorized_keys"]
            } else {
                assert_eq!(doc["disable_root"], true, "{data}");
                &doc["ssh_authorized_keys"]
            };
            assert_eq!(keys, &serde_json::json!([KEY]), "{data}");
        }
    }
}

#[test]
fn ruby_reads_the_vagrantfile_as_meant() {
    let ruby = tool("/usr/bin/ruby", "ruby");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let inv = inventory::load(Some(&root.join("inventories/vagrant/cluster.yaml"))).unwrap();
    let text =
        forgectl::providers::vagrant::vagrantfile(&inv, &Templates::load(None).unwrap(), KEY)
            .unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("Vagrantfile");
    std::fs::write(&file, &text).unwrap();
    support::succeeds(Command::new(&ruby).arg("-c").arg(&file), "ruby -c");
    // Real Ruby runs the file; a stand-in for Vagrant's config object records what it was told.
    let out = support::succeeds(
        Command::new(&ruby)
            .arg(root.join("tests/support/vagrant_config_standin.rb"))
            .arg(&file),
        "ruby with the Vagrant config stand-in",
    );
    let configs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(configs.as_array().map(Vec::len), Some(1), "{configs:#}");
    let vm = &configs[0]["vm"];
    assert_eq!(vm["box"], "debian/bookworm64");
    let calls = vm["calls"].as_array().unwrap();
    let provider = calls.iter().find(|c| c["call"] == "provider").unwrap();
    assert_eq!(provider["args"], serde_json::json!(["libvirt"]));
    let defined: Vec<&serde_json::Value> = calls.iter().filter(|c| c["call"] == "define").collect();
    let names: Vec<&str> = defined
        .iter()
        .map(|d| d["args"][0].as_str().unwrap())
        .collect();
    let want: Vec<&str> = inv.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, want);
    let mut ports = std::collections::BTreeSet::new();
    for (d, m) in defined.iter().zip(&inv.machines) {
        let node = &d["block"]["vm"];
        assert_eq!(node["hostname"], m.name.as_str());
        let node_calls = node["calls"].as_array().unwrap();
        let ip = node_calls
            .iter()
            .find(|c| c["args"][0] == "private_network")
            .unwrap();
        assert_eq!(ip["options"]["ip"], m.address.unwrap().to_string());
        let ssh = node_calls
            .iter()
            .find(|c| c["args"][0] == "forwarded_port")
            .unwrap();
        assert_eq!(ssh["options"]["guest"], 22);
        assert_eq!(ssh["options"]["host_ip"], "127.0.0.1");
        assert!(ports.insert(ssh["options"]["host"].as_u64().unwrap()));
        // The provisioning script is valid shell and names the key exactly, quoted.
        let script = node_calls
            .iter()
            .find(|c| c["call"] == "provision")
            .unwrap()["options"]["inline"]
            .as_str()
            .unwrap();
        let sh = work.path().join(format!("{}.sh", m.name));
        std::fs::write(&sh, script).unwrap();
        support::succeeds(
            Command::new("bash").arg("-n").arg(&sh),
            &format!("bash -n\n{script}\n"),
        );
        assert_eq!(script.matches(&format!("'{KEY}'")).count(), 2, "{script}");
    }
}
