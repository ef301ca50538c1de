//! The built binary, run the way users run it: exit codes, messages, files written.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};

fn forgectl() -> Command {
    let mut c = Command::cargo_bin("forgectl").unwrap();
    c.env_remove("FORGECTL_STATE_DIR")
        .env_remove("FORGECTL_INVENTORY")
        .env_remove("FORGECTL_OUTPUT")
        .env("NO_COLOR", "1");
    c
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("inventories")
        .join(name)
        .join("cluster.yaml")
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cluster.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

const BROKEN: &str = "name: demo\nprovider: local\nprovder: x\ngroups:\n  - name: etcd\n    roles: [etcd]\n    count: two\n";

#[test]
fn validate_accepts_every_example_inventory() {
    for name in ["local", "static", "openstack", "vagrant", "toolforge-like"] {
        forgectl()
            .args(["validate", "-f"])
            .arg(example(name))
            .assert()
            .success()
            .stdout(predicate::str::contains(": valid — cluster"));
    }
    forgectl()
        .args(["validate", "-f"])
        .arg(example("toolforge-like"))
        .assert()
        .stdout(predicate::str::contains("55 machines in 7 groups"));
}

#[test]
fn validate_without_file_checks_the_embedded_default() {
    forgectl()
        .arg("validate")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "<embedded>/inventories/local/cluster.yaml: valid",
        ));
}

#[test]
fn validate_reports_every_error_with_position_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), BROKEN);
    let shown = f.display().to_string();
    forgectl()
        .args(["validate", "-f"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("error: unknown key `provder`"))
        .stderr(predicate::str::contains(format!(
            "--> {shown}:3:1 (provder)"
        )))
        .stderr(predicate::str::contains("did you mean `provider`?"))
        .stderr(predicate::str::contains(format!(
            "--> {shown}:7:12 (groups[0].count)"
        )))
        .stderr(predicate::str::contains(
            "expected a whole number, found `two`",
        ))
        .stderr(predicate::str::contains("has 2 error(s)"))
        .stderr(predicate::str::contains("\x1b[").not());
}

#[test]
fn validate_json_lists_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), BROKEN);
    let out = forgectl()
        .args(["validate", "--output", "json", "-f"])
        .arg(&f)
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["valid"], false);
    let d = v["diagnostics"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["line"], 3);
    assert_eq!(d[0]["field"], "provder");
    assert_eq!(d[1]["line"], 7);
    assert_eq!(d[1]["severity"], "error");
}

#[test]
fn missing_file_and_directory_are_clear() {
    forgectl()
        .args(["validate", "-f", "/nonexistent/forgectl.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read the inventory /nonexistent/forgectl.yaml",
        ))
        .stderr(predicate::str::contains("next:"));
    let dir = tempfile::tempdir().unwrap();
    forgectl()
        .args(["validate", "-f"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "this is a directory, not an inventory file",
        ));
}

#[test]
fn binary_garbage_is_refused_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cluster.yaml");
    std::fs::write(&f, [0x7f, 0x45, 0x4c, 0x46, 0xff, 0xfe, 0x00, 0x01]).unwrap();
    forgectl()
        .args(["validate", "-f"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a text file"))
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn plan_prints_every_phase_and_marks_the_unbuilt_ones() {
    forgectl()
        .arg("plan")
        .assert()
        .success()
        .stdout(predicate::str::contains("Plan for cluster forge-local — playbook cluster, 17 phases"))
        .stdout(predicate::str::contains("1. provision       Create the machines that do not exist yet — 7 action(s)"))
        .stdout(predicate::str::contains("etcd-1  create machine etcd-1 (10.77.0.10)"))
        .stdout(predicate::str::contains("worker-2  probe  OS, kernel and systemd state over SSH"))
        .stdout(predicate::str::contains("host-prep       Swap off"))
        .stdout(predicate::str::contains("platform        Admission webhooks and the accounts controller on the control planes"))
        .stdout(predicate::str::contains("etcd-2  upload /etc/etcd/etcd.env (0640 root:etcd"))
        .stdout(predicate::str::contains("17. platform"))
        .stdout(predicate::str::contains("storage-cinder  Cinder CSI driver and StorageClass — nothing to do: storage.cinder.enabled is false"));
}

#[test]
fn plan_json_is_machine_readable_and_never_contains_file_contents() {
    let out = forgectl()
        .args(["plan", "--output", "json", "-f"])
        .arg(example("static"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["cluster"], "forge-static");
    assert_eq!(v["probed"], false);
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases[0]["phase"], "provision");
    assert_eq!(phases[0]["readiness"]["state"], "ready");
    assert_eq!(phases[0]["note"], "static hosts exist already");
    assert_eq!(phases[1]["phase"], "facts");
    assert_eq!(phases[1]["actions"][0]["op"]["kind"], "probe");
    assert_eq!(
        (
            phases[2]["phase"].as_str(),
            phases[2]["actions"][0]["op"]["kind"].as_str()
        ),
        (Some("pki"), Some("ensure_pki"))
    );
    assert_eq!(phases[3]["phase"], "etcd");
    // Upstream release artifacts: without a route to them the phase plans but does not run.
    let etcd = &phases[3]["readiness"];
    assert!(
        etcd["state"] == "ready"
            || (etcd["state"] == "plan_only"
                && etcd["missing"]
                    .as_str()
                    .unwrap()
                    .contains("artifacts that cannot be fetched: etcd 3.6.13")),
        "{etcd}"
    );
    assert_eq!(phases[4]["phase"], "host-prep");
    assert_eq!(phases[4]["readiness"]["state"], "ready");
    assert_eq!(phases[4]["actions"][0]["op"]["kind"], "run");
    let init = phases
        .iter()
        .find(|p| p["phase"] == "kubeadm-init")
        .unwrap();
    assert_eq!(init["readiness"]["state"], "ready");
    let join = phases
        .iter()
        .find(|p| p["phase"] == "kubeadm-join")
        .unwrap();
    let joins = join["actions"].as_array().unwrap();
    assert_eq!(joins.last().unwrap()["op"]["kind"], "kubeadm_join");
    assert!(joins.iter().all(|a| a["op"].get("config").is_none()));
    let calico = phases.iter().find(|p| p["phase"] == "cni-calico").unwrap();
    assert_eq!(calico["readiness"]["state"], "ready");
    assert_eq!(calico["actions"][0]["op"]["kind"], "apply_manifests");
    let platform = phases.iter().find(|p| p["phase"] == "platform").unwrap();
    assert_eq!(platform["readiness"]["state"], "ready");
    assert!(
        platform["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["op"]["kind"] == "install_own" && a["op"]["program"] == "forgectl")
    );
    // The bastion gets toolctl (both names) and the NFS mounts, and is no Kubernetes node.
    let on_login: Vec<&serde_json::Value> = platform["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["host"] == "login-1")
        .collect();
    assert_eq!(on_login.len(), 2, "{on_login:?}");
    assert_eq!(on_login[0]["op"]["program"], "toolctl");
    assert_eq!(on_login[0]["op"]["path"], "/usr/local/bin/toolctl");
    assert!(
        on_login[1]["op"]["command"]
            .as_str()
            .unwrap()
            .contains("webservice")
    );
    let nfs = phases.iter().find(|p| p["phase"] == "storage-nfs").unwrap();
    assert!(nfs["hosts"].as_array().unwrap().contains(&"login-1".into()));
    for phase in ["runtime", "kubeadm-join", "cluster-ready"] {
        let p = phases.iter().find(|p| p["phase"] == phase).unwrap();
        assert!(
            !p["hosts"].as_array().unwrap().contains(&"login-1".into()),
            "{phase}"
        );
    }
    let lb = phases.iter().find(|p| p["phase"] == "lb").unwrap();
    assert_eq!(lb["hosts"], serde_json::json!(["lb-1", "lb-2"]));
    let upload = &lb["actions"][1];
    assert_eq!(upload["op"]["kind"], "upload");
    assert_eq!(upload["op"]["path"], "/etc/haproxy/haproxy.cfg");
    assert_eq!(upload["op"]["template"], "lb/haproxy.cfg.tera");
    assert_eq!(upload["op"]["sha256"].as_str().unwrap().len(), 64);
    assert!(upload["op"].get("content").is_none());
}

#[test]
fn plan_only_and_until_select_phases_and_reject_unknown_ones() {
    let out = forgectl()
        .args(["plan", "--output", "json", "--only", "etcd,lb", "-f"])
        .arg(example("static"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let names: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["etcd", "lb"]);
    forgectl()
        .args(["plan", "--until", "pki"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3. pki"))
        .stdout(predicate::str::contains("4. etcd").not());
    forgectl()
        .args(["plan", "--only", "etdc"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--only names `etdc`, which is not a phase of playbook cluster",
        ));
    forgectl()
        .args(["plan", "--playbook", "upgrade"])
        .assert()
        .success()
        .stdout(predicate::str::contains("playbook upgrade, 4 phases"));
    forgectl()
        .args(["plan", "--playbook", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no playbook named `nope`; built-in playbooks: cluster, scale",
        ));
}

#[test]
fn playbook_from_a_file_with_an_unknown_phase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("custom.yaml");
    std::fs::write(
        &pb,
        "name: custom\nphases:\n  - phase: etcd\n    hosts: [etcd]\n  - phase: frobnicate\n",
    )
    .unwrap();
    forgectl()
        .args(["plan", "--playbook"])
        .arg(&pb)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "names an unknown phase `frobnicate`",
        ));
    std::fs::write(
        &pb,
        "name: custom\nphases:\n  - phase: etcd\n    hosts: [etcd]\n",
    )
    .unwrap();
    forgectl()
        .args(["plan", "--playbook"])
        .arg(&pb)
        .assert()
        .success()
        .stdout(predicate::str::contains("playbook custom, 1 phases"));
}

#[test]
fn up_stops_before_the_first_unbuilt_phase_and_says_so() {
    // Static hosts: provision has nothing to do. (No SSH here: the example's addresses are not ours.)
    let state = tempfile::tempdir().unwrap();
    forgectl()
        .args(["up", "--yes", "--until", "provision", "--state-dir"])
        .arg(state.path())
        .arg("-f")
        .arg(example("static"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "up: done — 1 phase(s), 0 change(s).",
        ));
    // A phase that cannot run here (its release files are not in the artifact directory) stops
    // the run before it, saying what it needs; what ran before is recorded.
    let releases = state.path().join("releases");
    std::fs::create_dir_all(&releases).unwrap();
    let inv = state.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "{}\nartifacts:\n  source: local\n  dir: {}\n",
            std::fs::read_to_string(example("static")).unwrap(),
            releases.display()
        ),
    )
    .unwrap();
    let playbook = state.path().join("day-two.yaml");
    std::fs::write(
        &playbook,
        "name: day-two\nphases:\n  - phase: provision\n  - phase: upgrade-control-plane\n    hosts: [control-plane]\n",
    )
    .unwrap();
    forgectl()
        .args(["up", "--yes", "--state-dir"])
        .arg(state.path())
        .arg("--playbook")
        .arg(&playbook)
        .arg("-f")
        .arg(&inv)
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "up: stopped before phase `upgrade-control-plane`: running it needs artifacts that cannot be fetched",
        ))
        .stdout(predicate::str::contains("ran provision (0 change(s)); `upgrade-control-plane` and the phases after it were not attempted."));
    let record = std::fs::read_to_string(state.path().join("forge-static/last-run.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(v["stopped_at"], "upgrade-control-plane");
    assert_eq!(v["ran"], serde_json::json!(["provision"]));
}

/// No shipped playbook names a phase that is not built.
#[test]
fn every_shipped_playbook_is_built() {
    // Release files from a local (empty) directory: nothing is looked up on the network.
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "{}\nartifacts:\n  source: local\n  dir: {}\n",
            std::fs::read_to_string(example("static")).unwrap(),
            dir.path().display()
        ),
    )
    .unwrap();
    for playbook in ["cluster", "scale", "upgrade", "reset", "down"] {
        forgectl()
            .args(["plan", "--playbook", playbook, "--state-dir"])
            .arg(dir.path())
            .arg("-f")
            .arg(&inv)
            .assert()
            .success()
            .stdout(predicate::str::contains("0 not implemented yet."));
    }
}

#[test]
fn inventory_file_can_come_before_the_command() {
    forgectl()
        .arg("-f")
        .arg(example("static"))
        .arg("validate")
        .assert()
        .success()
        .stdout(predicate::str::contains("cluster forge-static"));
}

#[test]
fn machines_verbs_refuse_other_providers_and_unknown_machines() {
    forgectl()
        .args(["machines", "list", "-f"])
        .arg(example("static"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "works on local machines; this inventory uses the static provider",
        ));
    let state = tempfile::tempdir().unwrap();
    forgectl()
        .args(["machines", "list", "--state-dir"])
        .arg(state.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("no machines"));
    forgectl()
        .args(["machines", "kill", "nope", "--state-dir"])
        .arg(state.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no local machine named nope"));
}

#[test]
fn dry_run_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    forgectl()
        .args(["up", "--dry-run", "--state-dir"])
        .arg(state.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("Dry run: nothing was changed."));
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}

#[test]
fn malformed_inventory_never_touches_the_state_dir() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), BROKEN);
    for cmd in ["up", "down"] {
        forgectl()
            .args([cmd, "--yes", "--state-dir"])
            .arg(state.path())
            .arg("-f")
            .arg(&f)
            .assert()
            .code(2);
    }
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}

#[test]
fn a_second_run_on_the_same_cluster_is_refused_naming_the_holder() {
    let state = tempfile::tempdir().unwrap();
    let dir = forgectl::state::StateDir::open(state.path(), "forge-static").unwrap();
    let _held = dir.lock("up").unwrap();
    forgectl()
        .args(["up", "--yes", "--state-dir"])
        .arg(state.path())
        .arg("-f")
        .arg(example("static"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "another forgectl run is working on cluster forge-static",
        ))
        .stderr(predicate::str::contains(format!(
            "pid {}",
            std::process::id()
        )))
        .stderr(predicate::str::contains("wait for that run to finish"));
}

#[test]
fn down_is_wired_through_the_engine() {
    forgectl()
        .args(["down", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("playbook down, 1 phases"))
        .stdout(predicate::str::contains("deprovision"));
}

#[test]
fn render_writes_what_the_run_would_push() {
    let out = tempfile::tempdir().unwrap();
    forgectl()
        .args(["render", "-f"])
        .arg(example("static"))
        .arg("--out")
        .arg(out.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("83 file(s) written"))
        .stderr(predicate::str::contains(
            "ValidatingWebhookConfiguration forgectl-tools: images.forgectl.io has no caBundle: the state dir holds no cluster CA yet",
        ));
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/static");
    for rel in [
        "lb-1/etc/haproxy/haproxy.cfg",
        "etcd-2/etc/etcd/etcd.env",
        "etcd-3/etc/systemd/system/etcd.service",
    ] {
        assert_eq!(
            std::fs::read_to_string(out.path().join(rel)).unwrap(),
            std::fs::read_to_string(golden.join(rel)).unwrap(),
            "{rel}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.path().join("etcd-1/etc/etcd/etcd.env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o640,
        "a file secret on the host is not world-readable here either"
    );
}

#[test]
fn init_writes_a_valid_inventory_per_provider_and_never_overwrites() {
    let base = tempfile::tempdir().unwrap();
    for provider in ["local", "openstack", "vagrant", "static"] {
        let dir = base.path().join(format!("my-{provider}"));
        forgectl()
            .args(["init", "--provider", provider])
            .arg(&dir)
            .assert()
            .success()
            .stdout(predicate::str::contains("wrote"));
        let f = dir.join("cluster.yaml");
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains(&format!("name: my-{provider}\n")), "{text}");
        assert!(text.contains("# "), "the inventory is commented");
        forgectl()
            .args(["validate", "-f"])
            .arg(&f)
            .assert()
            .success();
        forgectl()
            .args(["init", "--provider", provider])
            .arg(&dir)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("already exists"))
            .stderr(predicate::str::contains("--force"));
    }
}

#[test]
fn schema_is_json_schema_with_descriptions() {
    let out = forgectl()
        .arg("schema")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
    assert_eq!(v["title"], "Inventory");
    let req: Vec<&str> = v["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(req, ["name", "provider", "groups"]);
    assert!(
        v["properties"]["groups"]["description"]
            .as_str()
            .unwrap()
            .contains("roles")
    );
    assert_eq!(v["additionalProperties"], false);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        forgectl()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("validate"))
            .stdout(predicate::str::contains("forgectl"));
    }
}

#[test]
fn every_command_has_examples_in_its_help() {
    for cmd in [
        "validate",
        "plan",
        "up",
        "down",
        "render",
        "init",
        "schema",
        "completions",
    ] {
        forgectl()
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    forgectl()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes"));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), BROKEN);
    let mut c = Command::cargo_bin("forgectl").unwrap();
    c.env_remove("NO_COLOR")
        .args(["validate", "-f"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\x1b[").not());
    forgectl()
        .args(["validate", "--color", "always", "-f"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\x1b[1m\x1b[31merror"));
}

#[test]
fn vagrant_without_vagrant_says_so_and_down_has_nothing_to_do() {
    let state = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    forgectl()
        .env("PATH", empty_path.path())
        .args(["up", "--yes", "--until", "provision", "--state-dir"])
        .arg(state.path())
        .arg("-f")
        .arg(example("vagrant"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("vagrant is not installed"))
        .stderr(predicate::str::contains("vagrant-libvirt"));
    assert!(
        !state
            .path()
            .join("forge-vagrant/vagrant/Vagrantfile")
            .exists()
    );
    forgectl()
        .args(["down", "--yes", "--state-dir"])
        .arg(state.path())
        .arg("-f")
        .arg(example("vagrant"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "nothing to do: forgectl made no Vagrant machines for this cluster",
        ));
}

#[test]
fn nfs_on_local_machines_needs_the_kernel_to_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let inv = write(
        dir.path(),
        "name: fgtest-nfs\nprovider: local\nstorage:\n  nfs:\n    enabled: true\ningress:\n  enabled: false\ngroups:\n  - name: etcd\n    roles: [etcd]\n    count: 1\n  - name: control\n    roles: [control-plane]\n    count: 1\n  - name: worker\n    roles: [worker]\n    count: 1\n  - name: nfs\n    roles: [nfs]\n    count: 1\n",
    );
    let out = forgectl()
        .args(["plan", "--output", "json", "--only", "storage-nfs", "-f"])
        .arg(&inv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nfs = &v["phases"][0];
    assert_eq!(nfs["phase"], "storage-nfs");
    let kinds: Vec<&str> = nfs["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["op"]["path"].as_str().unwrap_or_default())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(
        kinds,
        [
            "/etc/exports.d/forgectl.exports",
            "/etc/systemd/system/data-home.mount",
            "/etc/systemd/system/data-project.mount"
        ]
    );
    // Local machines share this machine's kernel: without NFS in it, the phase plans only.
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let modules = std::path::Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/fs");
    let kernel_has = |name: &str| {
        filesystems
            .lines()
            .any(|l| l.ends_with(&format!("\t{name}")))
            || modules.join(name).exists()
    };
    let readiness = &nfs["readiness"];
    if kernel_has("nfsd") && kernel_has("nfs") {
        assert_eq!(readiness["state"], "ready", "{readiness}");
    } else {
        assert_eq!(readiness["state"], "plan_only", "{readiness}");
        assert!(
            readiness["missing"]
                .as_str()
                .unwrap()
                .contains("kernel (which local machines share) has no"),
            "{readiness}"
        );
    }
}

/// kubelet ≥ 1.35 refuses cgroup v1 unless told: where the facts phase found cgroup v1 on a node,
/// the cluster's KubeletConfiguration says `failCgroupV1: false` and that node's kubeadm skips
/// SystemVerification; on cgroup v2 neither appears.
#[test]
fn cgroup_v1_nodes_are_told_to_kubelet_and_kubeadm() {
    let facts = |v1: &str, version: u8| {
        serde_json::json!([{"host": v1, "os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0",
            "systemd": "running", "cgroup_version": version, "cap_sys_resource": true}])
        .to_string()
    };
    for (version, expect) in [(1u8, true), (2, false)] {
        let dir = tempfile::tempdir().unwrap();
        let cluster = dir.path().join("state").join("forge-static");
        std::fs::create_dir_all(&cluster).unwrap();
        std::fs::write(cluster.join("facts.json"), facts("control-1", version)).unwrap();
        let out = dir.path().join("out");
        forgectl()
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["render", "-f"])
            .arg(example("static"))
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let init = std::fs::read_to_string(
            out.join("control-1/etc/kubernetes/forgectl/kubeadm-init.yaml"),
        )
        .unwrap();
        assert_eq!(init.contains("failCgroupV1: false"), expect, "{init}");
        assert_eq!(init.contains("- SystemVerification"), expect, "{init}");
        let join = std::fs::read_to_string(
            out.join("control-2/etc/kubernetes/forgectl/kubeadm-join.yaml"),
        )
        .unwrap();
        assert!(
            !join.contains("SystemVerification"),
            "control-2 is not on cgroup v1: {join}"
        );
    }
}

/// `render` is for review: every example renders with no cloud credentials at all, and the
/// toolforge-like ingress nodes carry their group's labels.
#[test]
fn render_works_offline_for_every_example() {
    for name in ["local", "openstack", "static", "toolforge-like", "vagrant"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut cmd = forgectl();
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OS_")) {
            cmd.env_remove(k);
        }
        let assert = cmd
            .env("HOME", dir.path())
            .env("OS_CLIENT_CONFIG_FILE", dir.path().join("no-clouds.yaml"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["render", "-f"])
            .arg(example(name))
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let said = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        if name == "openstack" || name == "toolforge-like" {
            assert!(
                said.contains("warning: rendering without the cloud"),
                "{name}: {said}"
            );
        }
        if name == "toolforge-like" {
            let join = std::fs::read_to_string(
                out.join("ingress-1/etc/kubernetes/forgectl/kubeadm-join.yaml"),
            )
            .unwrap();
            assert!(
                join.contains("node.forgectl.io/ingress=true,node.forgectl.io/nfs=true,toolforge.org/role=ingress"),
                "{join}"
            );
        }
    }
}

/// An inventory's warnings are for `validate` and the commands that change things: read-only
/// commands keep quiet about them unless asked (`-v`); past 50 findings the rest are counted.
#[test]
fn warnings_are_shown_where_they_matter_and_errors_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let inv = write(
        dir.path(),
        "name: quiet\nprovider: local\nlocal:\n  bridge: fgquiet0\ningress:\n  enabled: false\ngroups:\n  - name: etcd\n    roles: [etcd]\n    count: 1\n  - name: cp\n    roles: [control-plane]\n    count: 1\n",
    );
    let warning = "warning: one etcd member";
    let run = |args: &[&str]| {
        let out = forgectl()
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(args)
            .arg("-f")
            .arg(&inv)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["validate"]).contains(warning));
    assert!(run(&["plan"]).contains(warning));
    for cmd in [
        &["machines", "list"][..],
        &["artifacts", "list"],
        &["status"],
    ] {
        let said = run(cmd);
        assert!(!said.contains(warning), "{cmd:?}: {said}");
        let mut verbose = cmd.to_vec();
        verbose.push("-v");
        assert!(run(&verbose).contains(warning), "{cmd:?} -v");
    }
    let many: String = (0..200).map(|i| format!("k{i}: 1\n")).collect();
    let broken = write(dir.path(), &format!("name: x\nprovider: local\n{many}"));
    let out = forgectl()
        .args(["validate", "-f"])
        .arg(&broken)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // 201 errors (`groups` missing, 200 unknown keys): 50 shown (the first opens stderr), then
    // the count line and the summary.
    assert_eq!(said.matches("\nerror: ").count() + 1, 50 + 1, "{said}");
    assert!(said.contains("… and 151 more error(s)"), "{said}");
}

#[test]
fn node_remove_refuses_what_would_break_the_cluster_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let refused = |inv: &Path, name: &str, why: &str| {
        forgectl()
            .arg("--state-dir")
            .arg(&state)
            .args(["node", "remove", name, "--yes", "-f"])
            .arg(inv)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(why));
    };
    let stat = example("static");
    refused(
        &stat,
        "etcd-1",
        "etcd-1 is an etcd member: drop it from the inventory's etcd group, then `forgectl etcd remove etcd-1`",
    );
    refused(&stat, "lb-1", "lb-1 is not a Kubernetes node (roles: lb)");
    refused(
        &stat,
        "nope",
        "no machine named nope in the inventory of cluster forge-static",
    );
    // One control plane: removing it would leave no API server.
    let one = write(
        dir.path(),
        "name: one-cp\nprovider: static\nnetwork:\n  machine_cidr: 192.0.2.0/24\ningress:\n  enabled: false\n\
         groups:\n  - name: etcd\n    roles: [etcd]\n    hosts: [{name: e1, address: 192.0.2.10}]\n\
         \x20 - name: control\n    roles: [control-plane]\n    hosts: [{name: c1, address: 192.0.2.11}]\n\
         \x20 - name: worker\n    roles: [worker]\n    hosts: [{name: w1, address: 192.0.2.12}]\n",
    );
    refused(&one, "c1", "c1 is the cluster's only control plane");
    assert!(!state.exists(), "a refusal leaves nothing behind");
    // A dry run says the steps and changes nothing.
    forgectl()
        .arg("--state-dir")
        .arg(&state)
        .args(["node", "remove", "w1", "--dry-run", "-f"])
        .arg(&one)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1. drain it (PodDisruptionBudgets respected",
        ))
        .stdout(predicate::str::contains(
            "keep the machine (static hosts are never deleted)",
        ))
        .stdout(predicate::str::contains("Dry run: nothing was changed."));
    assert!(!state.exists());
}

/// `forgectl … | head`: a reader that goes away ends the output, not the command (no panic,
/// the command's own exit code).
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["plan"],
        vec!["-o", "json", "plan"],
        vec!["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("forgectl"))
            .args(["--state-dir", dir.path().to_str().unwrap()])
            .args(&args)
            .env("NO_COLOR", "1")
            .env_remove("FORGECTL_INVENTORY")
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.stdout.is_empty(), "stdout went to the closed pipe");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
