//! Real local machines (systemd + sshd in namespaces) and the SSH executor against them.
//! Needs root and the host packages `.ci/run` installs; builds (or reuses) the cached rootfs.
//! One test function on purpose: the machines are brought up once for every check.

mod support;

use assert_cmd::Command;
use forgectl::inventory::model::HostKeyPolicy;
use forgectl::ssh::{Credentials, Endpoint, HostKeyCheck, Pool, Session, Settings, SshError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLUSTER: &str = "fgtest-ssh";
const NET: &str = "10.77.50";

const INVENTORY: &str = "\
name: fgtest-ssh
provider: local
local:
  bridge: fgtest-ssh0
network:
  machine_cidr: 10.77.50.0/24
artifacts:
  source: debian
ingress:
  enabled: false
ssh:
  connect_timeout: 3
groups:
  - name: etcd
    roles: [etcd]
    count: 1
  - name: cp
    roles: [control-plane]
    count: 1
  - name: w
    roles: [worker]
    count: 1
";

struct Cluster {
    inventory: PathBuf,
    state: tempfile::TempDir,
}

impl Cluster {
    fn forgectl(&self) -> Command {
        let mut c = Command::cargo_bin("forgectl").unwrap();
        c.env("NO_COLOR", "1")
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("-f")
            .arg(&self.inventory);
        c
    }

    /// `forgectl machines VERB NAME`, expecting the machine to end up in `state`.
    fn machine(&self, verb: &str, name: &str, state: &str) {
        self.forgectl()
            .args(["machines", verb, name])
            .assert()
            .success()
            .stdout(format!("{name}: {state}\n"));
    }

    fn dir(&self) -> PathBuf {
        self.state.path().join(CLUSTER)
    }

    fn settings(&self) -> Settings {
        Settings {
            credentials: Credentials::from_key_file(&self.dir().join("id_ed25519"), None).unwrap(),
            host_keys: HostKeyCheck {
                policy: HostKeyPolicy::Strict,
                trusted: vec![],
                recorded: self.dir().join("known_hosts"),
            },
            connect_timeout: Duration::from_secs(3),
            retry_for: Duration::from_secs(3),
            command_timeout: Duration::from_secs(30),
            bastion: None,
            max_channels: 8,
            host_concurrency: 30,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Whatever happened, leave nothing running.
        let _ = self.forgectl().args(["down", "--yes"]).output();
    }
}

fn ep(name: &str, last: u8, user: &str) -> Endpoint {
    Endpoint {
        name: name.into(),
        address: format!("{NET}.{last}"),
        port: 22,
        user: user.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_machines_and_ssh_executor() {
    support::require_root();
    let work = tempfile::tempdir().unwrap();
    let inventory = work.path().join("cluster.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let cluster = Cluster {
        inventory,
        state: tempfile::tempdir().unwrap(),
    };
    let before = support::host_snapshot(CLUSTER, cluster.state.path());

    // up: machines are made, booted and probed over SSH; the run stops at the first unbuilt phase.
    let started = Instant::now();
    cluster
        .forgectl()
        .args(["up", "--yes"])
        .assert()
        .code(3)
        .stdout(predicates::str::contains("ran provision, facts"));
    eprintln!(
        "up with 3 machines: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let facts = std::fs::read_to_string(cluster.dir().join("facts.json")).unwrap();
    assert!(
        facts.contains("Debian GNU/Linux 12 (bookworm)")
            && facts.contains("\"systemd\": \"running\""),
        "{facts}"
    );

    // A second up changes nothing.
    cluster
        .forgectl()
        .args(["up", "--yes"])
        .assert()
        .code(3)
        .stdout(predicates::str::contains(
            "nothing to do: all 3 machines run",
        ))
        .stdout(predicates::str::contains("(0 change(s))"));

    // exec on every host, with prefixes and a summary.
    cluster
        .forgectl()
        .args(["exec", "--", "hostname"])
        .assert()
        .success()
        .stdout(predicates::str::contains("etcd-1 | etcd-1"))
        .stdout(predicates::str::contains("w-1    | w-1"))
        .stdout(predicates::str::contains("3 host(s): 3 ok, 0 failed"));
    // Several arguments reach the remote command intact (quoted for the remote shell); one is
    // a shell line.
    cluster
        .forgectl()
        .args([
            "exec",
            "--hosts",
            "etcd-1",
            "--",
            "sh",
            "-c",
            "echo a; echo 'b c'",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("etcd-1 | a\netcd-1 | b c"));
    cluster
        .forgectl()
        .args(["exec", "--hosts", "worker", "--", "exit 3"])
        .assert()
        .code(1)
        .stdout(predicates::str::is_match(r"w-1 +exit 3 \(").unwrap());

    let out = cluster
        .forgectl()
        .args([
            "exec",
            "-o",
            "json",
            "--hosts",
            "etcd,w-1",
            "--",
            "echo hi; echo oops >&2",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["failed"], 0);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(
        (hosts[0]["host"].as_str(), hosts[1]["host"].as_str()),
        (Some("etcd-1"), Some("w-1"))
    );
    assert_eq!(
        (hosts[0]["stdout"].as_str(), hosts[0]["stderr"].as_str()),
        (Some("hi\n"), Some("oops\n"))
    );
    assert_eq!(hosts[0]["exit_code"], 0);

    let t0 = Instant::now();
    let section = |name: &str| eprintln!("[{:>6.1} s] {name}", t0.elapsed().as_secs_f64());
    let settings = Arc::new(cluster.settings());
    let etcd = Session::connect(&ep("etcd-1", 10, "root"), settings.clone())
        .await
        .unwrap();

    section("Commands: exit co");
    // Commands: exit code, stdout, stderr, stdin.
    let out = etcd.exec("echo out; echo err >&2; exit 7").await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout_text(), out.stderr_text()),
        (Some(7), "out".into(), "err".into())
    );
    let out = etcd
        .exec_with("wc -c", Some(b"12345"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "5");

    section("Upload with mode");
    // Upload with mode, owner and atomic replace; download.
    etcd.upload(
        "/etc/fgtest/a.conf",
        b"a much longer first version\n",
        0o640,
        "root:root",
    )
    .await
    .unwrap();
    etcd.upload("/etc/fgtest/a.conf", b"v2\n", 0o640, "root:root")
        .await
        .unwrap();
    assert_eq!(etcd.download("/etc/fgtest/a.conf").await.unwrap(), b"v2\n");
    let out = etcd.exec("stat -c '%a %U:%G' /etc/fgtest/a.conf; ls -A /etc/fgtest /tmp | grep -c forgectl || true").await.unwrap();
    assert_eq!(out.stdout_text(), "640 root:root\n0");

    section("The console is read");
    // Everything written to a machine's console lands in its console.log, however much: a
    // console nobody reads blocks its writers once its ~20 KB buffer is full (journald then
    // cannot even restart).
    let out = etcd
        .exec_with(
            "head -c 200000 /dev/zero | tr '\\0' x > /dev/console && echo written",
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "written", "{out:?}");
    let log = cluster.dir().join("local/machines/etcd-1/console.log");
    let written = || {
        let text = std::fs::read(&log).unwrap_or_default();
        text.iter().filter(|b| **b == b'x').count()
    };
    let since = std::time::Instant::now();
    while written() < 200_000 && since.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        written() >= 200_000,
        "console.log holds {} of the 200,000 bytes written to the console",
        written()
    );
    let out = etcd
        .exec_with(
            "timeout 20 systemctl restart systemd-journald && logger fgtest-after && sleep 0.5 && \
             journalctl -b --no-pager | grep -c fgtest-after",
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "1", "{out:?}");

    section("Eight channels");
    // Eight channels at once on one connection, more queue instead of failing.
    let cmds: Vec<String> = (0..20).map(|i| format!("sleep 0.2; echo {i}")).collect();
    let many: Vec<_> = cmds
        .iter()
        .map(|c| etcd.exec_with(c, None, Duration::from_secs(10)))
        .collect();
    let outs = futures::future::join_all(many).await;
    assert!(
        outs.iter().all(|o| o.as_ref().is_ok_and(|o| o.success())),
        "{outs:?}"
    );

    section("Lost, connected again");
    // Read-only work whose connection is lost is tried once more on a new connection; other
    // work reports the loss. The command ends its own SSH session the first time it runs.
    let pool = Pool::new(cluster.settings());
    let once = "if [ -e /run/fgtest-lost ]; then echo again; \
                else touch /run/fgtest-lost; kill -9 $PPID; sleep 5; fi";
    let eps = [ep("etcd-1", 10, "root")];
    let r = pool
        .each_retrying(&eps, |s| async move { s.exec(once).await })
        .await;
    let out = r[0].result.as_ref().unwrap();
    assert_eq!(out.stdout_text(), "again");
    assert!(etcd.exec("rm /run/fgtest-lost").await.unwrap().success());
    let r = pool.each(&eps, |s| async move { s.exec(once).await }).await;
    let e = r[0].result.as_ref().unwrap_err();
    assert!(matches!(e, SshError::Lost { .. }), "{e}");
    let r = pool.each(&eps, |s| async move { s.exec(once).await }).await;
    assert_eq!(
        r[0].result.as_ref().unwrap().stdout_text(),
        "again",
        "reconnected after the loss"
    );
    // A pooled connection that died while idle (its sshd process killed): the next command
    // never started on it, so even plain work is tried again on a new connection.
    let r = pool
        .each(&eps, |s| async move { s.exec("echo $PPID").await })
        .await;
    let sshd = r[0].result.as_ref().unwrap().stdout_text();
    assert!(
        etcd.exec(&format!("kill -9 {sshd}"))
            .await
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = pool
        .each(&eps, |s| async move { s.exec("echo fine").await })
        .await;
    assert_eq!(
        r[0].result
            .as_ref()
            .map(|o| o.stdout_text())
            .map_err(|e| e.to_string()),
        Ok("fine".to_string()),
        "a connection lost before the command started is replaced"
    );

    section("Command timeout.");
    // Command timeout.
    let t = Instant::now();
    let e = etcd
        .exec_with("sleep 30", None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::CommandTimeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5));

    section("sudo as a non-roo");
    // sudo as a non-root user.
    let setup = "useradd -m -s /bin/bash fgtest && install -d -o fgtest -m 700 /home/fgtest/.ssh && \
                 install -o fgtest -m 600 /root/.ssh/authorized_keys /home/fgtest/.ssh/ && \
                 echo 'fgtest ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/fgtest";
    assert!(etcd.exec(setup).await.unwrap().success());
    let user = Session::connect(&ep("etcd-1", 10, "fgtest"), settings.clone())
        .await
        .unwrap();
    assert_eq!(user.exec("id -un").await.unwrap().stdout_text(), "fgtest");
    assert_eq!(
        user.exec(&user.as_root("id -u"))
            .await
            .unwrap()
            .stdout_text(),
        "0"
    );
    user.upload("/etc/fgtest/b.conf", b"secret\n", 0o600, "root:root")
        .await
        .unwrap();
    assert_eq!(
        user.download("/etc/fgtest/b.conf").await.unwrap(),
        b"secret\n"
    );
    assert_eq!(
        etcd.exec("stat -c '%a %U' /etc/fgtest/b.conf")
            .await
            .unwrap()
            .stdout_text(),
        "600 root"
    );

    section("Wrong key");
    // Wrong key: authentication fails with a clear error.
    let bad_key = cluster.state.path().join("other_key");
    std::fs::write(
        &bad_key,
        forgectl::providers::local::new_ed25519("x").unwrap().0,
    )
    .unwrap();
    let mut s = cluster.settings();
    s.credentials = Credentials::from_key_file(&bad_key, None).unwrap();
    let e = Session::connect(&ep("etcd-1", 10, "root"), Arc::new(s))
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::AuthFailed { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("etcd-1 (root@10.77.50.10:22): authentication failed"),
        "{e}"
    );

    section("Key types and agent");
    // RSA and ECDSA keys, an encrypted key with its passphrase, and ssh-agent.
    let keydir = cluster.state.path().join("keys");
    std::fs::create_dir_all(&keydir).unwrap();
    let keygen = |name: &str, args: &[&str]| {
        let path = keydir.join(name);
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-C", name, "-f"])
            .arg(&path)
            .args(args)
            .status()
            .expect("ssh-keygen (openssh-client) is needed; .ci/run installs it");
        assert!(ok.success());
        path
    };
    let rsa = keygen("rsa", &["-t", "rsa", "-b", "2048", "-N", ""]);
    let ecdsa = keygen("ecdsa", &["-t", "ecdsa", "-N", ""]);
    let locked = keygen("locked", &["-t", "ed25519", "-N", "correct horse"]);
    let mut pubs = String::new();
    for k in [&rsa, &ecdsa, &locked] {
        pubs.push_str(&std::fs::read_to_string(k.with_extension("pub")).unwrap());
    }
    let add = etcd
        .exec_with(
            "cat >> /root/.ssh/authorized_keys",
            Some(pubs.as_bytes()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(add.success());
    for (key, pass) in [
        (&rsa, None),
        (&ecdsa, None),
        (&locked, Some("correct horse")),
    ] {
        let mut s = cluster.settings();
        s.credentials = Credentials::from_key_file(key, pass).unwrap();
        let sess = Session::connect(&ep("etcd-1", 10, "root"), Arc::new(s))
            .await
            .unwrap();
        assert!(
            sess.exec("true").await.unwrap().success(),
            "{}",
            key.display()
        );
    }
    let e = Credentials::from_key_file(&locked, Some("wrong")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot use SSH key {}", locked.display())),
        "{e}"
    );
    if std::env::var_os("FORGECTL_SSH_PASSPHRASE").is_none() {
        let e = Credentials::from_key_file(&locked, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("the key is encrypted: set FORGECTL_SSH_PASSPHRASE"),
            "{e}"
        );
    }
    let sock = keydir.join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let t = Instant::now();
    while !sock.exists() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let added = std::process::Command::new("ssh-add")
        .arg("-q")
        .arg(&ecdsa)
        .env("SSH_AUTH_SOCK", &sock)
        .status()
        .unwrap();
    assert!(added.success());
    let mut s = cluster.settings();
    s.credentials = Credentials::Agent {
        socket: Some(sock.clone()),
    };
    let via_agent = Session::connect(&ep("etcd-1", 10, "root"), Arc::new(s)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(via_agent.unwrap().exec("true").await.unwrap().success());

    section("Package mirror");
    // Packages and files reach the machines (which have no route out) from the host's mirror.
    let loaded = forgectl::inventory::load_str("cluster.yaml", INVENTORY, work.path()).unwrap();
    let provider = forgectl::providers::local::LocalProvider::new(&loaded, &cluster.dir(), true);
    let tarball = keydir.join("tool-1.0.tar");
    std::fs::write(&tarball, b"pretend this is a release tarball").unwrap();
    let server = provider
        .mirror(&["jq".to_string()], std::slice::from_ref(&tarball))
        .await
        .unwrap();
    assert_eq!(
        server.apt_source(),
        format!("deb [trusted=yes] http://{NET}.1:8079/ ./")
    );
    let install = format!(
        "set -e; echo '{}' > /etc/apt/sources.list; rm -f /etc/apt/sources.list.d/*; \
         apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; \
         echo '{{\"a\":1}}' | jq .a; curl -fsS http://{NET}.1:8079/files/tool-1.0.tar",
        server.apt_source()
    );
    let out = etcd
        .exec_with(&install, None, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr_text());
    assert_eq!(out.stdout_text(), "1\npretend this is a release tarball");
    let out = etcd
        .exec("curl -sS --max-time 3 http://deb.debian.org/ >/dev/null 2>&1; echo $?")
        .await
        .unwrap();
    assert_ne!(out.stdout_text(), "0", "machines must have no route out");
    drop(server);

    section("Host keys:");
    // Host keys: a changed key is refused showing both fingerprints; unknown + strict is refused;
    // accept-new records the key and trusts it next time.
    let known = std::fs::read_to_string(cluster.dir().join("known_hosts")).unwrap();
    let cp_key = known
        .lines()
        .find(|l| l.starts_with(&format!("{NET}.11 ")))
        .unwrap();
    let swapped = cluster.state.path().join("swapped_known_hosts");
    std::fs::write(
        &swapped,
        cp_key.replace(&format!("{NET}.11 "), &format!("{NET}.10 ")) + "\n",
    )
    .unwrap();
    let mut s = cluster.settings();
    s.host_keys.recorded = swapped.clone();
    let e = Session::connect(&ep("etcd-1", 10, "root"), Arc::new(s))
        .await
        .unwrap_err();
    match &e {
        SshError::HostKeyChanged(c) => {
            assert_ne!(c.expected, c.offered);
            assert!(c.expected.starts_with("SHA256:") && c.offered.starts_with("SHA256:"));
            assert_eq!(c.line, 1);
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    assert!(e.to_string().contains("HOST KEY CHANGED"), "{e}");
    let empty = cluster.state.path().join("empty_known_hosts");
    let mut s = cluster.settings();
    s.host_keys.recorded = empty.clone();
    let e = Session::connect(&ep("etcd-1", 10, "root"), Arc::new(s.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e}");
    s.host_keys.policy = HostKeyPolicy::AcceptNew;
    Session::connect(&ep("etcd-1", 10, "root"), Arc::new(s.clone()))
        .await
        .unwrap();
    s.host_keys.policy = HostKeyPolicy::Strict;
    Session::connect(&ep("etcd-1", 10, "root"), Arc::new(s))
        .await
        .unwrap();
    assert!(
        std::fs::read_to_string(&empty)
            .unwrap()
            .contains(&format!("{NET}.10 ssh-ed25519 "))
    );

    section("Bastion:");
    // Bastion: w-1 does not answer the host (blackhole route in its namespace) but answers etcd-1.
    let ns = format!("fg-{CLUSTER}-w-1");
    let ok = std::process::Command::new("ip")
        .args([
            "-n",
            &ns,
            "route",
            "add",
            "blackhole",
            &format!("{NET}.1/32"),
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let direct = Session::connect(&ep("w-1", 12, "root"), settings.clone()).await;
    assert!(direct.is_err(), "w-1 should not be reachable directly");
    let mut s = cluster.settings();
    s.bastion = Some(ep("etcd-1", 10, "root"));
    let via = Session::connect(&ep("w-1", 12, "root"), Arc::new(s))
        .await
        .unwrap();
    assert_eq!(via.exec("hostname").await.unwrap().stdout_text(), "w-1");
    via.upload("/root/through-bastion", b"ok", 0o600, "root:root")
        .await
        .unwrap();
    std::process::Command::new("ip")
        .args([
            "-n",
            &ns,
            "route",
            "del",
            "blackhole",
            &format!("{NET}.1/32"),
        ])
        .status()
        .unwrap();

    section("A machine that cr");
    // A machine that crashes mid-command: a clear error for it, the others unaffected.
    let cp = Arc::new(
        Session::connect(&ep("cp-1", 11, "root"), settings.clone())
            .await
            .unwrap(),
    );
    let long = {
        let cp = cp.clone();
        tokio::spawn(async move {
            cp.exec_with("sleep 20", None, Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.machine("kill", "cp-1", "stopped");
    let e = long.await.unwrap().unwrap_err();
    assert!(matches!(e, SshError::Lost { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("cp-1: connection lost during `sleep 20`"),
        "{e}"
    );
    assert!(etcd.exec("true").await.unwrap().success());
    cluster.machine("start", "cp-1", "running");
    let cp = Session::connect(&ep("cp-1", 11, "root"), settings.clone())
        .await
        .unwrap();
    assert!(
        cp.exec("test -f /etc/hostname").await.unwrap().success(),
        "the disk survives a crash"
    );

    section("Cut off:");
    // Cut off: an open session times out within the command timeout; a new one within the
    // connect timeout.
    cluster.machine("cut", "cp-1", "cut");
    let t = Instant::now();
    let e = cp
        .exec_with("true", None, Duration::from_secs(2))
        .await
        .unwrap_err();
    // Depending on ARP timing the kernel reports the host unreachable or nothing at all.
    assert!(
        matches!(e, SshError::CommandTimeout { .. } | SshError::Lost { .. }),
        "{e}"
    );
    assert!(e.to_string().starts_with("cp-1: "), "{e}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let t = Instant::now();
    let e = Session::connect(&ep("cp-1", 11, "root"), settings.clone())
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(e.to_string().contains("cp-1 (root@10.77.50.11:22)"), "{e}");
    cluster.machine("heal", "cp-1", "running");

    section("Freeze:");
    // Freeze: the machine hangs; thaw: it answers again.
    cluster.machine("freeze", "w-1", "frozen");
    let e = Session::connect(&ep("w-1", 12, "root"), settings.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, SshError::Timeout { .. }), "{e}");
    cluster.machine("thaw", "w-1", "running");
    Session::connect(&ep("w-1", 12, "root"), settings.clone())
        .await
        .unwrap();

    section("Clean stop");
    // Clean stop and start keep the disk.
    cluster.machine("stop", "w-1", "stopped");
    cluster
        .forgectl()
        .args(["machines", "list"])
        .assert()
        .success()
        .stdout(predicates::str::is_match(r"w-1\s+10\.77\.50\.12\s+stopped\s+-").unwrap());
    cluster
        .forgectl()
        .args(["machines", "start", "w-1"])
        .assert()
        .success();
    let w = Session::connect(&ep("w-1", 12, "root"), settings.clone())
        .await
        .unwrap();
    assert_eq!(w.download("/root/through-bastion").await.unwrap(), b"ok");

    section("down removes");
    // down removes everything; a second down is a no-op; the host is as it was.
    for s in [etcd, user, cp, w, via] {
        s.close().await;
    }
    cluster
        .forgectl()
        .args(["down", "--yes"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "down: done — 1 phase(s), 3 change(s).",
        ));
    cluster
        .forgectl()
        .args(["down", "--yes"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "nothing to do: no machine exists",
        ));
    assert_eq!(
        support::host_snapshot(CLUSTER, cluster.state.path()),
        before
    );
}
