//! Checks of values that land in other grammars (exports(5), nfs(5) mount options, DNS names,
//! the cloud's settings): each is refused here, with its line, when the place it ends up in would
//! refuse it later or read it as something else.

use super::{Checker, is_dns1123_label, p};
use crate::inventory::machines::Machine;
use crate::inventory::model::{Inventory, ProviderKind, Role};
use crate::inventory::yaml_tree::PathSeg;

/// Where debootstrap keeps a script per suite it can make.
const DEBOOTSTRAP_SCRIPTS: &str = "/usr/share/debootstrap/scripts";

/// exports(5) options forgectl passes through as they are.
const EXPORT_FLAGS: &[&str] = &[
    "rw",
    "ro",
    "sync",
    "async",
    "secure",
    "insecure",
    "wdelay",
    "no_wdelay",
    "hide",
    "nohide",
    "crossmnt",
    "subtree_check",
    "no_subtree_check",
    "secure_locks",
    "insecure_locks",
    "auth_nlm",
    "no_auth_nlm",
    "root_squash",
    "no_root_squash",
    "all_squash",
    "no_all_squash",
    "nordirplus",
    "pnfs",
    "no_pnfs",
    "security_label",
];

/// Why one exports(5) option is not one forgectl accepts, or None.
fn export_option_problem(opt: &str) -> Option<String> {
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    match opt.split_once('=') {
        None if EXPORT_FLAGS.contains(&opt) => None,
        Some(("anonuid" | "anongid", v)) if digits(v) => None,
        Some(("fsid", v)) if digits(v) || v == "root" => None,
        Some(("sec", v))
            if v.split(':')
                .all(|f| matches!(f, "sys" | "krb5" | "krb5i" | "krb5p")) =>
        {
            None
        }
        _ if opt.is_empty() => Some("an empty option (two commas, or one at an end)".into()),
        _ => Some(format!(
            "`{opt}` is not an exports(5) option forgectl knows"
        )),
    }
}

/// Why `path` is not an absolute, normalised path of plain characters, or None.
pub fn plain_absolute_path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("it is not absolute");
    }
    if path == "/" {
        return Some("it is the root directory");
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
    {
        return Some("only letters, digits, `/`, `.`, `_` and `-` are allowed");
    }
    if path.ends_with('/') || path.contains("//") {
        return Some("it is not normalised (a trailing `/` or `//`)");
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Some("it has `.` or `..` components");
    }
    None
}

impl Checker<'_> {
    /// NFS exports, their options and the mount options.
    pub(super) fn nfs_values(&mut self, inv: &Inventory) {
        let nfs = &inv.storage.nfs;
        for (i, e) in nfs.exports.iter().enumerate() {
            let at = |field: &str| {
                vec![
                    PathSeg::Key("storage".into()),
                    PathSeg::Key("nfs".into()),
                    PathSeg::Key("exports".into()),
                    PathSeg::Index(i),
                    PathSeg::Key(field.into()),
                ]
            };
            if !is_dns1123_label(&e.name) {
                self.error(
                    &at("name"),
                    format!(
                        "storage.nfs.exports[{i}].name {:?} is not a DNS label",
                        e.name
                    ),
                    "a short lowercase name of letters, digits and `-` (home, project)",
                );
            }
        }
        let opts = p(&["storage", "nfs", "export_options"]);
        let problems: Vec<String> = nfs
            .export_options
            .split(',')
            .filter_map(export_option_problem)
            .collect();
        if !problems.is_empty() {
            self.error(
                &opts,
                format!(
                    "storage.nfs.export_options {:?}: {}",
                    nfs.export_options,
                    problems.join("; ")
                ),
                "a comma-separated list of exports(5) options (rw, sync, no_subtree_check, root_squash, anonuid=N, sec=sys, …); who may mount is storage.nfs.clients",
            );
        } else if nfs.export_options.split(',').any(|o| o == "no_root_squash") {
            self.warning(
                &opts,
                "storage.nfs.export_options has no_root_squash: root in any tool's pod is root on the tool homes",
                "keep root_squash (the default) unless every client is trusted",
            );
        }
        let mount_ok = |o: &str| match o.split_once('=') {
            None => !o.is_empty() && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            Some((k, v)) => {
                !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".:_-/".contains(&b))
            }
        };
        if let Some(bad) = nfs.mount_options.split(',').find(|o| !mount_ok(o)) {
            self.error(
                &p(&["storage", "nfs", "mount_options"]),
                format!(
                    "storage.nfs.mount_options {:?}: {bad:?} is not a mount option",
                    nfs.mount_options
                ),
                "a comma-separated list of nfs(5) options, like vers=4.2,hard,timeo=600",
            );
        }
    }

    /// The tool domain and the TLS front.
    pub(super) fn ingress_values(&mut self, inv: &Inventory, machines: &[Machine]) {
        let ing = &inv.ingress;
        let d = ing.tool_domain.as_str();
        if d.len() > 253 || !d.split('.').all(is_dns1123_label) || !d.contains('.') {
            self.error(
                &p(&["ingress", "tool_domain"]),
                format!("ingress.tool_domain {d:?} is not a DNS domain"),
                "the domain alone, like toolforge.org: no scheme, no `*.`, no trailing dot; tools are NAME.<tool_domain>",
            );
        }
        let f = &ing.tls_front;
        if !(ing.enabled && f.enabled) {
            return;
        }
        if !machines.iter().any(|m| m.has(Role::Lb)) {
            self.error(
                &p(&["ingress", "tls_front", "enabled"]),
                "ingress.tls_front is enabled but no machine has the role `lb`: the TLS front runs on the lb machines",
                "add the role lb to a group, or set ingress.tls_front.enabled: false",
            );
        }
        if f.cert_file.is_some() != f.key_file.is_some() {
            let missing = if f.cert_file.is_none() {
                "cert_file"
            } else {
                "key_file"
            };
            self.error(
                &p(&["ingress", "tls_front"]),
                format!("ingress.tls_front has one of cert_file and key_file but no {missing}"),
                "give both (PEM), or neither: forgectl then issues a certificate from a CA of its own",
            );
        }
    }

    /// The local machines' Debian suite: one debootstrap on this host knows (when it is
    /// installed; without it the provider says what to install).
    pub(super) fn local_values(&mut self, inv: &Inventory) {
        if inv.provider != ProviderKind::Local {
            return;
        }
        let suite = inv.local.clone().unwrap_or_default().suite;
        let scripts = std::path::Path::new(DEBOOTSTRAP_SCRIPTS);
        let plain = !suite.is_empty()
            && suite
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !plain || (scripts.is_dir() && !scripts.join(&suite).exists()) {
            self.error(
                &p(&["local", "suite"]),
                format!("local.suite {suite:?} is not a suite debootstrap knows on this host"),
                "a Debian suite such as bookworm (the default; see /usr/share/debootstrap/scripts)",
            );
        }
    }

    /// The cloud's settings that the cloud would refuse, or that need another setting.
    pub(super) fn openstack_values(&mut self, inv: &Inventory) {
        if inv.provider != ProviderKind::Openstack {
            return;
        }
        let Some(os) = &inv.openstack else { return };
        if let Some(i) = &os.interface
            && !matches!(i.as_str(), "public" | "internal" | "admin")
        {
            self.error(
                &p(&["openstack", "interface"]),
                format!("openstack.interface {i:?} is not an endpoint interface"),
                "one of public, internal or admin (or leave it out for the cloud's own)",
            );
        }
        if os.floating_network.is_none() {
            for (gi, g) in inv.groups.iter().enumerate() {
                if g.openstack.as_ref().is_some_and(|o| o.floating_ip) {
                    self.error(
                        &[
                            PathSeg::Key("groups".into()),
                            PathSeg::Index(gi),
                            PathSeg::Key("openstack".into()),
                            PathSeg::Key("floating_ip".into()),
                        ],
                        format!(
                            "group `{}` asks for floating IPs but openstack.floating_network is not set",
                            g.name
                        ),
                        "set openstack.floating_network to the external network (name or id)",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_options() {
        assert_eq!(export_option_problem("rw"), None);
        assert_eq!(export_option_problem("anonuid=65534"), None);
        assert_eq!(export_option_problem("sec=krb5p:sys"), None);
        assert!(export_option_problem("no_subtree_check) *(rw").is_some());
        assert!(export_option_problem("anonuid=x").is_some());
        assert!(export_option_problem("").is_some());
    }

    #[test]
    fn paths() {
        assert_eq!(plain_absolute_path_problem("/srv/tools/home"), None);
        for bad in [
            "srv", "/", "/a/", "/a//b", "/a/../b", "/a b", "/a\nb", "/a;b",
        ] {
            assert!(plain_absolute_path_problem(bad).is_some(), "{bad:?}");
        }
    }
}
