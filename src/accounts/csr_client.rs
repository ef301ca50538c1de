//! Issuing a client certificate through the Kubernetes CSR API: create a
//! CertificateSigningRequest (signer kubernetes.io/kube-apiserver-client, expirationSeconds),
//! approve it (the provisioner made the request itself, so it knows what it approves), learn the
//! signer's answer from one watch shared by the pass (no polling), and delete the request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::kube::api::{Api, DeleteParams, PostParams};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use serde_json::json;
use tokio::sync::oneshot;

use super::credentials::{Identity, new_request};
use super::desired::{MANAGED_BY, MANAGER, SIGNER};
use super::{AccountsError, api_err};

/// How long the signer may take to issue a certificate.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request waits on the watch before it also reads the request itself (a watch that
/// cannot start, say for want of the `watch` verb, only slows issuing down).
const WATCH_GRACE: Duration = Duration::from_secs(5);
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

/// The signer's answer to one request: the certificate (PEM), or why there is none.
type Answer = Result<String, String>;
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>;

/// The signer's answers to a pass's requests, from one watch of the provisioner's requests,
/// started when the first request waits and ended when this is dropped.
pub struct Answers {
    client: ::kube::Client,
    waiting: Waiting,
    watch: OnceLock<tokio::task::JoinHandle<()>>,
}

impl Answers {
    /// Answers from the API server behind `client` (nothing is started yet).
    pub fn new(client: &::kube::Client) -> Self {
        Self {
            client: client.clone(),
            waiting: Arc::default(),
            watch: OnceLock::new(),
        }
    }

    /// Waits for the answer to request `name` (call before creating it: no answer is missed).
    fn expect(&self, name: &str) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(name.to_string(), tx);
        }
        self.watch.get_or_init(|| {
            let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
            let config = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
            let waiting = self.waiting.clone();
            tokio::spawn(async move {
                let mut events = watcher::watcher(api, config).default_backoff().boxed();
                while let Some(event) = events.next().await {
                    let (Ok(Event::Apply(csr)) | Ok(Event::InitApply(csr))) = event else {
                        continue;
                    };
                    let (Some(name), Some(answer)) = (csr.metadata.name.clone(), answer(&csr))
                    else {
                        continue;
                    };
                    let tx = waiting.lock().ok().and_then(|mut w| w.remove(&name));
                    if let Some(tx) = tx {
                        let _ = tx.send(answer);
                    }
                }
            })
        });
        rx
    }

    /// Stops waiting for `name`.
    fn forget(&self, name: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(name);
        }
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        if let Some(task) = self.watch.get() {
            task.abort();
        }
    }
}

/// The signer's answer in `csr`, if it has given one.
fn answer(csr: &CertificateSigningRequest) -> Option<Answer> {
    let status = csr.status.as_ref()?;
    if let Some(c) = status.certificate.as_ref().filter(|c| !c.0.is_empty()) {
        return Some(String::from_utf8(c.0.clone()).map_err(|e| e.to_string()));
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Failed" || c.type_ == "Denied") && c.status == "True")
        .map(|c| {
            Err(format!(
                "{}: {} {}",
                c.type_,
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            ))
        })
}

/// Issues a certificate for `id`, valid for `validity` (the signer may cap it). Three requests:
/// create, approve, delete; the certificate comes from `answers`' watch.
pub async fn issue(
    client: &::kube::Client,
    answers: &Answers,
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
    let answer = answers.expect(&name);
    let created = match api.create(&PostParams::default(), &request).await {
        Ok(c) => c,
        Err(e) => {
            answers.forget(&name);
            return Err(api_err(
                format!("create CertificateSigningRequest {name}"),
                e,
            ));
        }
    };
    let result = approve_and_wait(&api, &name, created, answer).await;
    answers.forget(&name);
    // The request has served its purpose (or failed): never leave it behind.
    let _ = api.delete(&name, &DeleteParams::default()).await;
    Ok(Issued { cert: result?, key })
}

async fn approve_and_wait(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    mut csr: CertificateSigningRequest,
    mut answer: oneshot::Receiver<Answer>,
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
    api.replace_subresource("approval", name, &PostParams::default(), &csr)
        .await
        .map_err(|e| api_err(format!("approve CertificateSigningRequest {name}"), e))?;
    let start = Instant::now();
    let mut watching = true;
    let signed = loop {
        if watching {
            match tokio::time::timeout(WATCH_GRACE, &mut answer).await {
                Ok(Ok(a)) => break a,
                Ok(Err(_)) => watching = false,
                Err(_) => {}
            }
        } else {
            tokio::time::sleep(WATCH_GRACE).await;
        }
        // The watch is slow or gone: read the request itself.
        let got = api
            .get(name)
            .await
            .map_err(|e| api_err(format!("read CertificateSigningRequest {name}"), e))?;
        if let Some(a) = self::answer(&got) {
            break a;
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
    };
    signed.map_err(|cause| AccountsError::Api {
        what: format!("CertificateSigningRequest {name}"),
        cause,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(status: serde_json::Value) -> CertificateSigningRequest {
        serde_json::from_value(json!({"metadata": {"name": "r"},
            "spec": {"request": "", "signerName": SIGNER}, "status": status}))
        .unwrap()
    }

    #[test]
    fn the_signers_answer_is_the_certificate_or_why_there_is_none() {
        let pem = "-----BEGIN CERTIFICATE-----\n";
        let cert = base64::engine::general_purpose::STANDARD.encode(pem);
        assert_eq!(
            answer(&csr(json!({"certificate": cert}))),
            Some(Ok(pem.to_string()))
        );
        let approved = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        assert_eq!(answer(&csr(approved)), None, "approved, not signed yet");
        assert_eq!(answer(&csr(json!({}))), None);
        let failed = json!({"conditions": [{"type": "Failed", "status": "True",
            "reason": "SignerValidationFailure", "message": "bad usages"}]});
        assert_eq!(
            answer(&csr(failed)),
            Some(Err("Failed: SignerValidationFailure bad usages".into()))
        );
    }
}
