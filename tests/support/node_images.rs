//! Container images a real test cluster needs that cannot be pulled here, as docker-archive
//! files for `artifacts.images`: the control plane's and pause (from `../shared/kube`'s `kube
//! images`), kube-proxy (the real binary on a Debian root file system with iptables, as upstream's
//! image has it), and a STAND-IN for CoreDNS (tests/support/standins/coredns-standin.py on the
//! same Debian root, under CoreDNS's name: CoreDNS's image cannot be had here). Built once and
//! cached under forgectl's cache dir, keyed by their inputs.

use forgectl::plan::sha256_hex;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Packages of the Debian root the built images share.
const TOOLS: &[&str] = &["iptables", "nftables", "conntrack", "netbase", "python3"];

fn cache() -> PathBuf {
    forgectl::providers::local::rootfs::cache_dir().join("test-images")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The minimal Debian root with the tools (debootstrap --variant=minbase), as one layer tarball.
fn tools_layer() -> PathBuf {
    let mirror = forgectl::providers::local::rootfs::host_mirror();
    let key = &sha256_hex(format!("bookworm\n{mirror}\n{}", TOOLS.join(",")).as_bytes())[..12];
    let layer = cache().join(format!("tools-{key}.layer.tar"));
    if layer.exists() {
        return layer;
    }
    std::fs::create_dir_all(cache()).unwrap();
    let root = cache().join(format!("tools-{key}.build-{}", std::process::id()));
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", TOOLS.join(",")))
        .arg("bookworm")
        .arg(&root)
        .arg(&mirror));
    let tmp = layer.with_extension(format!("partial-{}", std::process::id()));
    run(Command::new("tar")
        .args(["--numeric-owner", "--sort=name", "--mtime=@0", "-C"])
        .arg(&root)
        .args([
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./var/cache/apt/*",
            "--exclude=./var/lib/apt/lists/*",
            "--exclude=./usr/share/doc/*",
            "--exclude=./usr/share/man/*",
            "--exclude=./usr/share/locale/*",
            "-cf",
        ])
        .arg(&tmp)
        .arg("."));
    std::fs::rename(&tmp, &layer).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    layer
}

/// GNU tar writing the same bytes for the same files: root-owned, sorted, mtime 0.
fn reproducible_tar() -> Command {
    let mut c = Command::new("tar");
    c.args([
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "--sort=name",
        "--mtime=@0",
    ]);
    c
}

/// A layer holding `files` (path in the image, content, mode).
fn files_layer(out: &Path, files: &[(&str, &[u8], u32)]) {
    let dir = tempfile::tempdir().unwrap();
    for (path, data, mode) in files {
        let p = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    run(reproducible_tar()
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(out)
        .arg("."));
}

/// Writes a docker-archive of `reference` from `layers` (bottom first) with `entrypoint`.
fn docker_archive(out: &Path, reference: &str, layers: &[PathBuf], entrypoint: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let sum = sha256_file(layer);
        std::fs::create_dir_all(work.path().join(&sum)).unwrap();
        let target = work.path().join(&sum).join("layer.tar");
        if std::fs::hard_link(layer, &target).is_err() {
            std::fs::copy(layer, &target).unwrap();
        }
        names.push(format!("{sum}/layer.tar"));
        diff_ids.push(format!("sha256:{sum}"));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint,
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_sum = sha256_hex(config.as_bytes());
    std::fs::write(work.path().join(format!("{config_sum}.json")), &config).unwrap();
    let manifest = serde_json::json!([{"Config": format!("{config_sum}.json"),
        "RepoTags": [reference], "Layers": names}]);
    std::fs::write(work.path().join("manifest.json"), manifest.to_string()).unwrap();
    let tmp = out.with_extension("partial");
    run(reproducible_tar()
        .args(["--hard-dereference", "-C"])
        .arg(work.path())
        .arg("-cf")
        .arg(&tmp)
        .arg("."));
    std::fs::rename(&tmp, out).unwrap();
}

/// Links (or copies) `from` to `to`.
fn place(from: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

/// (file name in the directory, reference, layers below its own, its files (path, content,
/// mode), entrypoint)
type Image = (String, String, Vec<PathBuf>, Vec<ImageFile>, String);
/// A file of an image's own layer: path, content, mode.
type ImageFile = (String, Vec<u8>, u32);

/// Every image a cluster of `kube_bin`'s Kubernetes needs, in `dir`, under the references
/// `kubeadm config images list` gives: kube-apiserver, kube-controller-manager and
/// kube-scheduler (each its binary alone, like upstream's), pause, kube-proxy, and the CoreDNS
/// stand-in. The external etcd needs no image.
pub fn lay_out(dir: &Path, kube_bin: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let version = super::kube_artifacts::kube_version(kube_bin);
    let refs = kubeadm_images(kube_bin);
    let reference = |name: &str| {
        refs.iter()
            .find(|r| {
                r.rsplit('/')
                    .next()
                    .is_some_and(|t| t.starts_with(&format!("{name}:")))
            })
            .unwrap_or_else(|| panic!("kubeadm lists no {name} image: {refs:?}"))
            .clone()
    };
    let base = tools_layer();
    let standin = include_bytes!("standins/coredns-standin.py");
    let passwd =
        b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n";
    let group = b"root:x:0:\nnobody:x:65534:\n";
    let mut images: Vec<Image> = Vec::new();
    for bin in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let data = std::fs::read(kube_bin.join(bin)).unwrap();
        images.push((
            format!("{bin}_v{version}.tar"),
            reference(bin),
            Vec::new(),
            vec![
                (format!("/usr/local/bin/{bin}"), data, 0o755),
                ("/etc/passwd".into(), passwd.to_vec(), 0o644),
                ("/etc/group".into(), group.to_vec(), 0o644),
                ("/tmp/.keep".into(), Vec::new(), 0o644),
            ],
            format!("/usr/local/bin/{bin}"),
        ));
    }
    // An older set has no pause of its own: the default set's serves every version.
    let pause_bin = match kube_bin.join("pause") {
        p if p.exists() => p,
        _ => super::kube::assets().join("pause"),
    };
    let pause = std::fs::read(&pause_bin).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (a static pause binary beside the Kubernetes binaries, as ../shared/kube has)",
            pause_bin.display()
        )
    });
    images.push((
        format!("pause_{}.tar", tag(&reference("pause"))),
        reference("pause"),
        Vec::new(),
        vec![("/pause".into(), pause, 0o755)],
        "/pause".into(),
    ));
    images.push((
        format!("kube-proxy_v{version}.tar"),
        reference("kube-proxy"),
        vec![base.clone()],
        vec![(
            "/usr/local/bin/kube-proxy".into(),
            std::fs::read(kube_bin.join("kube-proxy")).unwrap(),
            0o755,
        )],
        "/usr/local/bin/kube-proxy".into(),
    ));
    images.push((
        format!("coredns-STANDIN_{}.tar", tag(&reference("coredns"))),
        reference("coredns"),
        vec![base],
        vec![("/coredns".into(), standin.to_vec(), 0o755)],
        "/coredns".into(),
    ));
    for (file, reference, bottom, files, entrypoint) in images {
        let mut key_text = format!("{reference}\n{entrypoint}\n");
        for b in &bottom {
            key_text.push_str(&format!("{}\n", b.display()));
        }
        for (path, data, mode) in &files {
            key_text.push_str(&format!("{path} {mode:o} {}\n", sha256_hex(data)));
        }
        let key = &sha256_hex(key_text.as_bytes())[..16];
        let out = cache().join(format!("{key}.tar"));
        if !out.exists() {
            let layer = cache().join(format!("{key}.layer.tar"));
            let list: Vec<(&str, &[u8], u32)> = files
                .iter()
                .map(|(p, d, m)| (p.as_str(), d.as_slice(), *m))
                .collect();
            files_layer(&layer, &list);
            let mut layers = bottom.clone();
            layers.push(layer.clone());
            docker_archive(&out, &reference, &layers, &[entrypoint.as_str()]);
            let _ = std::fs::remove_file(layer);
        }
        place(&out, &dir.join(file));
    }
}

/// The images `kubeadm config images list` names for `kube_bin`'s version.
/// The tag of an image reference.
fn tag(reference: &str) -> String {
    reference.rsplit(':').next().unwrap_or_default().to_string()
}

pub fn kubeadm_images(kube_bin: &Path) -> Vec<String> {
    let out = Command::new(kube_bin.join("kubeadm"))
        .args(["config", "images", "list", "--kubernetes-version"])
        .arg(format!(
            "v{}",
            super::kube_artifacts::kube_version(kube_bin)
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}
