//! `forgectl dashboard`: serves the read-only dashboard of the cluster (see
//! [`crate::dashboard`]) with the state dir's admin kubeconfig or another one, until SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{CommandError, ExitCode, load_inventory_quiet};
use crate::dashboard::extras::{CertSource, Sources};
use crate::dashboard::{self, rbac};
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
    /// Read certificates from this directory instead of the state dir.
    pub certs_dir: Option<PathBuf>,
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
            crate::outln!("---\n{}", yaml.trim_end());
        }
        return Ok(ExitCode::Ok);
    }
    let inv = load_inventory_quiet(file, opts)?;
    // The state dir is opened only when the flags leave something to it (as a service on a
    // control plane, every flag is given and none is made).
    let needs_dir = d.kubeconfig.is_none() || !d.no_etcd || d.certs_dir.is_none();
    let dir = match needs_dir {
        true => Some(super::state_dir(&inv, opts)?),
        false => None,
    };
    let kubeconfig = match (&d.kubeconfig, &dir) {
        (Some(k), _) => k.clone(),
        (None, Some(dir)) => dir.path().join(STATE_ADMIN_CONF),
        (None, None) => unreachable!("the state dir is opened when no kubeconfig is given"),
    };
    let kube = crate::kube::Kube::from_kubeconfig(&kubeconfig).await?;
    let etcd = match (d.no_etcd, &dir) {
        (false, Some(dir)) => Executor::new(&inv, dir, true, Interrupt::never())
            .etcd_access()
            .ok(),
        _ => None,
    };
    let certificates = match (&d.certs_dir, &dir) {
        (Some(c), _) => Some(CertSource::Dir(c.clone())),
        (None, Some(dir)) => dir
            .path()
            .join("pki")
            .is_dir()
            .then(|| CertSource::StateDir(dir.clone())),
        (None, None) => None,
    };
    let sources = Sources {
        etcd,
        certificates,
        ingress_metrics: d.ingress_metrics.clone(),
    };
    let quiet = opts.verbosity < 0;
    dashboard::run(
        kube.client(),
        &inv.inventory.name,
        sources,
        d.listen,
        |addr, dash| {
            // The address on stdout (programs and tests read it when port 0 picked one).
            crate::outln!("http://{addr}/");
            if !quiet {
                crate::errln!(
                    "dashboard of {} on http://{addr}/ ({} tools, {} nodes): JSON with `Accept: application/json`, Prometheus metrics on /metrics; Ctrl-C stops it",
                    inv.inventory.name,
                    dash.stores.namespaces.state().len(),
                    dash.stores.nodes.state().len(),
                );
            }
        },
        super::stop_signal(),
    )
    .await?;
    Ok(ExitCode::Ok)
}
