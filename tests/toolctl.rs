//! `toolctl` / `webservice` as a tool runs them, with the kubeconfig `forgectl accounts sync`
//! wrote into its home, against the API-server TEST DOUBLE (RBAC enforced: the tool may act
//! only in its own namespace): web service start / status / restart / logs / stop creating and
//! deleting exactly its Deployment, Service and Ingress; jobs one-off, scheduled and continuous;
//! the errors a tool owner sees.

mod support;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use support::accounts_bed::{Bed, bed};

const PLATFORM: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: forgectl-platform }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: toolctl, namespace: forgectl-platform }
data:
  tool_domain: toolforge.test
  image.python3.11: registry.toolforge.test/toolforge-python311:latest
  image.php8.2: registry.toolforge.test/toolforge-php82:latest
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: toolctl-settings, namespace: forgectl-platform }
rules:
  - { apiGroups: [""], resources: [configmaps], resourceNames: [toolctl], verbs: [get] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: toolctl-settings, namespace: forgectl-platform }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: toolctl-settings }
subjects:
  - { apiGroup: rbac.authorization.k8s.io, kind: Group, name: "forgectl:tools" }
"#;

fn toolctl(bed: &Bed, bin: &Path, tool: &str, args: &[&str]) -> Output {
    std::process::Command::new(bin)
        .args(args)
        .env("TOOLCTL_KUBECONFIG", bed.home(tool).join(".kube/config"))
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

/// The pods of `spec` pass the platform's tool identity policy in the tool's namespace as the
/// accounts controller made it (its uid and gid annotations), and would not in another tool's.
fn admitted_as_the_tool(bed: &Bed, tool: &str, spec: &Value) {
    let policy = support::vap::rendered(
        "toolforge-like",
        "ValidatingAdmissionPolicy",
        "forgectl-tool-identity",
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "spec": spec});
    let ns = bed
        .object("", "namespaces", "", &format!("tool-{tool}"))
        .expect("the tool's namespace");
    assert_eq!(support::vap::admit(&policy, &pod, &ns), Ok(()), "{spec:#}");
    let other = if tool == "tool01" { "tool02" } else { "tool01" };
    let ns = bed
        .object("", "namespaces", "", &format!("tool-{other}"))
        .expect("another tool's namespace");
    assert!(support::vap::admit(&policy, &pod, &ns).is_err());
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webservice_and_jobs_as_the_tool() {
    let bed = bed();
    bed.tools(3, &[], &[]);
    let inv = bed.inventory("");
    let (code, _, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{err}");
    let admin = forgectl::kube::Kube::from_kubeconfig(&bed.admin)
        .await
        .unwrap();
    admin.apply_yaml("platform", PLATFORM).await.unwrap();
    // The controllers and kubelets the double lacks, beside the tool's commands.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                bed.api.roll_out_workloads();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        as_the_tool(&bed);
        stop.store(true, Ordering::Relaxed);
    });
}

fn as_the_tool(bed: &Bed) {
    let bin = Path::new(env!("CARGO_BIN_EXE_toolctl"));
    let webservice = bed.path("webservice");
    std::os::unix::fs::symlink(bin, &webservice).unwrap();

    // start
    let o = toolctl(
        bed,
        bin,
        "tool01",
        &["webservice", "python3.11", "start", "--wait", "20s"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("https://tool01.toolforge.test/"),
        "{}",
        text(&o)
    );
    let d = bed
        .object("apps", "deployments", "tool-tool01", "tool01")
        .expect("Deployment");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.toolforge.test/toolforge-python311:latest"
    );
    assert_eq!(
        pod["securityContext"]["runAsUser"], 50001,
        "runs as the tool"
    );
    admitted_as_the_tool(bed, "tool01", pod);
    assert_eq!(
        pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        pod["containers"][0]["workingDir"],
        bed.home("tool01").display().to_string()
    );
    let svc = bed
        .object("", "services", "tool-tool01", "tool01")
        .expect("Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8000);
    let ing = bed
        .object("networking.k8s.io", "ingresses", "tool-tool01", "tool01")
        .expect("Ingress");
    assert_eq!(ing["spec"]["rules"][0]["host"], "tool01.toolforge.test");
    assert!(
        bed.api.requests().iter().any(|(u, m, p)| u == "tool-tool01"
            && m == "PATCH"
            && p.contains("fieldManager=toolctl"))
    );

    // status, through the `webservice` name
    let o = std::process::Command::new(&webservice)
        .args(["status", "-o", "json"])
        .env(
            "TOOLCTL_KUBECONFIG",
            bed.home("tool01").join(".kube/config"),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["running"], true);
    assert_eq!(s["kind"], "python3.11");
    assert_eq!(s["objects"].as_array().unwrap().len(), 3);

    // restart rolls the pods
    let o = toolctl(
        bed,
        bin,
        "tool01",
        &["webservice", "restart", "--wait", "20s"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let d = bed
        .object("apps", "deployments", "tool-tool01", "tool01")
        .unwrap();
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );

    // logs
    bed.api.put(
        "",
        "pods",
        "tool-tool01",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "tool01-abc", "labels": {"forgectl.io/webservice": "true",
            "app.kubernetes.io/name": "tool01"}},
        "status": {"phase": "Running"}}),
    );
    bed.api.set_log(
        "tool-tool01",
        "tool01-abc",
        "GET / 200\nGET /favicon.ico 404\n",
    );
    let o = toolctl(bed, bin, "tool01", &["webservice", "logs"]);
    assert!(
        o.status.success() && text(&o).contains("GET /favicon.ico 404"),
        "{}",
        text(&o)
    );
    let o = toolctl(bed, bin, "tool01", &["webservice", "logs", "--follow"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "GET / 200\nGET /favicon.ico 404\n",
        "streamed line by line"
    );

    // stop deletes exactly the web service's objects
    bed.api.put(
        "apps",
        "deployments",
        "tool-tool01",
        json!({"apiVersion": "apps/v1",
        "kind": "Deployment", "metadata": {"name": "other"}, "spec": {"replicas": 1}}),
    );
    let o = toolctl(bed, bin, "tool01", &["webservice", "stop"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        bed.object("apps", "deployments", "tool-tool01", "tool01")
            .is_none()
    );
    assert!(
        bed.object("", "services", "tool-tool01", "tool01")
            .is_none()
    );
    assert!(
        bed.object("networking.k8s.io", "ingresses", "tool-tool01", "tool01")
            .is_none()
    );
    assert!(
        bed.object("apps", "deployments", "tool-tool01", "other")
            .is_some(),
        "not the tool's web service: kept"
    );
    let o = toolctl(bed, bin, "tool01", &["webservice", "stop"]);
    assert!(
        !o.status.success() && text(&o).contains("no web service running"),
        "{}",
        text(&o)
    );
    let o = toolctl(bed, bin, "tool01", &["webservice", "ruby", "start"]);
    assert!(
        !o.status.success() && text(&o).contains("php8.2, python3.11"),
        "{}",
        text(&o)
    );

    // jobs
    for args in [
        vec![
            "jobs",
            "run",
            "once",
            "--image",
            "python3.11",
            "--command",
            "./update.sh",
        ],
        vec![
            "jobs",
            "run",
            "nightly",
            "--image",
            "php8.2",
            "--command",
            "php backup.php",
            "--schedule",
            "0 3 * * *",
        ],
        vec![
            "jobs",
            "run",
            "bot",
            "--image",
            "python3.11",
            "--command",
            "python3 bot.py",
            "--continuous",
        ],
    ] {
        let o = toolctl(bed, bin, "tool02", &args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let job = bed
        .object("batch", "jobs", "tool-tool02", "once")
        .expect("Job");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["/bin/sh", "-c", "./update.sh"])
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let cron = bed
        .object("batch", "cronjobs", "tool-tool02", "nightly")
        .expect("CronJob");
    assert_eq!(cron["spec"]["schedule"], "0 3 * * *");
    assert_eq!(
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        50002
    );
    let bot = bed
        .object("apps", "deployments", "tool-tool02", "bot")
        .expect("Deployment");
    for spec in [
        &job["spec"]["template"]["spec"],
        &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        &bot["spec"]["template"]["spec"],
    ] {
        admitted_as_the_tool(bed, "tool02", spec);
    }
    let o = toolctl(bed, bin, "tool02", &["jobs", "list", "-o", "json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap(), j["schedule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("bot", "continuous"),
            ("nightly", "scheduled"),
            ("once", "one-off")
        ]
    );
    let o = toolctl(bed, bin, "tool02", &["jobs", "show", "nightly"]);
    assert!(
        text(&o).contains("command: php backup.php") && text(&o).contains("schedule 0 3 * * *"),
        "{}",
        text(&o)
    );
    let o = toolctl(
        bed,
        bin,
        "tool02",
        &[
            "jobs",
            "run",
            "once",
            "--image",
            "python3.11",
            "--command",
            "x",
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("jobs delete once"),
        "{}",
        text(&o)
    );
    bed.api.put("", "pods", "tool-tool02", json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "once-xyz", "labels": {"forgectl.io/job": "once"}}, "status": {"phase": "Succeeded"}}));
    bed.api
        .set_log("tool-tool02", "once-xyz", "updated 42 rows\n");
    let o = toolctl(bed, bin, "tool02", &["jobs", "logs", "once"]);
    assert!(text(&o).contains("updated 42 rows"), "{}", text(&o));
    let o = toolctl(bed, bin, "tool02", &["jobs", "delete", "nightly"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        bed.object("batch", "cronjobs", "tool-tool02", "nightly")
            .is_none()
    );
    let o = toolctl(bed, bin, "tool02", &["jobs", "show", "nightly"]);
    assert!(!o.status.success() && text(&o).contains("no job named nightly"));

    // Another tool's namespace is out of reach: tool02's credentials pointed at tool01's
    // namespace (a kubeconfig edited by hand) are refused by RBAC.
    let own = bed.home("tool02").join(".kube/config");
    let edited = bed.home("tool02").join(".kube/config-edited");
    std::fs::write(
        &edited,
        std::fs::read_to_string(&own)
            .unwrap()
            .replace("namespace: tool-tool02", "namespace: tool-tool01"),
    )
    .unwrap();
    let o = std::process::Command::new(bin)
        .args(["webservice", "stop"])
        .env("TOOLCTL_KUBECONFIG", &edited)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("forbidden") && text(&o).contains("tool-tool02"),
        "{}",
        text(&o)
    );
}
