//! The OpenStack test bed: a real cloud (`../shared/minicloud/minicloud up` in .ci/run) reached
//! through OS_CLOUD, and a Python helper (tests/support/openstack_fixture.py, run with
//! minicloud's openstacksdk) that makes networks, low-quota projects and impossible flavors and
//! inspects what forgectl made through an independent client.

#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// The Python that has openstacksdk (minicloud's venv), when a cloud is configured.
pub fn cloud() -> Option<PathBuf> {
    let configured = std::env::var_os("OS_CLOUD").is_some()
        && std::env::var_os("OS_CLIENT_CONFIG_FILE").is_some();
    let home = std::env::var_os("MINICLOUD_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/minicloud")))?;
    let python = home.join("venv/bin/python");
    if configured && python.exists() {
        return Some(python);
    }
    let why = "no OpenStack cloud configured (run `../shared/minicloud/minicloud up` and `eval \"$(../shared/minicloud/minicloud env)\"`)";
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}: in CI the OpenStack tests must run"
    );
    eprintln!("NOT RUN: {why}");
    None
}

/// The fixture helper script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/openstack_fixture.py")
}

/// Runs the fixture helper and parses its JSON.
pub fn fixture(python: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(python)
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fixture {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// forgectl with its state under `state`.
pub fn forgectl(state: &Path) -> Command {
    let mut c = Command::cargo_bin("forgectl").unwrap();
    c.env("NO_COLOR", "1")
        .env_remove("FORGECTL_LOG")
        .arg("--state-dir")
        .arg(state);
    c
}

/// Counts of what `tagged` lists, by kind.
pub fn counts(t: &serde_json::Value) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = t
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().map(Vec::len).unwrap_or(0)))
        .collect();
    v.sort();
    v
}

/// Deletes the cluster's resources and the fixture network even when a test fails.
pub struct Cleanup {
    /// minicloud's Python.
    pub python: PathBuf,
    /// Fixture prefix (network names).
    pub prefix: String,
    /// forgectl state dir.
    pub state: PathBuf,
    /// The inventory.
    pub inventory: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = forgectl(&self.state)
            .args(["down", "--yes", "-f"])
            .arg(&self.inventory)
            .timeout(std::time::Duration::from_secs(300))
            .output();
        let _ = std::process::Command::new(&self.python)
            .arg(script())
            .args(["teardown", &self.prefix])
            .output();
    }
}
