//! `forgectl dashboard`: serves the read-only dashboard of the cluster (see
//! [`crate::dashboard`]) with the state dir's admin kubeconfig or another one, until SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{CommandError, ExitCode, load_inventory_quiet};
use crate::dashboard::{self, extras::Sources, rbac};
use crate::executor::Executor;
use crate::interrupt::Interrupt;
use crate::output::Options;
use crate::phases::kubeadm_init::STATE_ADMIN_CONF;

/// What `dashboard` was asked.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// The kubeconfig to read with [default: the state dir's admin.conf].
    pub kubeconfig: Option<PathBuf>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The ingress controllers' Prometheus endpoints.
    pub ingress_metrics: Vec<String>,
    /// Leave etcd out (no etcd client certificate is used).
    pub no_etcd: bool,
    /// Print the dashboard's ClusterRole and a binding to this user, and exit.
    pub print_rbac: Option<String>,
}

/// Runs the dashboard, or prints its RBAC.
pub async fn dashboard(
    file: Option<&Path>,
    d: &DashboardOptions,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    if let Some(user) = &d.print_rbac {
        for doc in [rbac::cluster_role(), rbac::binding(user)] {
            let yaml = serde_saphyr::to_string(&doc)
                .map_err(|e| CommandError::Usage(format!("the RBAC documents: {e}")))?;
            println!("---\n{}", yaml.trim_end());
        }
        return Ok(ExitCode::Ok);
    }
    let inv = load_inventory_quiet(file, opts)?;
    let dir = super::state_dir(&inv, opts)?;
    let kubeconfig = d
        .kubeconfig
        .clone()
        .unwrap_or_else(|| dir.path().join(STATE_ADMIN_CONF));
    let kube = crate::kube::Kube::from_kubeconfig(&kubeconfig).await?;
    let etcd = match d.no_etcd {
        true => None,
        false => Executor::new(&inv, &dir, true, Interrupt::never())
            .etcd_access()
            .ok(),
    };
    let has_pki = dir.path().join("pki").is_dir();
    let sources = Sources {
        etcd,
        state_dir: has_pki.then(|| dir.clone()),
        ingress_metrics: d.ingress_metrics.clone(),
    };
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    let quiet = opts.verbosity < 0;
    dashboard::run(
        kube.client(),
        &inv.inventory.name,
        sources,
        d.listen,
        |addr, dash| {
            // The address on stdout (programs and tests read it when port 0 picked one).
            println!("http://{addr}/");
            if !quiet {
                eprintln!(
                    "dashboard of {} on http://{addr}/ ({} tools, {} nodes): JSON with `Accept: application/json`, Prometheus metrics on /metrics; Ctrl-C stops it",
                    inv.inventory.name,
                    dash.stores.namespaces.state().len(),
                    dash.stores.nodes.state().len(),
                );
            }
        },
        shutdown,
    )
    .await?;
    Ok(ExitCode::Ok)
}
