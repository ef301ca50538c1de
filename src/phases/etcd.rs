//! The etcd phase: configuration, unit and start of the external etcd cluster.

use serde::Serialize;

use super::{NEEDS_SSH, Phase, PhaseError, PlanContext, Target};
use crate::inventory::{Machine, Role};
use crate::plan::{Action, Readiness};

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
/// The etcd binary (from the artifact source).
pub const BINARY: &str = "/usr/local/bin/etcd";

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

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::PlanOnly {
            missing: NEEDS_SSH.into(),
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
        let mut actions = Vec::new();
        for m in hosts {
            let member = Member {
                cluster: &inv.name,
                name: &m.name,
                address: address_or_name(m),
                data_dir: &e.data_dir,
                client_port: e.client_port,
                peer_port: e.peer_port,
                initial_cluster: &initial_cluster,
                cluster_state: "new",
                pki_dir: PKI_DIR,
                env_file: ENV_FILE.path,
                etcd_binary: BINARY,
            };
            actions.push(Action::run(
                &m.name,
                &format!("install -d -o etcd -g etcd -m 0700 {}", e.data_dir),
                Some(&format!("test -d {}", e.data_dir)),
                "create the data directory on local disk",
            ));
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
            actions.push(Action::run(
                &m.name,
                "systemctl daemon-reload && systemctl enable --now etcd.service",
                Some("systemctl is-active --quiet etcd.service"),
                "start the member",
            ));
        }
        Ok(actions)
    }
}
