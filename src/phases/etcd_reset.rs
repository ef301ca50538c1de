//! The etcd-reset phase (`forgectl reset`): a last snapshot of the keyspace into the state dir
//! when a member still answers, then on every etcd machine the member stopped and disabled, its
//! data directory, certificates, configuration and unit removed; and the state dir's record of
//! how members first started forgotten, so the next `up` forms a new cluster. The package or
//! binaries stay.

use super::{Phase, PhaseError, PlanContext};
use crate::inventory::{Machine, Role};
use crate::plan::{Action, Op, Readiness};
use crate::ssh::shell_quote;

/// Stops etcd and removes its data and certificates.
pub struct EtcdReset;

impl Phase for EtcdReset {
    fn name(&self) -> &'static str {
        "etcd-reset"
    }

    fn title(&self) -> &'static str {
        "Stop etcd and remove its data and certificates (a snapshot is kept first)"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let data = shell_quote(&ctx.inv.inventory.etcd.data_dir);
        let env = super::etcd::ENV_FILE.path;
        let unit = super::etcd::UNIT_FILE.path;
        let pki = super::etcd::PKI_DIR;
        let mut actions = vec![Action::local(
            None,
            Op::SnapshotEtcd {
                label: "pre-reset".into(),
                required: false,
            },
            "a last snapshot into the state dir's backups/ (skipped, with a warning, when no member answers)",
        )];
        for m in hosts {
            actions.push(Action::run(
                &m.name,
                &format!(
                    "systemctl disable --now --quiet etcd.service 2>/dev/null; \
                     rm -rf --one-file-system -- {data} {pki} {env} {unit} && systemctl daemon-reload"
                ),
                Some(&format!(
                    "! systemctl is-active --quiet etcd.service && test ! -e {data} -a ! -e {pki} -a ! -e {env} -a ! -e {unit}"
                )),
                &format!("stop and disable the member; remove {data}, {pki}, {env} and {unit}"),
            ));
        }
        // Only when every member goes: a partial reset keeps the record of the others.
        let all = ctx.inv.with_role(Role::Etcd).count();
        if hosts.len() == all {
            actions.push(Action::local(
                None,
                Op::ForgetEtcdCluster,
                "forget how the members first started (state dir etcd/bootstrap.json): the next `up` forms a new cluster",
            ));
        }
        Ok(actions)
    }
}
