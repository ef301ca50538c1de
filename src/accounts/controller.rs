//! `forgectl accounts run`: the provisioner as a controller. Replicas elect a leader with a
//! Lease; the leader runs a pass at start, whenever the accounts file changes, soon after the
//! watches on the managed kinds see drift (a change forgectl did not make: [`drift_watch`]),
//! and at every resync interval (LDAP offers no change stream forgectl can rely on, so it is
//! read in full, paged, at each pass; a pass over unchanged tenants only reads). Prometheus
//! metrics on /metrics, liveness on /healthz (503 when the last pass failed or the Lease
//! cannot be reached).
//!
//! [`drift_watch`]: super::drift_watch

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::drift_watch::{self, Drift};
use super::lease::LeaseLock;
use super::reconcile::{Cluster, PassOptions, Summary, sync};
use super::{AccountsError, Source};
use crate::inventory::accounts::Accounts;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where /metrics and /healthz listen.
    pub listen: SocketAddr,
    /// Full resync interval.
    pub interval: Duration,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity (host name and PID by default).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// A file whose change starts a pass at once (the accounts file).
    pub watch_file: Option<PathBuf>,
    /// Longest a pass may take.
    pub pass_timeout: Duration,
}

type Labels = Vec<(String, String)>;

/// How long drift may keep coming before the pass it asks for (one pass for a burst, such as
/// the objects of a deleted namespace).
const DRIFT_SETTLE: Duration = Duration::from_secs(1);
/// Least time between the end of a pass and a pass for drift (something fighting forgectl
/// over a field costs a pass every few seconds, no more).
const DRIFT_GAP: Duration = Duration::from_secs(5);

/// The names of the controller's samples on its /metrics endpoint (a counter's with `_total`),
/// for dashboards built on them.
pub fn metric_names() -> Vec<String> {
    let metrics = Arc::new(Metrics::default());
    // A family is exposed once it has a series.
    metrics
        .passes
        .get_or_create(&vec![("result".into(), "ok".into())])
        .inc();
    metrics
        .changes
        .get_or_create(&vec![("kind".into(), "created".into())])
        .inc();
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics.registry());
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [name, "counter"] => Some(format!("{name}_total")),
            [name, _] => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

/// The controller's metrics.
#[derive(Default)]
struct Metrics {
    passes: Family<Labels, Counter>,
    changes: Family<Labels, Counter>,
    writes: Counter,
    drift: Counter,
    accounts: Gauge,
    problems: Gauge,
    leader: Gauge,
    last_pass_ms: Gauge,
    last_success: Gauge,
}

impl Metrics {
    fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("forgectl_accounts");
        r.register("passes", "Reconcile passes by result", self.passes.clone());
        r.register(
            "changes",
            "Accounts changed, by kind of change",
            self.changes.clone(),
        );
        r.register(
            "writes",
            "API requests that changed something",
            self.writes.clone(),
        );
        r.register(
            "drift_events",
            "Changes to managed objects that forgectl did not make, seen by the watches",
            self.drift.clone(),
        );
        r.register(
            "accounts",
            "Accounts (tools and admins) the last pass found in the source",
            self.accounts.clone(),
        );
        r.register(
            "problems",
            "Accounts the last pass could not reconcile",
            self.problems.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the Lease",
            self.leader.clone(),
        );
        r.register(
            "last_pass_milliseconds",
            "Duration of the last pass",
            self.last_pass_ms.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When the last pass without problems ended",
            self.last_success.clone(),
        );
        r
    }

    fn record(&self, s: &Summary, took: Duration) {
        for (kind, n) in [
            ("created", s.created.len()),
            ("updated", s.updated.len()),
            ("renewed", s.renewed.len()),
            ("disabled", s.disabled.len()),
            ("removed", s.removed.len()),
        ] {
            self.changes
                .get_or_create(&vec![("kind".into(), kind.into())])
                .inc_by(n as u64);
        }
        self.writes.inc_by(s.writes as u64);
        let accounts =
            s.created.len() + s.updated.len() + s.renewed.len() + s.disabled.len() + s.unchanged;
        self.accounts.set(accounts as i64);
        self.problems.set(s.problems.len() as i64);
        self.last_pass_ms.set(took.as_millis() as i64);
        if s.problems.is_empty() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            self.last_success.set(now as i64);
        }
    }
}

/// What /healthz answers from.
#[derive(Default)]
struct Health {
    last_error: Mutex<Option<String>>,
    lease_ok_at: AtomicU64,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn mtime(p: &Option<PathBuf>) -> Option<SystemTime> {
    p.as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
}

/// Runs until `shutdown` resolves (then gives the Lease up).
pub async fn run<S: Source + Sync>(
    client: &::kube::Client,
    cfg: &Accounts,
    cluster: &Cluster,
    source: &S,
    opts: &RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AccountsError> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let registry = Arc::new(metrics.registry());
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| AccountsError::Api {
            what: format!("listen on {}", opts.listen),
            cause: e.to_string(),
        })?;
    tracing::info!(listen = %opts.listen, identity = %opts.identity, "accounts controller");
    tokio::spawn(serve_http(
        listener,
        registry,
        health.clone(),
        opts.lease_duration,
    ));

    let leading = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(LeaseLock::new(
        client,
        &opts.lease_namespace,
        &opts.lease_name,
        &opts.identity,
        opts.lease_duration,
    ));
    let lease_task = {
        let (lock, leading, health, metrics) = (
            lock.clone(),
            leading.clone(),
            health.clone(),
            metrics.clone(),
        );
        let every = opts.lease_duration / 3;
        let duration = opts.lease_duration;
        tokio::spawn(async move {
            let mut last_renewed: Option<Instant> = None;
            loop {
                match tokio::time::timeout(
                    every.max(Duration::from_secs(1)),
                    lock.acquire_or_renew(),
                )
                .await
                {
                    Ok(Ok(held)) => {
                        health.lease_ok_at.store(epoch_ms(), Ordering::Relaxed);
                        if held != leading.load(Ordering::Relaxed) {
                            tracing::info!(held, "leadership changed");
                        }
                        leading.store(held, Ordering::Relaxed);
                        last_renewed = held.then(Instant::now);
                    }
                    other => {
                        tracing::warn!(error = ?other.err().map(|_| "timed out".to_string()), "the Lease could not be renewed");
                        // Step down before another replica may take over.
                        if last_renewed.is_none_or(|t| t.elapsed() >= duration * 2 / 3) {
                            leading.store(false, Ordering::Relaxed);
                        }
                    }
                }
                metrics
                    .leader
                    .set(i64::from(leading.load(Ordering::Relaxed)));
                tokio::time::sleep(every).await;
            }
        })
    };

    let drift = Arc::new(Drift::new(metrics.drift.clone()));
    let watches = drift_watch::spawn(client, drift.clone());

    tokio::pin!(shutdown);
    let mut next_pass = Instant::now();
    let mut last_end = Instant::now();
    let mut was_leading = false;
    let mut seen = mtime(&opts.watch_file);
    let pass = PassOptions::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let lead = leading.load(Ordering::Relaxed);
        let became = lead && !was_leading;
        was_leading = lead;
        if !lead {
            continue;
        }
        let now_mtime = mtime(&opts.watch_file);
        let changed = now_mtime != seen;
        let now = Instant::now();
        let drifted = drift
            .pending_since()
            .is_some_and(|t| now >= t + DRIFT_SETTLE && now >= last_end + DRIFT_GAP);
        if !(became || changed || drifted || now >= next_pass) {
            continue;
        }
        seen = now_mtime;
        if let Some(why) = drift.pass_started() {
            tracing::info!(drift = %why, "pass for drift");
        }
        let start = Instant::now();
        let r = tokio::select! {
            r = tokio::time::timeout(opts.pass_timeout, sync(client, cfg, cluster, source, &pass)) => r,
            _ = &mut shutdown => break,
        };
        drift.pass_ended(match &r {
            Ok(Ok(s)) => &s.deleted,
            _ => &[],
        });
        let took = start.elapsed();
        last_end = Instant::now();
        // Every pass is a full one: the resync counts from the last.
        next_pass = last_end + opts.interval;
        let result = match r {
            Ok(Ok(s)) => {
                metrics.record(&s, took);
                tracing::info!(
                    created = s.created.len(),
                    updated = s.updated.len(),
                    renewed = s.renewed.len(),
                    disabled = s.disabled.len(),
                    removed = s.removed.len(),
                    unchanged = s.unchanged,
                    problems = s.problems.len(),
                    writes = s.writes,
                    ms = took.as_millis() as u64,
                    "pass"
                );
                for p in &s.problems {
                    tracing::warn!(problem = %p);
                }
                *health.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                "ok"
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "pass failed");
                *health.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                "error"
            }
            Err(_) => {
                let e = format!(
                    "the pass took longer than {} s",
                    opts.pass_timeout.as_secs()
                );
                tracing::error!(error = %e, "pass failed");
                *health.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                "error"
            }
        };
        metrics
            .passes
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }
    lease_task.abort();
    for w in watches {
        w.abort();
    }
    lock.release().await;
    Ok(())
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    lease_duration: Duration,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let metrics = move || {
        let registry = registry.clone();
        async move {
            let mut out = String::new();
            match encode(&mut out, &registry) {
                Ok(()) => (
                    StatusCode::OK,
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    out,
                ),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("content-type", "text/plain")],
                    e.to_string(),
                ),
            }
        }
    };
    let healthz = move || {
        let health = health.clone();
        async move {
            let lease_age = epoch_ms().saturating_sub(health.lease_ok_at.load(Ordering::Relaxed));
            if lease_age > (lease_duration * 2).as_millis() as u64 {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Lease cannot be reached\n".to_string(),
                );
            }
            match health
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                Some(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("last pass failed: {e}\n"),
                ),
                None => (StatusCode::OK, "ok\n".to_string()),
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}
