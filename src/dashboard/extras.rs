//! What the dashboard shows beside the API's objects, each refreshed on its own timer in the
//! background: etcd's members (health, database size), the state dir's certificates (days
//! left) and the ingress controller's requests per second (from its Prometheus endpoint).
//! Each is optional: a dashboard without etcd credentials or ingress metrics leaves it out.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::etcd::Tls;

/// How often etcd is asked.
const ETCD_EVERY: Duration = Duration::from_secs(15);
/// How often the certificates are read again.
const CERTS_EVERY: Duration = Duration::from_secs(300);
/// How often the ingress controller's metrics are read.
const INGRESS_EVERY: Duration = Duration::from_secs(10);
/// Time limit of one etcd status call or one metrics read.
const ASK: Duration = Duration::from_secs(5);

/// The counter of requests nginx-ingress exports (one series per ingress, status, method …).
pub const INGRESS_REQUESTS: &str = "nginx_ingress_controller_requests";

/// One etcd member.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdMember {
    /// Member (machine) name.
    pub name: String,
    /// Whether it answered.
    pub healthy: bool,
    /// Its database size, bytes.
    pub db_size: Option<i64>,
    /// etcd version.
    pub version: Option<String>,
    /// Why it is not healthy.
    pub error: Option<String>,
}

/// One certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertLine {
    /// Its path in the state dir.
    pub name: String,
    /// Subject common name.
    pub subject: String,
    /// Days left (negative when expired).
    pub days_left: i64,
}

/// The extras, as last seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Extras {
    /// etcd's members, when the dashboard has etcd credentials.
    pub etcd: Option<Vec<EtcdMember>>,
    /// The state dir's certificates, soonest to expire first, when it reads a state dir.
    pub certificates: Option<Vec<CertLine>>,
    /// Requests per second through the ingress controller, once two readings are in.
    pub ingress_requests_per_second: Option<f64>,
}

/// Where the extras come from.
#[derive(Default)]
pub struct Sources {
    /// etcd's client credentials and members (name, client URL).
    pub etcd: Option<(Tls, Vec<(String, String)>)>,
    /// Where the certificates are read.
    pub certificates: Option<CertSource>,
    /// The ingress controller's metrics URLs (every controller's; their counters are added).
    pub ingress_metrics: Vec<String>,
}

/// Where the dashboard reads certificates.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// A state dir's `pki/` (forgectl's copies of every CA and client certificate).
    StateDir(crate::state::StateDir),
    /// Every `*.crt` under a directory (on a control plane, /etc/kubernetes/pki).
    Dir(std::path::PathBuf),
}

impl CertSource {
    /// Every certificate: (name, subject, days left).
    fn read(&self) -> Result<Vec<CertLine>, String> {
        let listed: Vec<(String, crate::pki::CertInfo)> = match self {
            Self::StateDir(state) => crate::pki::Pki::new(state)
                .list()
                .map_err(|e| e.to_string())?,
            Self::Dir(dir) => {
                let mut out = Vec::new();
                let mut stack = vec![dir.clone()];
                while let Some(d) = stack.pop() {
                    let entries =
                        std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                    for p in entries.flatten().map(|e| e.path()) {
                        if p.is_dir() {
                            stack.push(p);
                        } else if p.extension().is_some_and(|x| x == "crt") {
                            let pem = std::fs::read_to_string(&p).unwrap_or_default();
                            if let Ok(info) = crate::pki::inspect(&pem) {
                                out.push((p.display().to_string(), info));
                            }
                        }
                    }
                }
                out
            }
        };
        let mut certs: Vec<CertLine> = listed
            .into_iter()
            .map(|(name, info)| CertLine {
                name,
                subject: info.subject,
                days_left: info.days_left,
            })
            .collect();
        certs.sort_by(|a, b| (a.days_left, &a.name).cmp(&(b.days_left, &b.name)));
        Ok(certs)
    }
}

/// The sum of every sample of `metric` in a Prometheus text exposition.
pub fn counter_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| {
            l.rsplit_once('}')
                .map(|(_, v)| v)
                .or_else(|| l.split_once(' ').map(|(_, v)| v))
        })
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .sum()
}

/// Starts the refreshers; returns the shared extras they keep current.
pub fn spawn(sources: Sources) -> Arc<RwLock<Extras>> {
    let shared = Arc::new(RwLock::new(Extras::default()));
    if let Some((tls, members)) = sources.etcd {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let health = crate::etcd::health(&members, &tls, ASK).await;
                let seen: Vec<EtcdMember> = health
                    .into_iter()
                    .map(|h| EtcdMember {
                        name: h.name,
                        healthy: h.ok,
                        db_size: h.db_size,
                        version: h.version,
                        error: h.error,
                    })
                    .collect();
                if let Ok(mut e) = shared.write() {
                    e.etcd = Some(seen);
                }
                tokio::time::sleep(ETCD_EVERY).await;
            }
        });
    }
    if let Some(source) = sources.certificates {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let from = source.clone();
                match tokio::task::spawn_blocking(move || from.read()).await {
                    Ok(Ok(certs)) => {
                        if let Ok(mut e) = shared.write() {
                            e.certificates = Some(certs);
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the certificates could not be read")
                    }
                    Err(_) => return,
                }
                tokio::time::sleep(CERTS_EVERY).await;
            }
        });
    }
    if !sources.ingress_metrics.is_empty() {
        let shared = shared.clone();
        let urls = sources.ingress_metrics;
        tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(ASK).build();
            let Ok(client) = client else {
                return;
            };
            let mut last: Option<(Instant, f64)> = None;
            loop {
                let mut total = 0.0;
                let mut all = true;
                for url in &urls {
                    match client.get(url).send().await {
                        Ok(r) if r.status().is_success() => match r.text().await {
                            Ok(text) => total += counter_sum(&text, INGRESS_REQUESTS),
                            Err(_) => all = false,
                        },
                        Ok(r) => {
                            tracing::warn!(url, status = %r.status(), "ingress metrics");
                            all = false;
                        }
                        Err(e) => {
                            tracing::warn!(url, error = %e, "ingress metrics");
                            all = false;
                        }
                    }
                }
                let now = Instant::now();
                let rate = match (all, last) {
                    // A counter that went back (a controller restarted) gives no rate this time.
                    (true, Some((t, before))) if total >= before => {
                        Some((total - before) / now.duration_since(t).as_secs_f64().max(1e-3))
                    }
                    _ => None,
                };
                last = all.then_some((now, total));
                if let Ok(mut e) = shared.write() {
                    // Without a new rate the last one stands, unless a controller went silent.
                    let kept = e.ingress_requests_per_second.filter(|_| all);
                    e.ingress_requests_per_second = rate.or(kept);
                }
                tokio::time::sleep(INGRESS_EVERY).await;
            }
        });
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sum_adds_every_series_of_the_metric_only() {
        let text = "# HELP nginx_ingress_controller_requests The total number of client requests\n\
                    # TYPE nginx_ingress_controller_requests counter\n\
                    nginx_ingress_controller_requests{ingress=\"a\",status=\"200\"} 10\n\
                    nginx_ingress_controller_requests{ingress=\"b\",status=\"404\"} 2.5\n\
                    nginx_ingress_controller_requests_total_bogus{x=\"y\"} 100\n\
                    nginx_ingress_controller_requests 1\n\
                    other_metric 7\n";
        assert_eq!(counter_sum(text, INGRESS_REQUESTS), 13.5);
        assert_eq!(counter_sum("", INGRESS_REQUESTS), 0.0);
    }
}
