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
    /// Tool namespace prefix; default: the inventory's `accounts.namespace_prefix`.
    pub namespace_prefix: Option<String>,
}

/// Serves the webhooks until interrupted.
pub async fn admission_serve(
    file: Option<&Path>,
    a: &AdmissionOptions,
    opts: &Options,
) -> Result<ExitCode, CommandError> {
    // The inventory is read only for what the flags leave out.
    let needs_inventory =
        a.tool_domain.is_none() || a.registries.is_empty() || a.namespace_prefix.is_none();
    let inv = if needs_inventory {
        Some(load_inventory(file, opts)?.inventory)
    } else {
        None
    };
    let pick = |flag: &Option<String>, from: fn(&crate::inventory::Inventory) -> String| {
        flag.clone()
            .or_else(|| inv.as_ref().map(from))
            .unwrap_or_default()
    };
    let tool_domain = pick(&a.tool_domain, |i| i.ingress.tool_domain.clone());
    let namespace_prefix = pick(&a.namespace_prefix, |i| i.accounts.namespace_prefix.clone());
    let registries = if a.registries.is_empty() {
        inv.as_ref()
            .map(|i| i.platform.registries())
            .unwrap_or_default()
    } else {
        a.registries.clone()
    };
    if registries.is_empty() {
        return Err(CommandError::Usage(
            "no registry is allowed: give --allow-registry (repeatable) or platform.images in the inventory".into(),
        ));
    }
    let policy = Policy {
        allowed_registries: registries,
        tool_domain,
        namespace_prefix,
    };
    crate::errln!(
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
        _ = tokio::signal::ctrl_c() => crate::errln!("admission webhooks: stopping"),
    }
    Ok(ExitCode::Ok)
}
