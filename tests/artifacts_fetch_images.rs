//! `forgectl artifacts fetch --images` against a real registry (Debian's docker-registry, the
//! CNCF distribution server) on 127.0.0.1, filled by skopeo: every image the cluster needs pulled
//! through the inventory's mirrors in order (a dead one first), written as OCI archives that
//! skopeo reads back with their digests and forgectl's own reader accepts; an index resolved to the
//! asked architecture; a missing image and a tampered layer refused, naming where they were looked
//! for; a second run keeps what is there.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use forgectl::plan::sha256_hex;
use support::kube::free_port;
use support::registry::{Registry, run, tiny_image, tool};

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn forgectl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forgectl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `fetch --images -o json`: exit code and the rows by reference.
fn fetch(inv: &Path, to: &Path, extra: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let mut args = vec![
        "artifacts",
        "fetch",
        "--images",
        "-o",
        "json",
        "-f",
        inv.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = forgectl(&args);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, rows, err)
}

fn row<'a>(rows: &'a [serde_json::Value], reference: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| {
            r["reference"] == reference
                || r["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with(&format!("{reference}:")))
        })
        .unwrap_or_else(|| panic!("no row for {reference}: {rows:#?}"))
}

/// skopeo reads the archive back (checking every blob against its digest) and names its
/// manifest's digest.
fn skopeo_digest(archive: &Path, work: &Path) -> String {
    let out = work.join(format!(
        "read-{}",
        archive.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new(tool("skopeo")).args([
        "copy",
        "--insecure-policy",
        &format!("oci-archive:{}", archive.display()),
        &format!("dir:{}", out.display()),
    ]));
    let raw = std::fs::read(out.join("manifest.json")).unwrap();
    format!("sha256:{}", sha256_hex(&raw))
}

#[test]
fn images_are_pulled_through_mirrors_checked_and_kept() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let reg = Registry::start(dir);
    let host = reg.host();
    let dead = free_port(LOOPBACK);
    let inv = dir.join("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "name: fetchimg\nprovider: static\ncni:\n  plugin: bridge\ningress:\n  enabled: false\n\
             runtime:\n  registry_mirrors:\n    registry.k8s.io: [\"http://127.0.0.1:{dead}\", \"http://{host}\"]\n\
             \x20   \"{host}\": [\"http://{host}\"]\n\
             platform:\n  images:\n    web: {host}/tools/web:1\n    multi: {host}/tools/multi:1\n    gone: {host}/tools/gone:1\n\
             groups:\n  - name: etcd\n    roles: [etcd]\n    hosts: [{{ name: e1, address: 192.0.2.1 }}]\n\
             \x20 - name: cp\n    roles: [control-plane]\n    hosts: [{{ name: c1, address: 192.0.2.2 }}]\n"
        ),
    )
    .unwrap();

    // What the cluster needs, as `artifacts list` names it.
    let (code, out, err) = forgectl(&[
        "artifacts",
        "list",
        "-o",
        "json",
        "-f",
        inv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let needed: Vec<String> = listed["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap().to_string())
        .collect();
    assert!(
        needed
            .iter()
            .any(|r| r.starts_with("registry.k8s.io/pause:")),
        "{needed:?}"
    );

    // Fill the registry: the Kubernetes images under the mirror's paths, the tools' at their own
    // host; tools/multi as an index of an amd64 and an arm64 image; tools/gone not at all.
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    for (i, r) in needed.iter().enumerate() {
        let repo = match (
            r.strip_prefix("registry.k8s.io/"),
            r.strip_prefix(&format!("{host}/")),
        ) {
            (Some(repo), _) => repo.to_string(),
            (_, Some(repo)) if repo.starts_with("tools/web") => repo.to_string(),
            _ => continue,
        };
        let archive = seed.join(format!("{i}.tar"));
        tiny_image(&archive, r, "amd64", &format!("image {r}"));
        reg.push(&archive, &repo);
    }
    for arch in ["amd64", "arm64"] {
        let archive = seed.join(format!("multi-{arch}.tar"));
        tiny_image(
            &archive,
            &format!("{host}/tools/multi:{arch}"),
            arch,
            &format!("multi {arch}"),
        );
        reg.push(&archive, &format!("tools/multi:{arch}"));
    }
    let (amd, amd_digest) = reg.manifest("tools/multi:amd64");
    let (_, arm_digest) = reg.manifest("tools/multi:arm64");
    let size = |repo: &str| {
        run(Command::new(tool("skopeo")).args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/{repo}"),
        ]))
        .len()
    };
    let media = amd["mediaType"].as_str().unwrap().to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            {"mediaType": media, "digest": arm_digest, "size": size("tools/multi:arm64"),
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": media, "digest": amd_digest, "size": size("tools/multi:amd64"),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let index_dir = dir.join("index");
    std::fs::create_dir_all(&index_dir).unwrap();
    std::fs::write(index_dir.join("manifest.json"), index.to_string()).unwrap();
    std::fs::write(
        index_dir.join("version"),
        "Directory Transport Version: 1.1\n",
    )
    .unwrap();
    run(Command::new(tool("skopeo")).args([
        "copy",
        "--insecure-policy",
        "--dest-tls-verify=false",
        "--multi-arch=index-only",
        &format!("dir:{}", index_dir.display()),
        &format!("docker://{host}/tools/multi:1"),
    ]));

    // First run: everything but tools/gone pulled, through the live mirror after the dead one.
    let to = dir.join("images");
    let (code, rows, err) = fetch(&inv, &to, &[]);
    assert_eq!(code, 1, "tools/gone is missing: {rows:#?}\n{err}");
    assert!(err.contains("1 image(s) could not be pulled"), "{err}");
    assert!(err.contains("runtime.registry_mirrors"), "{err}");
    let gone = row(&rows, &format!("{host}/tools/gone:1"));
    let gone_error = gone["error"].as_str().unwrap();
    assert!(
        gone_error
            == format!(
                "{host}/tools/gone:1: from http://{host}: no such image there (manifest unknown)"
            ),
        "names each place it looked: {gone_error}"
    );
    for r in needed.iter().filter(|r| !r.contains("tools/gone")) {
        let got = row(&rows, r);
        assert_eq!(got["result"], "pulled", "{r}: {got}");
        assert_eq!(
            got["from"],
            format!("http://{host}"),
            "{r}: the dead mirror is skipped"
        );
        let file = to.join(got["file"].as_str().unwrap());
        let archive = forgectl::images::read(&file).unwrap();
        assert_eq!(
            archive.refs,
            [forgectl::image_fetch::qualified(r)],
            "{r}: named as containerd names it"
        );
        assert_eq!(archive.digest, got["digest"].as_str().unwrap());
        assert_eq!(skopeo_digest(&file, dir), archive.digest, "{r}");
        if !r.contains("tools/multi") {
            let repo = r
                .strip_prefix("registry.k8s.io/")
                .map(str::to_string)
                .unwrap_or_else(|| r.strip_prefix(&format!("{host}/")).unwrap().to_string());
            assert_eq!(
                archive.digest,
                reg.manifest(&repo).1,
                "{r}: the registry's own digest"
            );
        }
    }
    let multi = row(&rows, &format!("{host}/tools/multi:1"));
    assert_eq!(
        multi["digest"], amd_digest,
        "the index resolved to linux/amd64"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&to)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tar"))
        .collect();
    assert!(leftovers.is_empty(), "no partial files: {leftovers:?}");

    // `artifacts list` finds them in the directory once `artifacts.images` points at it.
    let with_dir = dir.join("with-images.yaml");
    std::fs::write(
        &with_dir,
        std::fs::read_to_string(&inv).unwrap()
            + &format!("artifacts:\n  images: {}\n", to.display()),
    )
    .unwrap();
    let (code, out, err) = forgectl(&["artifacts", "list", "-f", with_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("1 of {} image(s) are not in", needed.len())),
        "{out}"
    );

    // A second run keeps every archive (same bytes) and still reports the missing one.
    let stamp = |f: &str| std::fs::metadata(to.join(f)).unwrap().modified().unwrap();
    let web_row = row(&rows, &format!("{host}/tools/web:1")).clone();
    let web_file = web_row["file"].as_str().unwrap().to_string();
    let before = stamp(&web_file);
    let (code, again, _) = fetch(&inv, &to, &[]);
    assert_eq!(code, 1);
    for r in needed.iter().filter(|r| !r.contains("tools/gone")) {
        assert_eq!(row(&again, r)["result"], "present", "{r}");
    }
    assert_eq!(stamp(&web_file), before);

    // --arch arm64 takes the index's other image.
    let arm_to = dir.join("images-arm64");
    let (_, arm_rows, _) = fetch(&inv, &arm_to, &["--arch", "arm64"]);
    assert_eq!(
        row(&arm_rows, &format!("{host}/tools/multi:1"))["digest"],
        arm_digest
    );

    // A layer changed in the registry's storage is refused and leaves no file behind.
    std::fs::remove_file(to.join(&web_file)).unwrap();
    let (web_manifest, _) = reg.manifest("tools/web:1");
    let layer = web_manifest["layers"][0]["digest"].as_str().unwrap();
    let hex = layer.trim_start_matches("sha256:");
    let data = reg
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let (code, rows, _) = fetch(&inv, &to, &[]);
    assert_eq!(code, 1);
    let web = row(&rows, &format!("{host}/tools/web:1"));
    let e = web["error"].as_str().unwrap();
    assert!(
        e.contains(&format!(
            "blob {layer}: its content does not match its digest"
        )),
        "{e}"
    );
    assert!(!to.join(&web_file).exists(), "a tampered image is not kept");
    let names: Vec<String> = std::fs::read_dir(&to)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tar"))
        .collect();
    assert!(names.is_empty(), "no partial files: {names:?}");
}
