//! `forgectl admission serve`: the registry and ingress admission webhooks over HTTPS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CommandError, ExitCode, load_inventory};
use crate::admission::{Policy, ServeOptions, serve};
use crate::output::Options;

/// What `admission serve` was given.
#[derive(Debug, Clone)]
pub struct AdmissionOptions {
    /// Listen address.
    pub listen: SocketAddr,
    /// Serving certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Allowed registries.
    pub registries: Vec<String>,
    /// Tool domain; default: the inventory's `ingress.tool_domain`.
    pub tool_domain: Option<String>,
    /// Tool namespace prefix.
    pub namespace_prefix: String,
}

/// Serves the webhooks until interrupted.
pub async fn admission_serve(
    file: Option<&Path>,
    a: &AdmissionOptions,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    let tool_domain = match &a.tool_domain {
        Some(d) => d.clone(),
        None => load_inventory(file, opts)?.inventory.ingress.tool_domain,
    };
    if a.registries.is_empty() {
        return Err(CommandError::Usage(
            "give the registries images may come from with --allow-registry (repeatable)".into(),
        ));
    }
    let policy = Policy {
        allowed_registries: a.registries.clone(),
        tool_domain,
        namespace_prefix: a.namespace_prefix.clone(),
    };
    eprintln!(
        "admission webhooks on https://{} (images from {}; hosts NAME.{} in {}NAME)",
        a.listen,
        policy.allowed_registries.join(", "),
        policy.tool_domain,
        policy.namespace_prefix
    );
    let server = serve(
        policy,
        ServeOptions {
            listen: a.listen,
            cert: a.cert.clone(),
            key: a.key.clone(),
            reload_every: Duration::from_secs(30),
        },
        None,
    );
    tokio::select! {
        r = server => r?,
        _ = tokio::signal::ctrl_c() => eprintln!("admission webhooks: stopping"),
    }
    Ok(ExitCode::Ok)
}
