//! The runtime phase: containerd, runc and the CNI plugins, configured for kubelet (systemd cgroup
//! driver, the inventory's pause image, registry mirrors) and started by systemd.

use serde::Serialize;

use super::{Phase, PhaseError, PlanContext, Target};
use crate::artifacts::{CNI_VERSION, RUNC_VERSION};
use crate::inventory::Machine;
use crate::inventory::model::ArtifactSource;
use crate::plan::{Action, Op, Readiness};

/// Installs, configures and starts containerd on the Kubernetes nodes.
pub struct Runtime;

/// containerd's configuration.
pub const CONFIG: Target = Target {
    path: "/etc/containerd/config.toml",
    mode: 0o644,
    owner: "root:root",
};
/// The unit for containerd from its release tarball (Debian's package brings its own).
pub const UNIT: Target = Target {
    path: "/etc/systemd/system/containerd.service",
    mode: 0o644,
    owner: "root:root",
};
/// crictl's configuration (it talks to containerd).
pub const CRICTL_CONFIG: Target = Target {
    path: "/etc/crictl.yaml",
    mode: 0o644,
    owner: "root:root",
};
/// Where registry mirror files live, one directory per registry.
pub const CERTS_D: &str = "/etc/containerd/certs.d";
const HOSTS_TOML: Target = Target {
    path: "",
    mode: 0o644,
    owner: "root:root",
};

/// Binaries taken from the containerd tarball.
const CONTAINERD_BINARIES: &[&str] = &["containerd", "containerd-shim-runc-v2", "ctr"];
/// CNI plugins Calico and kubelet call (Calico installs its own beside them).
const CNI_PLUGINS: &[&str] = &["loopback", "host-local", "portmap", "bandwidth", "bridge"];

/// Where each part lands, by source.
struct Layout {
    containerd: &'static str,
    runc: &'static str,
    cni_bin_dir: &'static str,
}

const DEBIAN: Layout = Layout {
    containerd: "/usr/bin/containerd",
    runc: "/usr/sbin/runc",
    cni_bin_dir: "/usr/lib/cni",
};
const RELEASE: Layout = Layout {
    containerd: "/usr/local/bin/containerd",
    runc: "/usr/local/sbin/runc",
    cni_bin_dir: "/opt/cni/bin",
};

#[derive(Serialize)]
struct Vars<'a> {
    cluster: &'a str,
    name: &'a str,
    sandbox_image: String,
    runc: &'a str,
    cni_bin_dir: &'a str,
    containerd: &'a str,
    /// The node cannot lower OOM scores (no CAP_SYS_RESOURCE, as in a local machine on a host
    /// without it): containerd keeps containers' scores at or above its own.
    restrict_oom_score_adj: bool,
}

#[derive(Serialize)]
struct Mirrors<'a> {
    cluster: &'a str,
    registry: &'a str,
    server: String,
    mirrors: &'a [String],
}

/// The registry's own endpoint (`docker.io` is served from registry-1.docker.io).
fn registry_server(registry: &str) -> String {
    match registry {
        "docker.io" => "https://registry-1.docker.io".into(),
        r if r.starts_with("http://") || r.starts_with("https://") => r.into(),
        r => format!("https://{r}"),
    }
}

fn debian(ctx: &PlanContext<'_>) -> bool {
    ctx.inv.inventory.artifacts.source == ArtifactSource::Debian
}

impl Phase for Runtime {
    fn name(&self) -> &'static str {
        "runtime"
    }

    fn title(&self) -> &'static str {
        "Install and configure containerd, runc and CNI plugins"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        if debian(ctx) {
            Readiness::Ready
        } else {
            ctx.artifacts_readiness(&["containerd", "runc", "cni-plugins"])
        }
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let deb = debian(ctx);
        let layout = if deb { &DEBIAN } else { &RELEASE };
        let c = inv.versions.containerd.to_string();
        let images = image_archives(ctx)?;
        let mut actions = Vec::new();
        for m in hosts {
            let h = &m.name;
            let vars = Vars {
                cluster: &inv.name,
                name: h,
                sandbox_image: inv.runtime.pause_image(&inv.versions.kubernetes),
                runc: layout.runc,
                cni_bin_dir: layout.cni_bin_dir,
                containerd: layout.containerd,
                restrict_oom_score_adj: ctx.facts(h).is_some_and(|f| !f.cap_sys_resource),
            };
            if deb {
                actions.push(Action::local(
                    Some(h),
                    Op::InstallPackages {
                        packages: ["containerd", "runc", "containernetworking-plugins"]
                            .iter()
                            .map(|p| p.to_string())
                            .collect(),
                    },
                    "install containerd, runc and the CNI plugins (started once configured)",
                ));
            } else {
                actions.push(Action::local(
                    Some(h),
                    Op::InstallArtifact {
                        artifact: "containerd".into(),
                        version: c.clone(),
                        binaries: CONTAINERD_BINARIES.iter().map(|b| b.to_string()).collect(),
                        dest: "/usr/local/bin".into(),
                        installed: format!(
                            "/usr/local/bin/containerd --version 2>/dev/null | grep -q ' v{c} '"
                        ),
                    },
                    "install containerd from its release tarball",
                ));
                actions.push(Action::local(
                    Some(h),
                    Op::InstallArtifact {
                        artifact: "runc".into(),
                        version: RUNC_VERSION.into(),
                        binaries: vec!["runc".into()],
                        dest: "/usr/local/sbin".into(),
                        installed: format!(
                            "/usr/local/sbin/runc --version 2>/dev/null | grep -q '^runc version {RUNC_VERSION}$'"
                        ),
                    },
                    "install runc",
                ));
                actions.push(Action::local(
                    Some(h),
                    Op::InstallArtifact {
                        artifact: "cni-plugins".into(),
                        version: CNI_VERSION.into(),
                        binaries: CNI_PLUGINS.iter().map(|b| b.to_string()).collect(),
                        dest: RELEASE.cni_bin_dir.into(),
                        installed: format!(
                            "{}/loopback --version 2>&1 | grep -q 'v{CNI_VERSION}'",
                            RELEASE.cni_bin_dir
                        ),
                    },
                    "install the CNI plugins",
                ));
                actions.push(ctx.rendered(
                    h,
                    &UNIT,
                    "runtime/containerd.service.tera",
                    &vars,
                    "containerd's systemd unit",
                )?);
            }
            actions.push(ctx.rendered(
                h,
                &CONFIG,
                "runtime/config.toml.tera",
                &vars,
                "containerd configuration (systemd cgroups, pause image, registry mirrors)",
            )?);
            for (registry, mirrors) in &inv.runtime.registry_mirrors {
                let mv = Mirrors {
                    cluster: &inv.name,
                    registry,
                    server: registry_server(registry),
                    mirrors,
                };
                actions.push(ctx.rendered_to(
                    h,
                    &format!("{CERTS_D}/{registry}/hosts.toml"),
                    &HOSTS_TOML,
                    "runtime/hosts.toml.tera",
                    &mv,
                    &format!("mirrors of {registry}"),
                )?);
            }
            let mut wanted: Vec<&str> = inv
                .runtime
                .registry_mirrors
                .keys()
                .map(String::as_str)
                .collect();
            wanted.sort_unstable();
            let expected: String = wanted.iter().map(|r| format!("{r} ")).collect();
            actions.push(Action::run(
                h,
                &format!(
                    "mkdir -p {CERTS_D} && cd {CERTS_D} && for d in *; do case ' {expected}' in *\" $d \"*) ;; *) rm -rf -- \"$d\";; esac; done"
                ),
                Some(&format!(
                    "test \"$(ls {CERTS_D} 2>/dev/null | LC_ALL=C sort | tr '\\n' ' ')\" = '{expected}'"
                )),
                "remove mirror settings of registries the inventory no longer lists",
            ));
            actions.push(ctx.rendered(
                h,
                &CRICTL_CONFIG,
                "runtime/crictl.yaml.tera",
                &vars,
                "crictl talks to containerd",
            )?);
            actions.push(Action::run_on_change(
                h,
                "systemctl daemon-reload && systemctl enable containerd.service && systemctl restart containerd.service && for i in $(seq 100); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.1; done; echo 'containerd does not answer on its socket after 10 s (journalctl -u containerd)' >&2; exit 1",
                "systemctl is-active --quiet containerd.service && ctr version >/dev/null 2>&1",
                "(re)start containerd after a change and wait until it answers",
            ));
            actions.extend(image_loads(m, &images));
        }
        Ok(actions)
    }
}

/// The archives of `artifacts.images` (none when it is not set).
pub fn image_archives(
    ctx: &PlanContext<'_>,
) -> Result<Vec<crate::images::ImageArchive>, PhaseError> {
    match &ctx.inv.inventory.artifacts.images {
        // Made absolute against the inventory file when it was loaded.
        Some(d) => crate::images::scan(d).map_err(|e| PhaseError::Inventory(e.to_string())),
        None => Ok(Vec::new()),
    }
}

/// Loads of the archives `m` runs (control-plane images only on control planes), each skipped
/// when containerd has it.
pub fn image_loads(m: &Machine, images: &[crate::images::ImageArchive]) -> Vec<Action> {
    images
        .iter()
        .filter(|a| {
            m.has(crate::inventory::Role::ControlPlane) || !crate::images::control_plane_only(a)
        })
        .map(|a| {
            Action::local(
                Some(&m.name),
                Op::LoadImage {
                    path: a.path.display().to_string(),
                    file: a.file.clone(),
                    refs: a.refs.clone(),
                    digest: a.digest.clone(),
                    size: a.size,
                    present: crate::images::present_check(a),
                },
                "an image the node cannot pull (artifacts.images)",
            )
        })
        .collect()
}
