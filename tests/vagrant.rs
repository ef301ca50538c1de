//! The vagrant provider's pieces that need no VM: the rendered Vagrantfile (golden file) and the
//! parser of `vagrant ssh-config`. (The real vagrant CLI is not installed in CI: it upgrades host
//! packages.) Regenerate the golden file with `UPDATE_GOLDEN=1 cargo test --test vagrant`.

use forgectl::inventory;
use forgectl::providers::vagrant::{self, SshConfig};
use forgectl::render::Templates;
use std::path::Path;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheGoldenFileOnly forgectl@forge-vagrant";

#[test]
fn vagrantfile_matches_its_golden_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let inv = inventory::load(Some(&root.join("inventories/vagrant/cluster.yaml"))).unwrap();
    let text = vagrant::vagrantfile(&inv, &Templates::load(None).unwrap(), KEY).unwrap();
    let golden = root.join("tests/golden/vagrant/Vagrantfile");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &text).unwrap();
    }
    assert_eq!(text, std::fs::read_to_string(&golden).unwrap());
    for (name, ip, port) in [
        ("etcd-1", "192.168.77.11", 2722),
        ("worker-2", "192.168.77.32", 2725),
    ] {
        assert!(
            text.contains(&format!("config.vm.define \"{name}\"")),
            "{name}"
        );
        assert!(text.contains(&format!("ip: \"{ip}\"")), "{ip}");
        assert!(text.contains(&format!("host: {port},")), "{port}");
    }
    assert!(text.contains("config.vm.provider \"libvirt\""));
    assert!(text.contains(KEY));
}

#[test]
fn other_providers_have_no_vagrantfile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let inv = inventory::load(Some(&root.join("inventories/static/cluster.yaml"))).unwrap();
    assert!(vagrant::vagrantfile(&inv, &Templates::load(None).unwrap(), KEY).is_err());
}

#[test]
fn ssh_config_output_is_parsed_per_host() {
    let text = r#"Host etcd-1
  HostName 127.0.0.1
  User vagrant
  Port 2722
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/me/forge/.vagrant/machines/etcd-1/libvirt/private_key"
  IdentitiesOnly yes
  LogLevel FATAL

Host worker-2
  HostName 192.168.121.54
  User vagrant
  Port 22
  IdentityFile /home/me/forge/.vagrant/machines/worker-2/libvirt/private_key
"#;
    let parsed = vagrant::parse_ssh_config(text);
    assert_eq!(
        parsed,
        [
            SshConfig {
                host: "etcd-1".into(),
                hostname: "127.0.0.1".into(),
                port: 2722,
                user: "vagrant".into(),
                identity_file: Some(
                    "/home/me/forge/.vagrant/machines/etcd-1/libvirt/private_key".into()
                ),
            },
            SshConfig {
                host: "worker-2".into(),
                hostname: "192.168.121.54".into(),
                port: 22,
                user: "vagrant".into(),
                identity_file: Some(
                    "/home/me/forge/.vagrant/machines/worker-2/libvirt/private_key".into()
                ),
            },
        ]
    );
    assert!(vagrant::parse_ssh_config("").is_empty());
}

#[tokio::test]
async fn missing_vagrant_is_said_clearly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let inv = inventory::load(Some(&root.join("inventories/vagrant/cluster.yaml"))).unwrap();
    let has_vagrant = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("vagrant").is_file()))
        .unwrap_or(false);
    match vagrant::check_installed(&inv).await {
        Err(e) if !has_vagrant => {
            let msg = e.to_string();
            assert!(
                msg.contains("vagrant is not installed") && msg.contains("vagrant-libvirt"),
                "{msg}"
            );
        }
        // With vagrant installed the check depends on its plugins; it must not panic.
        _ => assert!(has_vagrant, "check passed without vagrant on PATH"),
    }
}
