//! The cluster's own security groups and their rules, as data. Every rule carries its reason,
//! which is also its description in Neutron (docs/machines.md, "OpenStack").

use std::collections::BTreeSet;

use crate::inventory::{Loaded, Role};

/// Where a rule lets traffic in from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// An address range.
    Cidr(String),
    /// Members of another of the cluster's groups (by suffix).
    Group(&'static str),
}

/// One ingress rule of one of the cluster's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Group suffix the rule belongs to.
    pub group: &'static str,
    /// `tcp`, `udp`, `icmp` or an IP protocol number (`4` for IP-in-IP).
    pub protocol: &'static str,
    /// Port range, for tcp and udp.
    pub ports: Option<(u16, u16)>,
    /// Where from.
    pub from: Source,
    /// Why (the rule's description).
    pub why: &'static str,
}

/// Every machine gets `node`; control planes and workers also `kube`; each role its own.
pub fn for_roles(roles: &[Role]) -> Vec<&'static str> {
    let mut out = vec!["node"];
    if roles.contains(&Role::ControlPlane) || roles.contains(&Role::Worker) {
        out.push("kube");
    }
    for r in roles {
        out.push(match r {
            Role::Etcd => "etcd",
            Role::ControlPlane => "control-plane",
            Role::Worker => continue,
            Role::Lb => "lb",
            Role::Ingress => "ingress",
            Role::Nfs => "nfs",
            Role::Bastion => "bastion",
        });
    }
    out.dedup();
    out
}

/// The Neutron name of the cluster's group `suffix`.
pub fn group_name(cluster: &str, suffix: &str) -> String {
    format!("forgectl-{cluster}-{suffix}")
}

/// The group suffixes this inventory's machines use.
pub fn groups(inv: &Loaded) -> BTreeSet<&'static str> {
    inv.machines
        .iter()
        .flat_map(|m| for_roles(&m.roles))
        .collect()
}

/// Every rule of the groups this inventory uses (rules from a group nobody is in are left out).
pub fn rules(inv: &Loaded) -> Vec<Rule> {
    let used = groups(inv);
    let os = inv.inventory.openstack.as_ref();
    let ssh: Vec<String> = match os.map(|o| &o.ssh_cidrs) {
        Some(c) if !c.is_empty() => c.iter().map(|c| c.0.to_string()).collect(),
        _ => vec![inv.inventory.network.machine_cidr.0.to_string()],
    };
    let public: Vec<String> = os
        .map(|o| o.public_cidrs.iter().map(|c| c.0.to_string()).collect())
        .unwrap_or_else(|| vec!["0.0.0.0/0".into()]);
    let api = inv.inventory.api.port;
    let etcd = &inv.inventory.etcd;
    let tcp = |group, port: u16, from: Source, why| Rule {
        group,
        protocol: "tcp",
        ports: Some((port, port)),
        from,
        why,
    };
    let g = Source::Group;
    let mut out = Vec::new();
    for c in &ssh {
        out.push(tcp(
            "node",
            22,
            Source::Cidr(c.clone()),
            "SSH for forgectl (by default from the machine network, where the bastion is)",
        ));
    }
    out.push(Rule {
        group: "node",
        protocol: "icmp",
        ports: None,
        from: g("node"),
        why: "ping between the cluster's machines (diagnostics, path MTU discovery)",
    });
    out.push(tcp(
        "etcd",
        etcd.client_port,
        g("control-plane"),
        "etcd clients: the API servers",
    ));
    out.push(Rule {
        group: "etcd",
        protocol: "tcp",
        ports: Some((
            etcd.client_port.min(etcd.peer_port),
            etcd.client_port.max(etcd.peer_port),
        )),
        from: g("etcd"),
        why: "etcd peers (raft) and member health checks",
    });
    for c in &ssh {
        out.push(tcp("etcd", etcd.client_port, Source::Cidr(c.clone()), "etcd clients: forgectl's status, snapshots and membership changes, from where SSH comes"));
    }
    out.push(tcp(
        "control-plane",
        api,
        g("kube"),
        "Kubernetes API from kubelets, other control planes and pods",
    ));
    out.push(tcp(
        "control-plane",
        api,
        g("lb"),
        "Kubernetes API behind the haproxy load balancer",
    ));
    out.push(tcp(
        "kube",
        10250,
        g("kube"),
        "kubelet API: logs, exec and metrics for the API servers and metrics-server",
    ));
    out.push(tcp("kube", 179, g("kube"), "Calico BGP between nodes"));
    out.push(Rule {
        group: "kube",
        protocol: "4",
        ports: None,
        from: g("kube"),
        why: "Calico IP-in-IP pod traffic",
    });
    out.push(Rule {
        group: "kube",
        protocol: "udp",
        ports: Some((4789, 4789)),
        from: g("kube"),
        why: "Calico VXLAN pod traffic",
    });
    out.push(tcp(
        "kube",
        5473,
        g("kube"),
        "Calico Typha (calico-node to its datastore cache)",
    ));
    out.push(Rule {
        group: "kube",
        protocol: "tcp",
        ports: Some((30000, 32767)),
        from: g("lb"),
        why: "NodePort services reached through the load balancer",
    });
    for c in &public {
        out.push(tcp(
            "lb",
            api,
            Source::Cidr(c.clone()),
            "Kubernetes API for admins, CI and tool owners",
        ));
        out.push(tcp(
            "lb",
            80,
            Source::Cidr(c.clone()),
            "web front of the tools (HTTP, redirected to HTTPS)",
        ));
        out.push(tcp(
            "lb",
            443,
            Source::Cidr(c.clone()),
            "web front of the tools (HTTPS)",
        ));
    }
    out.push(tcp(
        "ingress",
        80,
        g("lb"),
        "nginx-ingress (host network) behind haproxy, HTTP",
    ));
    out.push(tcp(
        "ingress",
        443,
        g("lb"),
        "nginx-ingress (host network) behind haproxy, HTTPS",
    ));
    out.push(tcp(
        "ingress",
        10254,
        g("lb"),
        "nginx-ingress health checks from haproxy",
    ));
    if inv.inventory.api.vip.is_some() {
        out.push(Rule {
            group: "lb",
            protocol: "112",
            ports: None,
            from: g("lb"),
            why: "VRRP between the lb machines (keepalived holds the API's virtual IP)",
        });
    }
    out.push(tcp(
        "nfs",
        2049,
        g("kube"),
        "NFSv4 for tool homes and project data (v4 needs no portmapper)",
    ));
    out.push(tcp(
        "nfs",
        2049,
        g("bastion"),
        "NFSv4: tool homes on the bastions, where tool owners log in",
    ));
    for c in &public {
        out.push(tcp(
            "bastion",
            22,
            Source::Cidr(c.clone()),
            "SSH for tool owners, who run toolctl / webservice there",
        ));
    }
    out.push(tcp(
        "lb",
        api,
        g("bastion"),
        "Kubernetes API for toolctl on the bastions",
    ));
    out.retain(|r| {
        used.contains(r.group)
            && match &r.from {
                Source::Group(s) => used.contains(s),
                Source::Cidr(_) => true,
            }
    });
    out
}
