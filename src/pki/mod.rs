//! The cluster's PKI, made once with rcgen and kept in the state dir (keys 0600): the etcd CA with
//! server and peer certificates per member, the API server's and forgectl's etcd client
//! certificates, and the Kubernetes CA, front-proxy CA and service-account key pair in the layout
//! kubeadm expects for pre-made certificates. ECDSA P-256 everywhere but the SA key (RSA 2048).

mod inspect;

pub use inspect::{CertInfo, ca_cert_hash, inspect};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

use crate::state::{StateDir, StateError};

/// Lifetime of CAs.
pub const CA_DAYS: i64 = 3650;
/// Lifetime of leaf certificates.
pub const LEAF_DAYS: i64 = 365;
/// A leaf certificate with fewer days left than this is issued again (with a new key) by the
/// next `up`; what uses it picks the new one up (the webhook server reloads its files, the
/// phases that install certificates restart their service when a file changed).
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// The Kubernetes user of the accounts controller (its certificate's CN).
pub const ACCOUNTS_USER: &str = "forgectl:accounts";
/// The Kubernetes user of the dashboard's certificate (in no group: its ClusterRole only).
pub const DASHBOARD_USER: &str = "forgectl:dashboard";
/// The group of forgectl's platform components (the certificate's O).
pub const PLATFORM_GROUP: &str = "forgectl:platform";

/// Why the PKI could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("cannot make {what}: {cause}")]
    Generate {
        /// Which certificate or key.
        what: String,
        /// rcgen's message.
        cause: String,
    },
    /// A stored file is unusable.
    #[error("{path} is not a usable certificate or key: {cause}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        cause: String,
    },
    /// The state dir failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// An etcd member as the PKI sees it: its name and every address it answers on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Machine name (also the certificate's CN and a DNS SAN).
    pub name: String,
    /// Its addresses (IP SANs).
    pub addresses: Vec<IpAddr>,
}

/// Relative paths in the state dir (`pki/…`), kubeadm's layout.
pub mod paths {
    /// The etcd CA.
    pub const ETCD_CA: &str = "pki/etcd/ca";
    /// The API server's client certificate for etcd.
    pub const APISERVER_ETCD_CLIENT: &str = "pki/apiserver-etcd-client";
    /// forgectl's own client certificate for etcd (health, members, snapshots).
    pub const FORGECTL_ETCD_CLIENT: &str = "pki/etcd/forgectl-client";
    /// The Kubernetes CA.
    pub const KUBE_CA: &str = "pki/ca";
    /// The front-proxy CA.
    pub const FRONT_PROXY_CA: &str = "pki/front-proxy-ca";
    /// The service-account signing key (`sa.key`, `sa.pub`).
    pub const SA: &str = "pki/sa";
    /// The CA of the TLS front's certificate when the inventory gives none.
    pub const TLS_FRONT_CA: &str = "pki/tls-front-ca";
    /// The TLS front's wildcard certificate (made from `TLS_FRONT_CA`).
    pub const TLS_FRONT: &str = "pki/tls-front";
    /// The admission webhooks' serving certificate (from the Kubernetes CA, for 127.0.0.1).
    pub const ADMISSION: &str = "pki/forgectl-admission";
    /// The accounts controller's client certificate for the API (from the Kubernetes CA).
    pub const ACCOUNTS_CLIENT: &str = "pki/forgectl-accounts";
    /// The dashboard's client certificate for the API (from the Kubernetes CA; read-only RBAC).
    pub const DASHBOARD_CLIENT: &str = "pki/forgectl-dashboard";

    /// A member's server certificate.
    pub fn etcd_server(member: &str) -> String {
        format!("pki/etcd/members/{member}/server")
    }

    /// A member's peer certificate.
    pub fn etcd_peer(member: &str) -> String {
        format!("pki/etcd/members/{member}/peer")
    }
}

/// What `ensure` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Certificates and keys made now (relative paths without extension).
    pub created: Vec<String>,
    /// Re-issue every leaf certificate (same CAs, new keys), as `renew` asks.
    renew: bool,
}

/// The PKI of one cluster, in its state dir.
pub struct Pki<'a> {
    state: &'a StateDir,
}

fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Generate {
        what: what.to_string(),
        cause: e.to_string(),
    }
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // A little backdating tolerates clock skew between forgectl and the machines.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days);
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn, None);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, CA_DAYS);
    p
}

/// What a leaf certificate is for.
enum Usage {
    Client,
    ServerAndClient,
}

fn leaf_params(
    cn: &str,
    org: Option<&str>,
    usage: Usage,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn, org);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match usage {
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    for d in dns {
        let n = d
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Generate {
                what: format!("a certificate for {cn}"),
                cause: format!("bad DNS name {d}: {e}"),
            })?;
        p.subject_alt_names.push(SanType::DnsName(n));
    }
    p.subject_alt_names
        .extend(ips.iter().map(|i| SanType::IpAddress(*i)));
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, LEAF_DAYS);
    Ok(p)
}

impl<'a> Pki<'a> {
    /// The PKI kept in `state`.
    pub fn new(state: &'a StateDir) -> Self {
        Self { state }
    }

    /// Path of `rel` + `ext` in the state dir.
    pub fn path(&self, rel: &str, ext: &str) -> PathBuf {
        self.state.path().join(format!("{rel}.{ext}"))
    }

    /// The PEM text of `rel.crt` (or `.key`, `.pub`).
    pub fn read(&self, rel: &str, ext: &str) -> Result<Option<String>, PkiError> {
        Ok(self
            .state
            .read(&format!("{rel}.{ext}"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn write(&self, rel: &str, ext: &str, pem: &str) -> Result<(), PkiError> {
        self.state
            .write_secret(&format!("{rel}.{ext}"), pem.as_bytes())?;
        Ok(())
    }

    /// Loads a CA, or makes it when missing.
    fn ca(
        &self,
        rel: &str,
        cn: &str,
        report: &mut Report,
    ) -> Result<Issuer<'static, KeyPair>, PkiError> {
        if let (Some(cert), Some(key)) = (self.read(rel, "crt")?, self.read(rel, "key")?) {
            let corrupt = |e: rcgen::Error| PkiError::Corrupt {
                path: self.path(rel, "crt").display().to_string(),
                cause: e.to_string(),
            };
            let key = KeyPair::from_pem(&key).map_err(corrupt)?;
            return Issuer::from_ca_cert_pem(&cert, key).map_err(corrupt);
        }
        let key = KeyPair::generate().map_err(gen_err(cn))?;
        let params = ca_params(cn);
        let cert = params.self_signed(&key).map_err(gen_err(cn))?;
        self.write(rel, "key", &key.serialize_pem())?;
        self.write(rel, "crt", &cert.pem())?;
        report.created.push(rel.to_string());
        Ok(Issuer::new(params, key))
    }

    /// Makes a leaf unless one exists whose SANs are exactly `dns` + `ips` (a changed address
    /// re-issues it with the same CA).
    fn leaf(
        &self,
        rel: &str,
        issuer: &Issuer<'_, KeyPair>,
        params: CertificateParams,
        report: &mut Report,
    ) -> Result<(), PkiError> {
        if !report.renew
            && let Some(existing) = self.read(rel, "crt")?
            && let Ok(info) = inspect(&existing)
        {
            let mut want: Vec<String> = params
                .subject_alt_names
                .iter()
                .map(|s| match s {
                    SanType::DnsName(n) => n.as_str().to_string(),
                    SanType::IpAddress(i) => i.to_string(),
                    _ => String::new(),
                })
                .collect();
            want.sort();
            let mut have = info.sans.clone();
            have.sort();
            if want == have
                && info.days_left >= RENEW_BEFORE_DAYS
                && self.read(rel, "key")?.is_some()
            {
                return Ok(());
            }
        }
        let key = KeyPair::generate().map_err(gen_err(rel))?;
        let cert = params.signed_by(&key, issuer).map_err(gen_err(rel))?;
        self.write(rel, "key", &key.serialize_pem())?;
        self.write(rel, "crt", &cert.pem())?;
        report.created.push(rel.to_string());
        Ok(())
    }

    /// Makes whatever is missing for `members`; keeps everything that exists and still fits.
    pub fn ensure(&self, members: &[Member]) -> Result<Report, PkiError> {
        self.issue(members, false)
    }

    /// Re-issues every leaf certificate (etcd members, etcd clients) with new keys from the same
    /// CAs; CAs and the SA key stay.
    pub fn renew(&self, members: &[Member]) -> Result<Report, PkiError> {
        self.issue(members, true)
    }

    fn issue(&self, members: &[Member], renew: bool) -> Result<Report, PkiError> {
        let mut report = Report {
            renew,
            ..Report::default()
        };
        let etcd_ca = self.ca(paths::ETCD_CA, "etcd-ca", &mut report)?;
        for m in members {
            let mut dns = vec![m.name.clone(), "localhost".to_string()];
            dns.dedup();
            let mut ips = m.addresses.clone();
            ips.extend(
                ["127.0.0.1".parse::<IpAddr>(), "::1".parse::<IpAddr>()]
                    .into_iter()
                    .flatten(),
            );
            let server = leaf_params(&m.name, None, Usage::ServerAndClient, &dns, &ips)?;
            self.leaf(&paths::etcd_server(&m.name), &etcd_ca, server, &mut report)?;
            let peer = leaf_params(&m.name, None, Usage::ServerAndClient, &dns, &ips)?;
            self.leaf(&paths::etcd_peer(&m.name), &etcd_ca, peer, &mut report)?;
        }
        let client = leaf_params("kube-apiserver-etcd-client", None, Usage::Client, &[], &[])?;
        self.leaf(paths::APISERVER_ETCD_CLIENT, &etcd_ca, client, &mut report)?;
        let own = leaf_params("forgectl", Some("forgectl"), Usage::Client, &[], &[])?;
        self.leaf(paths::FORGECTL_ETCD_CLIENT, &etcd_ca, own, &mut report)?;
        self.ca(paths::KUBE_CA, "kubernetes", &mut report)?;
        self.ca(paths::FRONT_PROXY_CA, "front-proxy-ca", &mut report)?;
        if self.read(paths::SA, "key")?.is_none() {
            let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .map_err(gen_err("the service-account key"))?;
            self.write(paths::SA, "key", &key.serialize_pem())?;
            self.write(paths::SA, "pub", &key.public_key_pem())?;
            report.created.push(paths::SA.to_string());
        }
        Ok(report)
    }

    /// Makes the TLS front's CA and its wildcard certificate for `domain` (and `*.domain`)
    /// unless they exist for that domain.
    pub fn ensure_tls_front(&self, domain: &str) -> Result<Report, PkiError> {
        let mut report = Report::default();
        let ca = self.ca(paths::TLS_FRONT_CA, "forgectl tool-domain CA", &mut report)?;
        let dns = [domain.to_string(), format!("*.{domain}")];
        let leaf = leaf_params(domain, None, Usage::ServerAndClient, &dns, &[])?;
        self.leaf(paths::TLS_FRONT, &ca, leaf, &mut report)?;
        Ok(report)
    }

    /// Makes the platform's certificates from the Kubernetes CA unless they exist and are not
    /// due for renewal: the webhooks' serving certificate (for 127.0.0.1 and localhost, where
    /// each API server calls them) and the accounts controller's client certificate.
    pub fn ensure_platform(&self) -> Result<Report, PkiError> {
        let mut report = Report::default();
        let ca = self.ca(paths::KUBE_CA, "kubernetes", &mut report)?;
        let ips = ["127.0.0.1".parse::<IpAddr>(), "::1".parse::<IpAddr>()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let serving = leaf_params(
            "forgectl-admission",
            None,
            Usage::ServerAndClient,
            &["localhost".to_string()],
            &ips,
        )?;
        self.leaf(paths::ADMISSION, &ca, serving, &mut report)?;
        let client = leaf_params(ACCOUNTS_USER, Some(PLATFORM_GROUP), Usage::Client, &[], &[])?;
        self.leaf(paths::ACCOUNTS_CLIENT, &ca, client, &mut report)?;
        let dashboard = leaf_params(DASHBOARD_USER, None, Usage::Client, &[], &[])?;
        self.leaf(paths::DASHBOARD_CLIENT, &ca, dashboard, &mut report)?;
        Ok(report)
    }

    /// True when the etcd CA (certificate and key) is in the state dir.
    pub fn has_etcd_ca(&self) -> bool {
        self.path(paths::ETCD_CA, "crt").exists() && self.path(paths::ETCD_CA, "key").exists()
    }

    /// Stores a recovered CA after checking that the key belongs to the certificate.
    pub fn adopt_ca(&self, rel: &str, cert_pem: &str, key_pem: &str) -> Result<CertInfo, PkiError> {
        use rcgen::PublicKeyData;
        let corrupt = |cause: String| PkiError::Corrupt {
            path: rel.to_string(),
            cause,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| corrupt(e.to_string()))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| corrupt(e.to_string()))?;
        let cert = pem.parse_x509().map_err(|e| corrupt(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(corrupt("the key does not belong to the certificate".into()));
        }
        let info = inspect(cert_pem).map_err(corrupt)?;
        if !info.is_ca {
            return Err(corrupt("the certificate is not a CA".into()));
        }
        self.write(rel, "key", key_pem)?;
        self.write(rel, "crt", cert_pem)?;
        Ok(info)
    }

    /// Stores a recovered key pair (the service-account key) after checking that the public
    /// half belongs to the private key.
    pub fn adopt_key_pair(&self, rel: &str, pub_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let corrupt = |cause: String| PkiError::Corrupt {
            path: rel.to_string(),
            cause,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| corrupt(e.to_string()))?;
        if key.public_key_pem().trim() != pub_pem.trim() {
            return Err(corrupt(
                "the public key does not belong to the private key".into(),
            ));
        }
        self.write(rel, "key", key_pem)?;
        self.write(rel, "pub", pub_pem)?;
        Ok(())
    }

    /// True when the Kubernetes CA (certificate and key) is in the state dir.
    pub fn has_kube_ca(&self) -> bool {
        self.path(paths::KUBE_CA, "crt").exists() && self.path(paths::KUBE_CA, "key").exists()
    }

    /// Every certificate in the state dir, with what it says.
    pub fn list(&self) -> Result<Vec<(String, CertInfo)>, PkiError> {
        let mut out = Vec::new();
        let root = self.state.path().join("pki");
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "crt") {
                    let pem = std::fs::read_to_string(&p).unwrap_or_default();
                    let rel = p
                        .strip_prefix(self.state.path())
                        .unwrap_or(&p)
                        .display()
                        .to_string();
                    match inspect(&pem) {
                        Ok(info) => out.push((rel, info)),
                        Err(cause) => {
                            return Err(PkiError::Corrupt {
                                path: p.display().to_string(),
                                cause,
                            });
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
