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
    /// etcd's CA, a client certificate and its key, instead of the state dir's.
    pub etcd_files: Option<[PathBuf; 3]>,
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
            println!("---\n{}", yaml.trim_end());
        }
        return Ok(ExitCode::Ok);
    }
    let inv = load_inventory_quiet(file, opts)?;
    // The state dir is opened only for what the flags leave to it (as a service on a control
    // plane, every flag is given and none is made).
    let dir = || super::state_dir(&inv, opts);
    let kubeconfig = match &d.kubeconfig {
        Some(k) => k.clone(),
        None => dir()?.path().join(STATE_ADMIN_CONF),
    };
    let kube = crate::kube::Kube::from_kubeconfig(&kubeconfig).await?;
    let etcd = match (d.no_etcd, &d.etcd_files) {
        (true, _) => None,
        (false, Some([ca, cert, key])) => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p)
                    .map_err(|e| CommandError::Usage(format!("{}: {e}", p.display())))
            };
            let tls = crate::etcd::Tls {
                ca: read(ca)?,
                cert: read(cert)?,
                key: read(key)?,
            };
            Some((tls, crate::etcd::members(&inv)))
        }
        (false, None) => {
            let dir = dir()?;
            Executor::new(&inv, &dir, true, Interrupt::never())
                .etcd_access()
                .ok()
        }
    };
    let certificates = match &d.certs_dir {
        Some(c) => Some(CertSource::Dir(c.clone())),
        None => {
            let dir = dir()?;
            dir.path()
                .join("pki")
                .is_dir()
                .then(|| CertSource::StateDir(dir.clone()))
        }
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
        super::stop_signal(),
    )
    .await?;
    Ok(ExitCode::Ok)
}
