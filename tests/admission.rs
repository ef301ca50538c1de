//! The admission webhooks over real HTTPS (axum + rustls, in-process): AdmissionReview v1 in and
//! out as the API server sends and reads it, each rule's verdict, and a rotated serving
//! certificate picked up without a restart.

use forgectl::admission::server::request_body;
use forgectl::admission::{Policy, ServeOptions, serve};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// A CA and a serving certificate for 127.0.0.1 from it, written to `dir` as tls.crt / tls.key;
/// returns the CA's PEM.
fn issue(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fgtest webhook CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "forgectl-admission");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    // Written to temporary files and renamed, as a rotation would.
    std::fs::write(dir.join("tls.key.new"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tls.crt.new"), cert.pem()).unwrap();
    std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
    ca_cert.pem()
}

fn client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> reqwest::Result<Value> {
    let r = c
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    Ok(serde_json::from_slice(&r.bytes().await?).unwrap())
}

#[tokio::test]
async fn reviews_over_https_and_certificate_rotation() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = issue(dir.path());
    let policy = Policy {
        allowed_registries: vec!["registry.toolforge.test".into()],
        tool_domain: "toolforge.test".into(),
        namespace_prefix: "tool-".into(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        reload_every: Duration::from_millis(100),
    };
    tokio::spawn(serve(policy, opts, Some(tx)));
    let addr = rx.await.unwrap();
    let base = format!("https://127.0.0.1:{}", addr.port());
    let c = client(&ca);

    // A pod from the allowed registry: allowed, the uid echoed, v1 in and out.
    let pod = |image: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "tool-a"},
            "spec": {"containers": [{"name": "main", "image": image}]}})
    };
    let body = request_body(
        "uid-1",
        ("", "v1", "Pod"),
        "pods",
        "tool-a",
        &pod("registry.toolforge.test/python:3.12"),
    );
    let got = post(&c, &format!("{base}/validate/images"), &body)
        .await
        .unwrap();
    assert_eq!(got["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(got["kind"], "AdmissionReview");
    assert_eq!(got["response"]["uid"], "uid-1");
    assert_eq!(got["response"]["allowed"], true);

    // From elsewhere: denied with a 403 Status saying which container and image.
    let body = request_body(
        "uid-2",
        ("", "v1", "Pod"),
        "pods",
        "tool-a",
        &pod("docker.io/library/nginx"),
    );
    let got = post(&c, &format!("{base}/validate/images"), &body)
        .await
        .unwrap();
    assert_eq!(got["response"]["uid"], "uid-2");
    assert_eq!(got["response"]["allowed"], false);
    assert_eq!(got["response"]["status"]["code"], 403);
    let msg = got["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("containers main: docker.io/library/nginx"),
        "{msg}"
    );

    // Ingress: only the tool's own host in its own namespace.
    let ing = |host: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "i", "namespace": "tool-a"},
            "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "a", "port": {"number": 8000}}}}]}}]}})
    };
    let gvk = ("networking.k8s.io", "v1", "Ingress");
    let ok = request_body(
        "uid-3",
        gvk,
        "ingresses",
        "tool-a",
        &ing("a.toolforge.test"),
    );
    let got = post(&c, &format!("{base}/validate/ingress"), &ok)
        .await
        .unwrap();
    assert_eq!(got["response"]["allowed"], true, "{got}");
    for host in [
        "evil.a.toolforge.test",
        "a.toolforge.test.evil.com",
        "b.toolforge.test",
    ] {
        let bad = request_body("uid-4", gvk, "ingresses", "tool-a", &ing(host));
        let got = post(&c, &format!("{base}/validate/ingress"), &bad)
            .await
            .unwrap();
        assert_eq!(got["response"]["allowed"], false, "{host}: {got}");
    }
    let other = request_body(
        "uid-5",
        gvk,
        "ingresses",
        "tool-b",
        &ing("a.toolforge.test"),
    );
    let got = post(&c, &format!("{base}/validate/ingress"), &other)
        .await
        .unwrap();
    assert_eq!(got["response"]["allowed"], false);

    // A review that is not one: answered, not allowed.
    let got = post(
        &c,
        &format!("{base}/validate/images"),
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
    )
    .await
    .unwrap();
    assert_eq!(got["response"]["allowed"], false);

    // Rotation: a new certificate from another CA is served to new connections within moments;
    // a client trusting only the new CA fails before and succeeds after.
    let health = format!("{base}/healthz");
    let new_ca = {
        let tmp = tempfile::tempdir().unwrap();
        let pem = issue(tmp.path());
        assert!(client(&pem).get(&health).send().await.is_err());
        std::fs::copy(tmp.path().join("tls.key"), dir.path().join("tls.key.new")).unwrap();
        std::fs::copy(tmp.path().join("tls.crt"), dir.path().join("tls.crt.new")).unwrap();
        std::fs::rename(dir.path().join("tls.key.new"), dir.path().join("tls.key")).unwrap();
        std::fs::rename(dir.path().join("tls.crt.new"), dir.path().join("tls.crt")).unwrap();
        pem
    };
    let t = std::time::Instant::now();
    loop {
        if let Ok(r) = client(&new_ca).get(&health).send().await {
            assert_eq!(r.text().await.unwrap(), "ok");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
