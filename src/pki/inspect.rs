//! Reading certificates back: subject, SANs, usages and validity, for checks, tests and
//! `forgectl certs check`.

use serde::Serialize;
use x509_parser::prelude::*;

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject common name.
    pub subject: String,
    /// Issuer common name.
    pub issuer: String,
    /// DNS names and IP addresses.
    pub sans: Vec<String>,
    /// A CA certificate.
    pub is_ca: bool,
    /// Extended key usages: `server`, `client`.
    pub usages: Vec<String>,
    /// Not valid after, RFC 3339.
    pub not_after: String,
    /// Days left (negative when expired).
    pub days_left: i64,
}

fn cn(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Parses a PEM certificate.
pub fn inspect(pem: &str) -> Result<CertInfo, String> {
    let (_, p) = parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = p.parse_x509().map_err(|e| e.to_string())?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        _ => None,
                    };
                    sans.extend(ip);
                }
                _ => {}
            }
        }
    }
    let mut usages = Vec::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            usages.push("server".to_string());
        }
        if eku.value.client_auth {
            usages.push("client".to_string());
        }
    }
    let not_after = cert.validity().not_after;
    let now = ASN1Time::now();
    let days_left = (not_after.timestamp() - now.timestamp()) / 86_400;
    Ok(CertInfo {
        subject: cn(cert.subject()),
        issuer: cn(cert.issuer()),
        sans,
        is_ca: cert.is_ca(),
        usages,
        not_after: not_after.to_rfc2822().unwrap_or_default(),
        days_left,
    })
}

/// kubeadm's discovery hash of a CA certificate: `sha256:` + the SHA-256 of its DER-encoded
/// SubjectPublicKeyInfo (what `--discovery-token-ca-cert-hash` and `caCertHashes` expect).
pub fn ca_cert_hash(pem: &str) -> Result<String, String> {
    let (_, p) = parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = p.parse_x509().map_err(|e| e.to_string())?;
    Ok(format!(
        "sha256:{}",
        crate::plan::sha256_hex(cert.tbs_certificate.subject_pki.raw)
    ))
}
