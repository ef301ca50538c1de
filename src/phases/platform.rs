//! The platform phase: the tenant platform on the control planes. forgectl itself runs there as
//! two systemd services — the admission webhooks on 127.0.0.1 (each API server calls its own)
//! and the accounts controller (one leader through a Lease) — with certificates from the
//! Kubernetes CA; `toolctl` (and `webservice`) on the bastions, where tool owners log in; then
//! the cluster objects: the settings toolctl reads, the controller's RBAC and the admission
//! configuration.

use base64::Engine;
use serde::Serialize;

use super::kubeadm_init::api_endpoint;
use super::{Phase, PhaseError, PlanContext, Target, manifests};
use crate::accounts::desired::{GID_ANNOTATION, TENANT_LABEL, TOOLS_GROUP, UID_ANNOTATION};
use crate::inventory::accounts::AccountSource;
use crate::inventory::{Inventory, Machine, Role};
use crate::own_executable::Program;
use crate::pki::{ACCOUNTS_USER, DASHBOARD_USER, paths};
use crate::plan::{Action, Op, Readiness};
use crate::tool_context::{PLATFORM_NAMESPACE, SETTINGS_CONFIGMAP};

/// Installs the platform.
pub struct Platform;

/// Where forgectl is installed on the control planes.
pub const BINARY: &str = "/usr/local/bin/forgectl";
/// Where toolctl is installed on the bastions.
pub const TOOLCTL: &str = "/usr/local/bin/toolctl";
/// Its other name there (a symlink beside it).
pub const WEBSERVICE: &str = "/usr/local/bin/webservice";
/// The platform's files on each control plane (0700 root).
pub const DIR: &str = "/etc/forgectl/platform";
/// The cluster objects' template.
pub const TEMPLATE: &str = "platform/platform.yaml.tera";
/// The webhooks' unit.
pub const ADMISSION_UNIT: &str = "forgectl-admission.service";
/// The controller's unit.
pub const ACCOUNTS_UNIT: &str = "forgectl-accounts.service";
/// The dashboard's systemd unit.
pub const DASHBOARD_UNIT: &str = "forgectl-dashboard.service";
/// The Lease of the accounts controllers.
pub const LEASE: (&str, &str) = ("kube-system", "forgectl-accounts");

const SECRET: Target = Target {
    path: "",
    mode: 0o600,
    owner: "root:root",
};
const UNIT: Target = Target {
    path: "",
    mode: 0o644,
    owner: "root:root",
};

/// What the templates get.
#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    namespace: &'a str,
    settings: &'a str,
    /// The toolctl ConfigMap's data: key and its value as a JSON (so YAML) string.
    settings_data: Vec<(String, String)>,
    tools_group: &'a str,
    controller: bool,
    accounts_user: &'a str,
    admin_cluster_roles: &'a [String],
    tool_role: &'a str,
    tool_role_object: String,
    lease_namespace: &'a str,
    lease_name: &'a str,
    tenant_label: &'a str,
    uid_annotation: &'a str,
    gid_annotation: &'a str,
    failure_policy: &'a str,
    timeout_seconds: u32,
    port: u16,
    ca_bundle: String,
    binary: &'a str,
    dir: &'a str,
    metrics_port: u16,
    interval: u64,
    endpoint: String,
    dashboard: bool,
    dashboard_role: &'a str,
    dashboard_role_object: String,
    dashboard_binding_object: String,
    dashboard_port: u16,
    dashboard_host: String,
    /// The ingress controllers' metrics (host network: each ingress node's :10254).
    ingress_metrics: Vec<String>,
    pki_dir: &'a str,
}

/// A platform service's kubeconfig: `user`'s certificate `file`.crt/.key and the CA, in
/// `files` (the platform's directory, or the credentials directory systemd gives a service).
#[derive(Serialize)]
struct KubeconfigVars<'a> {
    cluster: &'a str,
    endpoint: &'a str,
    user: &'a str,
    file: &'a str,
    files: &'a str,
}

/// Where the TLS front publishes the dashboard: `NAME.<tool domain>`.
pub fn dashboard_host(inv: &Inventory) -> String {
    format!(
        "{}.{}",
        inv.platform.dashboard.name, inv.ingress.tool_domain
    )
}

/// Where the dashboard reads the ingress controllers' request counters: each ingress node's
/// :10254/metrics when the controllers use the host's network (else their pods' addresses are
/// not known ahead, and the page shows no requests/s).
fn ingress_metrics(inv: &crate::inventory::Loaded) -> Vec<String> {
    let i = &inv.inventory.ingress;
    if !i.enabled || !i.host_network {
        return Vec::new();
    }
    inv.with_role(Role::Ingress)
        .map(|m| format!("http://{}:10254/metrics", super::etcd::address_or_name(m)))
        .collect()
}

/// An object as YAML for people reviewing the rendered manifest (the serializer, not pasting).
fn yaml(object: &serde_json::Value) -> Result<String, PhaseError> {
    serde_saphyr::to_string(object).map_err(|e| {
        PhaseError::Inventory(format!(
            "{}: {e}",
            object["metadata"]["name"].as_str().unwrap_or("an object")
        ))
    })
}

/// Whether the platform runs the accounts controller: asked for, with a source to read.
pub fn runs_controller(inv: &Inventory) -> bool {
    inv.platform.accounts_controller && has_account_source(inv)
}

/// Whether the inventory names a source of accounts for the controller to read.
pub fn has_account_source(inv: &Inventory) -> bool {
    match inv.accounts.source {
        AccountSource::File => inv.accounts.file.is_some(),
        AccountSource::Ldap => inv.accounts.ldap.is_some(),
    }
}

/// What toolctl reads from the settings ConfigMap, each value quoted.
fn settings_data(inv: &Inventory) -> Vec<(String, String)> {
    let quote = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    let mut out = vec![
        ("tool_domain".to_string(), quote(&inv.ingress.tool_domain)),
        (
            "namespace_prefix".to_string(),
            quote(&inv.accounts.namespace_prefix),
        ),
    ];
    out.extend(
        inv.platform
            .images
            .iter()
            .map(|(k, v)| (format!("image.{k}"), quote(v))),
    );
    out
}

/// Files the controller's inventory names, by the name they get in `DIR`: (inventory path,
/// file name on the host).
fn account_files(inv: &Inventory) -> Vec<(std::path::PathBuf, &'static str)> {
    let a = &inv.accounts;
    let mut out = Vec::new();
    match a.source {
        AccountSource::File => {
            if let Some(f) = &a.file {
                out.push((f.clone(), "accounts.yaml"));
            }
        }
        AccountSource::Ldap => {
            if let Some(l) = &a.ldap {
                if let Some(ca) = &l.ca_file {
                    out.push((ca.clone(), "ldap-ca.pem"));
                }
                if let Some(pw) = &l.bind_password_file {
                    out.push((pw.clone(), "ldap-password"));
                }
            }
        }
    }
    out
}

/// The inventory the services on the control planes read: this one, with the files of the
/// accounts source where the phase puts them and nothing that only the admin's machine has
/// (SSH keys, the artifact directory, the TLS front's files).
pub fn host_inventory(inv: &Inventory) -> Result<String, PhaseError> {
    let mut i = inv.clone();
    i.ssh.key = None;
    i.ssh.bastion = None;
    i.artifacts = Default::default();
    i.ingress.tls_front.cert_file = None;
    i.ingress.tls_front.key_file = None;
    let at = |name: &str| Some(std::path::PathBuf::from(format!("{DIR}/{name}")));
    if i.accounts.file.is_some() {
        i.accounts.file = at("accounts.yaml");
    }
    if let Some(l) = i.accounts.ldap.as_mut() {
        if l.ca_file.is_some() {
            l.ca_file = at("ldap-ca.pem");
        }
        if l.bind_password_file.is_some() {
            l.bind_password_file = at("ldap-password");
        }
    }
    let body = serde_saphyr::to_string(&i).map_err(|e| {
        PhaseError::Inventory(format!("cannot write the platform's inventory: {e}"))
    })?;
    Ok(format!(
        "# Written by forgectl for cluster {}: what the platform's services on this control plane read.\n{body}",
        inv.name
    ))
}

impl Phase for Platform {
    fn name(&self) -> &'static str {
        "platform"
    }

    fn title(&self) -> &'static str {
        "Admission webhooks and the accounts controller on the control planes, toolctl on the bastions"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        let inv = &ctx.inv.inventory;
        if !runs_controller(inv) {
            return Readiness::Ready;
        }
        let missing: Vec<String> = account_files(inv)
            .into_iter()
            .map(|(path, _)| ctx.inv.source.base_dir.join(path))
            .filter(|p| std::fs::File::open(p).is_err())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            Readiness::Ready
        } else {
            Readiness::PlanOnly {
                missing: format!(
                    "the accounts controller needs {} (named by the accounts section): create it, or set platform.accounts_controller: false",
                    missing.join(", ")
                ),
            }
        }
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        (!ctx.inv.inventory.platform.enabled).then(|| "platform.enabled is false".into())
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let inv = &ctx.inv.inventory;
        let pf = &inv.platform;
        let controller = runs_controller(inv);
        if controller
            && inv.accounts.source == AccountSource::Ldap
            && inv
                .accounts
                .ldap
                .as_ref()
                .is_some_and(|l| l.bind_password_file.is_none())
        {
            return Err(PhaseError::Inventory(
                "the accounts controller on the control planes needs the LDAP bind password in a file: \
                 set accounts.ldap.bind_password_file (or platform.accounts_controller: false)"
                    .into(),
            ));
        }
        let ca = ctx.state_file(&format!("{}.crt", paths::KUBE_CA));
        let vars = Vars {
            cluster: &inv.name,
            namespace: PLATFORM_NAMESPACE,
            settings: SETTINGS_CONFIGMAP,
            settings_data: settings_data(inv),
            tools_group: TOOLS_GROUP,
            controller,
            accounts_user: ACCOUNTS_USER,
            admin_cluster_roles: &inv.accounts.admin_cluster_roles,
            tool_role: crate::accounts::desired::TOOL_CLUSTER_ROLE,
            // As YAML for people reviewing the rendered manifest (the serializer, not pasting).
            tool_role_object: yaml(&crate::accounts::desired::tool_cluster_role())?,
            lease_namespace: LEASE.0,
            lease_name: LEASE.1,
            tenant_label: TENANT_LABEL,
            uid_annotation: UID_ANNOTATION,
            gid_annotation: GID_ANNOTATION,
            failure_policy: pf.webhook.failure_policy.as_str(),
            timeout_seconds: pf.webhook.timeout_seconds,
            port: pf.webhook.port,
            // Known once the pki phase ran (the engine plans again right before running).
            ca_bundle: ca
                .as_deref()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
                .unwrap_or_default(),
            binary: BINARY,
            dir: DIR,
            metrics_port: pf.metrics_port,
            interval: pf.resync_seconds,
            endpoint: api_endpoint(ctx.inv),
            dashboard: pf.dashboard.enabled,
            dashboard_role: crate::dashboard::rbac::CLUSTER_ROLE,
            dashboard_role_object: yaml(&crate::dashboard::rbac::cluster_role())?,
            dashboard_binding_object: yaml(&crate::dashboard::rbac::binding(DASHBOARD_USER))?,
            dashboard_port: pf.dashboard.port,
            dashboard_host: dashboard_host(inv),
            ingress_metrics: ingress_metrics(ctx.inv),
            pki_dir: crate::phases::kubeadm_init::PKI_DIR,
        };
        let state =
            |rel: &str, ext: &str| ctx.state_file(&format!("{rel}.{ext}")).unwrap_or_default();
        let inventory = host_inventory(inv)?;
        let mut sources = Vec::new();
        if controller {
            for (path, name) in account_files(inv) {
                let full = ctx.inv.source.base_dir.join(&path);
                // A missing file makes the phase plan only (readiness says which).
                let content = std::fs::read_to_string(&full).unwrap_or_default();
                sources.push((name, content));
            }
        }
        let mut actions = Vec::new();
        for m in hosts.iter().filter(|m| m.has(Role::Bastion)) {
            actions.extend(toolctl(&m.name));
        }
        for m in hosts.iter().filter(|m| m.has(Role::ControlPlane)) {
            let h = m.name.as_str();
            actions.push(Action::run(
                h,
                &format!("install -d -m 0700 -o root -g root {DIR}"),
                Some(&format!("test -d {DIR}")),
                "the platform's directory (root only)",
            ));
            actions.push(Action::local(
                Some(h),
                Op::InstallOwn {
                    program: Program::Forgectl,
                    path: BINARY.into(),
                },
                "forgectl itself, which the platform's services run",
            ));
            let secret = |file: &str, content: String, why: &str| {
                Action::upload_rendered(
                    h,
                    &format!("{DIR}/{file}"),
                    SECRET.mode,
                    SECRET.owner,
                    None,
                    content,
                    why,
                )
            };
            actions.push(secret(
                "inventory.yaml",
                inventory.clone(),
                "the inventory the services read (no SSH keys or local paths)",
            ));
            let pair = |file: &str, rel: &str, what: &str| {
                [("crt", what), ("key", "its key")]
                    .map(|(ext, why)| secret(&format!("{file}.{ext}"), state(rel, ext), why))
            };
            actions.extend(pair(
                "admission",
                paths::ADMISSION,
                "the webhooks' serving certificate (Kubernetes CA, for 127.0.0.1)",
            ));
            actions.push(ctx.rendered_to(
                h,
                &format!("/etc/systemd/system/{ADMISSION_UNIT}"),
                &UNIT,
                "platform/forgectl-admission.service.tera",
                &vars,
                "the admission webhooks' systemd unit",
            )?);
            actions.push(secret(
                "ca.crt",
                ca.clone().unwrap_or_default(),
                "the Kubernetes CA (the webhooks' certificate chains to it)",
            ));
            if controller {
                actions.extend(pair(
                    "accounts",
                    paths::ACCOUNTS_CLIENT,
                    "the accounts controller's client certificate",
                ));
                actions.push(ctx.rendered_to(
                    h,
                    &format!("{DIR}/accounts.kubeconfig"),
                    &SECRET,
                    "platform/client.kubeconfig.tera",
                    &KubeconfigVars {
                        cluster: &inv.name,
                        endpoint: &vars.endpoint,
                        user: ACCOUNTS_USER,
                        file: "accounts",
                        files: DIR,
                    },
                    "the accounts controller's kubeconfig",
                )?);
                for (name, content) in &sources {
                    actions.push(secret(name, content.clone(), "from the accounts section"));
                }
                actions.push(ctx.rendered_to(
                    h,
                    &format!("/etc/systemd/system/{ACCOUNTS_UNIT}"),
                    &UNIT,
                    "platform/forgectl-accounts.service.tera",
                    &vars,
                    "the accounts controller's systemd unit",
                )?);
            }
            if pf.dashboard.enabled {
                actions.extend(pair(
                    "dashboard",
                    paths::DASHBOARD_CLIENT,
                    "the dashboard's client certificate (read-only ClusterRole)",
                ));
                actions.push(ctx.rendered_to(
                    h,
                    &format!("{DIR}/dashboard.kubeconfig"),
                    &SECRET,
                    "platform/client.kubeconfig.tera",
                    &KubeconfigVars {
                        cluster: &inv.name,
                        endpoint: &vars.endpoint,
                        user: DASHBOARD_USER,
                        file: "dashboard",
                        files: &format!("/run/credentials/{DASHBOARD_UNIT}"),
                    },
                    "the dashboard's kubeconfig (its files as the service's credentials)",
                )?);
                actions.push(ctx.rendered_to(
                    h,
                    &format!("/etc/systemd/system/{DASHBOARD_UNIT}"),
                    &UNIT,
                    "platform/forgectl-dashboard.service.tera",
                    &vars,
                    "the dashboard's systemd unit",
                )?);
            }
            let mut units = vec![ADMISSION_UNIT];
            if controller {
                units.push(ACCOUNTS_UNIT);
            }
            if pf.dashboard.enabled {
                units.push(DASHBOARD_UNIT);
            }
            let units = units.join(" ");
            actions.push(Action::run_on_change(
                h,
                &format!(
                    "systemctl daemon-reload && systemctl enable {units} && systemctl restart {units}"
                ),
                &format!("systemctl is-active --quiet {units}"),
                "(re)start the platform's services after a change",
            ));
            if !pf.dashboard.enabled {
                actions.push(remove_service(
                    h,
                    DASHBOARD_UNIT,
                    "dashboard",
                    "no dashboard",
                ));
            }
            if !controller {
                actions.push(remove_service(
                    h,
                    ACCOUNTS_UNIT,
                    "accounts",
                    "no accounts controller",
                ));
            }
            actions.push(Action::run(
                h,
                &wait_webhook(pf.webhook.port),
                Some(&webhook_healthy(pf.webhook.port)),
                "the webhooks answer over TLS with the cluster CA's certificate",
            ));
        }
        actions.push(manifests::apply(
            ctx,
            TEMPLATE,
            "platform.yaml",
            &vars,
            &format!(
                "toolctl settings, {}the ValidatingWebhookConfiguration (failurePolicy {}) for tool namespaces",
                if controller {
                    "the accounts controller's RBAC, "
                } else {
                    ""
                },
                pf.webhook.failure_policy.as_str()
            ),
        )?);
        Ok(actions)
    }
}

/// Stops and removes a platform service that an earlier inventory had on `host`: its unit and
/// its files `DIR/FILES.*`.
fn remove_service(host: &str, unit: &str, files: &str, what: &str) -> Action {
    Action::run(
        host,
        &format!(
            "systemctl disable --now {unit} && rm -f /etc/systemd/system/{unit} {DIR}/{files}.* && systemctl daemon-reload"
        ),
        Some(&format!("test ! -e /etc/systemd/system/{unit}")),
        &format!("{what}: stop one left from an earlier inventory"),
    )
}

/// toolctl on a bastion, under both its names.
fn toolctl(host: &str) -> [Action; 2] {
    [
        Action::local(
            Some(host),
            Op::InstallOwn {
                program: Program::Toolctl,
                path: TOOLCTL.into(),
            },
            "toolctl, which tool owners run as their tool",
        ),
        Action::run(
            host,
            &format!("ln -sfn toolctl {WEBSERVICE}"),
            Some(&format!("test \"$(readlink {WEBSERVICE})\" = toolctl")),
            "toolctl's other name, webservice",
        ),
    ]
}

/// Whether the local webhook server answers /healthz with a certificate from the cluster CA.
fn webhook_healthy(port: u16) -> String {
    format!(
        "curl -sf --max-time 2 --cacert {DIR}/ca.crt https://127.0.0.1:{port}/healthz >/dev/null 2>&1"
    )
}

/// Waits up to 30 s for the local webhook server's /healthz, checked against the CA file the
/// server's certificate must chain to, then fails saying where to look.
fn wait_webhook(port: u16) -> String {
    format!(
        "for i in $(seq 60); do {} && exit 0; sleep 0.5; done; \
         echo 'the admission webhooks do not answer on 127.0.0.1:{port} after 30 s (journalctl -u {ADMISSION_UNIT})' >&2; exit 1",
        webhook_healthy(port)
    )
}
