//! A real container registry for tests: Debian's docker-registry (the CNCF distribution server)
//! on 127.0.0.1 at a free port, storage in the test's directory, filled with skopeo; stopped by
//! PID when dropped. Not a stand-in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forgectl::plan::sha256_hex;

use super::kube::free_port;

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// `/usr/bin/NAME`, failing with what to install when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let p = Path::new("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: install Debian's docker-registry and skopeo packages (.ci/run does)",
        p.display()
    );
    p
}

/// Runs `cmd`, failing the test with its output unless it succeeds; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The registry, stopped (by PID) when dropped.
pub struct Registry {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its storage directory.
    pub storage: PathBuf,
}

impl Registry {
    /// Starts one with its files under `dir`.
    pub fn start(dir: &Path) -> Registry {
        let storage = dir.join("registry");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port(LOOPBACK);
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new(tool("docker-registry"))
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let reg = Registry {
            child,
            port,
            storage,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "docker-registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        reg
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes a docker-archive as `host/repo`.
    pub fn push(&self, archive: &Path, repo: &str) {
        run(Command::new(tool("skopeo")).args([
            "copy",
            "--insecure-policy",
            "--dest-tls-verify=false",
            &format!("docker-archive:{}", archive.display()),
            &format!("docker://{}/{repo}", self.host()),
        ]));
    }

    /// The raw manifest of `host/repo` and its digest.
    pub fn manifest(&self, repo: &str) -> (serde_json::Value, String) {
        let raw = run(Command::new(tool("skopeo")).args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{repo}", self.host()),
        ]));
        (
            serde_json::from_str(&raw).unwrap(),
            format!("sha256:{}", sha256_hex(raw.as_bytes())),
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-layer docker-archive for `arch` whose only file says `text`.
pub fn tiny_image(path: &Path, reference: &str, arch: &str, text: &str) {
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    layer.append_data(&mut h, "hello", text.as_bytes()).unwrap();
    let layer = layer.into_inner().unwrap();
    let layer_hex = sha256_hex(&layer);
    let config = serde_json::json!({
        "architecture": arch, "os": "linux", "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
    })
    .to_string();
    let config_hex = sha256_hex(config.as_bytes());
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [reference],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }])
    .to_string();
    let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        out.append_data(&mut h, name, data).unwrap();
    };
    add(&format!("{config_hex}.json"), config.as_bytes());
    add(&format!("{layer_hex}/layer.tar"), &layer);
    add("manifest.json", manifest.as_bytes());
    out.finish().unwrap();
}
