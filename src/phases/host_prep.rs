//! The host-prep phase: what every Kubernetes machine needs before the runtime and kubelet: swap
//! off (and kept off), kernel modules and sysctls, host name and /etc/hosts, clock in sync, the
//! packages kubelet and kube-proxy call.
//!
//! Local machines share the host's kernel: swap, kernel modules, the clock and host-wide sysctls
//! are the host's, so forgectl only checks the modules there and sets per-network-namespace
//! sysctls; it never turns the host's swap off or loads modules into it from a machine.

use serde::Serialize;

use super::etcd::address_or_name;
use super::{Phase, PhaseError, PlanContext, Target};
use crate::inventory::{Machine, ProviderKind, Role};
use crate::plan::{Action, Op, Readiness};

/// Prepares the hosts for Kubernetes.
pub struct HostPrep;

/// The machines of the cluster by name.
pub const HOSTS_FILE: Target = Target {
    path: "/etc/hosts",
    mode: 0o644,
    owner: "root:root",
};
/// Kubernetes' sysctls.
pub const SYSCTL_FILE: Target = Target {
    path: "/etc/sysctl.d/90-forgectl-kubernetes.conf",
    mode: 0o644,
    owner: "root:root",
};
/// Kernel modules loaded at boot.
pub const MODULES_FILE: Target = Target {
    path: "/etc/modules-load.d/forgectl-kubernetes.conf",
    mode: 0o644,
    owner: "root:root",
};

/// Packages kubelet, kube-proxy and Calico call on a node.
pub const NODE_PACKAGES: &[&str] = &["conntrack", "socat", "ethtool", "iptables", "ipset", "kmod"];

/// Kernel modules Kubernetes needs, each with a check that shows the kernel has it (loaded or
/// built in).
const MODULES: &[(&str, &str)] = &[
    ("overlay", "grep -qw overlay /proc/filesystems"),
    ("br_netfilter", "test -d /proc/sys/net/bridge"),
];

/// The network sysctls a node needs, with their values (per network namespace: for local
/// machines the local provider sets them when it starts one).
pub const NET_SYSCTLS: &[(&str, &str)] = &[
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("net.ipv4.ip_forward", "1"),
];
const HOST_WIDE_SYSCTLS: &[(&str, &str)] = &[
    ("fs.inotify.max_user_instances", "8192"),
    ("fs.inotify.max_user_watches", "524288"),
];

#[derive(Serialize)]
struct Entry {
    name: String,
    address: String,
}

#[derive(Serialize)]
struct HostVars<'a> {
    cluster: &'a str,
    name: &'a str,
    machines: &'a [Entry],
    listed: bool,
    modules: Vec<&'static str>,
    host_wide: bool,
}

/// A check that every `key = value` holds now.
fn sysctl_check(keys: &[(&str, &str)]) -> String {
    keys.iter()
        .map(|(k, v)| format!("test \"$(sysctl -n {k} 2>/dev/null)\" = {v}"))
        .collect::<Vec<_>>()
        .join(" && ")
}

impl Phase for HostPrep {
    fn name(&self) -> &'static str {
        "host-prep"
    }

    fn title(&self) -> &'static str {
        "Swap off, kernel modules, sysctls, host names, packages"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let local = inv.provider == ProviderKind::Local;
        let machines: Vec<Entry> = ctx
            .inv
            .machines
            .iter()
            .filter(|m| m.address.is_some())
            .map(|m| Entry {
                name: m.name.clone(),
                address: address_or_name(m),
            })
            .collect();
        let mut sysctls = NET_SYSCTLS.to_vec();
        if !local {
            sysctls.extend_from_slice(HOST_WIDE_SYSCTLS);
        }
        let mut actions = Vec::new();
        for m in hosts {
            let h = &m.name;
            let node = m.has(Role::ControlPlane) || m.has(Role::Worker);
            let vars = HostVars {
                cluster: &inv.name,
                name: h,
                machines: &machines,
                listed: machines.iter().any(|e| &e.name == h),
                modules: MODULES.iter().map(|(n, _)| *n).collect(),
                host_wide: !local,
            };
            let q = crate::ssh::shell_quote(h);
            actions.push(Action::run(
                h,
                &format!("hostname {q} && echo {q} > /etc/hostname"),
                Some(&format!(
                    "test \"$(hostname)\" = {q} && test \"$(cat /etc/hostname)\" = {q}"
                )),
                "host name = machine name",
            ));
            actions.push(ctx.rendered(
                h,
                &HOSTS_FILE,
                "host/hosts.tera",
                &vars,
                "every machine of the cluster by name",
            )?);
            if !node {
                continue;
            }
            actions.push(Action::local(
                Some(h),
                Op::InstallPackages {
                    packages: NODE_PACKAGES.iter().map(|p| p.to_string()).collect(),
                },
                "tools kubelet, kube-proxy and Calico call",
            ));
            if local {
                let have = MODULES
                    .iter()
                    .map(|(_, c)| *c)
                    .collect::<Vec<_>>()
                    .join(" && ");
                actions.push(Action::run(
                    h,
                    "echo 'the host kernel lacks overlay or br_netfilter; local machines share it: run `modprobe overlay br_netfilter` on the host' >&2; exit 1",
                    Some(&have),
                    "the host kernel has overlay and br_netfilter (local machines share it)",
                ));
            } else {
                actions.push(ctx.rendered(
                    h,
                    &MODULES_FILE,
                    "host/modules.conf.tera",
                    &vars,
                    "kernel modules at boot",
                )?);
                for (module, check) in MODULES {
                    actions.push(Action::run(
                        h,
                        &format!("modprobe {module}"),
                        Some(check),
                        &format!("load {module} now"),
                    ));
                }
                actions.push(Action::run(
                    h,
                    r"swapoff -a && sed -ri '/^[^#]\S*\s+\S+\s+swap\s/s/^/#/' /etc/fstab && systemctl mask swap.target",
                    Some(
                        r#"test -z "$(swapon --noheadings --show)" && ! grep -Eq '^[^#]\S*\s+\S+\s+swap\s' /etc/fstab && test "$(systemctl is-enabled swap.target 2>/dev/null)" = masked"#,
                    ),
                    "swap off now and after reboots (kubelet refuses to run with swap)",
                ));
                actions.push(Action::run(
                    h,
                    "echo 'the clock is not NTP-synchronised (timedatectl); TLS and etcd need synchronised clocks: set up chrony or systemd-timesyncd' >&2; exit 1",
                    Some("timedatectl show -p NTPSynchronized --value | grep -qx yes"),
                    "the clock is synchronised",
                ));
            }
            actions.push(ctx.rendered(
                h,
                &SYSCTL_FILE,
                "host/sysctl.conf.tera",
                &vars,
                "sysctls Kubernetes needs",
            )?);
            if local {
                actions.push(Action::run(
                    h,
                    "echo 'the network sysctls Kubernetes needs do not hold; the local provider sets them when it starts a machine (its /proc/sys is read-only): restart it with `forgectl machines stop` / `start`' >&2; exit 1",
                    Some(&sysctl_check(&sysctls)),
                    "the sysctls hold (set by the local provider in the machine's network namespace)",
                ));
            } else {
                actions.push(Action::run_on_change(
                    h,
                    &format!("sysctl -q -p {}", SYSCTL_FILE.path),
                    &sysctl_check(&sysctls),
                    "apply the sysctls (this file only, never the host's others)",
                ));
            }
        }
        Ok(actions)
    }
}
