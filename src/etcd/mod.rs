//! Talking to the external etcd cluster over mTLS with etcd-client: health, members, status.

pub mod bootstrap;
pub mod snapshot;
pub mod versions;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Why etcd could not be reached or is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// Some members did not become healthy in time.
    #[error("etcd is not healthy after {after:?}: {}", .unhealthy.join("; "))]
    Unhealthy {
        /// How long it waited.
        after: Duration,
        /// Each unhealthy member and why.
        unhealthy: Vec<String>,
    },
    /// The client certificate or CA is missing.
    #[error("the etcd client certificates are missing from the state dir ({0}); run the pki phase")]
    NoCredentials(String),
}

/// The CA and client certificate forgectl uses for etcd.
#[derive(Clone)]
pub struct Tls {
    /// The etcd CA (PEM).
    pub ca: String,
    /// forgectl's client certificate (PEM).
    pub cert: String,
    /// Its key (PEM).
    pub key: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(<redacted>)")
    }
}

/// One member's health as seen from forgectl.
#[derive(Debug, Clone, Serialize)]
pub struct MemberHealth {
    /// Member (machine) name.
    pub name: String,
    /// Client URL.
    pub endpoint: String,
    /// Whether it answered.
    pub ok: bool,
    /// The leader's member id as this member sees it.
    pub leader: Option<u64>,
    /// This member's id.
    pub id: Option<u64>,
    /// Raft index.
    pub raft_index: Option<u64>,
    /// Database size in bytes.
    pub db_size: Option<i64>,
    /// etcd version.
    pub version: Option<String>,
    /// Round-trip time of the status call.
    pub latency_ms: Option<f64>,
    /// Why it is not ok.
    pub error: Option<String>,
}

/// The inventory's etcd members: (name, client URL).
pub fn members(inv: &crate::inventory::Loaded) -> Vec<(String, String)> {
    let port = inv.inventory.etcd.client_port;
    inv.with_role(crate::inventory::Role::Etcd)
        .map(|m| {
            let addr = m
                .address
                .map(|a| a.to_string())
                .unwrap_or_else(|| m.name.clone());
            (m.name.clone(), format!("https://{addr}:{port}"))
        })
        .collect()
}

/// A client for one endpoint (no load balancing: health is per member).
pub async fn connect(
    endpoint: &str,
    tls: &Tls,
    limit: Duration,
) -> Result<Client, etcd_client::Error> {
    let opts = ConnectOptions::new()
        .with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .identity(Identity::from_pem(&tls.cert, &tls.key)),
        )
        .with_connect_timeout(limit)
        .with_timeout(limit);
    Client::connect([endpoint], Some(opts)).await
}

/// Asks every member for its status, concurrently.
pub async fn health(members: &[(String, String)], tls: &Tls, limit: Duration) -> Vec<MemberHealth> {
    let checks = members.iter().map(|(name, endpoint)| async move {
        let started = Instant::now();
        let result = async {
            let mut c = connect(endpoint, tls, limit).await?;
            c.status().await
        };
        match tokio::time::timeout(limit, result).await {
            Ok(Ok(st)) => MemberHealth {
                name: name.clone(),
                endpoint: endpoint.clone(),
                ok: st.leader() != 0,
                leader: Some(st.leader()),
                id: st.header().map(|h| h.member_id()),
                raft_index: Some(st.raft_index()),
                db_size: Some(st.db_size()),
                version: Some(st.version().to_string()),
                latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                error: (st.leader() == 0).then(|| "no leader".to_string()),
            },
            Ok(Err(e)) => unhealthy(name, endpoint, for_people(&e, name, endpoint)),
            Err(_) => unhealthy(
                name,
                endpoint,
                format!(
                    "no answer from {} within {limit:?} — is {name} up? (`forgectl machines list`)",
                    host_port(endpoint)
                ),
            ),
        }
    });
    futures::future::join_all(checks).await
}

/// `https://10.77.0.12:2379` → `10.77.0.12:2379`.
fn host_port(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .trim_end_matches('/')
}

/// Why a member could not be asked, for people: the cause at the bottom of the client's error
/// chain (connection refused, timed out, a TLS failure …), where, and what to look at next —
/// never the client library's debug output.
pub fn for_people(e: &etcd_client::Error, name: &str, endpoint: &str) -> String {
    let at = host_port(endpoint);
    // etcd-client does not chain its gRPC status as a source: start from the status's own cause.
    let (innermost, io) = match e {
        etcd_client::Error::GRpcStatus(status) => match std::error::Error::source(status) {
            Some(cause) => crate::error_chain::bottom(cause),
            None => (status.message().to_string(), None),
        },
        e => crate::error_chain::bottom(e),
    };
    let check = format!("`forgectl exec --hosts {name} -- systemctl status etcd`");
    use std::io::ErrorKind::*;
    match io {
        Some(ConnectionRefused) => format!(
            "connection refused at {at} — is etcd running on {name}? ({check}, `forgectl machines list`)"
        ),
        Some(TimedOut) => format!(
            "no connection to {at} in time — is {name} up and reachable? (`forgectl machines list`)"
        ),
        Some(HostUnreachable | NetworkUnreachable) => {
            format!("{at} cannot be reached — is {name} up? (`forgectl machines list`)")
        }
        _ if innermost.to_lowercase().contains("certificate") => format!(
            "TLS with {at} failed: {innermost} — do the member's certificate and forgectl's etcd CA match? (`forgectl certs check`)"
        ),
        _ => format!("{at}: {innermost} ({check})"),
    }
}

fn unhealthy(name: &str, endpoint: &str, error: String) -> MemberHealth {
    MemberHealth {
        name: name.into(),
        endpoint: endpoint.into(),
        ok: false,
        leader: None,
        id: None,
        raft_index: None,
        db_size: None,
        version: None,
        latency_ms: None,
        error: Some(error),
    }
}

/// Waits until every member answers and sees a leader.
pub async fn wait_healthy(
    members: &[(String, String)],
    tls: &Tls,
    limit: Duration,
) -> Result<Vec<MemberHealth>, EtcdError> {
    let started = Instant::now();
    loop {
        let h = health(members, tls, Duration::from_secs(3)).await;
        if h.iter().all(|m| m.ok) {
            return Ok(h);
        }
        if started.elapsed() > limit {
            return Err(EtcdError::Unhealthy {
                after: limit,
                unhealthy: h
                    .iter()
                    .filter(|m| !m.ok)
                    .map(|m| {
                        format!(
                            "{} ({}): {}",
                            m.name,
                            m.endpoint,
                            m.error.clone().unwrap_or_default()
                        )
                    })
                    .collect(),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Streams a snapshot of the keyspace from `endpoint` into `file` (0600, written to a temporary
/// file and renamed, so a failed save never leaves a truncated snapshot). Returns its size.
pub async fn snapshot_save(
    name: &str,
    endpoint: &str,
    tls: &Tls,
    file: &std::path::Path,
) -> Result<u64, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let said = |e: etcd_client::Error| for_people(&e, name, endpoint);
    let mut client = connect(endpoint, tls, Duration::from_secs(10))
        .await
        .map_err(said)?;
    let mut stream = client.snapshot().await.map_err(said)?;
    let tmp = file.with_extension("partial");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut size = 0u64;
    let result = async {
        while let Some(chunk) = stream.message().await.map_err(said)? {
            out.write_all(chunk.blob()).map_err(|e| e.to_string())?;
            size += chunk.blob().len() as u64;
        }
        out.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(size)
}

/// True when a snapshot file ends with the SHA-256 of the rest, as etcd writes it.
pub fn snapshot_intact(data: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    data.len() > 32
        && Sha256::digest(&data[..data.len() - 32]).as_slice() == &data[data.len() - 32..]
}
