//! The PKI: what each certificate says, chains checked by the real openssl, idempotency, re-issue
//! on an address change, file modes.

use forgectl::pki::{Member, Pki, inspect, paths};
use forgectl::state::StateDir;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn members() -> Vec<Member> {
    (0..3)
        .map(|i| Member {
            name: format!("etcd-{}", i + 1),
            addresses: vec![format!("10.77.0.{}", 10 + i).parse().unwrap()],
        })
        .collect()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed for this test (Debian package openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn etcd_and_kubernetes_pki() {
    let base = tempfile::tempdir().unwrap();
    let state = StateDir::open(base.path(), "demo").unwrap();
    let pki = Pki::new(&state);
    let report = pki.ensure(&members()).unwrap();
    assert_eq!(
        report.created.len(),
        1 + 6 + 2 + 2 + 1,
        "{:?}",
        report.created
    );

    // The CA.
    let ca = inspect(&pki.read(paths::ETCD_CA, "crt").unwrap().unwrap()).unwrap();
    assert!(ca.is_ca && ca.subject == "etcd-ca");
    assert!((3640..=3650).contains(&ca.days_left), "{}", ca.days_left);

    // A member's server certificate: SANs, usages, issuer, lifetime; verified by openssl.
    let server = inspect(
        &pki.read(&paths::etcd_server("etcd-2"), "crt")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(server.subject, "etcd-2");
    assert_eq!(server.issuer, "etcd-ca");
    assert!(!server.is_ca);
    let mut sans = server.sans.clone();
    sans.sort();
    assert_eq!(
        sans,
        ["10.77.0.11", "127.0.0.1", "::1", "etcd-2", "localhost"]
    );
    assert_eq!(server.usages, ["server", "client"]);
    assert!((360..=365).contains(&server.days_left));
    let ca_path = pki.path(paths::ETCD_CA, "crt");
    for rel in [
        paths::etcd_server("etcd-2"),
        paths::etcd_peer("etcd-3"),
        paths::APISERVER_ETCD_CLIENT.to_string(),
    ] {
        let (ok, text) = openssl(&["verify", "-CAfile", s(&ca_path), s(&pki.path(&rel, "crt"))]);
        assert!(ok, "{rel}: {text}");
    }
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        s(&ca_path),
        "-purpose",
        "sslserver",
        s(&pki.path(&paths::etcd_server("etcd-1"), "crt")),
    ]);
    assert!(ok, "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "keyUsage,extendedKeyUsage,basicConstraints",
        "-in",
        s(&pki.path(paths::APISERVER_ETCD_CLIENT, "crt")),
    ]);
    assert!(
        ok && text.contains("Digital Signature") && text.contains("TLS Web Client Authentication"),
        "{text}"
    );
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    let client = inspect(
        &pki.read(paths::APISERVER_ETCD_CLIENT, "crt")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (client.subject.as_str(), client.usages.as_slice()),
        ("kube-apiserver-etcd-client", &["client".to_string()][..])
    );
    // A certificate from another CA is refused.
    let kube_ca = pki.path(paths::KUBE_CA, "crt");
    let (ok, _) = openssl(&[
        "verify",
        "-CAfile",
        s(&kube_ca),
        s(&pki.path(&paths::etcd_server("etcd-1"), "crt")),
    ]);
    assert!(!ok);

    // Kubernetes CA, front-proxy CA, SA key (RSA) in kubeadm's names.
    assert!(
        inspect(&pki.read(paths::KUBE_CA, "crt").unwrap().unwrap())
            .unwrap()
            .is_ca
    );
    assert_eq!(
        inspect(&pki.read(paths::FRONT_PROXY_CA, "crt").unwrap().unwrap())
            .unwrap()
            .subject,
        "front-proxy-ca"
    );
    let (ok, text) = openssl(&[
        "rsa",
        "-in",
        s(&pki.path(paths::SA, "key")),
        "-check",
        "-noout",
    ]);
    assert!(ok && text.contains("RSA key ok"), "{text}");
    let (ok, text) = openssl(&[
        "pkey",
        "-pubin",
        "-in",
        s(&pki.path(paths::SA, "pub")),
        "-noout",
        "-text",
    ]);
    assert!(ok && text.contains("2048 bit"), "{text}");

    // Keys are secrets: 0600, in 0700 directories.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pki.path(paths::ETCD_CA, "key")), 0o600);
    assert_eq!(mode(&pki.path(&paths::etcd_peer("etcd-1"), "key")), 0o600);
    assert_eq!(
        mode(pki.path(paths::ETCD_CA, "key").parent().unwrap()),
        0o700
    );

    // Idempotent: nothing new, nothing changed.
    let before = pki.read(&paths::etcd_server("etcd-1"), "crt").unwrap();
    assert!(pki.ensure(&members()).unwrap().created.is_empty());
    assert_eq!(
        pki.read(&paths::etcd_server("etcd-1"), "crt").unwrap(),
        before
    );

    // A member whose address changed gets new certificates from the same CA; the others stay.
    let mut moved = members();
    moved[0].addresses = vec!["10.77.0.99".parse().unwrap()];
    let report = pki.ensure(&moved).unwrap();
    assert_eq!(
        report.created,
        [paths::etcd_server("etcd-1"), paths::etcd_peer("etcd-1")]
    );
    let renewed = inspect(
        &pki.read(&paths::etcd_server("etcd-1"), "crt")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(renewed.sans.contains(&"10.77.0.99".to_string()));
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        s(&ca_path),
        s(&pki.path(&paths::etcd_server("etcd-1"), "crt")),
    ]);
    assert!(ok, "{text}");

    // A new member: only its certificates are made.
    let mut grown = moved.clone();
    grown.push(Member {
        name: "etcd-4".into(),
        addresses: vec!["10.77.0.13".parse().unwrap()],
    });
    assert_eq!(
        pki.ensure(&grown).unwrap().created,
        [paths::etcd_server("etcd-4"), paths::etcd_peer("etcd-4")]
    );

    // Listing shows every certificate.
    let list = pki.list().unwrap();
    assert!(
        list.iter()
            .any(|(p, i)| p == "pki/etcd/members/etcd-4/server.crt" && i.subject == "etcd-4")
    );
    assert_eq!(list.len(), 1 + 8 + 2 + 2);
}

#[test]
fn discovery_hash_is_the_one_kubeadm_documents() {
    // kubeadm's documented recipe: openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum.
    let base = tempfile::tempdir().unwrap();
    let state = StateDir::open(base.path(), "demo").unwrap();
    let pki = Pki::new(&state);
    pki.ensure(&members()).unwrap();
    let ca = pki.path(paths::KUBE_CA, "crt");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
            s(&ca)
        ))
        .output()
        .unwrap();
    let want = String::from_utf8(out.stdout).unwrap();
    let want = want.split_whitespace().next().unwrap();
    let got = forgectl::pki::ca_cert_hash(&std::fs::read_to_string(&ca).unwrap()).unwrap();
    assert_eq!(got, format!("sha256:{want}"));
    assert!(forgectl::pki::ca_cert_hash("not a certificate").is_err());
}

/// The platform's certificates come from the Kubernetes CA (the serving one for the loopback,
/// the controller's as user forgectl:accounts in group forgectl:platform), are kept while they
/// have time left, and are issued again with a new key when fewer than 30 days remain.
#[test]
fn platform_certificates_are_made_kept_and_renewed_before_expiry() {
    let base = tempfile::tempdir().unwrap();
    let state = StateDir::open(base.path(), "demo").unwrap();
    let pki = Pki::new(&state);
    let made = pki.ensure_platform().unwrap().created;
    assert!(made.contains(&paths::ADMISSION.to_string()), "{made:?}");
    assert!(
        made.contains(&paths::ACCOUNTS_CLIENT.to_string()),
        "{made:?}"
    );
    let serving = inspect(&pki.read(paths::ADMISSION, "crt").unwrap().unwrap()).unwrap();
    let mut sans = serving.sans.clone();
    sans.sort();
    assert_eq!(sans, ["127.0.0.1", "::1", "localhost"]);
    let (ok, subject) = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-in",
        s(&pki.path(paths::ACCOUNTS_CLIENT, "crt")),
    ]);
    assert!(ok, "{subject}");
    assert!(
        subject.contains("CN = forgectl:accounts") && subject.contains("O = forgectl:platform"),
        "{subject}"
    );
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        s(&pki.path(paths::KUBE_CA, "crt")),
        s(&pki.path(paths::ADMISSION, "crt")),
    ]);
    assert!(ok, "{text}");
    assert!(pki.ensure_platform().unwrap().created.is_empty());

    // A serving certificate 10 days from its end (signed by the same CA) is renewed.
    let key = pki.read(paths::ADMISSION, "key").unwrap().unwrap();
    let crt = pki.path(paths::ADMISSION, "crt");
    let script = format!(
        "openssl req -new -key {key} -subj /CN=forgectl-admission \
         -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1 | \
         openssl x509 -req -CA {ca} -CAkey {cakey} -days 10 -copy_extensions copyall -out {crt}",
        key = s(&pki.path(paths::ADMISSION, "key")),
        ca = s(&pki.path(paths::KUBE_CA, "crt")),
        cakey = s(&pki.path(paths::KUBE_CA, "key")),
        crt = s(&crt),
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let short = inspect(&std::fs::read_to_string(&crt).unwrap()).unwrap();
    let mut sans = short.sans.clone();
    sans.sort();
    assert_eq!(
        sans,
        ["127.0.0.1", "::1", "localhost"],
        "same names: only the expiry differs"
    );
    assert!(
        inspect(&pki.read(paths::ADMISSION, "crt").unwrap().unwrap())
            .unwrap()
            .days_left
            < 11
    );
    let renewed = pki.ensure_platform().unwrap().created;
    assert_eq!(renewed, [paths::ADMISSION.to_string()]);
    let info = inspect(&pki.read(paths::ADMISSION, "crt").unwrap().unwrap()).unwrap();
    assert!(info.days_left > 300, "{}", info.days_left);
    assert_ne!(pki.read(paths::ADMISSION, "key").unwrap().unwrap(), key);
}
