//! The OpenStack provider's pure parts: what the inventory asks of the cloud (specs, server
//! groups, security-group rules), the quota arithmetic and the cloud-init user data (golden file).
//! Regenerate the golden file with `UPDATE_GOLDEN=1 cargo test --test openstack_spec`.

use forgectl::inventory;
use forgectl::providers::openstack::{quota, secgroups, spec, user_data};
use forgectl::render::Templates;
use std::collections::BTreeMap;
use std::path::Path;

fn example() -> inventory::Loaded {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    inventory::load(Some(&root.join("inventories/openstack/cluster.yaml"))).unwrap()
}

#[test]
fn machine_specs_follow_the_inventory() {
    let inv = example();
    let specs = spec::machines(&inv);
    assert_eq!(specs.len(), 10);
    let etcd = &specs[0];
    assert_eq!(etcd.machine, "etcd-1");
    assert_eq!(etcd.server_name, "forge-os-etcd-1");
    assert_eq!(etcd.flavor, "g3.cores2.ram4.disk20");
    assert_eq!(etcd.image, "debian-12-bookworm");
    assert_eq!(etcd.volume_gb, Some(20));
    assert_eq!(etcd.volume_name(), "forge-os-etcd-1-data");
    assert_eq!(etcd.server_group.as_deref(), Some("forgectl-forge-os-etcd"));
    assert_eq!(etcd.availability_zone.as_deref(), Some("nova"));
    assert_eq!(etcd.networks, vec!["cluster-net".to_string()]);
    assert_eq!(
        etcd.fixed_ip, None,
        "Neutron picks addresses unless the inventory gives one"
    );
    assert!(
        etcd.security_groups
            .contains(&"forgectl-forge-os-etcd".to_string())
    );
    assert!(
        etcd.security_groups
            .contains(&"forgectl-forge-os-node".to_string())
    );
    let lb = specs.iter().find(|s| s.machine == "lb-1").unwrap();
    assert!(lb.floating_ip);
    let control = specs.iter().find(|s| s.machine == "control-1").unwrap();
    assert_eq!(control.boot_volume_gb, Some(40));
    assert_eq!(
        control.flavor, "g3.cores2.ram4",
        "the provider's default flavor"
    );
    for g in ["kube", "control-plane", "node"] {
        assert!(
            control
                .security_groups
                .contains(&format!("forgectl-forge-os-{g}")),
            "{g}"
        );
    }
    let policies: BTreeMap<String, &str> = spec::server_groups(&inv)
        .into_iter()
        .map(|g| (g.name, g.policy))
        .collect();
    assert_eq!(policies["forgectl-forge-os-etcd"], "anti-affinity");
    assert_eq!(policies["forgectl-forge-os-control"], "anti-affinity");
    assert_eq!(policies["forgectl-forge-os-worker"], "soft-anti-affinity");
    assert_eq!(policies["forgectl-forge-os-lb"], "soft-anti-affinity");
}

#[test]
fn explicit_addresses_become_fixed_ips_and_policy_none_means_no_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "name: fixed\nprovider: openstack\nopenstack: {network: n, image: i, flavor: f}\ningress: {enabled: false}\nnetwork: {machine_cidr: 172.16.0.0/24}\ngroups:\n  - name: all\n    roles: [etcd, control-plane, worker]\n    hosts: [{name: one, address: 172.16.0.20}]\n    openstack: {server_group: none, extra_networks: [storage-net]}\n",
    )
    .unwrap();
    let inv = inventory::load(Some(&path)).unwrap();
    let s = &spec::machines(&inv)[0];
    assert_eq!(s.fixed_ip, Some("172.16.0.20".parse().unwrap()));
    assert_eq!(s.server_group, None);
    assert_eq!(s.networks, vec!["n".to_string(), "storage-net".to_string()]);
    assert_eq!(s.port_name(1), "fixed-one-port1");
    assert!(spec::server_groups(&inv).is_empty());
}

#[test]
fn every_rule_has_a_reason_and_refers_to_groups_in_use() {
    let inv = example();
    let groups = secgroups::groups(&inv);
    let rules = secgroups::rules(&inv);
    assert!(!rules.is_empty());
    for r in &rules {
        assert!(!r.why.is_empty());
        assert!(groups.contains(r.group), "{r:?}");
        if let secgroups::Source::Group(g) = &r.from {
            assert!(groups.contains(g), "{r:?}");
        }
    }
    let has = |group: &str, port: u16, from: &str| {
        rules.iter().any(|r| {
            r.group == group
                && r.ports.is_some_and(|(lo, hi)| lo <= port && port <= hi)
                && match &r.from {
                    secgroups::Source::Group(g) => *g == from,
                    secgroups::Source::Cidr(c) => c == from,
                }
        })
    };
    assert!(has("node", 22, "172.16.0.0/21"), "SSH from ssh_cidrs");
    assert!(has("etcd", 2380, "etcd"), "etcd peers");
    assert!(has("etcd", 2379, "control-plane"), "API servers reach etcd");
    assert!(!has("etcd", 2379, "kube"), "workers do not reach etcd");
    assert!(has("control-plane", 6443, "lb"));
    assert!(has("lb", 6443, "0.0.0.0/0"));
    assert!(has("kube", 10250, "kube"));
    assert!(has("kube", 4789, "kube"));
    assert!(has("ingress", 443, "lb"));
    assert!(
        rules.iter().any(|r| r.group == "kube" && r.protocol == "4"),
        "Calico IPIP"
    );
    assert!(!groups.contains("nfs"), "no nfs machine, no nfs group");
    assert!(!groups.contains("bastion"), "no bastion, no bastion group");
    assert!(
        !rules
            .iter()
            .any(|r| r.from == secgroups::Source::Group("bastion"))
    );
}

#[test]
fn bastions_take_ssh_from_the_public_and_reach_the_homes_and_the_api() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let inv = inventory::load(Some(&root.join("inventories/toolforge-like/cluster.yaml"))).unwrap();
    let bastion = inv.machines.iter().find(|m| m.name == "bastion-1").unwrap();
    assert_eq!(
        secgroups::for_roles(&bastion.roles),
        ["node", "bastion"],
        "not a Kubernetes node"
    );
    let rules = secgroups::rules(&inv);
    let from = |group: &str, port: u16, src: secgroups::Source| {
        rules
            .iter()
            .any(|r| r.group == group && r.ports == Some((port, port)) && r.from == src)
    };
    let public = inv
        .inventory
        .openstack
        .as_ref()
        .unwrap()
        .public_cidrs
        .clone();
    assert!(!public.is_empty());
    for c in &public {
        assert!(from(
            "bastion",
            22,
            secgroups::Source::Cidr(c.0.to_string())
        ));
    }
    assert!(from("nfs", 2049, secgroups::Source::Group("bastion")));
    assert!(from("lb", 6443, secgroups::Source::Group("bastion")));
    assert!(!from(
        "control-plane",
        6443,
        secgroups::Source::Group("bastion")
    ));
}

#[test]
fn quota_shortfalls_name_the_quota_and_what_is_left() {
    let have = BTreeMap::from([
        ("compute instances", (10, 8)),
        ("compute cores", (-1, 100)),
        ("volume gigabytes", (100, 90)),
    ]);
    let short = quota::shortfalls(
        &[
            ("compute instances", 3),
            ("compute cores", 500),
            ("volume gigabytes", 10),
            ("network port", 4),
        ],
        &have,
    );
    assert_eq!(short.len(), 1, "{short:?}");
    assert_eq!(
        short[0].to_string(),
        "compute instances: needs 3, 2 left (limit 10)"
    );
}

#[test]
fn user_data_matches_its_golden_file() {
    let inv = example();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheGoldenFileOnly forgectl@forge-os";
    let all = user_data(&inv, &Templates::load(None).unwrap(), key).unwrap();
    assert_eq!(all.len(), 10);
    let text = &all["etcd-1"];
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/openstack/user-data-etcd-1");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, text).unwrap();
    }
    assert_eq!(text, &std::fs::read_to_string(&golden).unwrap());
    assert!(text.starts_with("#cloud-config\n"));
    assert!(text.contains("hostname: etcd-1\n"));
    assert!(text.contains(key));
}
