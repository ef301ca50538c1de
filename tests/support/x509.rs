//! Just enough DER to issue X.509 client certificates whose subject may hold several O values
//! (rcgen's DistinguishedName keeps one value per attribute type): the client certificates of
//! the test kubeconfigs, as Kubernetes reads them (user = CN, groups = every O).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rcgen::{PublicKeyData, SigningKey};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | len.len() as u8);
        out.extend(len);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut chunk = vec![(a & 0x7f) as u8];
        let mut v = a >> 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    tlv(0x06, &body)
}

/// A non-negative INTEGER from big-endian bytes.
fn uint(bytes: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> = bytes.iter().copied().skip_while(|x| *x == 0).collect();
    if b.is_empty() || b[0] & 0x80 != 0 {
        b.insert(0, 0);
    }
    tlv(0x02, &b)
}

/// UTCTime until 2049, GeneralizedTime after (RFC 5280).
fn time(t: SystemTime) -> Vec<u8> {
    let d = time::OffsetDateTime::from(t);
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        d.month() as u8,
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    );
    if d.year() < 2050 {
        tlv(0x17, format!("{:02}{rest}", d.year() % 100).as_bytes())
    } else {
        tlv(0x18, format!("{:04}{rest}", d.year()).as_bytes())
    }
}

fn extension(id: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let flag: &[u8] = if critical { &[0x01, 0x01, 0xff] } else { &[] };
    seq(&[&oid(id), flag, &tlv(0x04, value)])
}

/// A Name: one RDN per organization, then the common name (Go's order).
pub fn name(cn: &str, orgs: &[&str]) -> Vec<u8> {
    let atv = |id: &[u64], v: &str| tlv(0x31, &seq(&[&oid(id), &tlv(0x0c, v.as_bytes())]));
    let mut rdns: Vec<Vec<u8>> = orgs.iter().map(|o| atv(&[2, 5, 4, 10], o)).collect();
    rdns.push(atv(&[2, 5, 4, 3], cn));
    tlv(0x30, &rdns.concat())
}

/// Key usages (bit numbers of RFC 5280 4.2.1.3).
pub const DIGITAL_SIGNATURE: u16 = 1 << 0;
pub const KEY_ENCIPHERMENT: u16 = 1 << 2;

fn key_usage(bits: u16) -> Vec<u8> {
    let mut bytes = [0u8; 2];
    for i in 0..9 {
        if bits & (1 << i) != 0 {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
    }
    let len = if bytes[1] != 0 { 2 } else { 1 };
    let unused = bytes[len - 1].trailing_zeros().min(7) as u8;
    let mut content = vec![unused];
    content.extend(&bytes[..len]);
    tlv(0x03, &content)
}

/// What a leaf certificate says.
pub struct Leaf<'a> {
    /// DER Name.
    pub subject: &'a [u8],
    /// DER SubjectPublicKeyInfo.
    pub spki: &'a [u8],
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Key usage bits (0: no extension).
    pub key_usage: u16,
    /// Extended key usage client auth.
    pub client_auth: bool,
    /// DER GeneralNames of a subjectAltName, if any.
    pub sans: Option<Vec<u8>>,
}

/// A CA that issues certificates.
pub struct Ca {
    key: rcgen::KeyPair,
    alg: Vec<u8>,
    subject: Vec<u8>,
    key_id: Option<Vec<u8>>,
    /// End of the CA's validity: no certificate it issues outlives it.
    pub not_after: SystemTime,
}

impl Ca {
    /// From the CA certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Self {
        let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
        let a = key.algorithm();
        let alg = if a == &rcgen::PKCS_ECDSA_P256_SHA256 {
            seq(&[&oid(&[1, 2, 840, 10045, 4, 3, 2])])
        } else if a == &rcgen::PKCS_ECDSA_P384_SHA384 {
            seq(&[&oid(&[1, 2, 840, 10045, 4, 3, 3])])
        } else if a == &rcgen::PKCS_ED25519 {
            seq(&[&oid(&[1, 3, 101, 112])])
        } else if a == &rcgen::PKCS_RSA_SHA256 {
            seq(&[&oid(&[1, 2, 840, 113549, 1, 1, 11]), &[0x05, 0x00]])
        } else {
            panic!("the double cannot sign with a {a:?} CA key");
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(cert.validity().not_after.timestamp().max(0) as u64);
        Self {
            key,
            alg,
            subject: cert.subject().as_raw().to_vec(),
            key_id,
            not_after,
        }
    }

    /// Issues `leaf`: the PEM certificate.
    pub fn issue(&self, leaf: &Leaf<'_>) -> String {
        let mut exts = Vec::new();
        if leaf.key_usage != 0 {
            exts.push(extension(&[2, 5, 29, 15], true, &key_usage(leaf.key_usage)));
        }
        if leaf.client_auth {
            exts.push(extension(
                &[2, 5, 29, 37],
                false,
                &seq(&[&oid(&[1, 3, 6, 1, 5, 5, 7, 3, 2])]),
            ));
        }
        exts.push(extension(&[2, 5, 29, 19], true, &seq(&[])));
        if let Some(id) = &self.key_id {
            exts.push(extension(&[2, 5, 29, 35], false, &seq(&[&tlv(0x80, id)])));
        }
        if let Some(sans) = &leaf.sans {
            let empty_subject = leaf.subject == [0x30, 0x00];
            exts.push(extension(&[2, 5, 29, 17], empty_subject, &seq(&[sans])));
        }
        let ext_refs: Vec<&[u8]> = exts.iter().map(Vec::as_slice).collect();
        let tbs = seq(&[
            &tlv(0xa0, &uint(&[2])),
            &uint(&serial()),
            &self.alg,
            &self.subject,
            &seq(&[&time(leaf.not_before), &time(leaf.not_after)]),
            leaf.subject,
            leaf.spki,
            &tlv(0xa3, &seq(&ext_refs)),
        ]);
        let sig = self.key.sign(&tbs).unwrap();
        let mut bits = vec![0u8];
        bits.extend(sig);
        pem(&seq(&[&tbs, &self.alg, &tlv(0x03, &bits)]))
    }
}

/// A random positive 128-bit serial number.
fn serial() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        half.copy_from_slice(&h.finish().to_be_bytes());
    }
    out[0] &= 0x7f;
    out
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A client certificate for `user` in `groups` (each an O of the subject), signed by the CA
/// `ca_cert` / `ca_key`, valid from an hour ago for a year: (certificate, key PEM).
pub fn client_cert(ca_cert: &str, ca_key: &str, user: &str, groups: &[&str]) -> (String, String) {
    let ca = Ca::from_pem(ca_cert, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let now = SystemTime::now();
    let subject = name(user, groups);
    let spki = key.subject_public_key_info();
    let cert = ca.issue(&Leaf {
        subject: &subject,
        spki: &spki,
        not_before: now - Duration::from_secs(3600),
        not_after: (now + Duration::from_secs(365 * 86400)).min(ca.not_after),
        key_usage: DIGITAL_SIGNATURE,
        client_auth: true,
        sans: None,
    });
    (cert, key.serialize_pem())
}

/// A kubeconfig for `server` with a [`client_cert`] for `user` in `groups`.
pub fn kubeconfig_for(
    server: &str,
    ca_cert: &str,
    ca_key: &str,
    user: &str,
    groups: &[&str],
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (cert, key) = client_cert(ca_cert, ca_key, user, groups);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: c\n\
         contexts:\n- context:\n    cluster: c\n    user: u\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user:\n\
         \x20   client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_cert),
        b64(&cert),
        b64(&key)
    )
}

/// A PEM certificate request (PKCS#10) for `cn`, with a key of its own.
pub fn csr_pem(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.serialize_request(&key).unwrap().pem().unwrap()
}
