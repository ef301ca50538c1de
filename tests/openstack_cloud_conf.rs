//! The Cinder CSI driver's cloud config (`cloud.conf`), made from the same clouds.yaml entry
//! forgectl uses, authenticates against a real Keystone (minicloud): the gcfg keys the driver
//! reads carry working credentials and project scope.

mod support;

use std::collections::BTreeMap;

/// `[Global]` of a gcfg text: key → unquoted value.
fn global(conf: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_global = false;
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_global = line == "[Global]";
            continue;
        }
        if !in_global || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once(" = ").unwrap();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap()
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
        out.insert(k.to_string(), v);
    }
    out
}

#[tokio::test]
async fn cloud_conf_authenticates_against_keystone() {
    if support::openstack::cloud().is_none() {
        return;
    }
    let settings: forgectl::inventory::OpenStackProvider = serde_json::from_value(
        serde_json::json!({"network": "unused", "image": "unused", "flavor": "unused"}),
    )
    .unwrap();
    let conf = forgectl::providers::openstack::cloud_conf::cloud_conf(&settings).unwrap();
    assert!(conf.contains("\n[BlockStorage]\n"), "{conf}");
    let g = global(&conf);
    for k in ["auth-url", "username", "password", "region"] {
        assert!(g.contains_key(k), "cloud.conf lacks {k}");
    }
    let project = match (g.get("tenant-id"), g.get("tenant-name")) {
        (Some(id), _) => serde_json::json!({"id": id}),
        (None, Some(name)) => serde_json::json!({"name": name,
            "domain": {"name": g.get("tenant-domain-name").cloned().unwrap_or("Default".into())}}),
        _ => panic!("cloud.conf has no project"),
    };
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": g["username"], "password": g["password"],
            "domain": {"name": g.get("user-domain-name").cloned().unwrap_or("Default".into())}}}},
        "scope": {"project": project}}});
    let base = g["auth-url"].trim_end_matches('/');
    let url = if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    };
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "Keystone refused cloud.conf's credentials"
    );
    assert!(resp.headers().contains_key("x-subject-token"));
    let token: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    if let Some(name) = g.get("tenant-name") {
        assert_eq!(token["token"]["project"]["name"], name.as_str());
    }
}

/// `up --only storage-cinder` through the API-server TEST DOUBLE: the Secret holds a cloud.conf
/// with the cloud's credentials (never printed), the driver and the StorageClass are applied, the
/// rollouts are waited for, and a second run changes nothing.
#[test]
fn storage_cinder_applies_the_cloud_config_and_the_driver() {
    use base64::Engine as _;
    use forgectl::pki::{Pki, paths};
    use forgectl::state::StateDir;
    use support::apiserver::{ApiServer, kubeconfig};
    if support::openstack::cloud().is_none() {
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("state");
    let cluster = "fgtest-cinder";
    let state = StateDir::open(&base, cluster).unwrap();
    let pki = Pki::new(&state);
    pki.ensure(&[]).unwrap();
    let (ca, key) = (
        pki.read(paths::KUBE_CA, "crt").unwrap().unwrap(),
        pki.read(paths::KUBE_CA, "key").unwrap().unwrap(),
    );
    let api = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        &ca,
        &key,
        &["127.0.0.1".into()],
    );
    std::fs::write(
        state.path().join("admin.conf"),
        kubeconfig(
            &format!("https://{}", api.addr),
            &ca,
            &key,
            "kubernetes-admin",
            "kubeadm:cluster-admins",
        ),
    )
    .unwrap();
    drop(state);
    let inv = tmp.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "name: {cluster}\nprovider: openstack\nopenstack:\n  network: unused\n  image: unused\n  flavor: unused\n\
             ingress:\n  enabled: false\nstorage:\n  cinder:\n    enabled: true\n    availability_zone: nova\n\
             groups:\n  - name: etcd\n    roles: [etcd]\n    count: 1\n  - name: control\n    roles: [control-plane, worker]\n    count: 1\n"
        ),
    )
    .unwrap();
    let run = || {
        let mut c = support::openstack::forgectl(&base);
        c.args(["up", "--yes", "--only", "storage-cinder", "-f"])
            .arg(&inv);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let child = std::thread::spawn(move || {
            let out = c.output().unwrap();
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        });
        // The controllers and kubelet the double lacks: report what was applied rolled out.
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            api.roll_out_workloads();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        child.join().unwrap()
    };
    let out = run();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let secret = api
        .objects("", "secrets")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "cloud-config")
        .unwrap();
    let conf = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["cloud.conf"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let g = global(&conf);
    assert!(g["auth-url"].starts_with("http://127.0.0.1:5000"), "{conf}");
    assert!(
        !text.contains(&g["password"]),
        "the password was printed: {text}"
    );
    let class = &api.objects("storage.k8s.io", "storageclasses")[0];
    assert_eq!(class["metadata"]["name"], "cinder");
    assert_eq!(class["parameters"]["availability"], "nova");
    assert_eq!(api.objects("storage.k8s.io", "csidrivers").len(), 1);
    // Converged: nothing changes, nothing is written.
    let writes = api.writes();
    let out = run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 change(s)"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.writes(), writes);
}
