//! A test bed for the account provisioner: the test binary's REAL control plane
//! (tests/support/kube.rs) with an admin of the test's own, an inventory with an `accounts:`
//! section, a tools.yaml and the tools' homes in a temporary directory, and `forgectl accounts`
//! run as a process.
//!
//! The provisioner manages every object with its label, cluster-wide, as it would on a real
//! site: so beds of one test binary take turns (a lock held for the bed's life), and each
//! starts from a cluster without the objects of an earlier one.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::{Value, json};

use super::kube::{ControlPlane, shared};

/// The bed.
pub struct Bed {
    /// Its directory.
    pub dir: tempfile::TempDir,
    /// The real control plane.
    pub api: &'static ControlPlane,
    /// The admin kubeconfig (the bed's own admin user, [`Bed::admin_user`]).
    pub admin: PathBuf,
    /// The admin's user name.
    pub admin_user: String,
    /// The cluster CA (cert, key PEM).
    pub ca: (String, String),
    _turn: MutexGuard<'static, ()>,
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
    /// An object as the admin reads it (`ns` empty for a cluster-wide one).
    pub fn object(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let resource = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        self.api
            .get(&resource, (!ns.is_empty()).then_some(ns), name)
    }

    /// Waits until the object is gone (namespaces and what they hold are deleted by the
    /// namespace controller, a bound volume once its claim is gone).
    pub fn gone(&self, group: &str, plural: &str, ns: &str, name: &str) -> bool {
        let t = Instant::now();
        while self.object(group, plural, ns, name).is_some() {
            if t.elapsed() > Duration::from_secs(60) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    }

    /// The certificate requests in the cluster.
    pub fn csrs(&self) -> Vec<Value> {
        self.api.list("certificatesigningrequests", "")
    }

    /// The writes the bed's admin (forgectl with the bed's kubeconfig) made so far.
    pub fn writes(&self) -> usize {
        self.api.writes_by(&self.admin_user)
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

/// What the provisioner manages cluster-wide, by kubectl's resource names.
const MANAGED: &[&str] = &[
    "namespaces",
    "clusterrolebindings",
    "persistentvolumes",
    "certificatesigningrequests",
];

/// Deletes what an earlier bed's provisioner left and waits until it is gone (namespaces take
/// a few seconds: the namespace controller empties them first).
fn clean(api: &ControlPlane) {
    let selector = "app.kubernetes.io/managed-by=forgectl-accounts";
    for kind in MANAGED {
        let (ok, _, err) = api.kubectl(&["delete", kind, "-l", selector, "--wait=false"]);
        assert!(ok, "kubectl delete {kind}: {err}");
    }
    let t = Instant::now();
    loop {
        let left: Vec<String> = MANAGED
            .iter()
            .flat_map(|k| api.list(k, selector))
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "an earlier bed's objects are not gone: {left:?}"
        );
        // A released home volume may keep its finalizer while its claim goes.
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A new bed (needs root: homes are chowned), named `name` (its admin user is `fgtest-NAME`).
pub fn bed_named(name: &str) -> Bed {
    static TURN: Mutex<()> = Mutex::new(());
    super::require_root();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let api = shared();
    clean(api);
    let dir = tempfile::tempdir().unwrap();
    let admin_user = format!("fgtest-{name}");
    let admin = api.admin_kubeconfig(&admin_user, &dir.path().join("admin.conf"));
    Bed {
        dir,
        api,
        admin,
        admin_user,
        ca: api.ca.clone(),
        _turn: turn,
    }
}

/// A new bed named after the running test.
pub fn bed() -> Bed {
    let thread = std::thread::current();
    let name = thread
        .name()
        .unwrap_or("bed")
        .rsplit("::")
        .next()
        .unwrap_or("bed")
        .replace('_', "-");
    bed_named(&name)
}

/// Writes `DIR/tools.yaml` with tools `tool0000`… (`n` of them, uids 50000 + i, homes under
/// `DIR/homes`, made): the benchmarks' accounts file. Returns its path and its tools.
pub fn numbered_tools(dir: &Path, n: usize) -> (PathBuf, Vec<Value>) {
    let tools: Vec<Value> = (0..n)
        .map(|i| {
            let home = dir.join(format!("homes/tool{i:04}"));
            std::fs::create_dir_all(&home).unwrap();
            json!({"name": format!("tool{i:04}"), "uid": 50000 + i, "gid": 50000 + i,
                "home": home, "maintainers": ["alice"]})
        })
        .collect();
    let file = dir.join("tools.yaml");
    std::fs::write(&file, json!({"tools": tools}).to_string()).unwrap();
    (file, tools)
}
