//! The admission webhooks (`forgectl admission serve`): one HTTPS server (axum + rustls)
//! answering AdmissionReview v1 for the registry rule (`/validate/images`) and the ingress rule
//! (`/validate/ingress`). The rules are in `rules`, the server in `server`.

pub mod rules;
pub mod server;

pub use rules::Policy;
pub use server::{ServeOptions, review, router, serve};

/// Why the webhook server could not run.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The serving certificate or key could not be read.
    #[error("serving certificate {cert} / key {key}: {cause}")]
    Tls {
        /// Certificate path.
        cert: String,
        /// Key path.
        key: String,
        /// Why.
        cause: String,
    },
    /// The address could not be bound or the server failed.
    #[error("webhook server on {listen}: {cause}")]
    Serve {
        /// Listen address.
        listen: String,
        /// Why.
        cause: String,
    },
    /// The policy is unusable.
    #[error("admission policy: {0}")]
    Policy(String),
}

impl AdmissionError {
    /// What to do next.
    pub fn next_step(&self) -> &'static str {
        match self {
            Self::Tls { .. } => {
                "give --cert and --key as PEM files readable by forgectl (the platform phase issues them from the cluster CA)"
            }
            Self::Serve { .. } => "pick a free --listen address, or stop what holds it",
            Self::Policy(_) => "give at least one --allow-registry and the tool domain",
        }
    }
}
