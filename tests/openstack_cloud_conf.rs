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
