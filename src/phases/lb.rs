//! The lb phase: haproxy in front of the API servers and the ingress nodes.

use serde::Serialize;

use super::etcd::address_or_name;
use super::{Phase, PhaseError, PlanContext, Target};
use crate::inventory::{Machine, ProviderKind, Role};
use crate::plan::{Action, Op, Readiness};

/// Configures haproxy on the lb machines.
pub struct Lb;

/// haproxy's configuration file.
pub const CONFIG: Target = Target {
    path: "/etc/haproxy/haproxy.cfg",
    mode: 0o644,
    owner: "root:root",
};

/// Connections haproxy accepts at once (it needs about two open files per connection).
pub const MAXCONN: u32 = 20000;
/// On local machines: their open-file limit is the host's (often 20000 hard), so fewer.
pub const LOCAL_MAXCONN: u32 = 4000;

#[derive(Clone, Serialize)]
struct Backend {
    name: String,
    address: String,
}

#[derive(Serialize)]
struct LbContext<'a> {
    cluster: &'a str,
    name: &'a str,
    api_port: u16,
    maxconn: u32,
    control_planes: Vec<Backend>,
    ingress_nodes: Vec<Backend>,
    tls_front: bool,
    front_upstream_port: u16,
}

/// Where haproxy takes the TLS front's plain HTTP (on the loopback of the lb machine).
pub const FRONT_UPSTREAM_PORT: u16 = 8081;

/// The TLS front's nginx configuration (all of it: Debian's default site would take :80).
pub const FRONT_CONFIG: Target = Target {
    path: "/etc/nginx/nginx.conf",
    mode: 0o644,
    owner: "root:root",
};
/// Its certificate.
pub const FRONT_CERT: Target = Target {
    path: "/etc/nginx/forgectl/tls.crt",
    mode: 0o644,
    owner: "root:root",
};
/// Its key.
pub const FRONT_KEY: Target = Target {
    path: "/etc/nginx/forgectl/tls.key",
    mode: 0o600,
    owner: "root:root",
};

/// keepalived's configuration (when `api.vip` is set).
pub const KEEPALIVED_CONFIG: Target = Target {
    path: "/etc/keepalived/keepalived.conf",
    mode: 0o644,
    owner: "root:root",
};

#[derive(Serialize)]
struct KeepalivedContext<'a> {
    cluster: &'a str,
    name: &'a str,
    instance: String,
    vip: String,
    interface: &'a str,
    router_id: u8,
    priority: u32,
    address: String,
    peers: Vec<String>,
}

/// keepalived on `m` (the `index`th of the lb machines `all`): the VIP, held where haproxy runs,
/// the first lb machine preferred.
fn keepalived_actions(
    ctx: &PlanContext<'_>,
    m: &Machine,
    index: usize,
    all: &[Backend],
    vip: std::net::IpAddr,
) -> Result<Vec<Action>, PhaseError> {
    let inv = &ctx.inv.inventory;
    let c = KeepalivedContext {
        cluster: &inv.name,
        name: &m.name,
        instance: format!("forgectl_{}", inv.name.replace('-', "_")),
        vip: vip.to_string(),
        interface: &inv.api.vip_interface,
        router_id: inv.api.vrrp_router_id,
        priority: 150u32
            .saturating_sub(10 * u32::try_from(index).unwrap_or(10))
            .max(1),
        address: address_or_name(m),
        peers: all
            .iter()
            .filter(|b| b.name != m.name)
            .map(|b| b.address.clone())
            .collect(),
    };
    Ok(vec![
        Action::local(
            Some(&m.name),
            Op::InstallPackages {
                packages: vec!["keepalived".into()],
            },
            "install keepalived for the API's virtual IP",
        ),
        ctx.rendered(
            &m.name,
            &KEEPALIVED_CONFIG,
            "lb/keepalived.conf.tera",
            &c,
            &format!("keepalived: VIP {vip} (priority {})", c.priority),
        )?,
        Action::run_on_change(
            &m.name,
            "keepalived -t -f /etc/keepalived/keepalived.conf && systemctl enable keepalived.service && systemctl reload-or-restart keepalived.service",
            "systemctl is-active --quiet keepalived.service",
            "check the configuration and (re)load keepalived after a change",
        ),
    ])
}

#[derive(Serialize)]
struct FrontContext<'a> {
    cluster: &'a str,
    name: &'a str,
    tool_domain: &'a str,
    https_port: u16,
    ingress_http_port: u16,
    cert_path: &'static str,
    key_path: &'static str,
    /// The dashboard, when the platform runs it: its host name and the control planes.
    dashboard: Option<DashboardFront>,
}

/// The dashboard behind the TLS front.
#[derive(Serialize)]
struct DashboardFront {
    host: String,
    port: u16,
    backends: Vec<Backend>,
}

/// The TLS front's certificate and key (PEM): the inventory's files, else what the pki phase
/// issued into the state dir (empty before it ran).
fn front_pair(ctx: &PlanContext<'_>) -> Result<(String, String), PhaseError> {
    let f = &ctx.inv.inventory.ingress.tls_front;
    match (&f.cert_file, &f.key_file) {
        (Some(c), Some(k)) => {
            let read = |p: &std::path::Path, what: &str| {
                std::fs::read_to_string(p).map_err(|e| {
                    PhaseError::Inventory(format!(
                        "ingress.tls_front.{what} {}: {e}",
                        p.display()
                    ))
                })
            };
            Ok((read(c, "cert_file")?, read(k, "key_file")?))
        }
        (None, None) => {
            let get = |ext: &str| {
                ctx.state_file(&format!("{}.{ext}", crate::pki::paths::TLS_FRONT))
                    .unwrap_or_default()
            };
            Ok((get("crt"), get("key")))
        }
        _ => Err(PhaseError::Inventory(
            "ingress.tls_front needs both cert_file and key_file (or neither: forgectl then issues a certificate)".into(),
        )),
    }
}

/// The TLS front's actions on `host`: nginx, its certificate, its configuration, (re)loaded.
fn front_actions(ctx: &PlanContext<'_>, host: &str) -> Result<Vec<Action>, PhaseError> {
    let inv = &ctx.inv.inventory;
    let (cert, key) = front_pair(ctx)?;
    let upload = |t: &Target, content: String, why: &str| {
        Action::upload_rendered(host, t.path, t.mode, t.owner, None, content, why)
    };
    Ok(vec![
        Action::local(
            Some(host),
            Op::InstallPackages {
                packages: vec!["nginx".into()],
            },
            "install nginx for the TLS front (started once configured)",
        ),
        upload(&FRONT_CERT, cert, "the tool domain's wildcard certificate"),
        upload(&FRONT_KEY, key, "its key"),
        ctx.rendered(
            host,
            &FRONT_CONFIG,
            "lb/nginx-front.conf.tera",
            &FrontContext {
                cluster: &inv.name,
                name: host,
                tool_domain: &inv.ingress.tool_domain,
                https_port: 443,
                ingress_http_port: FRONT_UPSTREAM_PORT,
                cert_path: FRONT_CERT.path,
                key_path: FRONT_KEY.path,
                dashboard: (inv.platform.enabled && inv.platform.dashboard.enabled).then(|| {
                    DashboardFront {
                        host: crate::phases::platform::dashboard_host(inv),
                        port: inv.platform.dashboard.port,
                        backends: backends(ctx.inv.with_role(Role::ControlPlane)),
                    }
                }),
            },
            "nginx terminating TLS for the tool domain",
        )?,
    ])
}

fn backends<'a>(ms: impl Iterator<Item = &'a Machine>) -> Vec<Backend> {
    ms.map(|m| Backend {
        name: m.name.clone(),
        address: address_or_name(m),
    })
    .collect()
}

impl Phase for Lb {
    fn name(&self) -> &'static str {
        "lb"
    }

    fn title(&self) -> &'static str {
        "haproxy in front of the API servers and the ingress nodes"
    }

    fn readiness(&self, _: &PlanContext<'_>) -> Readiness {
        Readiness::Ready
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let ingress = if inv.ingress.enabled {
            backends(ctx.inv.with_role(Role::Ingress))
        } else {
            Vec::new()
        };
        let front = inv.ingress.enabled && inv.ingress.tls_front.enabled;
        let lbs = backends(ctx.inv.with_role(Role::Lb));
        let mut actions = Vec::new();
        for m in hosts {
            let c = LbContext {
                cluster: &inv.name,
                name: &m.name,
                api_port: inv.api.port,
                maxconn: if inv.provider == ProviderKind::Local {
                    LOCAL_MAXCONN
                } else {
                    MAXCONN
                },
                control_planes: backends(ctx.inv.with_role(Role::ControlPlane)),
                ingress_nodes: ingress.clone(),
                tls_front: front,
                front_upstream_port: FRONT_UPSTREAM_PORT,
            };
            if !front {
                // Before haproxy (re)loads: it takes :443 back from nginx.
                actions.push(Action::run(
                    &m.name,
                    "systemctl disable --now nginx.service",
                    Some("! systemctl is-enabled --quiet nginx.service 2>/dev/null"),
                    "no TLS front: nginx stops, should forgectl have set it up before",
                ));
            }
            actions.push(Action::local(
                Some(&m.name),
                Op::InstallPackages {
                    packages: vec!["haproxy".into()],
                },
                "install haproxy (started once configured)",
            ));
            actions.push(ctx.rendered(
                &m.name,
                &CONFIG,
                "lb/haproxy.cfg.tera",
                &c,
                "haproxy configuration",
            )?);
            actions.push(Action::run_on_change(
                &m.name,
                "haproxy -q -c -f /etc/haproxy/haproxy.cfg && systemctl enable haproxy.service && systemctl reload-or-restart haproxy.service",
                "systemctl is-active --quiet haproxy.service",
                "check the configuration and (re)load haproxy after a change",
            ));
            if let Some(vip) = inv.api.vip {
                let index = lbs.iter().position(|b| b.name == m.name).unwrap_or(0);
                actions.extend(keepalived_actions(ctx, m, index, &lbs, vip)?);
            }
            if front {
                actions.extend(front_actions(ctx, &m.name)?);
                // haproxy gave up :443 above; nginx takes it.
                actions.push(Action::run_on_change(
                    &m.name,
                    "nginx -q -t && systemctl enable nginx.service && systemctl reload-or-restart nginx.service",
                    "systemctl is-active --quiet nginx.service",
                    "check the configuration and (re)load nginx after a change",
                ));
            }
        }
        Ok(actions)
    }
}
