//! The etcd phase: configuration, unit and start of the external etcd cluster.

use serde::Serialize;

use super::{Phase, PhaseError, PlanContext, Target};
use crate::inventory::{Machine, Role};
use crate::plan::{Action, Op, Readiness};

/// Installs the etcd configuration and unit on the etcd machines and starts the members.
pub struct Etcd;

/// etcd's configuration on a member (readable by the etcd group only).
pub const ENV_FILE: Target = Target {
    path: "/etc/etcd/etcd.env",
    mode: 0o640,
    owner: "root:etcd",
};
/// The systemd unit.
pub const UNIT_FILE: Target = Target {
    path: "/etc/systemd/system/etcd.service",
    mode: 0o644,
    owner: "root:root",
};
/// Certificates and keys.
pub const PKI_DIR: &str = "/etc/etcd/pki";
/// The etcd binary from upstream release tarballs.
pub const UPSTREAM_BINARY: &str = "/usr/local/bin/etcd";
/// The etcd binary of Debian's etcd-server package.
pub const DEBIAN_BINARY: &str = "/usr/bin/etcd";
/// Debian's package with the etcd server.
pub const DEBIAN_PACKAGE: &str = "etcd-server";

/// Touched on a member when etcd is (re)started: files newer than it mean a restart is due.
pub const STARTED_MARK: &str = "/var/lib/forgectl/etcd.started";

/// A shell check that succeeds when the member runs and none of its configuration, unit,
/// certificates or `binary` changed since it was last started by forgectl.
fn restart_not_needed(binary: &str) -> String {
    format!(
        "systemctl is-active --quiet etcd.service && test -e {STARTED_MARK} && \
         test -z \"$(find {} {} {PKI_DIR} {binary} -newer {STARTED_MARK} -print -quit 2>/dev/null)\"",
        ENV_FILE.path, UNIT_FILE.path
    )
}

/// Certificate files on a member: (state-dir PKI path, extension, remote name, mode, owner).
fn cert_files(member: &str) -> [(String, &'static str, &'static str, u32, &'static str); 6] {
    use crate::pki::paths;
    [
        (
            paths::ETCD_CA.to_string(),
            "crt",
            "ca.crt",
            0o644,
            "root:root",
        ),
        // The CA key stays on the members (root only), as kubeadm keeps its CAs on control
        // planes, so a lost state dir can be recovered (`forgectl certs recover`).
        (
            paths::ETCD_CA.to_string(),
            "key",
            "ca.key",
            0o600,
            "root:root",
        ),
        (
            paths::etcd_server(member),
            "crt",
            "server.crt",
            0o644,
            "root:root",
        ),
        (
            paths::etcd_server(member),
            "key",
            "server.key",
            0o640,
            "root:etcd",
        ),
        (
            paths::etcd_peer(member),
            "crt",
            "peer.crt",
            0o644,
            "root:root",
        ),
        (
            paths::etcd_peer(member),
            "key",
            "peer.key",
            0o640,
            "root:etcd",
        ),
    ]
}

#[derive(Serialize)]
struct Member<'a> {
    cluster: &'a str,
    name: &'a str,
    address: String,
    data_dir: &'a str,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &'a str,
    cluster_state: &'a str,
    pki_dir: &'a str,
    env_file: &'a str,
    etcd_binary: &'a str,
    /// The binary tells systemd when it serves (Debian's builds and releases before 3.6 do;
    /// 3.6 does not, and systemd would kill it after the start timeout).
    notify: bool,
}

/// A machine's address, or its name when the provider has not given it one yet.
pub(crate) fn address_or_name(m: &Machine) -> String {
    m.address
        .map(|a| a.to_string())
        .unwrap_or_else(|| m.name.clone())
}

impl Phase for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn title(&self) -> &'static str {
        "Configure and start the external etcd cluster"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        if crate::artifacts::etcd_from_debian(&ctx.inv.inventory) {
            Readiness::Ready
        } else {
            ctx.artifacts_readiness(&["etcd"])
        }
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let e = &inv.etcd;
        let initial_cluster = ctx
            .inv
            .with_role(Role::Etcd)
            .map(|m| format!("{}=https://{}:{}", m.name, address_or_name(m), e.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let debian = crate::artifacts::etcd_from_debian(inv);
        let binary = if debian {
            DEBIAN_BINARY
        } else {
            UPSTREAM_BINARY
        };
        let pki = ctx.present.state_dir.as_ref();
        let joined = pki
            .map(|d| crate::etcd::bootstrap::read(d))
            .unwrap_or_default();
        let mut actions = Vec::new();
        if !debian && !hosts.is_empty() {
            actions.push(Action::local(
                None,
                Op::CheckEtcdVersions {
                    target: inv.versions.etcd.to_string(),
                },
                "etcd moves one minor release at a time",
            ));
        }
        for m in hosts {
            // Members added after the cluster formed keep joining the cluster they were added to.
            let (initial_cluster, cluster_state) = match joined.get(&m.name) {
                Some(j) => (j.initial_cluster.as_str(), j.state.as_str()),
                None => (initial_cluster.as_str(), "new"),
            };
            let member = Member {
                cluster: &inv.name,
                name: &m.name,
                address: address_or_name(m),
                data_dir: &e.data_dir,
                client_port: e.client_port,
                peer_port: e.peer_port,
                initial_cluster,
                cluster_state,
                pki_dir: PKI_DIR,
                env_file: ENV_FILE.path,
                etcd_binary: binary,
                // Debian's builds and etcd before 3.6 tell systemd when they serve; 3.6 does not
                // (systemd would kill it after the start timeout).
                notify: debian
                    || inv.versions.etcd < crate::inventory::types::Version::new(3, 6, 0),
            };
            if debian {
                actions.push(Action::local(
                    Some(&m.name),
                    Op::InstallPackages {
                        packages: vec![DEBIAN_PACKAGE.to_string()],
                    },
                    "install etcd (its own start is held back until configured)",
                ));
            } else {
                let v = inv.versions.etcd.to_string();
                actions.push(Action::run(
                    &m.name,
                    "groupadd --system etcd && useradd --system -g etcd --no-create-home --home-dir /var/lib/etcd --shell /usr/sbin/nologin etcd",
                    Some("id etcd"),
                    "the etcd system user",
                ));
                actions.push(Action::local(
                    Some(&m.name),
                    Op::InstallArtifact {
                        artifact: "etcd".into(),
                        version: v.clone(),
                        binaries: vec!["etcd".into(), "etcdctl".into()],
                        dest: "/usr/local/bin".into(),
                        installed: format!(
                            "{UPSTREAM_BINARY} --version 2>/dev/null | grep -q 'etcd Version: {v}$'"
                        ),
                    },
                    "install etcd from the release tarball",
                ));
            }
            actions.push(Action::run(
                &m.name,
                &format!(
                    "install -d -o etcd -g etcd -m 0700 {}",
                    crate::ssh::shell_quote(&e.data_dir)
                ),
                Some(&format!("test -d {}", crate::ssh::shell_quote(&e.data_dir))),
                "create the data directory on local disk",
            ));
            for (rel, ext, file, mode, owner) in cert_files(&m.name) {
                // Before the pki phase has run (a plan of a new cluster) the content is not known
                // yet; the engine plans this phase again right before running it.
                let content = ctx.state_file(&format!("{rel}.{ext}")).unwrap_or_default();
                let why = if content.is_empty() {
                    "certificate or key (made by the pki phase)"
                } else {
                    "certificate or key from the cluster PKI"
                };
                actions.push(Action::upload_rendered(
                    &m.name,
                    &format!("{PKI_DIR}/{file}"),
                    mode,
                    owner,
                    None,
                    content,
                    why,
                ));
            }
            actions.push(ctx.rendered(
                &m.name,
                &ENV_FILE,
                "etcd/etcd.env.tera",
                &member,
                "etcd member configuration",
            )?);
            actions.push(ctx.rendered(
                &m.name,
                &UNIT_FILE,
                "etcd/etcd.service.tera",
                &member,
                "etcd systemd unit",
            )?);
        }
        // Restarts come after every member's files are in place, one member at a time.
        let current = restart_not_needed(binary);
        for m in hosts {
            actions.push(Action::local(
                Some(&m.name),
                Op::RestartEtcdMember {
                    current: current.clone(),
                },
                "(re)start the member when its files changed; a formed cluster keeps quorum",
            ));
        }
        if !hosts.is_empty() {
            actions.push(Action::local(
                None,
                Op::WaitEtcdHealthy,
                "every member healthy over mTLS, with a leader",
            ));
        }
        Ok(actions)
    }
}
