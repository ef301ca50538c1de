//! The connection to the cloud: configuration (clouds.yaml, `OS_*`), authentication, and one
//! place where every API call gets bounded concurrency, retries with backoff and jitter, and a
//! readable error.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use openstack_sdk::api::{ApiError, QueryAsync};
use openstack_sdk::config::{CloudConfig, ConfigFile};
use openstack_sdk::types::ServiceType;
use openstack_sdk::{AsyncOpenStack, RestError};
use tokio::sync::Semaphore;

use super::error::OpenStackError;
use crate::inventory::OpenStackProvider;

/// Attempts per call before giving up on a transient error.
const ATTEMPTS: u32 = 5;
/// First retry delay; doubled each attempt, plus up to as much again of jitter.
const FIRST_DELAY: Duration = Duration::from_millis(400);
/// Time limit of one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// An authenticated connection with a bound on requests in flight.
pub struct Cloud {
    /// The SDK session.
    pub os: AsyncOpenStack,
    /// The project the token is scoped to.
    pub project_id: Option<String>,
    limit: Semaphore,
}

/// Whether a call may be repeated after an error that leaves its effect unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// GET, DELETE, PUT: repeat on 5xx, 429 and connection errors.
    Idempotent,
    /// POST that creates: repeat only when the cloud said it did nothing (429, 503).
    Create,
}

/// The cloud configuration for `settings`: the named cloud from clouds.yaml, else `OS_*`.
pub fn cloud_config(settings: &OpenStackProvider) -> Result<(String, CloudConfig), OpenStackError> {
    let name = settings
        .cloud
        .clone()
        .or_else(|| std::env::var("OS_CLOUD").ok().filter(|s| !s.is_empty()));
    let mut config = match &name {
        Some(cloud) => {
            // openstack_sdk reads OS_CLIENT_CONFIG_PATH; the python tools use OS_CLIENT_CONFIG_FILE.
            let extra = std::env::var_os("OS_CLIENT_CONFIG_FILE").map(PathBuf::from);
            let files = ConfigFile::new_with_user_specified_configs(extra, None::<PathBuf>)
                .map_err(|e| OpenStackError::Config(e.to_string()))?;
            files
                .get_cloud_config(cloud)
                .map_err(|e| OpenStackError::Config(e.to_string()))?
                .ok_or_else(|| {
                    let known = files.get_available_clouds();
                    OpenStackError::Config(format!(
                        "cloud `{cloud}` is not in any clouds.yaml; known clouds: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                })?
        }
        None => {
            if std::env::var_os("OS_AUTH_URL").is_none() {
                return Err(OpenStackError::NoCloud);
            }
            CloudConfig::from_env().map_err(|e| OpenStackError::Config(e.to_string()))?
        }
    };
    if let Some(region) = &settings.region {
        config.region_name = Some(region.clone());
    }
    if let Some(interface) = &settings.interface {
        config.interface = Some(interface.clone());
    }
    // Tokens are never written to disk by forgectl.
    config.auth_cache = Some(false);
    Ok((name.unwrap_or_else(|| "OS_* environment".into()), config))
}

impl Cloud {
    /// Authenticates and reads the catalog.
    pub async fn connect(settings: &OpenStackProvider) -> Result<Self, OpenStackError> {
        let (name, config) = cloud_config(settings)?;
        let connect = AsyncOpenStack::builder(&config)
            .disable_auth_cache(true)
            .http_timeout(HTTP_TIMEOUT)
            .http_connect_timeout(Duration::from_secs(15))
            .connect();
        let os = tokio::time::timeout(HTTP_TIMEOUT * 2, connect)
            .await
            .map_err(|_| OpenStackError::Connect {
                cloud: name.clone(),
                msg: "no answer from the identity service".into(),
            })?
            .map_err(|e| OpenStackError::Connect {
                cloud: name.clone(),
                msg: one_line(&e.to_string()),
            })?;
        // Version discovery: catalogs often list unversioned endpoints (Neutron's `/`), and the
        // microversion ranges (Nova, Cinder) come from there too.
        for service in [
            ServiceType::Compute,
            ServiceType::Network,
            ServiceType::BlockStorage,
            ServiceType::Image,
        ] {
            tokio::time::timeout(HTTP_TIMEOUT, os.discover_service_endpoint(&service))
                .await
                .map_err(|_| OpenStackError::Connect {
                    cloud: name.clone(),
                    msg: format!("no answer from the {service} service"),
                })?
                .map_err(|e| OpenStackError::Connect {
                    cloud: name.clone(),
                    msg: format!("{service} service: {}", one_line(&e.to_string())),
                })?;
        }
        let project_id = os
            .get_auth_info()
            .and_then(|a| a.token.project)
            .and_then(|p| p.id);
        Ok(Self {
            os,
            project_id,
            limit: Semaphore::new(settings.concurrency.max(1) as usize),
        })
    }

    /// Runs `call` (made anew for each attempt) under the concurrency bound, retrying transient
    /// failures as `retry` allows; `what` names the call in errors.
    pub async fn call<T, F, Fut>(
        &self,
        what: &str,
        retry: Retry,
        call: F,
    ) -> Result<T, OpenStackError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ApiError<RestError>>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let _permit = self
                    .limit
                    .acquire()
                    .await
                    .map_err(|_| OpenStackError::Interrupted)?;
                call().await
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let err = api_error(what, &e);
                    if attempt >= ATTEMPTS || !transient(&e, retry) {
                        return Err(err);
                    }
                    let delay = backoff(attempt);
                    tracing::warn!(call = what, attempt, ?delay, error = %err, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl Cloud {
    /// Sends the request `make` builds (anew for each attempt) and decodes the answer; any
    /// openstack_sdk request works, also wrapped in `find`, `paged` or `ignore`.
    pub async fn query<T, E>(
        &self,
        what: &str,
        retry: Retry,
        make: impl Fn() -> Result<E, Build>,
    ) -> Result<T, OpenStackError>
    where
        E: QueryAsync<T, AsyncOpenStack>,
    {
        self.call(what, retry, || async {
            make()
                .map_err(|e| ApiError::Session { msg: e.to_string() })?
                .query_async(&self.os)
                .await
        })
        .await
    }
}

/// Why a request could not be built (openstack_sdk has one builder error type per endpoint).
pub type Build = Box<dyn std::error::Error + Send + Sync>;

/// The delay before retry `attempt` (1-based): exponential with jitter.
pub fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = FIRST_DELAY * 2u32.saturating_pow(attempt.saturating_sub(1));
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % (base.as_millis() as u64).max(1);
    base + Duration::from_millis(jitter)
}

/// HTTP status of an API error, if the cloud answered.
pub fn status_of(e: &ApiError<RestError>) -> Option<u16> {
    match e {
        ApiError::OpenStack { status, .. }
        | ApiError::OpenStackService { status, .. }
        | ApiError::OpenStackUnrecognized { status, .. } => Some(status.as_u16()),
        ApiError::ResourceNotFound => Some(404),
        _ => None,
    }
}

fn transient(e: &ApiError<RestError>, retry: Retry) -> bool {
    match (status_of(e), retry) {
        (Some(429 | 503), _) => true,
        (Some(s), Retry::Idempotent) => s >= 500,
        (Some(_), Retry::Create) => false,
        // No answer at all: connection refused or reset, timeouts.
        (None, Retry::Idempotent) => matches!(e, ApiError::Client { .. }),
        (None, Retry::Create) => false,
    }
}

/// A readable error for a failed call.
pub fn api_error(what: &str, e: &ApiError<RestError>) -> OpenStackError {
    let msg = match e {
        ApiError::OpenStack { msg, .. } => msg.clone(),
        ApiError::OpenStackService { data, status, .. } => {
            if data.trim().is_empty() {
                status.to_string()
            } else {
                data.clone()
            }
        }
        ApiError::OpenStackUnrecognized { obj, .. } => obj.to_string(),
        other => other.to_string(),
    };
    OpenStackError::Api {
        what: what.to_string(),
        status: status_of(e),
        msg: one_line(&msg),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True for "not found" answers (the resource is gone already).
pub fn is_not_found(e: &OpenStackError) -> bool {
    e.status() == Some(404)
}
