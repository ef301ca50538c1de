//! `toolctl webservice [TYPE] start|stop|restart|status|logs`: a tool's web service without
//! Kubernetes YAML — a Deployment running the type's image as the tool, a Service, and an
//! Ingress for `NAME.<tool domain>`, all named after the tool and labelled
//! `forgectl.io/webservice`, so stop deletes exactly those.

use std::time::{Duration, Instant, SystemTime};

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use ::kube::discovery::ApiResource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::{Value, json};

use crate::tool_context::{ToolContext, ToolError, api_err};

/// Field manager of toolctl's applies.
pub const FIELD_MANAGER: &str = "toolctl";
/// Label on the web service's objects.
pub const LABEL: &str = "forgectl.io/webservice";
/// The port the web service listens on inside its container (also in `$PORT`).
pub const PORT: u16 = 8000;

/// The three objects of a web service.
pub fn objects(t: &ToolContext, kind: &str, image: &str, home_claim: bool) -> Vec<Value> {
    let labels = json!({LABEL: "true", "app.kubernetes.io/name": t.name,
        "app.kubernetes.io/managed-by": FIELD_MANAGER, "forgectl.io/webservice-type": kind});
    let selector = json!({LABEL: "true", "app.kubernetes.io/name": t.name});
    let spec = t.pod_spec("webservice", image, None, Some(PORT), home_claim, "Always");
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": t.name, "namespace": t.namespace, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels}, "spec": spec}}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": t.name, "namespace": t.namespace, "labels": labels},
            "spec": {"selector": selector,
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": t.name, "namespace": t.namespace, "labels": labels},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": t.host(), "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": t.name, "port": {"number": PORT}}}}]}}]}}),
    ]
}

fn resource(kind: &str) -> ApiResource {
    let (g, v) = match kind {
        "Deployment" => ("apps", "v1"),
        "Ingress" => ("networking.k8s.io", "v1"),
        _ => ("", "v1"),
    };
    ApiResource::from_gvk(&::kube::core::GroupVersionKind::gvk(g, v, kind))
}

fn api(t: &ToolContext, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(t.client.clone(), &t.namespace, &resource(kind))
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Whether a web service exists.
    pub running: bool,
    /// Its type.
    pub kind: Option<String>,
    /// Ready / wanted replicas.
    pub ready: String,
    /// Its URL.
    pub url: String,
    /// Objects found.
    pub objects: Vec<String>,
}

/// Starts the web service of `kind` (creating or updating its objects) and waits until it is
/// ready (up to `wait`).
pub async fn start(t: &ToolContext, kind: &str, wait: Duration) -> Result<Status, ToolError> {
    let image = t.image(kind)?.to_string();
    let home_claim = t.has_home_claim().await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for o in objects(t, kind, &image, home_claim) {
        let k = o["kind"].as_str().unwrap_or_default().to_string();
        api(t, &k)
            .patch(&t.name, &params, &Patch::Apply(&o))
            .await
            .map_err(|e| api_err(format!("create {k} {}", t.name), e))?;
    }
    wait_ready(t, wait).await?;
    status(t).await
}

/// Waits until the Deployment has seen its latest spec and has a ready replica.
async fn wait_ready(t: &ToolContext, wait: Duration) -> Result<(), ToolError> {
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    let start = Instant::now();
    loop {
        let d = deployments
            .get(&t.name)
            .await
            .map_err(|e| api_err("read the web service", e))?;
        let generation = d.metadata.generation.unwrap_or(0);
        let st = d.status.unwrap_or_default();
        let ready = st.ready_replicas.unwrap_or(0);
        if st.observed_generation.unwrap_or(0) >= generation && ready >= 1 {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(ToolError::NotReady {
                what: format!("web service {}", t.name),
                secs: wait.as_secs(),
                why: format!("{ready} replica(s) ready"),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deletes the web service's Deployment, Service and Ingress (only objects carrying its
/// label); what was deleted.
pub async fn stop(t: &ToolContext) -> Result<Vec<String>, ToolError> {
    let mut gone = Vec::new();
    for kind in ["Ingress", "Service", "Deployment"] {
        let a = api(t, kind);
        let Some(o) = a
            .get_opt(&t.name)
            .await
            .map_err(|e| api_err(format!("read {kind} {}", t.name), e))?
        else {
            continue;
        };
        if o.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL))
            .map(String::as_str)
            != Some("true")
        {
            continue;
        }
        a.delete(&t.name, &DeleteParams::background())
            .await
            .map_err(|e| api_err(format!("delete {kind} {}", t.name), e))?;
        gone.push(format!("{kind} {}", t.name));
    }
    if gone.is_empty() {
        return Err(ToolError::NotFound(format!(
            "{} has no web service running",
            t.name
        )));
    }
    Ok(gone)
}

/// Restarts the pods (a new rollout, as `kubectl rollout restart` does) and waits until ready.
pub async fn restart(t: &ToolContext, wait: Duration) -> Result<Status, ToolError> {
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), &t.namespace);
    if deployments
        .get_opt(&t.name)
        .await
        .map_err(|e| api_err("read the web service", e))?
        .is_none()
    {
        return Err(ToolError::NotFound(format!(
            "{} has no web service running",
            t.name
        )));
    }
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now}}}}});
    deployments
        .patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| api_err("restart the web service", e))?;
    wait_ready(t, wait).await?;
    status(t).await
}

/// The web service as it is.
pub async fn status(t: &ToolContext) -> Result<Status, ToolError> {
    let mut objects = Vec::new();
    let mut kind = None;
    let mut ready = "0/0".to_string();
    for k in ["Deployment", "Service", "Ingress"] {
        if let Some(o) = api(t, k)
            .get_opt(&t.name)
            .await
            .map_err(|e| api_err(format!("read {k} {}", t.name), e))?
        {
            if k == "Deployment" {
                let d = &o.data;
                ready = format!(
                    "{}/{}",
                    d["status"]["readyReplicas"].as_i64().unwrap_or(0),
                    d["spec"]["replicas"].as_i64().unwrap_or(1)
                );
                kind = o
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("forgectl.io/webservice-type").cloned());
            }
            objects.push(format!("{k} {}", t.name));
        }
    }
    Ok(Status {
        running: !objects.is_empty(),
        kind,
        ready,
        url: format!("https://{}/", t.host()),
        objects,
    })
}

/// The logs of the web service's pods (the newest first), at most `tail` lines each.
pub async fn logs(t: &ToolContext, tail: Option<i64>) -> Result<String, ToolError> {
    pod_logs(t, &selector(t), tail).await
}

fn selector(t: &ToolContext) -> String {
    format!("{LABEL}=true,app.kubernetes.io/name={}", t.name)
}

/// Streams the log of the web service's newest pod to `out` until the pod ends or the
/// connection closes.
pub async fn follow(
    t: &ToolContext,
    tail: Option<i64>,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ToolError> {
    follow_pods(t, &selector(t), tail, out).await
}

/// Streams the log of the newest pod matching `selector` to `out`.
pub async fn follow_pods(
    t: &ToolContext,
    selector: &str,
    tail: Option<i64>,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ToolError> {
    use futures::AsyncBufReadExt;
    use futures::TryStreamExt;
    use tokio::io::AsyncWriteExt;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let newest = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| api_err("list the pods", e))?
        .items
        .into_iter()
        .max_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        })
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| ToolError::NotFound(format!("no pods match {selector}")))?;
    let params = LogParams {
        follow: true,
        tail_lines: tail,
        ..LogParams::default()
    };
    let stream = pods
        .log_stream(&newest, &params)
        .await
        .map_err(|e| api_err(format!("logs of {newest}"), e))?;
    let mut lines = stream.lines();
    let io = |e: std::io::Error| ToolError::Api {
        what: format!("logs of {newest}"),
        cause: e.to_string(),
    };
    while let Some(line) = lines.try_next().await.map_err(io)? {
        out.write_all(line.as_bytes()).await.map_err(io)?;
        out.write_all(b"\n").await.map_err(io)?;
        out.flush().await.map_err(io)?;
    }
    Ok(())
}

/// The logs of the pods matching `selector`, each headed by the pod's name.
pub async fn pod_logs(
    t: &ToolContext,
    selector: &str,
    tail: Option<i64>,
) -> Result<String, ToolError> {
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.namespace);
    let mut list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| api_err("list the pods", e))?
        .items;
    if list.is_empty() {
        return Err(ToolError::NotFound(format!("no pods match {selector}")));
    }
    list.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    let mut out = String::new();
    for p in list {
        let name = p.metadata.name.unwrap_or_default();
        let params = LogParams {
            tail_lines: tail,
            ..LogParams::default()
        };
        let text = pods
            .logs(&name, &params)
            .await
            .map_err(|e| api_err(format!("logs of {name}"), e))?;
        out.push_str(&format!("==> {name} <==\n{text}"));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
