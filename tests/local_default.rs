//! The quick start's main job on the embedded default inventory (6 local machines): `up` makes and
//! probes them, a second state dir for the same cluster name is refused without touching them,
//! and `down` leaves the host exactly as before. Needs root, like `.ci/run`.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;

fn forgectl(state: &Path) -> Command {
    let mut c = Command::cargo_bin("forgectl").unwrap();
    c.env("NO_COLOR", "1")
        .env_remove("FORGECTL_INVENTORY")
        .arg("--state-dir")
        .arg(state);
    c
}

struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = forgectl(self.0).args(["down", "--yes"]).output();
    }
}

#[test]
fn quick_start_up_and_down_on_the_embedded_default() {
    support::require_root();
    assert!(
        !Path::new("/sys/class/net/fg-forge-local").exists(),
        "a forge-local cluster already runs on this host (bridge fg-forge-local); `forgectl down` it first"
    );
    let before = support::host_snapshot("forge-local", Path::new("/nonexistent-state"));
    let a = tempfile::tempdir().unwrap();
    let _cleanup = Down(a.path());
    forgectl(a.path())
        .args(["up", "--yes"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "ran provision, facts (6 change(s))",
        ))
        .stdout(predicate::str::contains(
            "up: stopped before phase `host-prep`",
        ));
    forgectl(a.path())
        .args(["machines", "list"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"worker-2\s+10\.77\.0\.15\s+running").unwrap());

    // Same cluster name, another state dir: refused, and the running machines are untouched.
    let b = tempfile::tempdir().unwrap();
    forgectl(b.path())
        .args(["up", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "already exists but this state dir",
        ))
        .stderr(predicate::str::contains(
            "another forgectl state dir probably runs a cluster with the same name",
        ));
    forgectl(b.path())
        .args(["down", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do: no machine exists"));
    forgectl(a.path())
        .args(["exec", "--", "systemctl", "is-system-running"])
        .assert()
        .success()
        .stdout(predicate::str::contains("6 host(s): 6 ok, 0 failed"));

    forgectl(a.path())
        .args(["down", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "down: done — 1 phase(s), 6 change(s).",
        ));
    assert_eq!(
        support::host_snapshot("forge-local", Path::new("/nonexistent-state")),
        before
    );
}
