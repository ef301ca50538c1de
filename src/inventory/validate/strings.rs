//! Free strings of the inventory that land in another grammar (a TOML file and its path, a
//! certificate's SANs, kubeadm's flags, a Vagrantfile, image references in manifests, a shell line):
//! each must look like what it names, so no value can carry that grammar's syntax (a quote, a
//! newline, `;`, `$(`, `)` …). Values that reach only an API through a client library (OpenStack
//! names, LDAP DNs) or files forgectl reads itself are not checked here.

use super::{Checker, is_dns1123_label, p};
use crate::inventory::model::{Inventory, ProviderKind};
use crate::inventory::yaml_tree::PathSeg;

/// `host[:port]`: a DNS name or IPv4 address, and an optional port.
pub fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    let host_ok = host.parse::<std::net::Ipv4Addr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|l| is_dns1123_label(&l.to_ascii_lowercase())));
    port_ok && host_ok
}

/// An http(s) URL of plain characters: scheme, `host[:port]`, an optional path.
pub fn is_plain_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    is_registry_host(host)
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '~'))
}

/// An image reference (`registry.k8s.io/pause:3.10.2`, `name@sha256:…`) of plain characters that
/// the OCI reference grammar accepts.
pub fn is_image_reference(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
        && oci_client::Reference::try_from(s).is_ok()
}

/// A registry with an optional path (`docker.io/calico`): `host[:port]` then path segments of
/// lowercase letters, digits, `.`, `_` and `-`.
pub fn is_registry_path(s: &str) -> bool {
    let mut parts = s.trim_end_matches('/').split('/');
    parts.next().is_some_and(is_registry_host)
        && parts.all(|seg| {
            !seg.is_empty()
                && seg.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
        })
}

/// A certificate SAN: an IP address or a DNS name (a leading `*.` allowed).
fn is_san(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (s.len() <= 253
            && s.strip_prefix("*.")
                .unwrap_or(s)
                .split('.')
                .all(is_dns1123_label))
}

/// A word of letters, digits and the given extra characters, not empty.
fn is_word(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// A word that a YAML file would read as a string when written bare (not `true`, `null`, `1`).
fn is_yaml_string_word(s: &str, extra: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    is_word(s, extra)
        && !KEYWORDS.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
}

impl Checker<'_> {
    /// Every free string with a shape of its own.
    pub(super) fn string_shapes(&mut self, inv: &Inventory) {
        let rt = &inv.runtime;
        for (registry, mirrors) in &rt.registry_mirrors {
            let at = p(&["runtime", "registry_mirrors", registry.as_str()]);
            if !is_registry_host(registry) {
                self.error(
                    &at,
                    format!("runtime.registry_mirrors: {registry:?} is not a registry host"),
                    "key each entry by the registry's host[:port] (docker.io, registry.k8s.io, 10.77.0.1:5000); it names a directory of containerd's certs.d",
                );
            }
            for (i, m) in mirrors.iter().enumerate() {
                if !is_plain_url(m) {
                    let mut path = at.clone();
                    path.push(PathSeg::Index(i));
                    self.error(
                        &path,
                        format!(
                            "runtime.registry_mirrors.{registry}: {m:?} is not a plain http(s) URL"
                        ),
                        "write it like https://mirror.example.org or http://10.77.0.1:5000",
                    );
                }
            }
        }
        let images = [
            (p(&["runtime", "sandbox_image"]), rt.sandbox_image.clone()),
            (p(&["ingress", "image"]), Some(inv.ingress.image.clone())),
            (
                p(&["ingress", "default_backend_image"]),
                Some(inv.ingress.default_backend_image.clone()),
            ),
            (
                p(&["storage", "cinder", "plugin_image"]),
                Some(inv.storage.cinder.plugin_image.clone()),
            ),
        ];
        let platform_images = inv
            .platform
            .images
            .iter()
            .map(|(k, v)| (p(&["platform", "images", k.as_str()]), Some(v.clone())));
        for (path, image) in images.into_iter().chain(platform_images) {
            if let Some(i) = image
                && !is_image_reference(&i)
            {
                self.error(
                    &path,
                    format!("{} {i:?} is not an image reference", path_name(&path)),
                    "REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST, like registry.k8s.io/pause:3.10.2",
                );
            }
        }
        for (path, reg) in [
            (p(&["calico", "registry"]), inv.calico.registry.as_str()),
            (
                p(&["storage", "cinder", "sidecar_registry"]),
                inv.storage.cinder.sidecar_registry.as_str(),
            ),
        ] {
            if !is_registry_path(reg) {
                self.error(
                    &path,
                    format!("{} {reg:?} is not a registry (and path)", path_name(&path)),
                    "host[:port] and an optional path, like docker.io/calico",
                );
            }
        }
        for (i, r) in inv.platform.allowed_registries.iter().enumerate() {
            if !is_registry_path(r) {
                let mut path = p(&["platform", "allowed_registries"]);
                path.push(PathSeg::Index(i));
                self.error(
                    &path,
                    format!("platform.allowed_registries: {r:?} is not a registry (and path)"),
                    "host[:port] and an optional path, like registry.example.org/toolforge",
                );
            }
        }
        let api = &inv.api;
        if api.vip_interface.len() > 15 || !is_word(&api.vip_interface, "._-") {
            self.error(
                &p(&["api", "vip_interface"]),
                format!(
                    "api.vip_interface {:?} is not a network interface name",
                    api.vip_interface
                ),
                "at most 15 letters, digits, `.`, `_` and `-`, like eth0 or host0",
            );
        }
        for (i, san) in api.extra_sans.iter().enumerate() {
            if !is_san(san) {
                let mut path = p(&["api", "extra_sans"]);
                path.push(PathSeg::Index(i));
                self.error(
                    &path,
                    format!("api.extra_sans: {san:?} is neither an IP address nor a DNS name"),
                    "a DNS name (lowercase, `*.` allowed in front) or an IP address",
                );
            }
        }
        if inv.kubeadm.admission_plugins.is_empty() {
            self.error(
                &p(&["kubeadm", "admission_plugins"]),
                "kubeadm.admission_plugins is empty: kube-apiserver's --enable-admission-plugins would be given nothing",
                "list at least NodeRestriction (remove the key for the defaults)",
            );
        }
        for (field, items, extra, hint) in [
            (
                "admission_plugins",
                &inv.kubeadm.admission_plugins,
                "",
                "plugin names as kube-apiserver knows them, like NodeRestriction",
            ),
            (
                "ignore_preflight_errors",
                &inv.kubeadm.ignore_preflight_errors,
                "-._",
                "check names as kubeadm prints them, like Swap or FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
            ),
        ] {
            for (i, item) in items.iter().enumerate() {
                if !is_yaml_string_word(item, extra) {
                    let mut path = p(&["kubeadm", field]);
                    path.push(PathSeg::Index(i));
                    self.error(
                        &path,
                        format!("kubeadm.{field}: {item:?} is not a name kubeadm takes"),
                        hint,
                    );
                }
            }
        }
        for (path, user) in std::iter::once((p(&["ssh", "user"]), Some(&inv.ssh.user))).chain(
            inv.ssh
                .bastion
                .as_ref()
                .map(|b| (p(&["ssh", "bastion", "user"]), b.user.as_ref())),
        ) {
            if let Some(u) = user
                && (!is_word(u, "_-.") || u.starts_with('-'))
            {
                self.error(
                    &path,
                    format!("{} {u:?} is not a login name", path_name(&path)),
                    "letters, digits, `_`, `-` and `.`, like debian or root (remove it for the default)",
                );
            }
        }
        if inv.provider == ProviderKind::Local {
            let local = inv.local.clone().unwrap_or_default();
            for (i, pkg) in local.extra_packages.iter().enumerate() {
                let ok = pkg.len() >= 2
                    && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && pkg.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
                    });
                if !ok {
                    let mut path = p(&["local", "extra_packages"]);
                    path.push(PathSeg::Index(i));
                    self.error(
                        &path,
                        format!("local.extra_packages: {pkg:?} is not a Debian package name"),
                        "lowercase letters, digits, `+`, `-` and `.`, like htop",
                    );
                }
            }
        }
        if let Some(v) = &inv.vagrant
            && !is_word(&v.box_name, "._/-")
        {
            self.error(
                &p(&["vagrant", "box"]),
                format!("vagrant.box {:?} is not a box name", v.box_name),
                "a Vagrant Cloud name like debian/bookworm64",
            );
        }
    }
}

/// A host name (DNS) or an IP address.
fn is_host(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (!s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label))
}

/// A Kubernetes quantity of plain characters (`125m`, `2Gi`, `16`).
fn is_quantity(s: &str) -> bool {
    is_word(s, ".+-") && crate::inventory::quantity::parse(s).is_some()
}

/// A name shown in the cloud or a manifest: printable, without quotes, backslashes or controls.
fn is_display_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| !c.is_control() && !matches!(c, '"' | '\'' | '\\' | '`' | '$'))
}

impl Checker<'_> {
    /// The accounts' names, prefixes and quantities (they reach RBAC objects, quotas, LimitRanges
    /// and the homes' volumes).
    pub(super) fn account_strings(&mut self, inv: &Inventory) {
        let a = &inv.accounts;
        let prefix_ok = |s: &str, extra: &str| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
        };
        let mut prefixes = vec![
            (
                p(&["accounts", "namespace_prefix"]),
                a.namespace_prefix.as_str(),
                "-",
            ),
            (
                p(&["accounts", "user_prefix"]),
                a.user_prefix.as_str(),
                "-.:_",
            ),
        ];
        if let Some(l) = &a.ldap {
            prefixes.push((
                p(&["accounts", "ldap", "tool_prefix"]),
                l.tool_prefix.as_str(),
                "-._",
            ));
        }
        // A namespace is the prefix and a tool name (at most 52 characters): a DNS label of 63.
        if a.namespace_prefix.len() > 11 {
            self.error(
                &p(&["accounts", "namespace_prefix"]),
                format!(
                    "accounts.namespace_prefix {:?} is longer than 11 characters: with a tool name of 52, a namespace name would pass 63",
                    a.namespace_prefix
                ),
                "use a short prefix such as tool-",
            );
        }
        for (path, value, extra) in prefixes {
            if !prefix_ok(value, extra) {
                self.error(
                    &path,
                    format!("{} {value:?} is not a name prefix", path_name(&path)),
                    format!("lowercase letters, digits and `{extra}`, like tool-"),
                );
            }
        }
        for (i, role) in a.admin_cluster_roles.iter().enumerate() {
            if role.is_empty() || role == "." || role == ".." || !prefix_ok(role, "-.:") {
                let mut path = p(&["accounts", "admin_cluster_roles"]);
                path.push(PathSeg::Index(i));
                self.error(
                    &path,
                    format!("accounts.admin_cluster_roles: {role:?} is not a ClusterRole name"),
                    "lowercase letters, digits, `-`, `.` and `:`, like edit or system:aggregate-to-edit",
                );
            }
        }
        let hv = &a.home_volume;
        if let Some(server) = &hv.server
            && !is_host(server)
        {
            self.error(
                &p(&["accounts", "home_volume", "server"]),
                format!("accounts.home_volume.server {server:?} is not a host name or address"),
                "the NFS server's address or DNS name",
            );
        }
        if !is_quantity(&hv.size) {
            self.error(
                &p(&["accounts", "home_volume", "size"]),
                format!("accounts.home_volume.size {:?} is not a quantity", hv.size),
                "a Kubernetes quantity like 10Gi",
            );
        }
        let mut maps: Vec<(Vec<PathSeg>, &std::collections::BTreeMap<String, String>)> = vec![
            (p(&["accounts", "quota"]), &a.quota),
            (p(&["accounts", "limits", "default"]), &a.limits.default),
            (
                p(&["accounts", "limits", "default_request"]),
                &a.limits.default_request,
            ),
            (p(&["accounts", "limits", "max"]), &a.limits.max),
        ];
        for (tool, o) in &a.overrides {
            let base = |rest: &[&str]| {
                let mut v = p(&["accounts", "overrides", tool.as_str()]);
                v.extend(rest.iter().map(|r| PathSeg::Key((*r).into())));
                v
            };
            maps.push((base(&["quota"]), &o.quota));
            maps.push((base(&["limits", "default"]), &o.limits.default));
            maps.push((
                base(&["limits", "default_request"]),
                &o.limits.default_request,
            ));
            maps.push((base(&["limits", "max"]), &o.limits.max));
        }
        for (at, map) in maps {
            for (key, value) in map {
                let mut path = at.clone();
                path.push(PathSeg::Key(key.clone()));
                if key.is_empty() || !prefix_ok(key, "./-") {
                    self.error(
                        &path,
                        format!("{}: {key:?} is not a resource name", path_name(&at)),
                        "a resource name like cpu, memory, requests.cpu or count/pods",
                    );
                } else if !is_quantity(value) {
                    self.error(
                        &path,
                        format!("{} {value:?} is not a quantity", path_name(&path)),
                        "a Kubernetes quantity like 500m, 512Mi or 16",
                    );
                }
            }
        }
    }

    /// The API endpoint and the Cinder storage class's names.
    pub(super) fn cluster_strings(&mut self, inv: &Inventory) {
        // IPv4 or a DNS name: an IPv6 address would need brackets in every URL made of it.
        if let Some(e) = &inv.api.endpoint
            && (!is_host(e) || e.parse::<std::net::Ipv6Addr>().is_ok())
        {
            self.error(
                &p(&["api", "endpoint"]),
                format!("api.endpoint {e:?} is not a host name or address"),
                "give the host alone (api.example.org or 192.0.2.10), and its port as api.port",
            );
        }
        let c = &inv.storage.cinder;
        if c.storage_class.len() > 253 || !c.storage_class.split('.').all(is_dns1123_label) {
            self.error(
                &p(&["storage", "cinder", "storage_class"]),
                format!(
                    "storage.cinder.storage_class {:?} is not a Kubernetes object name",
                    c.storage_class
                ),
                "lowercase letters, digits, `-` and `.`, like cinder",
            );
        }
        for (field, value) in [
            ("availability_zone", &c.availability_zone),
            ("volume_type", &c.volume_type),
        ] {
            if let Some(v) = value
                && !is_display_name(v)
            {
                self.error(
                    &p(&["storage", "cinder", field]),
                    format!("storage.cinder.{field} {v:?} has quotes, `$`, backslashes or control characters"),
                    "the name as the cloud lists it",
                );
            }
        }
    }
}

/// A path as messages name the field (`runtime.sandbox_image`).
fn path_name(path: &[PathSeg]) -> String {
    crate::inventory::yaml_tree::path_to_string(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_registry_host("registry.k8s.io"));
        assert!(is_registry_host("10.77.0.1:5000"));
        assert!(!is_registry_host("../../etc"));
        assert!(!is_registry_host("docker.io\"]\n[x"));
        assert!(is_plain_url("https://mirror.example.org/v2"));
        assert!(!is_plain_url("https://m.example.org\"\n[host.x]"));
        assert!(is_image_reference("registry.k8s.io/pause:3.10.2"));
        assert!(!is_image_reference("nginx\"\n  command: [sh]"));
        assert!(is_registry_path("docker.io/calico"));
        assert!(!is_registry_path("docker.io/calico\n"));
        assert!(is_san("*.toolforge.org"));
        assert!(is_san("192.0.2.1"));
        assert!(!is_san("a b"));
    }
}
