//! A client certificate for an account: the key made here (ECDSA P-256), the certificate
//! request, and whether a certificate on disk is still good (right name and group, from the
//! cluster CA, for this key, not about to expire); the kubeconfig that points at them.

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
    let Ok(der) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map(|(_, p)| p) else {
        return Some("the certificate is not PEM".into());
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der.contents) else {
        return Some("the certificate does not parse".into());
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok());
    let o = cert
        .subject()
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok());
    if cn != Some(id.user.as_str()) || o != Some(id.group.as_str()) {
        return Some(format!(
            "the certificate names {cn:?}/{o:?}, not {}/{}",
            id.user, id.group
        ));
    }
    match ca_cert_der(ca_pem) {
        Some(ca_der) => {
            let signed = X509Certificate::from_der(&ca_der)
                .ok()
                .is_some_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok());
            if !signed {
                return Some("the certificate is not from the cluster's CA".into());
            }
        }
        None => return Some("the cluster CA does not parse".into()),
    }
    let key_matches = KeyPair::from_pem(key_pem)
        .ok()
        .is_some_and(|k| k.public_key_raw() == cert.public_key().subject_public_key.data.as_ref());
    if !key_matches {
        return Some("the key does not belong to the certificate".into());
    }
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let left = not_after - now;
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
