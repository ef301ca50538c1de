//! The HTTPS server of the webhooks: AdmissionReview v1 in, AdmissionReview v1 out (the
//! request's uid echoed, `allowed`, and a 403 Status with the reason when denied); the serving
//! certificate is re-read when its file changes (rotation without a restart).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;

use super::{AdmissionError, Policy, rules};

/// Which rule a review is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Images from the allowed registries only, and no inline hostPath or nfs volume.
    Images,
    /// Ingress hosts of the tool's own name only.
    Ingress,
}

/// Answers one AdmissionReview (v1) for `rule` under `policy`.
pub fn review(
    policy: &Policy,
    rule: Rule,
    body: AdmissionReview<DynamicObject>,
) -> AdmissionReview<DynamicObject> {
    let req: AdmissionRequest<DynamicObject> = match body.try_into() {
        Ok(r) => r,
        Err(e) => return AdmissionResponse::invalid(e.to_string()).into_review(),
    };
    let allowed = AdmissionResponse::from(&req);
    let Some(obj) = req.object.as_ref() else {
        // DELETE and CONNECT carry no object: nothing to check.
        return allowed.into_review();
    };
    let value = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => return AdmissionResponse::invalid(e.to_string()).into_review(),
    };
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let verdict = match rule {
        Rule::Images => rules::check_images(policy, &req.kind.kind, &value)
            .and_then(|()| rules::check_volumes(&req.kind.kind, &value)),
        Rule::Ingress => rules::check_ingress(policy, namespace, &value),
    };
    match verdict {
        Ok(()) => allowed.into_review(),
        Err(why) => {
            tracing::info!(uid = %req.uid, namespace, kind = %req.kind.kind, reason = %why, "denied");
            let mut denied = allowed.deny(why);
            denied.result.code = 403;
            denied.result.reason = "Forbidden".into();
            denied.into_review()
        }
    }
}

/// The webhook routes: `POST /validate/images`, `POST /validate/ingress`, `GET /healthz`.
pub fn router(policy: Arc<Policy>) -> Router {
    async fn images(
        State(p): State<Arc<Policy>>,
        Json(body): Json<AdmissionReview<DynamicObject>>,
    ) -> Json<AdmissionReview<DynamicObject>> {
        Json(review(&p, Rule::Images, body))
    }
    async fn ingress(
        State(p): State<Arc<Policy>>,
        Json(body): Json<AdmissionReview<DynamicObject>>,
    ) -> Json<AdmissionReview<DynamicObject>> {
        Json(review(&p, Rule::Ingress, body))
    }
    Router::new()
        .route("/validate/images", post(images))
        .route("/validate/ingress", post(ingress))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(policy)
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Listen address.
    pub listen: SocketAddr,
    /// Serving certificate (PEM chain).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// How often the certificate files are looked at for a rotation.
    pub reload_every: Duration,
}

fn modified(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Serves the webhooks until the process ends; the bound address is sent on `bound` once
/// listening.
pub async fn serve(
    policy: Policy,
    opts: ServeOptions,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), AdmissionError> {
    if policy.allowed_registries.is_empty() || policy.tool_domain.is_empty() {
        return Err(AdmissionError::Policy(
            "no allowed registry or no tool domain".into(),
        ));
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tls_err = |e: std::io::Error| AdmissionError::Tls {
        cert: opts.cert.display().to_string(),
        key: opts.key.display().to_string(),
        cause: e.to_string(),
    };
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&opts.cert, &opts.key)
        .await
        .map_err(tls_err)?;
    // Rotation: a changed certificate or key file is loaded for new connections.
    let watched = config.clone();
    let (cert, key, every) = (opts.cert.clone(), opts.key.clone(), opts.reload_every);
    tokio::spawn(async move {
        let mut seen = (modified(&cert), modified(&key));
        loop {
            tokio::time::sleep(every).await;
            let now = (modified(&cert), modified(&key));
            if now != seen {
                match watched.reload_from_pem_file(&cert, &key).await {
                    Ok(()) => {
                        tracing::info!(cert = %cert.display(), "serving certificate reloaded");
                        seen = now;
                    }
                    Err(e) => tracing::warn!(error = %e, "serving certificate not reloaded"),
                }
            }
        }
    });
    let serve_err = |e: std::io::Error| AdmissionError::Serve {
        listen: opts.listen.to_string(),
        cause: e.to_string(),
    };
    let listener = std::net::TcpListener::bind(opts.listen).map_err(serve_err)?;
    listener.set_nonblocking(true).map_err(serve_err)?;
    let addr = listener.local_addr().map_err(serve_err)?;
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    tracing::info!(%addr, "admission webhooks listening");
    axum_server::from_tcp_rustls(listener, config)
        .map_err(serve_err)?
        .serve(router(Arc::new(policy)).into_make_service())
        .await
        .map_err(serve_err)
}

/// The AdmissionReview v1 a test or a benchmark sends for `object` of `kind` in `namespace`.
pub fn request_body(
    uid: &str,
    kind: (&str, &str, &str),
    resource: &str,
    namespace: &str,
    object: &Value,
) -> Value {
    let (group, version, kind) = kind;
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "tool-user", "groups": ["system:authenticated"]},
            "object": object,
            "dryRun": false
        }
    })
}
