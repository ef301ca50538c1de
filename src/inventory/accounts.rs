//! The `accounts:` section: where tool accounts come from (LDAP or a YAML file), what every
//! tool gets in the cluster (namespace, quota, limits, RBAC, network policy, a client
//! certificate) and how disabled and removed tools are handled.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The tenant provisioner's settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    /// Where the tool accounts come from: `file` (a YAML file) or `ldap`.
    #[serde(default)]
    pub source: AccountSource,
    /// The YAML file of tool accounts (`source: file`; relative to the inventory file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The LDAP directory (`source: ldap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<Ldap>,
    /// Prefix of tool namespaces: tool NAME lives in `<prefix>NAME`.
    #[serde(default = "default_namespace_prefix")]
    pub namespace_prefix: String,
    /// Prefix of the Kubernetes user (certificate CN) of a tool: `<prefix>NAME`.
    #[serde(default = "default_user_prefix")]
    pub user_prefix: String,
    /// Pod Security Admission level enforced in tool namespaces: `baseline` (the default) or
    /// `restricted`; `restricted` is always the warn and audit level.
    #[serde(default)]
    pub pod_security: PodSecurityLevel,
    /// Path of the kubeconfig inside each account's home.
    #[serde(default = "default_kubeconfig_path")]
    #[schemars(extend("format" = "relative-path"))]
    pub kubeconfig_path: PathBuf,
    /// Lifetime of a client certificate, in days (the signer caps it at its own maximum,
    /// one year by default).
    #[serde(default = "default_cert_days")]
    pub cert_days: u32,
    /// Renew a certificate when fewer than this many days remain.
    #[serde(default = "default_renew_days")]
    pub renew_before_days: u32,
    /// Days a removed tool's namespace is kept (after the pass that first finds it gone) before
    /// it is deleted.
    #[serde(default = "default_grace_days")]
    pub removal_grace_days: u32,
    /// API requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// ResourceQuota of every tool namespace (`spec.hard`).
    #[serde(default = "default_quota")]
    pub quota: BTreeMap<String, String>,
    /// LimitRange of every tool namespace (per container).
    #[serde(default)]
    pub limits: ContainerLimits,
    /// Per-tool changes to the quota and limits, by tool name. Removing an entry restores the
    /// defaults at the next pass.
    #[serde(default)]
    pub overrides: BTreeMap<String, Override>,
    /// A NetworkPolicy in every tool namespace: `none`, or `isolate` (ingress only from the
    /// tool's own pods and the ingress controller's namespace).
    #[serde(default)]
    pub network_policy: NetworkPolicyDefault,
    /// Admin accounts from the source get a kubeconfig bound to these ClusterRoles.
    #[serde(default = "default_admin_roles")]
    pub admin_cluster_roles: Vec<String>,
    /// The tool's home as a volume its pods mount (the PersistentVolumeClaim `tool-home`).
    #[serde(default)]
    pub home_volume: HomeVolume,
}

/// How a tool's pods reach its home: a PersistentVolume of that one directory per tool, bound
/// to the claim `tool-home` in the tool's namespace (pods never name a node path or an NFS
/// export themselves: the admission webhook refuses inline `hostPath` and `nfs` volumes).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HomeVolume {
    /// `none` (no claim: pods get no home), `host_path` (the home's path on nodes that mount
    /// the homes export at the same path, those with the label `node.forgectl.io/nfs=true`, as
    /// storage-nfs mounts them) or `nfs` (the export itself, from `server`).
    #[serde(default)]
    pub kind: HomeVolumeKind,
    /// The NFS server (`kind: nfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Where clients mount the homes (`kind: nfs`): a home under it is exported from the same
    /// relative path under `export_root`. Unset: the home's path is the export's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "absolute-path"))]
    pub mount_root: Option<PathBuf>,
    /// The homes' directory on the NFS server (`kind: nfs`, with `mount_root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "absolute-path"))]
    pub export_root: Option<PathBuf>,
    /// The size the volume and claim declare (NFS and hostPath do not enforce it).
    #[serde(default = "default_home_size")]
    pub size: String,
}

impl Default for HomeVolume {
    fn default() -> Self {
        Self {
            kind: HomeVolumeKind::default(),
            server: None,
            mount_root: None,
            export_root: None,
            size: default_home_size(),
        }
    }
}

/// How the home volume reaches pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HomeVolumeKind {
    /// No home volume.
    #[default]
    None,
    /// The home's path on the node (NFS mounted there).
    HostPath,
    /// The NFS export directly.
    Nfs,
}

fn default_home_size() -> String {
    "10Gi".into()
}

impl Default for Accounts {
    fn default() -> Self {
        Self {
            source: AccountSource::default(),
            file: None,
            ldap: None,
            namespace_prefix: default_namespace_prefix(),
            user_prefix: default_user_prefix(),
            pod_security: PodSecurityLevel::default(),
            kubeconfig_path: default_kubeconfig_path(),
            cert_days: default_cert_days(),
            renew_before_days: default_renew_days(),
            removal_grace_days: default_grace_days(),
            concurrency: default_concurrency(),
            quota: default_quota(),
            limits: ContainerLimits::default(),
            overrides: BTreeMap::new(),
            network_policy: NetworkPolicyDefault::default(),
            admin_cluster_roles: default_admin_roles(),
            home_volume: HomeVolume::default(),
        }
    }
}

/// Where tool accounts come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountSource {
    /// A YAML file (`accounts.file`).
    #[default]
    File,
    /// An LDAP directory (`accounts.ldap`).
    Ldap,
}

/// The LDAP directory of tool accounts (Toolforge's layout by default).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ldap {
    /// `ldaps://HOST[:PORT]` (TLS from the start) or `ldap://HOST[:PORT]` (then StartTLS).
    pub url: String,
    /// PEM CA bundle that signed the server's certificate (relative to the inventory file);
    /// without it the system's roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// DN to bind as (read access to accounts and groups).
    pub bind_dn: String,
    /// File holding the bind password (relative to the inventory file); else the environment
    /// variable FORGECTL_LDAP_PASSWORD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password_file: Option<PathBuf>,
    /// Where the tool accounts (posixAccount `uid=<prefix>NAME`) are.
    pub tools_base: String,
    /// Where the tool groups (`cn=<prefix>NAME`, members = maintainers) are.
    pub groups_base: String,
    /// Where human users (admins) are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_base: Option<String>,
    /// Prefix of tool account uids and group cns.
    #[serde(default = "default_ldap_prefix")]
    pub tool_prefix: String,
    /// DN of the group whose members are admins (they get a kubeconfig with
    /// `accounts.admin_cluster_roles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_group: Option<String>,
    /// The attribute that marks a tool disabled.
    #[serde(default = "default_disabled_attribute")]
    pub disabled_attribute: String,
    /// The value of `disabled_attribute` that means disabled; without it, any value does.
    #[serde(
        default = "default_disabled_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub disabled_value: Option<String>,
    /// Entries per page of the paged search.
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    /// Seconds one LDAP operation may take.
    #[serde(default = "default_ldap_timeout")]
    pub timeout_seconds: u64,
}

/// Pod Security Admission level of tool namespaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// No privileged pods, no host namespaces, no added capabilities.
    #[default]
    Baseline,
    /// Baseline plus non-root, no privilege escalation, dropped capabilities, seccomp.
    Restricted,
}

impl PodSecurityLevel {
    /// The PSA label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// The default NetworkPolicy of tool namespaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkPolicyDefault {
    /// None.
    None,
    /// Ingress only from the namespace's own pods and from the ingress controller.
    #[default]
    Isolate,
}

/// Per-container limits of tool namespaces (a LimitRange of type Container).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerLimits {
    /// Limits a container gets when it sets none (`cpu`, `memory`).
    #[serde(default = "default_limit")]
    pub default: BTreeMap<String, String>,
    /// Requests a container gets when it sets none.
    #[serde(default = "default_request")]
    pub default_request: BTreeMap<String, String>,
    /// The most a container may ask for.
    #[serde(default = "default_max")]
    pub max: BTreeMap<String, String>,
}

impl Default for ContainerLimits {
    fn default() -> Self {
        Self {
            default: default_limit(),
            default_request: default_request(),
            max: default_max(),
        }
    }
}

/// One tool's changes to the defaults (each key replaces the default's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Quota entries (`spec.hard` keys such as `limits.memory`).
    #[serde(default)]
    pub quota: BTreeMap<String, String>,
    /// Container limit changes.
    #[serde(default)]
    pub limits: LimitsOverride,
}

/// Container limit changes of one tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    /// Default limits.
    #[serde(default)]
    pub default: BTreeMap<String, String>,
    /// Default requests.
    #[serde(default)]
    pub default_request: BTreeMap<String, String>,
    /// Maximum.
    #[serde(default)]
    pub max: BTreeMap<String, String>,
}

/// What one tool gets: the defaults with its override (if any) over them.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolLimits {
    /// The ResourceQuota's `spec.hard`.
    pub quota: BTreeMap<String, String>,
    /// Default container limits.
    pub default: BTreeMap<String, String>,
    /// Default container requests.
    pub default_request: BTreeMap<String, String>,
    /// Most a container may ask for.
    pub max: BTreeMap<String, String>,
}

impl Accounts {
    /// The quota and container limits of tool `name` (None, or a tool without an override: the
    /// defaults).
    pub fn limits_for(&self, name: Option<&str>) -> ToolLimits {
        let over = name.and_then(|n| self.overrides.get(n));
        let merged = |base: &BTreeMap<String, String>, o: Option<&BTreeMap<String, String>>| {
            let mut m = base.clone();
            m.extend(o.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
            m
        };
        ToolLimits {
            quota: merged(&self.quota, over.map(|o| &o.quota)),
            default: merged(&self.limits.default, over.map(|o| &o.limits.default)),
            default_request: merged(
                &self.limits.default_request,
                over.map(|o| &o.limits.default_request),
            ),
            max: merged(&self.limits.max, over.map(|o| &o.limits.max)),
        }
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
fn default_namespace_prefix() -> String {
    "tool-".into()
}
fn default_user_prefix() -> String {
    "tool-".into()
}
fn default_kubeconfig_path() -> PathBuf {
    PathBuf::from(".kube/config")
}
fn default_cert_days() -> u32 {
    365
}
fn default_renew_days() -> u32 {
    30
}
fn default_grace_days() -> u32 {
    30
}
fn default_concurrency() -> usize {
    32
}
fn default_quota() -> BTreeMap<String, String> {
    map(&[
        ("pods", "16"),
        ("requests.cpu", "2"),
        ("requests.memory", "6Gi"),
        ("limits.cpu", "8"),
        ("limits.memory", "8Gi"),
        ("services", "2"),
        ("services.nodeports", "0"),
        ("configmaps", "10"),
        ("secrets", "16"),
        ("persistentvolumeclaims", "3"),
        ("count/cronjobs.batch", "50"),
        ("count/jobs.batch", "15"),
        ("count/deployments.apps", "16"),
    ])
}
fn default_limit() -> BTreeMap<String, String> {
    map(&[("cpu", "500m"), ("memory", "512Mi")])
}
/// 16 pods (the default quota) × 125m = `requests.cpu: 2`: a tool can run all the pods its
/// quota allows with the default requests.
fn default_request() -> BTreeMap<String, String> {
    map(&[("cpu", "125m"), ("memory", "256Mi")])
}
fn default_max() -> BTreeMap<String, String> {
    map(&[("cpu", "1"), ("memory", "4Gi")])
}
fn default_admin_roles() -> Vec<String> {
    vec!["view".into()]
}
fn default_ldap_prefix() -> String {
    "tools.".into()
}
fn default_disabled_attribute() -> String {
    "loginShell".into()
}
fn default_disabled_value() -> Option<String> {
    Some("/bin/disabledtoolshell".into())
}
fn default_page_size() -> i32 {
    500
}
fn default_ldap_timeout() -> u64 {
    30
}
