//! Errors of the OpenStack provider, each with the next step for people.

/// One quota that is too small for what the run would create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// Service and quota name, e.g. `compute instances`.
    pub quota: String,
    /// How much the run needs.
    pub needed: i64,
    /// How much is left (limit − used).
    pub left: i64,
    /// The limit.
    pub limit: i64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: needs {}, {} left (limit {})",
            self.quota, self.needed, self.left, self.limit
        )
    }
}

/// Why the OpenStack provider failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenStackError {
    /// No cloud was named and the `OS_*` variables say nothing either.
    #[error(
        "no OpenStack cloud configured: set `openstack.cloud` or OS_CLOUD (with clouds.yaml), or the OS_* variables"
    )]
    NoCloud,
    /// The configuration files could not be read, or the cloud is not in them.
    #[error("OpenStack configuration: {0}")]
    Config(String),
    /// Authentication or the service catalog failed.
    #[error("cannot connect to cloud `{cloud}`: {msg}")]
    Connect {
        /// Cloud name.
        cloud: String,
        /// Why.
        msg: String,
    },
    /// An API call failed (after retries, where retrying is safe).
    #[error("{what}: {msg}")]
    Api {
        /// What was being done.
        what: String,
        /// HTTP status, if the server answered.
        status: Option<u16>,
        /// The cloud's message.
        msg: String,
    },
    /// Names in the inventory that the cloud does not have; nothing was created.
    #[error("not found in the cloud (nothing was created): {}", .0.join("; "))]
    Missing(Vec<String>),
    /// The project's quota is too small; nothing was created.
    #[error("quota too small for this cluster (nothing was created): {}", .0.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "))]
    Quota(Vec<Shortfall>),
    /// A server went to ERROR.
    #[error("server {server} ({machine}) went to ERROR: {fault}")]
    ServerFailed {
        /// Machine name.
        machine: String,
        /// Server name.
        server: String,
        /// Nova's fault message.
        fault: String,
    },
    /// Something did not reach the wanted state in time.
    #[error("{what} did not become {wanted} within {secs} s (last seen: {last})")]
    Timeout {
        /// The resource.
        what: String,
        /// The wanted state.
        wanted: String,
        /// The limit.
        secs: u64,
        /// The last state seen.
        last: String,
    },
    /// The user stopped the run.
    #[error("interrupted")]
    Interrupted,
    /// Several machines failed.
    #[error("{}", .0.iter().map(|(m, e)| format!("{m}: {e}")).collect::<Vec<_>>().join("; "))]
    Machines(Vec<(String, OpenStackError)>),
    /// The state dir record could not be written.
    #[error("cannot write {path}: {msg}")]
    Record {
        /// The file.
        path: String,
        /// Why.
        msg: String,
    },
}

impl OpenStackError {
    /// What to do next.
    pub fn next_step(&self) -> String {
        match self {
            Self::NoCloud => "export OS_CLOUD=NAME (an entry of clouds.yaml; OS_CLIENT_CONFIG_FILE names the file), or set openstack.cloud in the inventory".into(),
            Self::Config(_) => "check clouds.yaml (OS_CLIENT_CONFIG_FILE or ~/.config/openstack/clouds.yaml) and the cloud's name".into(),
            Self::Connect { .. } => "check the credentials and auth_url (`openstack token issue` tells the same), then run again".into(),
            Self::Api { status: Some(403), .. } => "the project's role lacks a permission or a quota is used up: ask the cloud's admins".into(),
            Self::Api { .. } => "run again: what exists is kept and only the missing parts are made; `forgectl down` deletes what forgectl made".into(),
            Self::Missing(_) => "fix the names in the inventory's `openstack:` settings (`openstack flavor list`, `openstack image list`, `openstack network list` show what exists)".into(),
            Self::Quota(_) => "ask for a larger quota, or make fewer or smaller machines".into(),
            Self::ServerFailed { .. } => "fix the cause above; the next `forgectl up` replaces servers in ERROR, `forgectl down` deletes everything".into(),
            Self::Timeout { .. } => "the cloud is slow or stuck: check it, then run again (what exists is kept)".into(),
            Self::Interrupted => "run again to finish, or `forgectl down` to delete what was made".into(),
            Self::Machines(list) => list.first().map(|(_, e)| e.next_step()).unwrap_or_default(),
            Self::Record { .. } => "check the state dir and its permissions".into(),
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => *status,
            _ => None,
        }
    }
}
