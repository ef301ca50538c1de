//! The real Kubernetes binaries of `$FORGECTL_TEST_KUBE_ASSETS` (or `../shared/kube`) laid out as
//! an artifact directory (`DIR/NAME/VERSION/FILE` with the checksum file upstream publishes
//! beside it), so forgectl installs them exactly as it installs release files: kubeadm, kubelet
//! and kubectl as single binaries, etcd as upstream's tarball (`etcd-vV-linux-amd64/` with etcd
//! and etcdctl; etcdctl from Debian's etcd-client where the assets have none). No crictl: it is
//! optional.

use forgectl::plan::sha256_hex;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version of the binaries in `kube_bin` (without the `v`).
pub fn kube_version(kube_bin: &Path) -> String {
    let out = Command::new(kube_bin.join("kubeadm"))
        .args(["version", "-o", "short"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches('v')
        .to_string()
}

/// The etcd version of `kube_bin/etcd`.
pub fn etcd_version(kube_bin: &Path) -> String {
    let out = Command::new(kube_bin.join("etcd"))
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .expect("etcd --version")
        .trim()
        .to_string()
}

/// Lays the binaries out under `dir`; returns (Kubernetes version, etcd version).
pub fn lay_out(dir: &Path, kube_bin: &Path) -> (String, String) {
    let k = lay_out_node_binaries(dir, kube_bin);
    let e = etcd_version(kube_bin);
    let work = tempfile::tempdir().unwrap();
    let top = work.path().join(format!("etcd-v{e}-linux-amd64"));
    std::fs::create_dir_all(&top).unwrap();
    std::fs::copy(kube_bin.join("etcd"), top.join("etcd")).unwrap();
    let etcdctl = match kube_bin.join("etcdctl") {
        p if p.exists() => p,
        _ => debian_etcdctl(work.path()),
    };
    std::fs::copy(etcdctl, top.join("etcdctl")).unwrap();
    let release = dir.join("etcd").join(&e);
    std::fs::create_dir_all(&release).unwrap();
    let file = format!("etcd-v{e}-linux-amd64.tar.gz");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(release.join(&file))
        .arg("-C")
        .arg(work.path())
        .arg(format!("etcd-v{e}-linux-amd64"))
        .status()
        .unwrap();
    assert!(ok.success());
    let data = std::fs::read(release.join(&file)).unwrap();
    std::fs::write(
        release.join("SHA256SUMS"),
        format!("{}  {file}\n", sha256_hex(&data)),
    )
    .unwrap();
    (k, e)
}

/// etcdctl from Debian's etcd-client package, unpacked under `work`.
fn debian_etcdctl(work: &Path) -> PathBuf {
    // apt downloads as its own user where it can write.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ok = Command::new("apt-get")
        .args(["download", "-qq", "etcd-client"])
        .current_dir(work)
        .status()
        .unwrap();
    assert!(ok.success(), "apt-get download etcd-client");
    let deb = std::fs::read_dir(work)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap();
    let root = work.join("etcd-client");
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(ok.success());
    root.join("usr/bin/etcdctl")
}

/// What a real test cluster is built from, under `work`: the artifact directory, the image
/// directory (tests/support/node_images.rs), the Kubernetes and etcd versions.
pub struct Inputs {
    /// `artifacts.dir`.
    pub artifacts: PathBuf,
    /// `artifacts.images`.
    pub images: PathBuf,
    /// Kubernetes version.
    pub kube: String,
    /// etcd version.
    pub etcd: String,
}

/// Lays out the binaries and the images of `kube_bin` under `work`.
pub fn inputs(work: &Path, kube_bin: &Path) -> Inputs {
    let artifacts = work.join("artifacts");
    let images = work.join("images");
    let (kube, etcd) = lay_out(&artifacts, kube_bin);
    super::node_images::lay_out(&images, kube_bin);
    Inputs {
        artifacts,
        images,
        kube,
        etcd,
    }
}

/// kubeadm, kubelet and kubectl of `kube_bin` (those it has: an older set may lack kubectl)
/// laid out under `dir`; returns their Kubernetes version.
pub fn lay_out_node_binaries(dir: &Path, kube_bin: &Path) -> String {
    let k = kube_version(kube_bin);
    for name in ["kubeadm", "kubelet", "kubectl"] {
        if !kube_bin.join(name).exists() {
            continue;
        }
        let d = dir.join(name).join(&k);
        std::fs::create_dir_all(&d).unwrap();
        let target = d.join(name);
        if std::fs::hard_link(kube_bin.join(name), &target).is_err() {
            std::fs::copy(kube_bin.join(name), &target).unwrap();
        }
        let data = std::fs::read(&target).unwrap();
        std::fs::write(
            d.join(format!("{name}.sha256")),
            format!("{}\n", sha256_hex(&data)),
        )
        .unwrap();
    }
    k
}
