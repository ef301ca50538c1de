//! `forgectl accounts sync`: one reconcile pass of the tool accounts (from LDAP or a YAML
//! file) against the cluster, with a summary; `--dry-run` reports without changing anything.

use std::path::{Path, PathBuf};

use super::{CommandError, ExitCode, load_inventory};
use crate::accounts::{self, AccountsError, Cluster, FileSource, LdapSource, PassOptions, Summary};
use crate::inventory::Loaded;
use crate::inventory::accounts::AccountSource;
use crate::output::{Format, Options};
use crate::phases::kubeadm_init::STATE_ADMIN_CONF;

/// What `accounts sync` was asked.
#[derive(Debug, Clone, Default)]
pub struct AccountsOptions {
    /// Report, change nothing.
    pub dry_run: bool,
    /// Mark tools for removal even when most of them look gone.
    pub allow_mass_removal: bool,
    /// The kubeconfig to act with [default: the state dir's admin.conf].
    pub kubeconfig: Option<PathBuf>,
}

/// The cluster (name, server, CA) a kubeconfig points at, for the accounts' kubeconfigs.
fn cluster_of(inv: &Loaded, kubeconfig: &Path) -> Result<Cluster, CommandError> {
    use base64::Engine;
    let bad = |cause: String| {
        CommandError::Kube(crate::kube::KubeError::Kubeconfig {
            path: kubeconfig.display().to_string(),
            cause,
        })
    };
    let kc = ::kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
    let ctx_name = kc.current_context.clone().unwrap_or_default();
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| bad(format!("no context {ctx_name:?}")))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| bad(format!("no cluster {:?}", ctx.cluster)))?;
    let server = cluster.server.ok_or_else(|| bad("no server".into()))?;
    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(d), _) => base64::engine::general_purpose::STANDARD
            .decode(d)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("certificate-authority-data is not base64 PEM".into()))?,
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| bad(format!("{f}: {e}")))?,
        (None, None) => return Err(bad("no certificate authority".into())),
    };
    Ok(Cluster {
        name: inv.inventory.name.clone(),
        server,
        ca_pem,
    })
}

/// The inventory's source of accounts.
enum AnySource {
    File(FileSource),
    Ldap(Box<LdapSource>),
}

impl accounts::Source for AnySource {
    async fn load(&self) -> Result<accounts::Directory, AccountsError> {
        match self {
            Self::File(f) => f.load().await,
            Self::Ldap(l) => l.load().await,
        }
    }
}

/// What a command acting on accounts needs: the source, the cluster, an API client.
struct Setup {
    inv: Loaded,
    source: AnySource,
    cluster: Cluster,
    kube: crate::kube::Kube,
    watch_file: Option<PathBuf>,
}

async fn setup(
    file: Option<&Path>,
    kubeconfig: Option<&Path>,
    opts: &Options,
) -> Result<Setup, CommandError> {
    let inv = load_inventory(file, opts)?;
    let cfg = &inv.inventory.accounts;
    let kubeconfig = match kubeconfig {
        Some(k) => k.to_path_buf(),
        None => super::state_dir(&inv, opts)?.path().join(STATE_ADMIN_CONF),
    };
    let cluster = cluster_of(&inv, &kubeconfig)?;
    let kube = crate::kube::Kube::from_kubeconfig(&kubeconfig).await?;
    let base = &inv.source.base_dir;
    let (source, watch_file) = match cfg.source {
        AccountSource::File => {
            let path = cfg.file.as_ref().ok_or_else(|| {
                CommandError::Usage(
                    "accounts.source is file but accounts.file is not set in the inventory".into(),
                )
            })?;
            let path = base.join(path);
            (
                AnySource::File(FileSource { path: path.clone() }),
                Some(path),
            )
        }
        AccountSource::Ldap => {
            let settings = cfg.ldap.as_ref().ok_or_else(|| {
                CommandError::Usage(
                    "accounts.source is ldap but accounts.ldap is not set in the inventory".into(),
                )
            })?;
            (
                AnySource::Ldap(Box::new(LdapSource::new(settings, base)?)),
                None,
            )
        }
    };
    Ok(Setup {
        inv,
        source,
        cluster,
        kube,
        watch_file,
    })
}

/// One pass; exit 1 when an account could not be reconciled.
pub async fn accounts_sync(
    file: Option<&Path>,
    a: &AccountsOptions,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let s = setup(file, a.kubeconfig.as_deref(), opts).await?;
    let pass = PassOptions {
        dry_run: a.dry_run,
        allow_mass_removal: a.allow_mass_removal,
    };
    let cfg = &s.inv.inventory.accounts;
    let summary = accounts::sync(s.kube.client(), cfg, &s.cluster, &s.source, &pass).await?;
    print_summary(&summary, a.dry_run, opts);
    Ok(if summary.problems.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    })
}

/// What `accounts run` was asked.
#[derive(Debug, Clone)]
pub struct AccountsRunOptions {
    /// Kubeconfig to act with [default: the state dir's admin.conf].
    pub kubeconfig: Option<PathBuf>,
    /// Where /metrics and /healthz listen.
    pub listen: std::net::SocketAddr,
    /// Full resync interval.
    pub interval: std::time::Duration,
    /// Lease namespace.
    pub lease_namespace: String,
    /// Lease name.
    pub lease_name: String,
    /// This replica's identity [default: host name and PID].
    pub identity: Option<String>,
    /// Lease duration.
    pub lease_duration: std::time::Duration,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn accounts_run(
    file: Option<&Path>,
    a: &AccountsRunOptions,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let s = setup(file, a.kubeconfig.as_deref(), opts).await?;
    let identity = a.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "forgectl".into());
        format!("{host}-{}", std::process::id())
    });
    let run = accounts::controller::RunOptions {
        listen: a.listen,
        interval: a.interval,
        lease_namespace: a.lease_namespace.clone(),
        lease_name: a.lease_name.clone(),
        identity,
        lease_duration: a.lease_duration,
        watch_file: s.watch_file.clone(),
        pass_timeout: std::time::Duration::from_secs(600),
    };
    let cfg = &s.inv.inventory.accounts;
    accounts::controller::run(
        s.kube.client(),
        cfg,
        &s.cluster,
        &s.source,
        &run,
        super::stop_signal(),
    )
    .await?;
    Ok(ExitCode::Ok)
}

fn print_summary(s: &Summary, dry_run: bool, opts: &Options) {
    if opts.format == Format::Json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(s).unwrap_or_else(|_| "{}".into())
        );
        return;
    }
    if opts.verbosity > 0 || dry_run {
        for a in &s.actions {
            crate::outln!("  {a}");
        }
    }
    let names = |v: &[String]| {
        if v.is_empty() || v.len() > 10 {
            String::new()
        } else {
            format!(" ({})", v.join(", "))
        }
    };
    let head = if dry_run { "Would change" } else { "Accounts" };
    crate::outln!(
        "{head}: {} created{}, {} updated{}, {} renewed{}, {} disabled{}, {} removed{}, {} pending removal{}, {} unchanged; {} write(s)",
        s.created.len(),
        names(&s.created),
        s.updated.len(),
        names(&s.updated),
        s.renewed.len(),
        names(&s.renewed),
        s.disabled.len(),
        names(&s.disabled),
        s.removed.len(),
        names(&s.removed),
        s.pending_removal.len(),
        names(&s.pending_removal),
        s.unchanged,
        s.writes,
    );
    for p in &s.problems {
        crate::errln!("problem: {p}");
    }
}

impl From<AccountsError> for CommandError {
    fn from(e: AccountsError) -> Self {
        CommandError::Accounts(e)
    }
}
