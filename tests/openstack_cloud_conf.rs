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

/// `up --only storage-cinder` against a REAL control plane (tests/support/kube.rs), the driver's
/// pods run by the node stand-in (tests/support/node_standin.rs): the Secret holds a cloud.conf
/// with the cloud's credentials (never printed), the driver and the StorageClass are applied, the
/// rollouts are waited for, and a second run changes nothing.
#[test]
fn storage_cinder_applies_the_cloud_config_and_the_driver() {
    use base64::Engine as _;
    use forgectl::state::StateDir;
    if support::openstack::cloud().is_none() {
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("state");
    let cluster = "fgtest-cinder";
    let state = StateDir::open(&base, cluster).unwrap();
    let api = support::kube::shared();
    let admin = api.admin_kubeconfig("fgtest-cinder", &state.path().join("admin.conf"));
    // The kubelets: the driver's DaemonSet and Deployment run on them.
    let _nodes = support::node_standin::Nodes::start(
        &admin,
        &["fgtest-cinder-1"],
        std::net::Ipv4Addr::LOCALHOST.into(),
    );
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
        support::openstack::forgectl(&base)
            .args(["up", "--yes", "--only", "storage-cinder", "-f"])
            .arg(&inv)
            .output()
            .unwrap()
    };
    let out = run();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let secret = api
        .list("secrets", "")
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
    let class = api.get("storageclasses", None, "cinder").unwrap();
    assert_eq!(class["parameters"]["availability"], "nova");
    assert_eq!(api.list("csidrivers", "").len(), 1);
    // Converged: nothing changes, not even a resourceVersion (the workloads' status moves
    // with their pods: their spec's generation stays).
    let versions = || -> Vec<String> {
        type Field = fn(&serde_json::Value) -> String;
        let rv: Field = |o| o["metadata"]["resourceVersion"].to_string();
        let generation: Field = |o| o["metadata"]["generation"].to_string();
        [("secrets", rv), ("storageclasses", rv), ("csidrivers", rv)]
            .into_iter()
            .chain([("deployments", generation), ("daemonsets", generation)])
            .flat_map(|(r, f)| {
                api.list(r, "")
                    .iter()
                    .map(|o| format!("{r} {} {}", o["metadata"]["name"], f(o)))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let stored = versions();
    let out = run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 change(s)"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(versions(), stored);
}
