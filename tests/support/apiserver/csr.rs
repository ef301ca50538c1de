//! CertificateSigningRequests (certificates.k8s.io/v1) as the real API server and
//! kube-controller-manager handle them.
//!
//! - Create: `spec.request` must be a PEM `CERTIFICATE REQUEST` whose signature verifies,
//!   `spec.usages` known and not repeated, `spec.signerName` of the form `example.com/name`,
//!   `spec.expirationSeconds` ≥ 600 (422 otherwise, real messages); `spec.username`,
//!   `spec.groups` (and `uid`, `extra`) are the requester's, whatever the client sent; the status
//!   starts empty. The CertificateSubjectRestriction admission refuses `system:masters` through
//!   the kube-apiserver-client signer.
//! - Main-resource writes change neither spec nor status. The `approval` subresource takes only
//!   `status.conditions` (Approved / Denied with status True, not both; nothing removed; times
//!   set when missing) and needs `approve` on `signers` (the signer name, or `domain/*`); the
//!   `status` subresource keeps the approval conditions, takes a valid, never-replaced
//!   certificate, and needs `sign` to set one.
//! - The signer: every few milliseconds, on the double's runtime (never inside a request), each
//!   approved, not denied, not failed request for `kubernetes.io/kube-apiserver-client` without a
//!   certificate is signed with the double's CA, as the real signer does: subject and SANs as
//!   requested, key usages and client auth from `spec.usages` (only `client auth`, `digital
//!   signature`, `key encipherment` allowed, `client auth` required, otherwise a `Failed`
//!   condition, reason `SignerValidationFailure`), notBefore 5 minutes back, lifetime
//!   `expirationSeconds` capped at the default cluster-signing-duration of one year, never
//!   beyond the CA. Other signers' requests stay pending. A signing is a controller write: it
//!   bumps the resourceVersion but is not counted by `ApiServer::writes`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, ParsedExtension, X509CertificationRequest};

use super::errors::{self, Fail, FieldError, FieldKind, go_bytes, quote};
use super::rbac::{self, Attrs};
use super::x509::{self, Ca, Leaf};
use super::{Req, Store, Target, User};

const GROUP: &str = "certificates.k8s.io";
const PLURAL: &str = "certificatesigningrequests";
const KIND: &str = "CertificateSigningRequest";
/// The signer the double runs.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The default `--cluster-signing-duration`.
const SIGNING_DURATION: Duration = Duration::from_secs(8760 * 3600);
const BACKDATE: Duration = Duration::from_secs(5 * 60);
const SHORT: Duration = Duration::from_secs(8 * 3600);

/// Every usage the API accepts.
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

fn b64() -> base64::engine::general_purpose::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn conditions(csr: &Value) -> Vec<Value> {
    csr["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn has_condition(csr: &Value, kind: &str) -> bool {
    conditions(csr).iter().any(|c| c["type"] == kind)
}

/// `spec.request` decoded from its base64 (400 like the real decoder when it is not).
fn request_bytes(csr: &Value) -> Result<Option<Vec<u8>>, Fail> {
    match csr["spec"]["request"].as_str() {
        None => Ok(None),
        Some(s) => b64().decode(s).map(Some).map_err(|e| {
            errors::bad_request(format!(
                "{KIND} in version \"v1\" cannot be handled as a {KIND}: illegal base64 data: {e}"
            ))
        }),
    }
}

/// The real `ParseCSR`: the DER of the first PEM block, which must be a CERTIFICATE REQUEST.
fn request_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    match x509_parser::pem::parse_x509_pem(pem) {
        Ok((_, p)) if p.label == "CERTIFICATE REQUEST" => Ok(p.contents),
        _ => Err("PEM block type must be CERTIFICATE REQUEST".into()),
    }
}

/// What a certificate takes from a request (DER): subject, SubjectPublicKeyInfo, GeneralNames.
struct Requested {
    subject: Vec<u8>,
    spki: Vec<u8>,
    sans: Option<Vec<u8>>,
}

/// Parses and verifies a request.
fn parse_request(der: &[u8]) -> Result<Requested, String> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|_| "x509: malformed certificate request".to_string())?;
    if csr.verify_signature().is_err() {
        let ec = csr
            .certification_request_info
            .subject_pki
            .algorithm
            .algorithm
            .to_id_string()
            == "1.2.840.10045.2.1";
        return Err(if ec {
            "x509: ECDSA verification failure".into()
        } else {
            "crypto/rsa: verification error".into()
        });
    }
    let info = &csr.certification_request_info;
    let sans = csr.requested_extensions().and_then(|mut exts| {
        exts.find_map(|e| match e {
            ParsedExtension::SubjectAlternativeName(san) => x509::general_names(&san.general_names),
            _ => None,
        })
    });
    Ok(Requested {
        subject: info.subject.as_raw().to_vec(),
        spki: info.subject_pki.raw.to_vec(),
        sans,
    })
}

/// The organizations of a request's subject.
fn request_orgs(der: &[u8]) -> Vec<String> {
    X509CertificationRequest::from_der(der)
        .map(|(_, c)| {
            c.certification_request_info
                .subject
                .iter_organization()
                .filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The real `ValidateSignerName` (its main rules).
fn validate_signer(signer: &str, errs: &mut Vec<FieldError>) {
    const F: &str = "spec.signerName";
    if signer.is_empty() {
        errs.push(FieldError::required(F, ""));
        return;
    }
    let Some((domain, path)) = signer.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        errs.push(FieldError::invalid(
            F,
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some(bad) = labels.iter().find(|l| !dns_label(l)) {
        errs.push(FieldError::invalid(
            F,
            domain,
            format!(
                "validating label {}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                quote(bad)
            ),
        ));
    }
    if labels.len() < 2 {
        errs.push(FieldError::invalid(
            F,
            domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if path.is_empty()
        || !path.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
    {
        errs.push(FieldError::invalid(
            F,
            path,
            "validating component: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
}

/// The real `validateConditions`.
fn validate_conditions(csr: &Value, errs: &mut Vec<FieldError>) {
    let mut seen: Vec<String> = Vec::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(csr).iter().enumerate() {
        let f = |k: &str| format!("status.conditions[{i}].{k}");
        let kind = c["type"].as_str().unwrap_or_default();
        let status = c["status"].as_str().unwrap_or_default();
        if kind.is_empty() {
            errs.push(FieldError::required(&f("type"), ""));
        }
        let allowed: &[&str] = if matches!(kind, "Approved" | "Denied") {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if status.is_empty() {
            errs.push(FieldError::required(&f("status"), ""));
        } else if !allowed.contains(&status) {
            let list: Vec<String> = allowed.iter().map(|s| quote(s)).collect();
            errs.push(FieldError::new(
                &f("status"),
                FieldKind::NotSupported,
                quote(status),
                format!("supported values: {}", list.join(", ")),
            ));
        }
        match kind {
            "Approved" => approved = true,
            "Denied" => denied = true,
            _ => {}
        }
        if matches!(kind, "Approved" | "Denied") && approved && denied {
            errs.push(FieldError::invalid(
                &f("type"),
                kind,
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if seen.iter().any(|s| s == kind) {
            errs.push(FieldError::new(
                &f("type"),
                FieldKind::Duplicate,
                quote(kind),
                "",
            ));
        }
        seen.push(kind.to_string());
    }
}

/// The real `validateCertificateSigningRequest` of a new request.
fn validate_create(csr: &Value, request: Option<&[u8]>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &csr["spec"];
    let parsed = request
        .ok_or_else(|| "PEM block type must be CERTIFICATE REQUEST".to_string())
        .and_then(request_der)
        .and_then(|der| parse_request(&der).map(|_| ()));
    if let Err(e) = parsed {
        let shown = request.map_or_else(|| "[]byte(nil)".to_string(), go_bytes);
        errs.push(FieldError::new(
            "spec.request",
            FieldKind::Invalid,
            shown,
            e,
        ));
    }
    let usages = strs(&spec["usages"]);
    if usages.is_empty() {
        errs.push(FieldError::required("spec.usages", ""));
    }
    let mut sorted: Vec<&str> = USAGES.to_vec();
    sorted.sort();
    let supported: Vec<String> = sorted.iter().map(|u| quote(u)).collect();
    for (i, u) in usages.iter().enumerate() {
        if !USAGES.contains(&u.as_str()) {
            errs.push(FieldError::new(
                &format!("spec.usages[{i}]"),
                FieldKind::NotSupported,
                quote(u),
                format!("supported values: {}", supported.join(", ")),
            ));
        }
        if usages[..i].contains(u) {
            errs.push(FieldError::new(
                &format!("spec.usages[{i}]"),
                FieldKind::Duplicate,
                quote(u),
                "",
            ));
        }
    }
    validate_signer(spec["signerName"].as_str().unwrap_or_default(), &mut errs);
    if let Some(s) = spec["expirationSeconds"].as_i64()
        && s < 600
    {
        errs.push(FieldError::new(
            "spec.expirationSeconds",
            FieldKind::Invalid,
            s.to_string(),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    validate_conditions(csr, &mut errs);
    errs
}

/// The real `validateCertificate` of `status.certificate` (PEM CERTIFICATE blocks only).
fn validate_certificate(pem: &[u8]) -> Result<(), String> {
    if pem.is_empty() {
        return Ok(());
    }
    let mut blocks = 0;
    for p in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let p = p.map_err(|e| e.to_string())?;
        if p.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {}",
                quote(&p.label)
            ));
        }
        x509_parser::parse_x509_certificate(&p.contents)
            .map_err(|_| "x509: malformed certificate".to_string())?;
        blocks += 1;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// The real `validateCertificateSigningRequestUpdate` (approval and status).
fn validate_update(old: &Value, new: &Value, status: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_conditions(new, &mut errs);
    let count = |v: &Value, t: &str| conditions(v).iter().filter(|c| c["type"] == t).count();
    for t in ["Approved", "Denied", "Failed"] {
        if count(new, t) < count(old, t) {
            errs.push(FieldError::new(
                "status.conditions",
                FieldKind::Forbidden,
                String::new(),
                format!("updates may not remove a condition of type {}", quote(t)),
            ));
        }
        if status && t != "Failed" && count(new, t) > count(old, t) {
            errs.push(FieldError::new(
                "status.conditions",
                FieldKind::Forbidden,
                String::new(),
                format!("updates may not add a condition of type {}", quote(t)),
            ));
        }
    }
    let cert = |v: &Value| {
        v["status"]["certificate"]
            .as_str()
            .and_then(|c| b64().decode(c).ok())
            .unwrap_or_default()
    };
    let (before, after) = (cert(old), cert(new));
    if let Err(e) = validate_certificate(&after) {
        errs.push(FieldError::new(
            "status.certificate",
            FieldKind::Invalid,
            quote("<certificate data>"),
            e,
        ));
    }
    if !before.is_empty() && before != after {
        errs.push(FieldError::new(
            "status.certificate",
            FieldKind::Invalid,
            quote("<certificate data>"),
            "updates may not modify existing certificate content",
        ));
    }
    errs
}

/// The real `populateConditionTimestamps`.
fn populate_timestamps(old: &Value, new: &mut Value) {
    let now = json!(super::now());
    let previous = conditions(old);
    if let Some(cs) = new["status"]["conditions"].as_array_mut() {
        for c in cs {
            if !c["lastUpdateTime"].is_string() {
                c["lastUpdateTime"] = now.clone();
            }
            if !c["lastTransitionTime"].is_string() {
                c["lastTransitionTime"] = previous
                    .iter()
                    .find(|o| {
                        o["type"] == c["type"]
                            && o["status"] == c["status"]
                            && o["lastTransitionTime"].is_string()
                    })
                    .map_or(now.clone(), |o| o["lastTransitionTime"].clone());
            }
        }
    }
}

fn name_of(v: &Value) -> String {
    v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The requester's identity in the spec, whatever the client sent (`PrepareForCreate`).
fn set_requester(spec: &mut Value, user: &User) {
    if let Some(m) = spec.as_object_mut() {
        for k in ["username", "uid", "groups", "extra"] {
            m.remove(k);
        }
    }
    spec["username"] = json!(user.name);
    if !user.groups.is_empty() {
        spec["groups"] = json!(user.groups);
    }
}

/// The strategies: create, main resource, `approval`, `status` (see the module doc).
pub fn prepare(
    r: &Req,
    old: Option<&Value>,
    new: &mut Value,
    sub: Option<&str>,
) -> Result<(), Fail> {
    let name = name_of(new);
    let Some(old) = old else {
        let request = request_bytes(new)?;
        set_requester(&mut new["spec"], &r.user);
        new["status"] = json!({});
        let errs = validate_create(new, request.as_deref());
        return errors::check_fields(GROUP, KIND, &name, &errs);
    };
    new["spec"] = old["spec"].clone();
    match sub {
        None => {
            new["status"] = old.get("status").cloned().unwrap_or(json!({}));
            return Ok(());
        }
        Some("approval") => {
            let mut status = old.get("status").cloned().unwrap_or(json!({}));
            match new["status"].get("conditions") {
                Some(c) => status["conditions"] = c.clone(),
                None => {
                    if let Some(m) = status.as_object_mut() {
                        m.remove("conditions");
                    }
                }
            }
            new["status"] = status;
        }
        _ => {
            // Approval conditions are the approval subresource's.
            let approval = |c: &&Value| matches!(c["type"].as_str(), Some("Approved" | "Denied"));
            let (kept, theirs) = (conditions(old), conditions(new));
            if kept.iter().filter(approval).count() == theirs.iter().filter(approval).count() {
                let mut merged: Vec<Value> =
                    theirs.iter().filter(|c| !approval(c)).cloned().collect();
                merged.extend(kept.iter().filter(approval).cloned());
                new["status"]["conditions"] = json!(merged);
            }
        }
    }
    populate_timestamps(old, new);
    let errs = validate_update(old, new, sub == Some("status"));
    errors::check_fields(GROUP, KIND, &name, &errs)
}

/// The real `IsAuthorizedForSignerName`: `verb` on `signers` named the signer, or `domain/*`.
fn authorized_for_signer(st: &Store, user: &User, verb: &str, signer: &str) -> bool {
    let domain = signer.split('/').next().unwrap_or_default();
    [signer.to_string(), format!("{domain}/*")]
        .iter()
        .any(|name| {
            rbac::decide(st, user, &Attrs::resource(verb, GROUP, "signers", "", name)).is_some()
        })
}

/// The certificate admission plugins: CertificateSubjectRestriction on create,
/// CertificateApproval on `approval`, CertificateSigning on `status`.
pub fn admit(
    st: &Store,
    r: &Req,
    t: &Target,
    old: Option<&Value>,
    new: &Value,
    sub: Option<&str>,
) -> Result<(), Fail> {
    if t.res.group != GROUP || t.res.plural != PLURAL {
        return Ok(());
    }
    let name = name_of(new);
    let signer = new["spec"]["signerName"].as_str().unwrap_or_default();
    let refuse = |why: String| Err(errors::forbidden(GROUP, PLURAL, &name, &why));
    match (old, sub) {
        (None, _) if signer == CLIENT_SIGNER => {
            let der = request_bytes(new)?
                .and_then(|pem| request_der(&pem).ok())
                .unwrap_or_default();
            if request_orgs(&der).iter().any(|o| o == "system:masters") {
                return refuse(format!(
                    "use of {CLIENT_SIGNER} signer with system:masters group is not allowed"
                ));
            }
        }
        (Some(_), Some("approval")) if !authorized_for_signer(st, &r.user, "approve", signer) => {
            return refuse(format!(
                "user not permitted to approve requests with signerName {}",
                quote(signer)
            ));
        }
        (Some(o), Some("status"))
            if o["status"]["certificate"] != new["status"]["certificate"]
                && !authorized_for_signer(st, &r.user, "sign", signer) =>
        {
            return refuse(format!(
                "user not permitted to sign requests with signerName {}",
                quote(signer)
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The kube-apiserver-client signer's check of the usages (the real `validAPIServerClientUsages`).
fn client_usages(usages: &[String]) -> Result<(), String> {
    for u in usages {
        if !matches!(
            u.as_str(),
            "digital signature" | "key encipherment" | "client auth"
        ) {
            return Err(format!("invalid usage for client certificate: {u}"));
        }
    }
    if !usages.iter().any(|u| u == "client auth") {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

/// Signs a due request: the PEM certificate, a reason to fail it, or None to leave it (a
/// request that does not parse is retried by the real signer, never failed).
fn sign(ca: &Ca, csr: &Value) -> Option<Result<String, String>> {
    let usages = strs(&csr["spec"]["usages"]);
    if let Err(e) = client_usages(&usages) {
        return Some(Err(e));
    }
    let pem = request_bytes(csr).ok().flatten()?;
    let req = parse_request(&request_der(&pem).ok()?).ok()?;
    let ttl = match csr["spec"]["expirationSeconds"].as_u64() {
        Some(s) => Duration::from_secs(s).clamp(2 * BACKDATE, SIGNING_DURATION),
        None => SIGNING_DURATION,
    };
    let now = SystemTime::now();
    if now >= ca.not_after {
        return Some(Err(format!(
            "refusing to sign a certificate that expired in the past: NotAfter={:?}",
            ca.not_after
        )));
    }
    let not_after = if ttl < SHORT {
        now + ttl
    } else {
        now + ttl - BACKDATE
    };
    let has = |u: &str| usages.iter().any(|x| x == u);
    let key_usage = if has("digital signature") {
        x509::DIGITAL_SIGNATURE
    } else {
        0
    } | if has("key encipherment") {
        x509::KEY_ENCIPHERMENT
    } else {
        0
    };
    Some(Ok(ca.issue(&Leaf {
        subject: &req.subject,
        spki: &req.spki,
        not_before: now - BACKDATE,
        not_after: not_after.min(ca.not_after),
        key_usage,
        client_auth: true,
        sans: req.sans,
    })))
}

/// Whether the signer handles `csr` now.
fn due(csr: &Value) -> bool {
    let true_condition = |t: &str| {
        conditions(csr)
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    csr["spec"]["signerName"] == CLIENT_SIGNER
        && has_condition(csr, "Approved")
        && !has_condition(csr, "Denied")
        && !true_condition("Failed")
        && csr["status"]["certificate"]
            .as_str()
            .is_none_or(str::is_empty)
}

/// One round of the signer.
fn sign_pending(st: &mut Store, ca: &Ca) {
    let due: Vec<_> = st
        .of(GROUP, PLURAL)
        .filter(|(_, v)| due(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, mut csr) in due {
        match sign(ca, &csr) {
            None => continue,
            Some(Ok(pem)) => csr["status"]["certificate"] = json!(b64().encode(pem)),
            Some(Err(why)) => {
                let now = super::now();
                let mut cs = conditions(&csr);
                cs.push(json!({"type": "Failed", "status": "True",
                    "reason": "SignerValidationFailure", "message": why,
                    "lastUpdateTime": now, "lastTransitionTime": now}));
                csr["status"]["conditions"] = json!(cs);
            }
        }
        st.save(k, csr);
    }
}

/// The signer controller: a round every 5 ms on the double's runtime.
pub async fn signer(store: Arc<Mutex<Store>>, ca: Arc<Ca>) {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        tick.tick().await;
        {
            let mut st = store.lock().unwrap();
            sign_pending(&mut st, &ca);
        }
    }
}
