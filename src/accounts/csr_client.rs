//! Issuing a client certificate through the Kubernetes CSR API: create a
//! CertificateSigningRequest (signer kubernetes.io/kube-apiserver-client, expirationSeconds),
//! approve it (the provisioner made the request itself, so it knows what it approves), wait for
//! the signer to issue the certificate, fetch it, and delete the request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::kube::api::{Api, DeleteParams, PostParams};
use base64::Engine;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use serde_json::json;

use super::credentials::{Identity, new_request};
use super::desired::{MANAGED_BY, MANAGER, SIGNER};
use super::{AccountsError, api_err};

/// How long the signer may take to issue a certificate.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);
/// Label on a request naming the account it is for.
pub const ACCOUNT_LABEL: &str = "forgectl.io/account";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A request name no other pass uses: `forgectl-accounts-USER-<hex>`.
fn request_name(user: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let n = nanos ^ (SEQ.fetch_add(1, Ordering::Relaxed) << 40) ^ u64::from(std::process::id());
    format!("{MANAGER}-{user}-{:x}", n & 0xffff_ffff_ffff)
}

/// A certificate and its key (PEM).
pub struct Issued {
    /// The certificate.
    pub cert: String,
    /// The key.
    pub key: String,
}

/// Issues a certificate for `id`, valid for `validity` (the signer may cap it). Four requests:
/// create, approve, get (until issued; more while the signer is busy), delete.
pub async fn issue(
    client: &::kube::Client,
    id: &Identity,
    validity: Duration,
) -> Result<Issued, AccountsError> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let (key, csr_pem) = new_request(id).map_err(|e| AccountsError::Api {
        what: format!("make a certificate request for {}", id.user),
        cause: e.to_string(),
    })?;
    let name = request_name(&id.user);
    let request: CertificateSigningRequest = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "labels": {MANAGED_BY: MANAGER, ACCOUNT_LABEL: id.user}},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(&csr_pem),
            "signerName": SIGNER,
            "expirationSeconds": validity.as_secs().max(600),
            "usages": ["client auth", "digital signature"],
        }
    }))
    .map_err(|e| AccountsError::Api {
        what: format!("certificate request {name}"),
        cause: e.to_string(),
    })?;
    let mut created = api
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| api_err(format!("create CertificateSigningRequest {name}"), e))?;
    let result = approve_and_fetch(&api, &name, &mut created).await;
    // The request has served its purpose (or failed): never leave it behind.
    let _ = api.delete(&name, &DeleteParams::default()).await;
    Ok(Issued { cert: result?, key })
}

async fn approve_and_fetch(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    csr: &mut CertificateSigningRequest,
) -> Result<String, AccountsError> {
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("ForgectlAccounts".into()),
            message: Some("made and approved by forgectl accounts for this account".into()),
            ..Default::default()
        });
    api.replace_subresource("approval", name, &PostParams::default(), &*csr)
        .await
        .map_err(|e| api_err(format!("approve CertificateSigningRequest {name}"), e))?;
    let start = Instant::now();
    let mut wait = Duration::from_millis(10);
    loop {
        let got = api
            .get(name)
            .await
            .map_err(|e| api_err(format!("read CertificateSigningRequest {name}"), e))?;
        let status = got.status.unwrap_or_default();
        if let Some(c) = status.certificate.filter(|c| !c.0.is_empty()) {
            return String::from_utf8(c.0).map_err(|e| AccountsError::Api {
                what: format!("certificate of {name}"),
                cause: e.to_string(),
            });
        }
        if let Some(c) = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| (c.type_ == "Failed" || c.type_ == "Denied") && c.status == "True")
        {
            return Err(AccountsError::Api {
                what: format!("CertificateSigningRequest {name}"),
                cause: format!(
                    "{}: {} {}",
                    c.type_,
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default()
                ),
            });
        }
        if start.elapsed() > ISSUE_TIMEOUT {
            return Err(AccountsError::Api {
                what: format!("CertificateSigningRequest {name}"),
                cause: format!(
                    "approved but not issued after {} s: is the kube-controller-manager's signer running?",
                    ISSUE_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(500));
    }
}

/// Deletes leftover requests (from a pass that crashed: their keys are gone).
pub async fn delete_requests(
    client: &::kube::Client,
    names: &[String],
) -> Result<(), AccountsError> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    for n in names {
        match api.delete(n, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(::kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err(format!("delete CertificateSigningRequest {n}"), e)),
        }
    }
    Ok(())
}
