//! A client certificate for an account: the key made here (ECDSA P-256), the certificate
//! request, and whether a certificate on disk is still good (right name and group, from the
//! cluster CA, for this key, not about to expire); the kubeconfig that points at them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Who a certificate names: the user (CN) and group (O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Kubernetes user name.
    pub user: String,
    /// Kubernetes group.
    pub group: String,
}

/// A new key and the PEM certificate request for `id`.
pub fn new_request(id: &Identity) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.user.as_str());
    dn.push(DnType::OrganizationName, id.group.as_str());
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// What a certificate, its key and the CA say together: checked once per distinct triple (a
/// parse, a signature check and a key derivation each), remembered for later passes.
#[derive(Debug, Clone)]
struct Checked {
    /// The certificate's CN and first O.
    names: (Option<String>, Option<String>),
    /// Why it is unusable whatever the account (not PEM, not from the CA, not this key).
    broken: Option<&'static str>,
    /// Its end of validity (Unix seconds).
    not_after: i64,
}

/// Verified triples, by the SHA-256 of certificate, key and CA: a steady pass over thousands of
/// accounts checks no signature twice.
static CHECKED: std::sync::OnceLock<std::sync::Mutex<HashMap<[u8; 32], Checked>>> =
    std::sync::OnceLock::new();

/// Entries kept at most (a new set starts when it is full).
const CHECKED_MAX: usize = 200_000;

fn check(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Checked {
    let broken = |why| Checked {
        names: (None, None),
        broken: Some(why),
        not_after: 0,
    };
    let Ok(der) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map(|(_, p)| p) else {
        return broken("the certificate is not PEM");
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der.contents) else {
        return broken("the certificate does not parse");
    };
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let names = (
        first(&mut cert.subject().iter_common_name()),
        first(&mut cert.subject().iter_organization()),
    );
    let Some(ca_der) = ca_cert_der(ca_pem) else {
        return broken("the cluster CA does not parse");
    };
    let signed = X509Certificate::from_der(&ca_der)
        .ok()
        .is_some_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok());
    let key_matches = KeyPair::from_pem(key_pem)
        .ok()
        .is_some_and(|k| k.public_key_raw() == cert.public_key().subject_public_key.data.as_ref());
    Checked {
        names,
        broken: if !signed {
            Some("the certificate is not from the cluster's CA")
        } else if !key_matches {
            Some("the key does not belong to the certificate")
        } else {
            None
        },
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// Checks a certificate just issued and remembers the result, so the next pass over its
/// account checks no signature.
pub fn remember(cert_pem: &str, key_pem: &str, ca_pem: &str) {
    let _ = checked(cert_pem, key_pem, ca_pem);
}

/// [`check`], remembered.
fn checked(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Checked {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [cert_pem, key_pem, ca_pem] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let id: [u8; 32] = h.finalize().into();
    let cache = CHECKED.get_or_init(Default::default);
    if let Some(c) = cache.lock().ok().and_then(|m| m.get(&id).cloned()) {
        return c;
    }
    let c = check(cert_pem, key_pem, ca_pem);
    if let Ok(mut m) = cache.lock() {
        if m.len() >= CHECKED_MAX {
            m.clear();
        }
        m.insert(id, c.clone());
    }
    c
}

/// Why a certificate on disk must be replaced (None: it is good).
pub fn needs_new(
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
    id: &Identity,
    ca_pem: &str,
    renew_before: Duration,
) -> Option<String> {
    let (Some(cert_pem), Some(key_pem)) = (cert_pem, key_pem) else {
        return Some("no certificate yet".into());
    };
    let c = checked(cert_pem, key_pem, ca_pem);
    let (cn, o) = (c.names.0.as_deref(), c.names.1.as_deref());
    // In this order: unreadable, someone else's, not from the CA or not this key.
    if let (Some(why), (None, None)) = (c.broken, (cn, o)) {
        return Some(why.into());
    }
    if cn != Some(id.user.as_str()) || o != Some(id.group.as_str()) {
        return Some(format!(
            "the certificate names {cn:?}/{o:?}, not {}/{}",
            id.user, id.group
        ));
    }
    if let Some(why) = c.broken {
        return Some(why.into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let left = c.not_after - now;
    if left < renew_before.as_secs() as i64 {
        return Some(if left <= 0 {
            "the certificate has expired".into()
        } else {
            format!("the certificate expires in {} h", left / 3600)
        });
    }
    None
}

fn ca_cert_der(ca_pem: &str) -> Option<Vec<u8>> {
    x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .ok()
        .map(|(_, p)| p.contents)
}

/// The kubeconfig of an account: the cluster's server and CA (embedded), the client
/// certificate and key by relative path (beside the kubeconfig), the account's namespace as
/// the context's default.
pub fn kubeconfig(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    namespace: Option<&str>,
) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let ns = namespace
        .map(|n| format!("\n    namespace: {n}"))
        .unwrap_or_default();
    format!(
        "# Written by forgectl accounts; rewritten when the certificate is renewed.\n\
apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
users:\n- name: {user}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
contexts:\n- name: {user}@{cluster}\n  context:\n    cluster: {cluster}\n    user: {user}{ns}\n\
current-context: {user}@{cluster}\n",
        cert = super::home_files::CERT_FILE,
        key = super::home_files::KEY_FILE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (String, rcgen::Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "test-ca");
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), rcgen::Issuer::new(p, key))
    }

    fn issue(issuer: &rcgen::Issuer<'static, KeyPair>, cn: &str, days: i64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "forgectl:tools");
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let cert = p.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_is_judged_by_name_ca_key_and_expiry_and_judged_again_the_same() {
        let (ca_pem, issuer) = ca();
        let (other_ca, other) = ca();
        let id = Identity {
            user: "tool-a".into(),
            group: "forgectl:tools".into(),
        };
        let month = Duration::from_secs(30 * 86_400);
        let (cert, key) = issue(&issuer, "tool-a", 365);
        for _ in 0..2 {
            assert_eq!(
                needs_new(Some(&cert), Some(&key), &id, &ca_pem, month),
                None
            );
        }
        let why = |c: &str, k: &str, ca: &str| needs_new(Some(c), Some(k), &id, ca, month);
        assert_eq!(
            why(&cert, &key, &other_ca).as_deref(),
            Some("the certificate is not from the cluster's CA")
        );
        let (_, other_key) = issue(&issuer, "tool-a", 365);
        assert_eq!(
            why(&cert, &other_key, &ca_pem).as_deref(),
            Some("the key does not belong to the certificate")
        );
        let (b, bk) = issue(&issuer, "tool-b", 365);
        assert!(
            why(&b, &bk, &ca_pem)
                .unwrap()
                .contains("names Some(\"tool-b\")")
        );
        let (soon, sk) = issue(&issuer, "tool-a", 10);
        assert!(
            why(&soon, &sk, &ca_pem)
                .unwrap()
                .starts_with("the certificate expires in")
        );
        let (o, ok) = issue(&other, "tool-a", 365);
        assert_eq!(
            why(&o, &ok, &ca_pem).as_deref(),
            Some("the certificate is not from the cluster's CA")
        );
        assert_eq!(
            why("junk", &key, &ca_pem).as_deref(),
            Some("the certificate is not PEM")
        );
        assert_eq!(
            needs_new(None, Some(&key), &id, &ca_pem, month).as_deref(),
            Some("no certificate yet")
        );
    }
}
