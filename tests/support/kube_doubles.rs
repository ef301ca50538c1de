//! TEST DOUBLES of kubeadm, kubelet, kubectl and crictl (`doubles/kube-tool.sh`), laid out as an
//! artifact directory (`BASE/NAME/VERSION/FILE` + the checksum file upstream publishes) so that
//! forgectl installs them exactly as it installs the real release files.

use forgectl::plan::sha256_hex;
use std::path::Path;

/// The double's script with its versions filled in.
pub fn script(kube_version: &str) -> String {
    include_str!("doubles/kube-tool.sh")
        .replace("@KUBE_VERSION@", kube_version)
        .replace("@CRICTL_VERSION@", forgectl::artifacts::CRICTL_VERSION)
}

/// Lays out the doubles under `dir` for Kubernetes `kube_version`, in upstream's shapes: single
/// binaries with `NAME.sha256` beside them, crictl as a tarball with `FILE.sha256`.
pub fn lay_out(dir: &Path, kube_version: &str) {
    let body = script(kube_version);
    for name in ["kubeadm", "kubelet", "kubectl"] {
        let d = dir.join(name).join(kube_version);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), &body).unwrap();
        std::fs::write(
            d.join(format!("{name}.sha256")),
            format!("{}\n", sha256_hex(body.as_bytes())),
        )
        .unwrap();
    }
    let v = forgectl::artifacts::CRICTL_VERSION;
    let d = dir.join("crictl").join(v);
    std::fs::create_dir_all(&d).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("crictl"), &body).unwrap();
    let file = format!("crictl-v{v}-linux-amd64.tar.gz");
    // crictl's release tarball holds the binary at its top level.
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(d.join(&file))
        .arg("-C")
        .arg(work.path())
        .arg("crictl")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");
    let data = std::fs::read(d.join(&file)).unwrap();
    std::fs::write(
        d.join(format!("{file}.sha256")),
        format!("{}  {file}\n", sha256_hex(&data)),
    )
    .unwrap();
}
