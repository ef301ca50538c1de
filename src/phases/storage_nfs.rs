//! The storage-nfs phase: the NFS server on the `nfs` machine (exports for tool homes and
//! project data) and a systemd mount unit per export on every worker, where tools' pods get
//! them as hostPath volumes.

use serde::Serialize;

use super::etcd::address_or_name;
use super::{Phase, PhaseError, PlanContext, Target};
use crate::inventory::{Machine, ProviderKind, Role};
use crate::plan::{Action, Op, Readiness};
use crate::ssh::shell_quote;

/// Sets up NFS.
pub struct StorageNfs;

/// The server's exports file.
pub const EXPORTS: Target = Target {
    path: "/etc/exports.d/forgectl.exports",
    mode: 0o644,
    owner: "root:root",
};

/// A mount unit (its path is made from the mount point).
const MOUNT_UNIT: Target = Target {
    path: "/etc/systemd/system/",
    mode: 0o644,
    owner: "root:root",
};

#[derive(Serialize)]
struct ExportsVars<'a> {
    cluster: &'a str,
    name: &'a str,
    exports: &'a [crate::inventory::model::NfsExport],
    clients: String,
    options: &'a str,
}

#[derive(Serialize)]
struct MountVars<'a> {
    cluster: &'a str,
    name: &'a str,
    export: &'a str,
    server: String,
    path: &'a str,
    mount: &'a str,
    options: &'a str,
}

/// The systemd unit name of a mount point, as `systemd-escape --path --suffix=mount` makes it.
pub fn mount_unit_name(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return "-.mount".into();
    }
    let mut out = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out + ".mount"
}

/// Whether the kernel local machines share can serve and mount NFS.
fn local_kernel_nfs() -> Result<(), String> {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let has = |name: &str| {
        fs.lines()
            .any(|l| l.split_whitespace().last() == Some(name))
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let module = |m: &str| {
        std::path::Path::new("/lib/modules")
            .join(release.trim())
            .join("kernel/fs")
            .join(m)
            .exists()
    };
    let missing: Vec<&str> = [("nfsd", "nfsd"), ("nfs", "nfs")]
        .into_iter()
        .filter(|(fs_name, module_dir)| !has(fs_name) && !module(module_dir))
        .map(|(f, _)| f)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "this machine's kernel (which local machines share) has no {} support: not in /proc/filesystems, no module to load. Run NFS on the openstack, vagrant or static provider, or set storage.nfs.enabled: false",
            missing.join(" / ")
        ))
    }
}

impl Phase for StorageNfs {
    fn name(&self) -> &'static str {
        "storage-nfs"
    }

    fn title(&self) -> &'static str {
        "NFS server, exports and client mounts"
    }

    fn readiness(&self, ctx: &PlanContext<'_>) -> Readiness {
        if ctx.inv.inventory.provider == ProviderKind::Local
            && let Err(missing) = local_kernel_nfs()
        {
            return Readiness::PlanOnly { missing };
        }
        Readiness::Ready
    }

    fn skip_reason(&self, ctx: &PlanContext<'_>) -> Option<String> {
        (!ctx.inv.inventory.storage.nfs.enabled).then(|| "storage.nfs.enabled is false".into())
    }

    fn plan(&self, ctx: &PlanContext<'_>, hosts: &[&Machine]) -> Result<Vec<Action>, PhaseError> {
        let inv = &ctx.inv.inventory;
        let nfs = &inv.storage.nfs;
        let Some(server) = hosts.iter().find(|m| m.has(Role::Nfs)) else {
            return Ok(Vec::new());
        };
        let clients = nfs.clients.unwrap_or(inv.network.machine_cidr).to_string();
        let mut actions = vec![Action::local(
            Some(&server.name),
            Op::InstallPackages {
                packages: vec!["nfs-kernel-server".into()],
            },
            "install the NFS server",
        )];
        let dirs: Vec<String> = nfs.exports.iter().map(|e| shell_quote(&e.path)).collect();
        let dirs = dirs.join(" ");
        actions.push(Action::run(
            &server.name,
            &format!("mkdir -p {dirs} && chmod 0755 {dirs}"),
            Some(&format!("test -d {}", dirs.replace(' ', " -a -d "))),
            "make the exported directories",
        ));
        actions.push(ctx.rendered(
            &server.name,
            &EXPORTS,
            "storage/exports.tera",
            &ExportsVars {
                cluster: &inv.name,
                name: &server.name,
                exports: &nfs.exports,
                clients,
                options: &nfs.export_options,
            },
            "exports for tool homes and project data",
        )?);
        actions.push(Action::run_on_change(
            &server.name,
            "systemctl enable --now nfs-server.service && exportfs -ra",
            "systemctl is-active --quiet nfs-server.service",
            "start the NFS server and publish the exports after a change",
        ));
        let address = address_or_name(server);
        for w in hosts
            .iter()
            .filter(|m| m.has(Role::Worker) || m.has(Role::Bastion))
        {
            actions.push(Action::local(
                Some(&w.name),
                Op::InstallPackages {
                    packages: vec!["nfs-common".into()],
                },
                "install the NFS client",
            ));
            let mut units = Vec::new();
            for e in &nfs.exports {
                let unit = mount_unit_name(&e.mount);
                actions.push(ctx.rendered_to(
                    &w.name,
                    &format!("{}{unit}", MOUNT_UNIT.path),
                    &MOUNT_UNIT,
                    "storage/nfs.mount.tera",
                    &MountVars {
                        cluster: &inv.name,
                        name: &w.name,
                        export: &e.name,
                        server: address.clone(),
                        path: &e.path,
                        mount: &e.mount,
                        options: &nfs.mount_options,
                    },
                    &format!("mount {address}:{} on {}", e.path, e.mount),
                )?);
                units.push(shell_quote(&unit));
            }
            let units = units.join(" ");
            actions.push(Action::run_on_change(
                &w.name,
                &format!("systemctl daemon-reload && systemctl enable {units} && systemctl restart {units}"),
                &format!("systemctl is-active --quiet {units}"),
                "mount the exports (again after a change)",
            ));
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::mount_unit_name;

    #[test]
    fn unit_names_are_escaped_like_systemd_escape() {
        assert_eq!(mount_unit_name("/data/project"), "data-project.mount");
        assert_eq!(
            mount_unit_name("/data/tool-homes/"),
            "data-tool\\x2dhomes.mount"
        );
        assert_eq!(mount_unit_name("/.hidden/x"), "\\x2ehidden-x.mount");
        assert_eq!(mount_unit_name("/"), "-.mount");
    }
}
