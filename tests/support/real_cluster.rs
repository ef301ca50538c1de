//! A real cluster of local machines made by `forgectl up` (tests/local_cluster.rs,
//! tests/local_upgrade.rs): forgectl and kubectl against it, commands on its machines, and
//! `down` when the test ends, also on failure.

use assert_cmd::Command;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A real cluster of local machines made by `forgectl up`, and how a test talks to it.
pub struct Bed {
    /// The inventory's `name`.
    pub cluster: &'static str,
    /// The inventory file.
    pub inv: PathBuf,
    /// The state dir.
    pub state: PathBuf,
    /// kubectl on this machine.
    pub kubectl: PathBuf,
}

impl Bed {
    pub fn forgectl(&self) -> Command {
        let mut c = Command::cargo_bin("forgectl").unwrap();
        c.env("NO_COLOR", "1")
            .env_remove("FORGECTL_INVENTORY")
            .arg("--state-dir")
            .arg(&self.state)
            .arg("-f")
            .arg(&self.inv);
        c
    }

    /// forgectl as a process of its own (to run in the background, or to signal).
    pub fn process(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("forgectl"));
        c.env("NO_COLOR", "1")
            .env_remove("FORGECTL_INVENTORY")
            .arg("--state-dir")
            .arg(&self.state)
            .arg("-f")
            .arg(&self.inv);
        c
    }

    pub fn up(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self
            .forgectl()
            .arg("up")
            .arg("--yes")
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    }

    /// Output of `cmd` on `host`, each line without forgectl's `host | ` prefix.
    pub fn on(&self, host: &str, cmd: &str) -> String {
        let out = self
            .forgectl()
            .args(["exec", "--hosts", host, "--", cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "{host}: {cmd}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{host} | ")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn admin_conf(&self) -> PathBuf {
        self.state.join(self.cluster).join("admin.conf")
    }

    /// kubectl on this machine with the admin kubeconfig forgectl fetched (through haproxy):
    /// its output, or what it said when it failed.
    pub fn k_try(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.admin_conf())
            .args(args)
            .output()
            .unwrap();
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(format!("kubectl {args:?}: {}", text(&out))),
        }
    }

    /// As `k_try`, failing the test when kubectl fails.
    pub fn k(&self, args: &[&str]) -> String {
        self.k_try(args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn k_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.k(&all)).unwrap()
    }

    pub fn k_apply(&self, yaml: &str) {
        let mut child = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.admin_conf())
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.forgectl().args(["down", "--yes"]).output();
    }
}

/// stdout then stderr of `out`, as text.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `ok` every half second until it passes; fails the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let t = Instant::now();
    loop {
        match ok() {
            Ok(()) => return,
            Err(last) if t.elapsed() > limit => panic!("{what}: not after {limit:?}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
