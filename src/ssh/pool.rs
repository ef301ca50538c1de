//! Connections to many hosts: one per host, made on first use and reused, with bounded host
//! concurrency for fan-out.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell, Semaphore};

use super::{Endpoint, Session, Settings, SshError};

/// The result of one host's work.
#[derive(Debug)]
pub struct HostResult<T> {
    /// Machine name.
    pub host: String,
    /// What happened.
    pub result: Result<T, SshError>,
}

/// One reused session per host.
pub struct Pool {
    settings: Arc<Settings>,
    sessions: Mutex<HashMap<String, Arc<OnceCell<Arc<Session>>>>>,
    hosts: Arc<Semaphore>,
}

impl Pool {
    /// A pool with these settings.
    pub fn new(settings: Settings) -> Self {
        let hosts = Arc::new(Semaphore::new(settings.host_concurrency.max(1)));
        Self {
            settings: Arc::new(settings),
            sessions: Mutex::new(HashMap::new()),
            hosts,
        }
    }

    /// The session for `ep`, connecting on first use. A failed connection is not cached.
    pub async fn session(&self, ep: &Endpoint) -> Result<Arc<Session>, SshError> {
        let cell = {
            let mut map = self.sessions.lock().await;
            map.entry(ep.name.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            Session::connect(ep, self.settings.clone())
                .await
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    /// Forgets the session of `host` (after it broke), so the next use reconnects.
    pub async fn forget(&self, host: &str) {
        self.sessions.lock().await.remove(host);
    }

    /// Runs `work` on every endpoint, at most `host_concurrency` hosts at once; results keep the
    /// endpoints' order.
    pub async fn each<T, F, Fut>(&self, endpoints: &[Endpoint], work: F) -> Vec<HostResult<T>>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, SshError>>,
    {
        self.each_tried(endpoints, work, 1).await
    }

    /// Like [`Pool::each`], for work that only reads: when the connection to a host is lost
    /// during it, the host is connected to again and the work tried once more.
    pub async fn each_retrying<T, F, Fut>(
        &self,
        endpoints: &[Endpoint],
        work: F,
    ) -> Vec<HostResult<T>>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, SshError>>,
    {
        self.each_tried(endpoints, work, 2).await
    }

    /// `work` on every endpoint, tried up to `tries` times on a new connection while the
    /// connection is lost during it, and once more in any case when it was lost before the
    /// command started (a lost connection is forgotten either way).
    async fn each_tried<T, F, Fut>(
        &self,
        endpoints: &[Endpoint],
        work: F,
        tries: usize,
    ) -> Vec<HostResult<T>>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, SshError>>,
    {
        let tasks = endpoints.iter().map(|ep| {
            let work = &work;
            async move {
                let _permit = self.hosts.acquire().await;
                let mut tried = 0;
                let result = loop {
                    tried += 1;
                    let result = match self.session(ep).await {
                        Ok(s) => work(s).await,
                        Err(e) => Err(e),
                    };
                    let Err(e @ SshError::Lost { started, .. }) = &result else {
                        break result;
                    };
                    self.forget(&ep.name).await;
                    let allowed = if *started { tries } else { tries.max(2) };
                    if tried >= allowed {
                        break result;
                    }
                    tracing::info!(host = %ep.name, error = %e, "connection lost; connecting again");
                };
                HostResult {
                    host: ep.name.clone(),
                    result,
                }
            }
        });
        futures::future::join_all(tasks).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let map = std::mem::take(&mut *self.sessions.lock().await);
        for cell in map.values() {
            if let Some(s) = cell.get() {
                s.close().await;
            }
        }
    }
}
