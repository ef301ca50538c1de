//! `forgectl certs check`: every certificate of the cluster, in the state dir and on the hosts, with
//! its expiry.

use serde::Serialize;
use serde_json::json;
use std::path::Path;

use super::{CommandError, ExitCode, load_inventory, load_inventory_quiet};
use crate::executor::{Executor, endpoints};
use crate::interrupt::Interrupt;
use crate::inventory::{ProviderKind, Role};
use crate::output::{Format, Options};
use crate::pki::{self, CertInfo, Pki};
use crate::providers::local::LocalProvider;

/// Certificates expiring within this many days make `certs check` exit 1.
pub const WARN_DAYS: i64 = 30;

/// One certificate and where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// `forgectl` for the state dir, else the machine.
    pub place: String,
    /// Path.
    pub path: String,
    /// What it says.
    #[serde(flatten)]
    pub info: CertInfo,
}

/// Splits `== PATH` headed PEM blocks printed by the host script.
fn parse_listing(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("== ") {
            out.extend(current.take());
            current = Some((p.to_string(), String::new()));
        } else if let Some((_, pem)) = current.as_mut() {
            pem.push_str(line);
            pem.push('\n');
        }
    }
    out.extend(current);
    out
}

/// Lists every certificate with its expiry; exit 1 when one expires within 30 days (or has).
pub async fn certs_check(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let inv = load_inventory_quiet(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
    let mut found: Vec<Found> = Pki::new(&dir)
        .list()
        .map_err(|e| CommandError::Exec(e.into()))?
        .into_iter()
        .map(|(path, info)| Found {
            place: "forgectl".into(),
            path,
            info,
        })
        .collect();
    let mut unreachable = Vec::new();
    let etcd_hosts: Vec<_> = inv.with_role(Role::Etcd).collect();
    // Hosts are asked only when they exist (a local cluster that was never brought up has none).
    let hosts_exist = match inv.inventory.provider {
        ProviderKind::Local => !LocalProvider::new(&inv, dir.path(), true)
            .existing()
            .is_empty(),
        _ => true,
    };
    if !etcd_hosts.is_empty() && hosts_exist {
        let exec = Executor::new(&inv, &dir, true, Interrupt::never());
        let pool = exec.pool().await?;
        let script = "for f in /etc/etcd/pki/*.crt /etc/kubernetes/pki/*.crt /etc/kubernetes/pki/etcd/*.crt; do \
                      [ -f \"$f\" ] && { echo \"== $f\"; cat \"$f\"; }; done; true";
        let eps = endpoints(&inv, &etcd_hosts);
        for r in pool
            .each(&eps, |s| async move { s.exec(&s.as_root(script)).await })
            .await
        {
            match r.result {
                Ok(out) => {
                    for (path, pem) in parse_listing(&String::from_utf8_lossy(&out.stdout)) {
                        if let Ok(info) = pki::inspect(&pem) {
                            found.push(Found {
                                place: r.host.clone(),
                                path,
                                info,
                            });
                        }
                    }
                }
                Err(e) => unreachable.push(format!("{}: {e}", r.host)),
            }
        }
        pool.close().await;
    }
    let expiring = found
        .iter()
        .filter(|f| f.info.days_left <= WARN_DAYS)
        .count();
    match opts.format {
        Format::Json => crate::outln!(
            "{}",
            json!({ "certificates": found, "expiring": expiring, "unreachable": unreachable })
        ),
        Format::Text => {
            let pw = found
                .iter()
                .map(|f| f.place.len())
                .max()
                .unwrap_or(5)
                .max(5);
            let fw = found.iter().map(|f| f.path.len()).max().unwrap_or(4).max(4);
            crate::outln!(
                "{:pw$}  {:fw$}  {:28}  {:>9}  EXPIRES",
                "WHERE",
                "PATH",
                "SUBJECT",
                "DAYS LEFT"
            );
            for f in &found {
                crate::outln!(
                    "{:pw$}  {:fw$}  {:28}  {:>9}  {}",
                    f.place,
                    f.path,
                    f.info.subject,
                    f.info.days_left,
                    f.info.not_after
                );
            }
            for u in &unreachable {
                crate::errln!("not checked: {u}");
            }
            crate::outln!(
                "{} certificate(s); {expiring} expire within {WARN_DAYS} days{}",
                found.len(),
                if unreachable.is_empty() {
                    String::new()
                } else {
                    format!("; {} host(s) not reachable", unreachable.len())
                }
            );
        }
    }
    Ok(if expiring > 0 || !unreachable.is_empty() {
        ExitCode::Failed
    } else {
        ExitCode::Ok
    })
}

/// Re-issues the leaf certificates from the same CAs and rolls them onto the etcd members one at a
/// time, waiting for every member to be healthy before the next, so quorum is never at stake.
pub async fn certs_renew(file: Option<&Path>, opts: &Options) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
    let _lock = dir.lock("certs renew")?;
    let exec = Executor::new(&inv, &dir, true, Interrupt::never());
    let step = |what: &str| {
        if opts.verbosity >= 0 && opts.format == Format::Text {
            crate::outln!("• {what}");
        }
    };
    // Rolling needs every member healthy at the start.
    exec.wait_etcd_members(None).await.map_err(|e| {
        CommandError::Usage(format!(
            "refusing to roll certificates while etcd is not healthy: {e}"
        ))
    })?;
    let n = exec.renew_pki()?;
    step(&format!("re-issued {n} certificate(s) from the same CAs"));
    for m in inv.with_role(Role::Etcd) {
        let changed =
            super::run_etcd_phase_on(&inv, &dir, &exec, std::slice::from_ref(&m.name), opts)
                .await?;
        exec.wait_etcd_members(None).await?;
        step(&format!(
            "{}: {changed} change(s), member restarted, all members healthy",
            m.name
        ));
    }
    exec.close().await;
    Ok(ExitCode::Ok)
}

/// Brings the etcd CA back into a state dir that lost it, from the first etcd member that has it
/// (asks first unless `yes`). Leaf certificates are then made again by the next `up`.
pub async fn certs_recover(
    file: Option<&Path>,
    yes: bool,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let inv = load_inventory(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
    let _lock = dir.lock("certs recover")?;
    let pki = Pki::new(&dir);
    let (etcd, kube) = (!pki.has_etcd_ca(), !pki.has_kube_ca());
    if !etcd && !kube {
        crate::outln!("the state dir has its etcd and Kubernetes CAs; nothing to recover");
        return Ok(ExitCode::Ok);
    }
    if opts.format == Format::Text {
        if etcd {
            crate::outln!(
                "The state dir has no etcd CA. forgectl will read it (certificate and key) from the first etcd member that has it."
            );
        }
        if kube {
            crate::outln!(
                "The state dir has no Kubernetes CA. forgectl will read it, the front-proxy CA and the service-account key pair from the first control plane that has them."
            );
        }
    }
    if !yes {
        super::run::approve("certs recover")?;
    }
    let exec = Executor::new(&inv, &dir, true, Interrupt::never());
    let result = async {
        if etcd {
            let from = exec.recover_etcd_ca().await?;
            crate::outln!("recovered the etcd CA from {from} into the state dir (0600)");
        }
        if kube && inv.with_role(crate::inventory::Role::ControlPlane).next().is_some() {
            match exec.recover_cluster_cas().await {
                Ok(from) => crate::outln!(
                    "recovered the Kubernetes and front-proxy CAs and the service-account keys from {from} into the state dir (0600)"
                ),
                // Before kubeadm-init ran, no control plane has them: up makes them.
                Err(e) if !etcd => return Err(e),
                Err(e) => crate::outln!("the Kubernetes CA was not recovered: {e}"),
            }
        }
        Ok::<_, crate::executor::ExecError>(())
    }
    .await;
    exec.close().await;
    result?;
    crate::outln!("run `forgectl up` to re-make the client certificates");
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    #[test]
    fn listing_is_split_per_file() {
        let text = "== /a.crt\n-----BEGIN X-----\nAA\n-----END X-----\n== /b.crt\nBB\n";
        let parts = super::parse_listing(text);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "/a.crt");
        assert!(parts[0].1.contains("AA"));
        assert_eq!(parts[1], ("/b.crt".to_string(), "BB\n".to_string()));
    }
}
