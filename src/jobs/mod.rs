//! `toolctl jobs run|list|show|delete|logs`: a tool's jobs without Kubernetes YAML. A one-off job
//! is a Job, a scheduled one a CronJob, a continuous one a Deployment; each runs the type's image
//! with `/bin/sh -c CMD` as the tool, in its home (mounted when the platform gives a home
//! claim), and carries the label `forgectl.io/job: NAME`.

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use ::kube::discovery::ApiResource;
use serde::Serialize;
use serde_json::{Value, json};

use crate::tool_context::{ToolContext, ToolError, api_err};

/// Label naming the job an object belongs to.
pub const LABEL: &str = "forgectl.io/job";
/// Field manager of toolctl's applies.
const FIELD_MANAGER: &str = "toolctl";

/// How a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Once, now.
    Once,
    /// On a cron schedule.
    Cron(String),
    /// Always (restarted when it ends).
    Continuous,
}

/// The kinds a job can be, with their API resources.
const KINDS: &[(&str, &str, &str)] = &[
    ("batch", "Job", "one-off"),
    ("batch", "CronJob", "scheduled"),
    ("apps", "Deployment", "continuous"),
];

fn api(t: &ToolContext, group: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&::kube::core::GroupVersionKind::gvk(group, "v1", kind));
    Api::namespaced_with(t.client.clone(), &t.namespace, &ar)
}

/// A job name: a DNS label of at most 52 characters (room for the pods' suffixes).
pub fn valid_name(name: &str) -> bool {
    crate::inventory::validate::is_dns_label(name, 52)
}

/// The object of job `name`.
pub fn object(
    t: &ToolContext,
    name: &str,
    kind: &str,
    image: &str,
    command: &str,
    schedule: &Schedule,
    home_claim: bool,
) -> Value {
    let labels = json!({LABEL: name, "app.kubernetes.io/managed-by": FIELD_MANAGER,
        "forgectl.io/job-type": kind});
    let pod = |restart: &str| {
        json!({"metadata": {"labels": labels},
            "spec": t.pod_spec("job", image, Some(command), None, home_claim, restart)})
    };
    let meta = json!({"name": name, "namespace": t.namespace, "labels": labels});
    match schedule {
        Schedule::Once => json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
                "template": pod("Never")}}),
        Schedule::Cron(cron) => json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": meta, "spec": {"schedule": cron, "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {"labels": labels},
                    "spec": {"backoffLimit": 0, "template": pod("Never")}}}}),
        Schedule::Continuous => json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta, "spec": {"replicas": 1,
                "selector": {"matchLabels": {LABEL: name}}, "template": pod("Always")}}),
    }
}

/// One job as `list` and `show` give it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobLine {
    /// Name.
    pub name: String,
    /// one-off, scheduled or continuous.
    pub schedule: String,
    /// Image type.
    pub kind: String,
    /// Image.
    pub image: String,
    /// The command.
    pub command: String,
    /// What it is doing.
    pub state: String,
}

fn line(o: &DynamicObject, schedule: &str) -> JobLine {
    let d = &o.data;
    let pod = match schedule {
        "scheduled" => &d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &d["spec"]["template"]["spec"],
    };
    let c = &pod["containers"][0];
    let state = match schedule {
        "one-off" => {
            let s = &d["status"];
            if s["succeeded"].as_i64().unwrap_or(0) > 0 {
                "succeeded".into()
            } else if s["failed"].as_i64().unwrap_or(0) > 0 {
                "failed".into()
            } else if s["active"].as_i64().unwrap_or(0) > 0 {
                "running".into()
            } else {
                "pending".into()
            }
        }
        "scheduled" => {
            let cron = d["spec"]["schedule"].as_str().unwrap_or_default();
            match d["status"]["lastScheduleTime"].as_str() {
                Some(t) => format!("schedule {cron}, last run {t}"),
                None => format!("schedule {cron}, not run yet"),
            }
        }
        _ => format!(
            "{}/{} running",
            d["status"]["readyReplicas"].as_i64().unwrap_or(0),
            d["spec"]["replicas"].as_i64().unwrap_or(1)
        ),
    };
    JobLine {
        name: o.metadata.name.clone().unwrap_or_default(),
        schedule: schedule.into(),
        kind: o
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("forgectl.io/job-type").cloned())
            .unwrap_or_default(),
        image: c["image"].as_str().unwrap_or_default().into(),
        command: c["command"][2].as_str().unwrap_or_default().into(),
        state,
    }
}

/// Starts job `name`; refuses a name in use (delete it first).
pub async fn run(
    t: &ToolContext,
    name: &str,
    kind: &str,
    command: &str,
    schedule: &Schedule,
) -> Result<JobLine, ToolError> {
    if !valid_name(name) {
        return Err(ToolError::Usage(format!(
            "job name {name:?}: lowercase letters, digits and -, starting with a letter, at most 52 characters"
        )));
    }
    if find(t, name).await?.is_some() {
        return Err(ToolError::Usage(format!(
            "a job named {name} exists: `toolctl jobs delete {name}` first"
        )));
    }
    let image = t.image(kind)?.to_string();
    let home_claim = t.has_home_claim().await?;
    let o = object(t, name, kind, &image, command, schedule, home_claim);
    let (group, k) = match schedule {
        Schedule::Once => ("batch", "Job"),
        Schedule::Cron(_) => ("batch", "CronJob"),
        Schedule::Continuous => ("apps", "Deployment"),
    };
    let made = api(t, group, k)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&o),
        )
        .await
        .map_err(|e| api_err(format!("create {k} {name}"), e))?;
    let schedule = KINDS
        .iter()
        .find(|(_, kk, _)| *kk == k)
        .map(|(_, _, s)| *s)
        .unwrap_or_default();
    Ok(line(&made, schedule))
}

/// Job `name` wherever it is: (group, kind, object, schedule word).
async fn find(
    t: &ToolContext,
    name: &str,
) -> Result<Option<(&'static str, &'static str, DynamicObject, &'static str)>, ToolError> {
    for (group, kind, schedule) in KINDS {
        if let Some(o) = api(t, group, kind)
            .get_opt(name)
            .await
            .map_err(|e| api_err(format!("read {kind} {name}"), e))?
            && o.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL))
                .map(String::as_str)
                == Some(name)
        {
            return Ok(Some((group, kind, o, schedule)));
        }
    }
    Ok(None)
}

/// Every job of the tool.
pub async fn list(t: &ToolContext) -> Result<Vec<JobLine>, ToolError> {
    let mut out = Vec::new();
    for (group, kind, schedule) in KINDS {
        let items = api(t, group, kind)
            .list(&ListParams::default().labels(LABEL))
            .await
            .map_err(|e| api_err(format!("list {kind}s"), e))?
            .items;
        out.extend(items.iter().map(|o| line(o, schedule)));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Job `name`.
pub async fn show(t: &ToolContext, name: &str) -> Result<JobLine, ToolError> {
    find(t, name)
        .await?
        .map(|(_, _, o, s)| line(&o, s))
        .ok_or_else(|| ToolError::NotFound(format!("no job named {name}")))
}

/// Deletes job `name` and its pods.
pub async fn delete(t: &ToolContext, name: &str) -> Result<String, ToolError> {
    let (group, kind, _, _) = find(t, name)
        .await?
        .ok_or_else(|| ToolError::NotFound(format!("no job named {name}")))?;
    api(t, group, kind)
        .delete(name, &DeleteParams::background())
        .await
        .map_err(|e| api_err(format!("delete {kind} {name}"), e))?;
    Ok(format!("{kind} {name}"))
}

/// Streams the log of job `name`'s newest pod to `out`.
pub async fn follow(
    t: &ToolContext,
    name: &str,
    tail: Option<i64>,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ToolError> {
    crate::webservice::follow_pods(t, &format!("{LABEL}={name}"), tail, out).await
}

/// The logs of job `name`'s pods.
pub async fn logs(t: &ToolContext, name: &str, tail: Option<i64>) -> Result<String, ToolError> {
    crate::webservice::pod_logs(t, &format!("{LABEL}={name}"), tail).await
}
