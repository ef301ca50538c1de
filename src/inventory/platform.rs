//! The `platform:` section: what the platform phase installs on the control planes (the
//! admission webhooks and the accounts controller, as systemd services running forgectl) and
//! the settings tool owners' `toolctl` reads (the image of each web service / job type).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tenant platform.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Install it (the `platform` phase of `up`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Registries tool images may come from (`HOST[/PATH]`, matched per path segment; a whole
    /// repository allows any tag of it). Empty: the repositories of `images` only (each
    /// platform image, any tag), never the whole registry they are on.
    #[serde(default)]
    pub allowed_registries: Vec<String>,
    /// The image of each type tool owners name (`webservice TYPE start`, `jobs run --image
    /// TYPE`), each from an allowed registry.
    #[serde(default = "default_images")]
    pub images: BTreeMap<String, String>,
    /// The admission webhooks.
    #[serde(default)]
    pub webhook: Webhook,
    /// The accounts controller (`forgectl accounts run`) on every control plane, one leader at
    /// a time. It runs when the inventory names a source of accounts (`accounts.file` or
    /// `accounts.ldap`) and this is true.
    #[serde(default = "default_true")]
    pub accounts_controller: bool,
    /// Where the accounts controller serves /metrics and /healthz on each control plane.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1))]
    pub metrics_port: u16,
    /// Full resync interval of the accounts controller, in seconds.
    #[serde(default = "default_resync")]
    pub resync_seconds: u64,
    /// The read-only dashboard (`forgectl dashboard`) on every control plane.
    #[serde(default)]
    pub dashboard: Dashboard,
}

/// `forgectl dashboard` as a systemd service on every control plane, with a client certificate
/// of its own bound to its read-only ClusterRole, published by the TLS front (when
/// `ingress.tls_front` is on) at `NAME.<ingress.tool_domain>`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// Run it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Port it listens on, on every control plane.
    #[serde(default = "default_dashboard_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// The name under the tool domain the TLS front publishes it at (`status` gives
    /// `status.<ingress.tool_domain>`); a tool of that name cannot have its web service there.
    #[serde(default = "default_dashboard_name")]
    pub name: String,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self {
            enabled: true,
            port: default_dashboard_port(),
            name: default_dashboard_name(),
        }
    }
}

fn default_dashboard_port() -> u16 {
    9110
}
fn default_dashboard_name() -> String {
    "status".into()
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_registries: Vec::new(),
            images: default_images(),
            webhook: Webhook::default(),
            accounts_controller: true,
            metrics_port: default_metrics_port(),
            resync_seconds: default_resync(),
            dashboard: Dashboard::default(),
        }
    }
}

impl Platform {
    /// The registries images may come from: the configured list, else the repositories of
    /// `images` (the default images are on Docker Hub's `library/`: allowing that whole path
    /// would admit every official image there).
    pub fn registries(&self) -> Vec<String> {
        if !self.allowed_registries.is_empty() {
            return self.allowed_registries.clone();
        }
        let mut out: Vec<String> = self
            .images
            .values()
            .map(|i| crate::admission::rules::repository(i))
            .filter(|r| !r.is_empty())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The admission webhooks: `forgectl admission serve` on each control plane's loopback, called
/// by the API server of that control plane.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Port on 127.0.0.1 of every control plane.
    #[serde(default = "default_webhook_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// What the API server does when the webhook cannot answer: `Fail` (refuse the tool's
    /// request; the default: only tool namespaces are subject to the webhooks, so the cluster's
    /// own workloads never wait on them) or `Ignore` (admit unchecked).
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Seconds the API server waits for an answer (1–30).
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u32,
}

impl Default for Webhook {
    fn default() -> Self {
        Self {
            port: default_webhook_port(),
            failure_policy: FailurePolicy::default(),
            timeout_seconds: default_webhook_timeout(),
        }
    }
}

/// A webhook's failure policy, as the API spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailurePolicy {
    /// Refuse the request.
    #[default]
    Fail,
    /// Admit it unchecked.
    Ignore,
}

impl FailurePolicy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_images() -> BTreeMap<String, String> {
    [
        ("python3.11", "docker.io/library/python:3.11-slim-bookworm"),
        ("node18", "docker.io/library/node:18-bookworm-slim"),
        ("php8.2", "docker.io/library/php:8.2-apache-bookworm"),
        ("bookworm", "docker.io/library/debian:bookworm-slim"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
fn default_metrics_port() -> u16 {
    9105
}
fn default_resync() -> u64 {
    60
}
fn default_webhook_port() -> u16 {
    8443
}
fn default_webhook_timeout() -> u32 {
    5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registries_default_to_the_repositories_of_the_images() {
        let p = Platform::default();
        assert_eq!(
            p.registries(),
            [
                "docker.io/library/debian",
                "docker.io/library/node",
                "docker.io/library/php",
                "docker.io/library/python"
            ]
        );
        let p = Platform {
            images: [
                ("a".to_string(), "reg.example:5000/x/y:1".to_string()),
                (
                    "b".to_string(),
                    "reg.example:5000/x/z@sha256:ab".to_string(),
                ),
            ]
            .into(),
            ..Platform::default()
        };
        assert_eq!(
            p.registries(),
            ["reg.example:5000/x/y", "reg.example:5000/x/z"]
        );
    }
}
