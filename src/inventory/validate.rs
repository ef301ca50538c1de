//! Checks that need the whole inventory: names, counts, networks, versions, roles, files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::diagnostics::{Diagnostic, Pos};
use super::machines::{FIRST_LOCAL_HOST, Machine, local_host_address};
use super::model::{ArtifactSource, Inventory, ProviderKind, Role};
use super::yaml_tree::{Node, NodeKind, PathSeg, path_to_string};

mod strings;
mod values;
pub use values::plain_absolute_path_problem;

/// Kubernetes minor versions forgectl supports (1.MINOR).
pub const SUPPORTED_KUBE_MINORS: std::ops::RangeInclusive<u64> = 33..=36;
/// The oldest etcd kubeadm accepts as an external etcd.
pub const MIN_ETCD_FOR_KUBEADM: (u64, u64, u64) = (3, 5, 24);

/// Runs every semantic check; `base_dir` resolves relative file paths (the inventory's directory).
pub fn validate(
    inv: &Inventory,
    machines: &[Machine],
    tree: &Node,
    base_dir: &Path,
) -> Vec<Diagnostic> {
    let mut v = Checker {
        tree,
        out: Vec::new(),
    };
    v.names(inv);
    v.local_settings(inv);
    v.groups(inv);
    v.machine_names(machines);
    v.addresses(inv, machines);
    v.networks(inv);
    v.role_counts(inv, machines);
    v.versions(inv);
    v.provider_blocks(inv);
    v.files(inv, base_dir);
    v.ssh(inv);
    v.accounts(inv);
    v.platform(inv);
    v.nfs_values(inv);
    v.ingress_values(inv, machines);
    v.openstack_values(inv);
    v.local_values(inv);
    v.string_shapes(inv);
    v.account_strings(inv);
    v.cluster_strings(inv);
    v.out
}

struct Checker<'t> {
    tree: &'t Node,
    out: Vec<Diagnostic>,
}

fn p(parts: &[&str]) -> Vec<PathSeg> {
    parts
        .iter()
        .map(|s| PathSeg::Key((*s).to_string()))
        .collect()
}

fn group_path(gi: usize, rest: &[&str]) -> Vec<PathSeg> {
    let mut v = vec![PathSeg::Key("groups".into()), PathSeg::Index(gi)];
    v.extend(rest.iter().map(|s| PathSeg::Key((*s).to_string())));
    v
}

/// A DNS label: lowercase letters, digits and `-`, starting with a letter, not ending with `-`.
pub fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS-1123 label as Kubernetes checks it: at most 63 lowercase letters, digits and `-`,
/// starting and ending with a letter or digit.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Why `key` is not a Kubernetes label key (`[PREFIX/]NAME`), or None when it is one.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.len() > 253 || !p.split('.').all(is_dns1123_label))
    {
        return Some(format!(
            "its prefix {p:?} is not a DNS subdomain (lowercase labels joined by dots)"
        ));
    }
    if name.is_empty() {
        return Some("its name is empty".to_string());
    }
    label_value_problem(name)
}

/// Why `value` is not a Kubernetes label value, or None when it is one (empty is allowed).
pub fn label_value_problem(value: &str) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if value.len() > 63 {
        Some(format!("{} characters, more than 63", value.len()))
    } else if !value.chars().all(ok_char) {
        Some("only letters, digits, `-`, `_` and `.` are allowed".to_string())
    } else if value.starts_with(|c: char| !c.is_ascii_alphanumeric())
        || value.ends_with(|c: char| !c.is_ascii_alphanumeric())
    {
        Some("it must start and end with a letter or digit".to_string())
    } else {
        None
    }
}

/// Why kubelet may not give its own node the label `key` (the NodeRestriction admission plugin
/// refuses kubernetes.io and k8s.io labels other than a few), or None.
pub fn node_label_refused(key: &str) -> Option<&'static str> {
    const ALLOWED: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ];
    let prefix = key.rsplit_once('/').map(|(p, _)| p)?;
    if prefix == "node.forgectl.io" {
        return Some("forgectl sets node.forgectl.io labels itself, from the machines' roles");
    }
    let under = |d: &str| prefix == d || prefix.ends_with(&format!(".{d}"));
    if (under("kubernetes.io") || under("k8s.io"))
        && !ALLOWED.contains(&key)
        && !under("kubelet.kubernetes.io")
        && !under("node.kubernetes.io")
    {
        return Some(
            "kubelet may not set kubernetes.io / k8s.io labels on its node (NodeRestriction); use a prefix of your own",
        );
    }
    None
}

/// Expands `~/` and makes relative paths relative to `base`.
pub fn resolve_path(path: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

impl Checker<'_> {
    /// Position of `path`: a written scalar itself, the key of a written list or mapping, else the
    /// closest written ancestor.
    fn pos(&self, path: &[PathSeg]) -> Pos {
        let (node, found) = self.tree.walk(path);
        match node.kind {
            NodeKind::Seq(_) | NodeKind::Map(_) if found => self.key_pos(path),
            _ => node.pos,
        }
    }

    /// Position of the key of `path` (for "remove this block" messages).
    fn key_pos(&self, path: &[PathSeg]) -> Pos {
        if let Some((PathSeg::Key(k), parent)) = path.split_last() {
            let (node, found) = self.tree.walk(parent);
            if found && let Some(p) = node.key_pos(k) {
                return p;
            }
        }
        self.tree.walk(path).0.pos
    }

    fn written(&self, path: &[PathSeg]) -> bool {
        self.tree.walk(path).1
    }

    fn error(&mut self, path: &[PathSeg], msg: impl Into<String>, hint: impl Into<String>) {
        let d = Diagnostic::error(self.pos(path), msg)
            .with_field(path_to_string(path))
            .with_hint(hint);
        self.out.push(d);
    }

    fn warning(&mut self, path: &[PathSeg], msg: impl Into<String>, hint: impl Into<String>) {
        let d = Diagnostic::warning(self.pos(path), msg)
            .with_field(path_to_string(path))
            .with_hint(hint);
        self.out.push(d);
    }

    fn names(&mut self, inv: &Inventory) {
        if !is_dns_label(&inv.name, 40) {
            self.error(
                &p(&["name"]),
                format!("cluster name `{}` is not a valid name", inv.name),
                "use lowercase letters, digits and `-`, starting with a letter, at most 40 characters",
            );
        }
    }

    fn local_settings(&mut self, inv: &Inventory) {
        let Some(bridge) = inv.local.as_ref().and_then(|l| l.bridge.as_deref()) else {
            return;
        };
        let ok = !bridge.is_empty()
            && bridge.len() <= 15
            && bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            self.error(
                &p(&["local", "bridge"]),
                format!("`{bridge}` is not a usable bridge name"),
                "Linux interface names have at most 15 characters: letters, digits, `-` and `_`",
            );
        }
    }

    fn groups(&mut self, inv: &Inventory) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        if inv.groups.is_empty() {
            self.error(
                &p(&["groups"]),
                "the inventory has no machine groups",
                "add at least groups with the roles etcd and control-plane",
            );
        }
        for (gi, g) in inv.groups.iter().enumerate() {
            if !is_dns_label(&g.name, 50) {
                self.error(
                    &group_path(gi, &["name"]),
                    format!("group name `{}` is not a valid name", g.name),
                    "use lowercase letters, digits and `-`, starting with a letter",
                );
            }
            if let Some(first) = seen.insert(&g.name, gi) {
                let line = self.pos(&group_path(first, &["name"])).line;
                self.error(
                    &group_path(gi, &["name"]),
                    format!("duplicate group name `{}`", g.name),
                    format!(
                        "a group `{}` is already declared on line {line}; rename one",
                        g.name
                    ),
                );
            }
            if g.roles.is_empty() {
                self.error(
                    &group_path(gi, &["roles"]),
                    format!("group `{}` has no roles", g.name),
                    "give it one or more of: etcd, control-plane, worker, lb, nfs, ingress",
                );
            }
            for (key, value) in &g.labels {
                let at = group_path(gi, &["labels", key.as_str()]);
                let problem = label_key_problem(key)
                    .map(|why| format!("node label key {key:?} is not a Kubernetes label key: {why}"))
                    .or_else(|| {
                        label_value_problem(value).map(|why| {
                            format!("node label {key}={value:?}: the value is not a Kubernetes label value: {why}")
                        })
                    })
                    .or_else(|| node_label_refused(key).map(|why| format!("node label {key:?}: {why}")));
                if let Some(msg) = problem {
                    self.error(
                        &at,
                        msg,
                        "keys are [PREFIX/]NAME (NAME and values: at most 63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit), like toolforge.org/role: ingress",
                    );
                }
            }
            match (g.count, g.hosts.is_empty()) {
                (Some(_), false) => self.error(
                    &group_path(gi, &["count"]),
                    format!("group `{}` has both `count` and `hosts`", g.name),
                    "use `count` to let the provider create N machines, or list `hosts`, not both",
                ),
                (None, true) => self.error(
                    &group_path(gi, &[]),
                    format!("group `{}` declares no machines", g.name),
                    "add `count: N` or a `hosts:` list",
                ),
                (Some(0), true) => self.warning(
                    &group_path(gi, &["count"]),
                    format!("group `{}` has count 0 and creates no machines", g.name),
                    "remove the group if it is not needed",
                ),
                _ => {}
            }
            if g.openstack.is_some() && inv.provider != ProviderKind::Openstack {
                let path = group_path(gi, &["openstack"]);
                let pos = self.key_pos(&path);
                self.out.push(
                    Diagnostic::error(
                        pos,
                        format!(
                            "group `{}` has `openstack:` settings but the provider is `{}`",
                            g.name,
                            inv.provider.key()
                        ),
                    )
                    .with_field(path_to_string(&path))
                    .with_hint("remove the block, or set `provider: openstack`"),
                );
            }
        }
    }

    fn machine_names(&mut self, machines: &[Machine]) {
        let mut seen: HashMap<&str, &Machine> = HashMap::new();
        for m in machines {
            if !is_dns_label(&m.name, 63) {
                self.error(
                    &m.origin,
                    format!("machine name `{}` is not a valid host name", m.name),
                    "use lowercase letters, digits and `-`, starting with a letter, at most 63 characters",
                );
            }
            if let Some(first) = seen.insert(&m.name, m) {
                let line = self.pos(&first.origin).line;
                self.error(
                    &m.origin,
                    format!("duplicate machine name `{}`", m.name),
                    format!(
                        "`{}` is already declared on line {line} (group `{}`); machine names must be unique",
                        m.name, first.group
                    ),
                );
            }
        }
    }

    fn addresses(&mut self, inv: &Inventory, machines: &[Machine]) {
        let net = inv.network.machine_cidr;
        let mut seen: HashMap<std::net::IpAddr, &Machine> = HashMap::new();
        for m in machines {
            let explicit = address_path(&m.origin).filter(|ap| self.written(ap));
            let Some(addr) = m.address else {
                match inv.provider {
                    ProviderKind::Static => self.error(
                        &m.origin,
                        format!("machine `{}` has no address", m.name),
                        "static hosts must be listed with `address:`",
                    ),
                    ProviderKind::Local => self.error(
                        &m.origin,
                        format!("no free address left in network.machine_cidr {net} for machine `{}`", m.name),
                        format!(
                            "local machines get addresses from host number {FIRST_LOCAL_HOST} on; use a larger network.machine_cidr"
                        ),
                    ),
                    _ => {}
                }
                continue;
            };
            let path = explicit.clone().unwrap_or_else(|| m.origin.clone());
            if let Some(first) = seen.insert(addr, m) {
                let line = self
                    .pos(&address_path(&first.origin).unwrap_or(first.origin.clone()))
                    .line;
                self.error(
                    &path,
                    format!("duplicate address {addr}: machines `{}` and `{}`", first.name, m.name),
                    format!("{addr} is already used by `{}` (line {line}); give every machine its own address", first.name),
                );
            }
            if inv.provider == ProviderKind::Local && explicit.is_some() {
                if !net.0.contains(&addr) {
                    self.error(
                        &path,
                        format!(
                            "address {addr} of `{}` is outside network.machine_cidr {net}",
                            m.name
                        ),
                        "local machines live on the machine network; pick an address inside it",
                    );
                } else if Some(addr) == local_host_address(inv)
                    || addr == net.0.network()
                    || addr == net.0.broadcast()
                {
                    self.error(
                        &path,
                        format!("address {addr} of `{}` is reserved (network, broadcast or the host's bridge address)", m.name),
                        format!("use a host number from {FIRST_LOCAL_HOST} on"),
                    );
                }
            }
        }
    }

    fn networks(&mut self, inv: &Inventory) {
        let n = &inv.network;
        let nets = [
            ("machine_cidr", n.machine_cidr),
            ("pod_cidr", n.pod_cidr),
            ("service_cidr", n.service_cidr),
        ];
        for i in 0..nets.len() {
            for j in (i + 1)..nets.len() {
                let (a, an) = nets[i];
                let (b, bn) = nets[j];
                if an.overlaps(&bn) {
                    // Point at the one that was written (the other may be a default).
                    let (here, other, here_net, other_net) = if self.written(&p(&["network", b])) {
                        (b, a, bn, an)
                    } else {
                        (a, b, an, bn)
                    };
                    self.error(
                        &p(&["network", here]),
                        format!("network.{here} {here_net} overlaps network.{other} {other_net}"),
                        "machine, pod and service networks must be disjoint; pick ranges that do not share addresses",
                    );
                }
            }
        }
        if n.pod_cidr.0.addr().is_ipv4() != n.service_cidr.0.addr().is_ipv4() {
            let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
            self.error(
                &p(&["network", "service_cidr"]),
                format!(
                    "network.service_cidr {} is {} but network.pod_cidr {} is {}",
                    n.service_cidr,
                    family(n.service_cidr.0.addr().is_ipv4()),
                    n.pod_cidr,
                    family(n.pod_cidr.0.addr().is_ipv4())
                ),
                "use one address family for pods and services (dual stack is not supported)",
            );
        }
        let domain = n.dns_domain.as_str();
        if domain.len() > 253 || domain.is_empty() || !domain.split('.').all(is_dns1123_label) {
            self.error(
                &p(&["network", "dns_domain"]),
                format!("network.dns_domain {domain:?} is not a DNS name"),
                "lowercase labels of letters, digits and `-` joined by dots, without a trailing dot (like cluster.local)",
            );
        }
        if inv.cni.plugin == crate::inventory::model::CniPlugin::Calico {
            let b = inv.calico.block_size;
            let (lo, hi) = match n.pod_cidr.0.addr().is_ipv4() {
                true => (20, 32),
                false => (116, 128),
            };
            if b < lo.max(n.pod_cidr.0.prefix_len()) || b > hi {
                self.error(
                    &p(&["calico", "block_size"]),
                    format!(
                        "calico.block_size {b} does not fit network.pod_cidr {}",
                        n.pod_cidr
                    ),
                    format!(
                        "Calico takes blocks of /{lo} to /{hi} from the pod network, and no larger than it: use {} to {hi} (26 is usual)",
                        lo.max(n.pod_cidr.0.prefix_len())
                    ),
                );
            }
        }
        if n.service_cidr.0.prefix_len() > 28 && n.service_cidr.0.addr().is_ipv4() {
            self.error(
                &p(&["network", "service_cidr"]),
                format!("network.service_cidr {} is too small", n.service_cidr),
                "use at least a /24; the first address goes to the kubernetes service, the tenth to DNS",
            );
        }
    }

    fn role_counts(&mut self, inv: &Inventory, machines: &[Machine]) {
        let count = |r: Role| machines.iter().filter(|m| m.has(r)).count();
        let groups = p(&["groups"]);
        let etcd = count(Role::Etcd);
        let cps = count(Role::ControlPlane);
        let add_role = "add the role to a group's `roles`, or add a group with it";
        match etcd {
            0 => self.error(
                &groups,
                "no machine has the role `etcd`",
                format!("forgectl runs an external etcd cluster on dedicated hosts: {add_role} (3 machines for HA)"),
            ),
            1 => self.warning(
                &self.role_path(inv, Role::Etcd),
                "one etcd member: the cluster has no etcd redundancy",
                "fine for tests; use 3 or 5 etcd machines for a production (HA) cluster",
            ),
            n if n % 2 == 0 => self.error(
                &self.role_path(inv, Role::Etcd),
                format!("{n} etcd members: an even member count tolerates no more failures than {} and raises the risk of losing quorum", n - 1),
                format!("use an odd number of etcd machines ({} or {})", n - 1, n + 1),
            ),
            _ => {}
        }
        if cps == 0 {
            self.error(
                &groups,
                "no machine has the role `control-plane`",
                format!("kubeadm needs at least one control plane: {add_role} (3 for HA)"),
            );
        }
        if cps > 1 && count(Role::Lb) == 0 && inv.api.endpoint.is_none() {
            self.error(
                &groups,
                format!("{cps} control planes but no machine has the role `lb` and api.endpoint is not set"),
                "the API needs one address in front of all control planes: add a group with role `lb`, or set api.endpoint to an external load balancer",
            );
        }
        if let Some(vip) = inv.api.vip {
            let at = p(&["api", "vip"]);
            if count(Role::Lb) == 0 {
                self.error(
                    &at,
                    "api.vip is set but no machine has the role `lb` to hold it",
                    "add a group with role `lb` (two machines for failover), or drop api.vip",
                );
            }
            if inv.api.endpoint.is_some() {
                self.error(
                    &at,
                    "api.vip and api.endpoint are both set",
                    "use api.vip for forgectl's haproxy + keepalived, or api.endpoint for an external load balancer, not both",
                );
            }
            if !inv.network.machine_cidr.0.contains(&vip) {
                self.error(
                    &at,
                    format!("api.vip {vip} is outside network.machine_cidr {}", inv.network.machine_cidr),
                    "pick a free address of the machine network (outside the range machines get addresses from)",
                );
            }
            if inv.provider == ProviderKind::Local {
                self.error(
                    &at,
                    "local machines cannot hold a virtual IP: they may not change their own network (no CAP_NET_ADMIN)",
                    "drop api.vip for the local provider; the lb machine's own address is the endpoint",
                );
            }
        }
        if inv.ingress.enabled && count(Role::Ingress) == 0 {
            self.error(
                &p(&["ingress", "enabled"]),
                "ingress is enabled but no machine has the role `ingress`",
                "add `ingress` to the roles of the workers that should run nginx-ingress, or set ingress.enabled: false",
            );
        }
        if inv.storage.nfs.enabled && count(Role::Nfs) == 0 {
            self.error(
                &p(&["storage", "nfs", "enabled"]),
                "storage.nfs is enabled but no machine has the role `nfs`",
                "add a group with role `nfs` (one machine with a data volume), or set storage.nfs.enabled: false",
            );
        }
        if !inv.storage.nfs.enabled && count(Role::Nfs) > 0 {
            self.warning(
                &self.role_path(inv, Role::Nfs),
                "machines have the role `nfs` but storage.nfs.enabled is false",
                "set storage.nfs.enabled: true to serve tool homes from them, or drop the role",
            );
        }
        if inv.storage.cinder.enabled && inv.provider != ProviderKind::Openstack {
            self.error(
                &p(&["storage", "cinder", "enabled"]),
                format!(
                    "Cinder storage needs the openstack provider, this inventory uses `{}`",
                    inv.provider.key()
                ),
                "set storage.cinder.enabled: false",
            );
        }
    }

    /// Path of the `roles` of the first group with `role` (or `groups`).
    fn role_path(&self, inv: &Inventory, role: Role) -> Vec<PathSeg> {
        inv.groups
            .iter()
            .position(|g| g.roles.contains(&role))
            .map(|gi| group_path(gi, &["roles"]))
            .unwrap_or_else(|| p(&["groups"]))
    }

    fn versions(&mut self, inv: &Inventory) {
        let v = &inv.versions;
        let k = &v.kubernetes.0;
        if k.major != 1 || !SUPPORTED_KUBE_MINORS.contains(&k.minor) {
            self.error(
                &p(&["versions", "kubernetes"]),
                format!("Kubernetes {} is not supported", v.kubernetes),
                format!(
                    "use a 1.{}–1.{} release",
                    SUPPORTED_KUBE_MINORS.start(),
                    SUPPORTED_KUBE_MINORS.end()
                ),
            );
        }
        if let Some(kl) = &v.kubelet {
            let path = p(&["versions", "kubelet"]);
            if kl.0.major != k.major || kl.0 > *k {
                self.error(
                    &path,
                    format!("kubelet {kl} is newer than the API server ({})", v.kubernetes),
                    "kubelets may never be newer than the API server; upgrade the control plane first or lower versions.kubelet",
                );
            } else if k.minor.saturating_sub(kl.0.minor) > 3 {
                self.error(
                    &path,
                    format!("kubelet {kl} is more than three minor versions older than the API server ({})", v.kubernetes),
                    format!("use kubelet 1.{} or newer", k.minor.saturating_sub(3)),
                );
            }
        }
        if let Some(kc) = &v.kubectl
            && (kc.0.major != k.major || kc.0.minor.abs_diff(k.minor) > 1)
        {
            self.error(
                &p(&["versions", "kubectl"]),
                format!(
                    "kubectl {kc} is more than one minor version away from the API server ({})",
                    v.kubernetes
                ),
                format!(
                    "use a kubectl 1.{}, 1.{} or 1.{} release, or remove versions.kubectl",
                    k.minor.saturating_sub(1),
                    k.minor,
                    k.minor + 1
                ),
            );
        }
        let (a, b, c) = MIN_ETCD_FOR_KUBEADM;
        if crate::artifacts::etcd_from_debian(inv) {
            self.warning(
                &p(&["artifacts", "source"]),
                "artifacts.source is `debian`: software comes from Debian's packages in their versions (etcd 3.4 in bookworm), not `versions`",
                format!("fine for exercising etcd and the machines; kubeadm needs etcd {a}.{b}.{c} or newer from upstream artifacts"),
            );
        } else if v.etcd.0 < semver::Version::new(a, b, c) {
            self.warning(
                &p(&["versions", "etcd"]),
                format!("etcd {} is older than {a}.{b}.{c}, which kubeadm requires for an external etcd", v.etcd),
                "fine for exercising the etcd phase alone (e.g. Debian's etcd); use 3.5.24 or newer for a real cluster",
            );
        }
    }

    fn provider_blocks(&mut self, inv: &Inventory) {
        let blocks = [
            (ProviderKind::Local, inv.local.is_some()),
            (ProviderKind::Openstack, inv.openstack.is_some()),
            (ProviderKind::Vagrant, inv.vagrant.is_some()),
        ];
        for (kind, present) in blocks {
            if present && kind != inv.provider {
                let path = p(&[kind.key()]);
                let pos = self.key_pos(&path);
                self.out.push(
                    Diagnostic::error(
                        pos,
                        format!(
                            "`{}:` settings are given but the provider is `{}`",
                            kind.key(),
                            inv.provider.key()
                        ),
                    )
                    .with_field(kind.key())
                    .with_hint(format!(
                        "set `provider: {}`, or remove the `{}:` block",
                        kind.key(),
                        kind.key()
                    )),
                );
            }
        }
        if inv.provider == ProviderKind::Openstack && inv.openstack.is_none() {
            self.error(
                &p(&["provider"]),
                "the openstack provider needs an `openstack:` block",
                "add `openstack:` with at least `network`, `image` and `flavor`",
            );
        }
    }

    fn accounts(&mut self, inv: &Inventory) {
        use super::accounts::AccountSource;
        let a = &inv.accounts;
        // The platform phase would refuse it: the controller runs as a service, with no terminal
        // or environment to take a password from.
        if a.source == AccountSource::Ldap
            && crate::phases::platform::runs_controller(inv)
            && a.ldap
                .as_ref()
                .is_some_and(|l| l.bind_password_file.is_none())
        {
            self.error(
                &p(&["accounts", "ldap"]),
                "the accounts controller on the control planes needs the LDAP bind password in a file, and accounts.ldap.bind_password_file is not set",
                "set accounts.ldap.bind_password_file (relative to the inventory file), or platform.accounts_controller: false",
            );
        }
        if a.source == AccountSource::Ldap && a.ldap.is_none() {
            self.error(
                &p(&["accounts", "source"]),
                "accounts.source is ldap but there is no accounts.ldap section",
                "add accounts.ldap (url, bind_dn, tools_base, groups_base), or use source: file",
            );
        }
        if let Some(l) = &a.ldap
            && !(l.url.starts_with("ldaps://") || l.url.starts_with("ldap://"))
        {
            self.error(
                &p(&["accounts", "ldap", "url"]),
                format!("{:?} is not an ldaps:// or ldap:// URL", l.url),
                "use ldaps://HOST:636 (TLS), or ldap://HOST:389 (forgectl then requires StartTLS)",
            );
        }
        if let Some(l) = &a.ldap
            && !(1..=10_000).contains(&l.page_size)
        {
            self.error(
                &p(&["accounts", "ldap", "page_size"]),
                format!("page_size {} is out of range", l.page_size),
                "use at most the server's size limit (OpenLDAP's default is 500)",
            );
        }
        if a.renew_before_days >= a.cert_days {
            self.error(
                &p(&["accounts", "renew_before_days"]),
                format!(
                    "renew_before_days ({}) is not below cert_days ({}): every pass would renew every certificate",
                    a.renew_before_days, a.cert_days
                ),
                "renew some days before expiry, e.g. cert_days: 365 and renew_before_days: 30",
            );
        }
        if a.concurrency == 0 || a.concurrency > 256 {
            self.error(
                &p(&["accounts", "concurrency"]),
                format!("concurrency {} is out of range", a.concurrency),
                "use 1 to 256 API requests in flight (32 by default)",
            );
        }
        let hv = &a.home_volume;
        if hv.kind == super::accounts::HomeVolumeKind::Nfs && hv.server.is_none() {
            self.error(
                &p(&["accounts", "home_volume", "server"]),
                "home_volume.kind is nfs but no server is given",
                "set home_volume.server to the NFS server's name or address",
            );
        }
        if hv.mount_root.is_some() != hv.export_root.is_some() {
            self.error(
                &p(&["accounts", "home_volume", "mount_root"]),
                "mount_root and export_root go together",
                "give both (homes under mount_root are exported from export_root), or neither",
            );
        }
        self.quota_fits_pods(a, None);
        for name in a.overrides.keys() {
            self.quota_fits_pods(a, Some(name));
        }
        for name in a.overrides.keys() {
            if !is_dns_label(name, 52) {
                self.error(
                    &[
                        PathSeg::Key("accounts".into()),
                        PathSeg::Key("overrides".into()),
                        PathSeg::Key(name.clone()),
                    ],
                    format!("{name:?} is not a tool name"),
                    "tool names are DNS labels of at most 52 characters",
                );
            }
        }
    }

    /// Warns when a tool's `pods` quota cannot be reached with the per-container defaults: the
    /// requests (or limits) quota runs out first (the defaults, or those of tool `tool`'s
    /// override, reported only for what the override changes).
    fn quota_fits_pods(&mut self, a: &super::accounts::Accounts, tool: Option<&String>) {
        use super::quantity::parse;
        let over = tool.and_then(|t| a.overrides.get(t));
        if tool.is_some() && over.is_none() {
            return;
        }
        let l = a.limits_for(tool.map(String::as_str));
        let Some(pods) = l.quota.get("pods").and_then(|p| parse(p)) else {
            return;
        };
        for (key, resource, per, what) in [
            ("requests.cpu", "cpu", &l.default_request, "default_request"),
            (
                "requests.memory",
                "memory",
                &l.default_request,
                "default_request",
            ),
            ("limits.cpu", "cpu", &l.default, "default"),
            ("limits.memory", "memory", &l.default, "default"),
        ] {
            let (Some(total), Some(each)) = (
                l.quota.get(key).and_then(|q| parse(q)),
                per.get(resource).and_then(|q| parse(q)),
            ) else {
                continue;
            };
            if each <= 0.0 || pods * each <= total * (1.0 + 1e-9) {
                continue;
            }
            let path = match (tool, over) {
                (Some(t), Some(o)) => {
                    let own_default = if what == "default" {
                        &o.limits.default
                    } else {
                        &o.limits.default_request
                    };
                    let changes_it = o.quota.contains_key(key)
                        || o.quota.contains_key("pods")
                        || own_default.contains_key(resource);
                    if !changes_it {
                        continue;
                    }
                    p(&["accounts", "overrides", t.as_str()])
                }
                _ => {
                    // Where the admin wrote the cause: the quota entry, else the default.
                    let entry = p(&["accounts", "quota", key]);
                    let default = p(&["accounts", "limits", what, resource]);
                    if self.written(&entry) {
                        entry
                    } else if self.written(&default) {
                        default
                    } else {
                        p(&["accounts", "quota"])
                    }
                }
            };
            let whose = tool.map_or("every tool".to_string(), |t| format!("tool {t}"));
            let fit = (total / each + 1e-9).floor();
            let needed = if resource == "cpu" {
                format!("{}m", (pods * each * 1000.0).ceil())
            } else {
                format!("{}Mi", (pods * each / 1048576.0).ceil())
            };
            self.warning(
                &path,
                format!(
                    "{whose} can run only {fit} of its `pods: {}` with the {what} of {} {resource} per container: `{key}: {}` runs out first",
                    l.quota["pods"], per[resource], l.quota[key]
                ),
                format!("raise `{key}` to {needed}, or lower accounts.limits.{what}.{resource}"),
            );
        }
    }

    fn platform(&mut self, inv: &Inventory) {
        let pf = &inv.platform;
        if !pf.enabled {
            return;
        }
        let registries = pf.registries();
        for (kind, image) in &pf.images {
            let at = || {
                vec![
                    PathSeg::Key("platform".into()),
                    PathSeg::Key("images".into()),
                    PathSeg::Key(kind.clone()),
                ]
            };
            if !kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                || kind.is_empty()
            {
                self.error(
                    &at(),
                    format!("{kind:?} is not an image type name"),
                    "use letters, digits, '.', '-' and '_' (e.g. python3.11)",
                );
            }
            if !crate::admission::rules::image_allowed(&registries, image) {
                self.error(
                    &at(),
                    format!(
                        "{image} is not from an allowed registry ({})",
                        registries.join(", ")
                    ),
                    "add its registry to platform.allowed_registries, or use an image from one",
                );
            }
        }
        if registries.is_empty() {
            self.error(
                &p(&["platform", "allowed_registries"]),
                "no registry is allowed: every tool pod would be refused",
                "list the registries tool images come from, or give platform.images",
            );
        }
        let w = &pf.webhook;
        if !(1..=30).contains(&w.timeout_seconds) {
            self.error(
                &p(&["platform", "webhook", "timeout_seconds"]),
                format!("timeout_seconds {} is out of range", w.timeout_seconds),
                "the API server accepts 1 to 30 seconds; keep it short (5 by default)",
            );
        }
        let d = &pf.dashboard;
        let mut ports = vec![
            (w.port, "webhook.port"),
            (pf.metrics_port, "metrics_port"),
            (inv.api.port, "api.port"),
        ];
        if d.enabled {
            ports.push((d.port, "dashboard.port"));
            if !is_dns_label(&d.name, 63) {
                self.error(
                    &p(&["platform", "dashboard", "name"]),
                    format!("{:?} is not a DNS label", d.name),
                    "use lower-case letters, digits and '-' (the default is status)",
                );
            }
        }
        for (i, (a, an)) in ports.iter().enumerate() {
            for (b, bn) in &ports[i + 1..] {
                if a == b {
                    self.error(
                        &p(&["platform", "webhook", "port"]),
                        format!("{an} and {bn} are both {a} on the control planes"),
                        "give each listener its own port",
                    );
                }
            }
        }
        if pf.resync_seconds == 0 {
            self.error(
                &p(&["platform", "resync_seconds"]),
                "resync_seconds is 0",
                "resync every 60 s or more",
            );
        }
    }

    fn files(&mut self, inv: &Inventory, base: &Path) {
        let mut keys = vec![(p(&["ssh", "key"]), inv.ssh.key.clone(), "SSH key")];
        if let Some(b) = &inv.ssh.bastion {
            keys.push((p(&["ssh", "bastion", "key"]), b.key.clone(), "SSH key"));
        }
        let front = &inv.ingress.tls_front;
        if inv.ingress.enabled && front.enabled {
            keys.push((
                p(&["ingress", "tls_front", "cert_file"]),
                front.cert_file.clone(),
                "TLS front certificate",
            ));
            keys.push((
                p(&["ingress", "tls_front", "key_file"]),
                front.key_file.clone(),
                "TLS front key",
            ));
        }
        for (path, key, what) in keys {
            let Some(key) = key else { continue };
            let full = resolve_path(&key, base);
            if let Err(e) = std::fs::File::open(&full) {
                self.error(
                    &path,
                    format!("cannot read the {what} {}: {e}", full.display()),
                    "give the path of a readable file (relative paths are relative to the inventory file)",
                );
            }
        }
        let a = &inv.artifacts;
        match a.source {
            ArtifactSource::Mirror if a.mirror_url.is_none() => self.error(
                &p(&["artifacts", "source"]),
                "artifacts.source is `mirror` but artifacts.mirror_url is not set",
                "set artifacts.mirror_url to the mirror's base URL",
            ),
            ArtifactSource::Local => match &a.dir {
                None => self.error(
                    &p(&["artifacts", "source"]),
                    "artifacts.source is `local` but artifacts.dir is not set",
                    "set artifacts.dir to the directory that holds the artifacts",
                ),
                Some(d) if !resolve_path(d, base).is_dir() => self.error(
                    &p(&["artifacts", "dir"]),
                    format!(
                        "artifacts.dir {} is not a readable directory",
                        resolve_path(d, base).display()
                    ),
                    "create it with `forgectl artifacts fetch --to DIR`, or fix the path",
                ),
                _ => {}
            },
            _ => {}
        }
        if let Some(d) = &a.images {
            let full = resolve_path(d, base);
            match crate::images::scan(&full) {
                Ok(found) if found.is_empty() => self.error(
                    &p(&["artifacts", "images"]),
                    format!("artifacts.images {} holds no image archive (*.tar)", full.display()),
                    "put the images' archives there (`forgectl artifacts fetch --images --to DIR`), or remove artifacts.images",
                ),
                Ok(_) => {}
                Err(e) => self.error(
                    &p(&["artifacts", "images"]),
                    format!("artifacts.images: {e}"),
                    "give a directory of docker-archive or OCI image archives (*.tar)",
                ),
            }
        }
        if let Some(url) = &a.mirror_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            self.error(
                &p(&["artifacts", "mirror_url"]),
                format!("artifacts.mirror_url `{url}` is not an http(s) URL"),
                "write it like https://mirror.example.org/forgectl",
            );
        }
    }

    fn ssh(&mut self, inv: &Inventory) {
        let s = &inv.ssh;
        // ssh.user's shape (empty included) is checked with the other free strings (strings.rs).
        if inv.etcd.client_port == inv.etcd.peer_port {
            // Point at the one that was written (the other is the default).
            let (here, other) = match self.written(&p(&["etcd", "peer_port"])) {
                true => ("peer_port", "client_port"),
                false => ("client_port", "peer_port"),
            };
            self.error(
                &p(&["etcd", here]),
                format!(
                    "etcd.{here} {} is etcd.{other} too: etcd cannot listen for both on one port",
                    inv.etcd.peer_port
                ),
                "use two ports (the defaults are 2379 for clients and 2380 for peers)",
            );
        }
        for (section, key, value) in [
            ("ssh", "concurrency", s.concurrency),
            ("ssh", "connect_timeout", s.connect_timeout),
            ("ssh", "command_timeout", s.command_timeout),
            ("upgrade", "max_unavailable", inv.upgrade.max_unavailable),
            ("upgrade", "drain_timeout", inv.upgrade.drain_timeout),
        ] {
            if value == 0 {
                self.error(
                    &p(&[section, key]),
                    format!("{section}.{key} must be at least 1"),
                    "remove it to use the default",
                );
            }
        }
    }
}

fn address_path(origin: &[PathSeg]) -> Option<Vec<PathSeg>> {
    match origin.last() {
        Some(PathSeg::Key(k)) if k == "name" => {
            let mut v = origin[..origin.len() - 1].to_vec();
            v.push(PathSeg::Key("address".into()));
            Some(v)
        }
        _ => None,
    }
}
