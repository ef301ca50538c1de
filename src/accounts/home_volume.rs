//! The tool's home as a volume: a PersistentVolume of that one directory, pre-bound to the
//! claim `tool-home` in the tool's namespace (which toolctl mounts). Pods never name a node path
//! or an NFS export themselves; the volume is cluster-scoped, so a tool cannot point it elsewhere.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use super::desired::{MANAGED_BY, MANAGER, TOOL_LABEL, namespace};
use super::directory::ToolAccount;
use crate::inventory::accounts::{Accounts, HomeVolume, HomeVolumeKind};
use crate::phases::kubeadm_init::NFS_LABEL;
use crate::tool_context::HOME_CLAIM;

/// The PersistentVolume of tool `name`'s home.
pub fn volume_name(cfg: &Accounts, name: &str) -> String {
    format!("{}-home", namespace(cfg, name))
}

/// Where the NFS server has `home`: the same relative path under `export_root` when the homes
/// are mounted at `mount_root`, else the home's own path.
fn export_path(hv: &HomeVolume, home: &Path) -> PathBuf {
    match (&hv.mount_root, &hv.export_root) {
        (Some(m), Some(e)) => match home.strip_prefix(m) {
            Ok(rel) => e.join(rel),
            Err(_) => home.to_path_buf(),
        },
        _ => home.to_path_buf(),
    }
}

/// The volume and the claim of tool `t`'s home; nothing when `home_volume.kind` is none.
pub fn home_objects(cfg: &Accounts, t: &ToolAccount) -> Vec<Value> {
    let hv = &cfg.home_volume;
    let source = match hv.kind {
        HomeVolumeKind::None => return Vec::new(),
        HomeVolumeKind::HostPath => json!({
            "hostPath": {"path": t.home.display().to_string(), "type": "Directory"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": NFS_LABEL, "operator": "In", "values": ["true"]}]}]}},
        }),
        HomeVolumeKind::Nfs => json!({
            "nfs": {"server": hv.server.clone().unwrap_or_default(),
                "path": export_path(hv, &t.home).display().to_string()},
            "mountOptions": ["nfsvers=4.2", "hard"],
        }),
    };
    let ns = namespace(cfg, &t.name);
    let labels = json!({MANAGED_BY: MANAGER, TOOL_LABEL: t.name});
    let pv_name = volume_name(cfg, &t.name);
    let mut spec = json!({
        "capacity": {"storage": hv.size},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        // No storageClassName: a volume's empty class is the absent field (the API server
        // drops ""), and an object must read back as applied to count as unchanged.
        "volumeMode": "Filesystem",
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": ns, "name": HOME_CLAIM},
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), source.as_object()) {
        s.extend(extra.clone());
    }
    vec![
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "labels": labels}, "spec": spec}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": HOME_CLAIM, "namespace": ns, "labels": labels},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                "volumeMode": "Filesystem", "volumeName": pv_name,
                "resources": {"requests": {"storage": hv.size}}}}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> ToolAccount {
        ToolAccount {
            name: "alpha".into(),
            uid: 52001,
            gid: 52001,
            home: "/data/project/alpha".into(),
            maintainers: vec![],
            disabled: false,
        }
    }

    #[test]
    fn nfs_homes_map_the_mount_to_the_export_and_bind_only_the_tools_claim() {
        let mut cfg = Accounts::default();
        assert!(home_objects(&cfg, &tool()).is_empty());
        cfg.home_volume = HomeVolume {
            kind: HomeVolumeKind::Nfs,
            server: Some("nfs-1".into()),
            mount_root: Some("/data/project".into()),
            export_root: Some("/srv/tools/project".into()),
            ..HomeVolume::default()
        };
        let o = home_objects(&cfg, &tool());
        assert_eq!(o[0]["metadata"]["name"], "tool-alpha-home");
        assert_eq!(o[0]["spec"]["nfs"]["path"], "/srv/tools/project/alpha");
        assert_eq!(o[0]["spec"]["nfs"]["server"], "nfs-1");
        assert_eq!(o[0]["spec"]["claimRef"]["namespace"], "tool-alpha");
        assert_eq!(o[0]["spec"]["claimRef"]["name"], "tool-home");
        assert_eq!(o[0]["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(o[1]["spec"]["volumeName"], "tool-alpha-home");
        assert_eq!(o[1]["metadata"]["namespace"], "tool-alpha");
    }

    #[test]
    fn host_path_homes_stay_on_the_nodes_that_mount_them() {
        let cfg = Accounts {
            home_volume: HomeVolume {
                kind: HomeVolumeKind::HostPath,
                ..HomeVolume::default()
            },
            ..Accounts::default()
        };
        let o = home_objects(&cfg, &tool());
        assert_eq!(o[0]["spec"]["hostPath"]["path"], "/data/project/alpha");
        assert_eq!(o[0]["spec"]["hostPath"]["type"], "Directory");
        assert_eq!(
            o[0]["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["key"],
            NFS_LABEL
        );
    }
}
