//! A test bed for the account provisioner: a cluster CA, the API-server TEST DOUBLE with an
//! admin kubeconfig, an inventory with an `accounts:` section, a tools.yaml and the tools'
//! homes in a temporary directory, and `forgectl accounts` run as a process.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value, json};

use super::apiserver::{ApiServer, start_with_admin};

/// The bed.
pub struct Bed {
    /// Its directory.
    pub dir: tempfile::TempDir,
    /// The API server double.
    pub api: ApiServer,
    /// The admin kubeconfig.
    pub admin: PathBuf,
    /// The cluster CA (cert, key PEM).
    pub ca: (String, String),
}

impl Bed {
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn home(&self, tool: &str) -> PathBuf {
        self.path(&format!("homes/{tool}"))
    }
    /// Writes the inventory with `accounts_extra` added to its `accounts:` section.
    pub fn inventory(&self, accounts_extra: &str) -> PathBuf {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories/local/cluster.yaml"),
        )
        .unwrap();
        let inv =
            format!("{base}\naccounts:\n  source: file\n  file: tools.yaml\n{accounts_extra}");
        let p = self.path("cluster.yaml");
        std::fs::write(&p, inv).unwrap();
        p
    }
    /// Writes tools.yaml: tools `tool00`.. `tool{n-1}` (uids 50000 + i) except `skip`, with
    /// `disabled` disabled, and admin `alice`.
    pub fn tools(&self, n: usize, skip: &[&str], disabled: &[&str]) {
        let mut tools = Vec::new();
        for i in 0..n {
            let name = format!("tool{i:02}");
            if skip.contains(&name.as_str()) {
                continue;
            }
            let home = self.home(&name);
            std::fs::create_dir_all(&home).unwrap();
            tools.push(json!({"name": name, "uid": 50000 + i, "gid": 50000 + i,
                "home": home, "maintainers": ["alice", "bob"],
                "disabled": disabled.contains(&name.as_str())}));
        }
        let alice = self.path("homes/alice");
        std::fs::create_dir_all(&alice).unwrap();
        let doc = json!({"tools": tools,
            "admins": [{"name": "alice", "uid": 1000, "gid": 1000, "home": alice}]});
        std::fs::write(
            self.path("tools.yaml"),
            serde_saphyr::to_string(&doc).unwrap(),
        )
        .unwrap();
    }
    /// Runs `accounts sync ARGS` with `inv`; (exit code, JSON summary, stderr).
    pub fn sync(&self, inv: &Path, args: &[&str]) -> (i32, Value, String) {
        let out = Command::cargo_bin("forgectl")
            .unwrap()
            .args([
                "-f",
                inv.to_str().unwrap(),
                "-o",
                "json",
                "accounts",
                "sync",
            ])
            .args(["--kubeconfig", self.admin.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), summary, stderr)
    }
    pub fn object(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.api.objects(group, plural).into_iter().find(|o| {
            o["metadata"]["name"] == name && o["metadata"]["namespace"].as_str().unwrap_or("") == ns
        })
    }
    /// The RoleBinding `tool` in `tool-NAME`: what gives the tool's certificate its rights.
    pub fn tool_binding(&self, tool: &str) -> Option<Value> {
        self.object(
            "rbac.authorization.k8s.io",
            "rolebindings",
            &format!("tool-{tool}"),
            "tool",
        )
    }
}

/// A new bed (needs root: homes are chowned).
pub fn bed() -> Bed {
    super::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (api, admin, ca) = start_with_admin(dir.path());
    Bed {
        dir,
        api,
        admin,
        ca,
    }
}
