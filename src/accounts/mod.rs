//! The tenant provisioner (what Toolforge's maintain-kubeusers does, done as one reconcile):
//! reads tool and admin accounts from a [`Source`] (LDAP or a YAML file), makes every tool its
//! namespace, quota, limits, RBAC and network policy with server-side apply, issues client
//! certificates through the CertificateSigningRequest API (many at once), writes kubeconfigs
//! into homes, renews them before they expire, disables and removes tools. A pass over
//! unchanged tenants reads (one list per kind, the files in the homes) and writes nothing.

pub mod controller;
pub mod credentials;
mod csr_client;
pub mod desired;
pub mod directory;
mod drift_watch;
pub mod file_source;
pub mod home_files;
pub mod home_volume;
pub mod ldap_source;
pub mod lease;
mod list_page;
mod observe;
pub mod reconcile;

pub use directory::{Directory, Person, Source, ToolAccount};
pub use file_source::FileSource;
pub use ldap_source::LdapSource;
pub use reconcile::{Cluster, PassOptions, Summary, sync};

/// Why the provisioner failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The source of accounts could not be read.
    #[error("accounts source {source_name}: {cause}")]
    Source {
        /// The file or URL.
        source_name: String,
        /// Why.
        cause: String,
    },
    /// A Kubernetes API request failed.
    #[error("{what}: {cause}")]
    Api {
        /// What was asked.
        what: String,
        /// The answer.
        cause: String,
    },
    /// A pass would mark too many tools for removal at once (a broken source looks like every
    /// tool removed).
    #[error(
        "the source lists {listed} tools, the cluster has {gone} tool namespaces it does not list: refusing to mark them all for removal"
    )]
    MassRemoval {
        /// Tools the source lists.
        listed: usize,
        /// Tool namespaces it does not list.
        gone: usize,
    },
}

impl AccountsError {
    /// What to do next.
    pub fn next_step(&self) -> String {
        match self {
            Self::Source { .. } => "check accounts.file / accounts.ldap in the inventory (URL, CA, bind DN, password) and that the source answers".into(),
            Self::Api { .. } => "check the API server (`forgectl status`) and run `forgectl accounts sync` again: a pass picks up where the last one stopped".into(),
            Self::MassRemoval { .. } => "check that the source is complete; if those tools really are gone, run again with --allow-mass-removal".into(),
        }
    }
}

/// Renders an API error for people.
pub(crate) fn api_err(what: impl Into<String>, e: ::kube::Error) -> AccountsError {
    AccountsError::Api {
        what: what.into(),
        cause: crate::kube::error_text(&e),
    }
}
