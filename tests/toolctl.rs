//! `toolctl` / `webservice` as a tool runs them, with the kubeconfig `forgectl accounts sync`
//! wrote into its home, against a REAL control plane (tests/support/kube.rs; RBAC enforced: the
//! tool may act only in its own namespace; the platform's tool identity policy active), pods
//! run by the node stand-in (tests/support/node_standin.rs): web service start / status / restart / logs / stop creating and
//! deleting exactly its Deployment, Service and Ingress; jobs one-off, scheduled and continuous;
//! the errors a tool owner sees.

mod support;

use std::path::Path;
use std::process::Output;

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
    let pod = |ns: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "fgtest-admitted", "namespace": ns}, "spec": spec})
    };
    let admit = |ns: &str| support::tool_policy::admit(bed.api, &pod(ns));
    assert_eq!(admit(&format!("tool-{tool}")), Ok(()), "{spec:#}");
    let other = if tool == "tool01" { "tool02" } else { "tool01" };
    assert!(admit(&format!("tool-{other}")).is_err());
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
    support::tool_policy::install(bed.api, "tool-tool00");
    support::tool_policy::webhooks(
        bed.api,
        bed.dir.path(),
        "registry.toolforge.test",
        "tool-tool00",
    )
    .await;
    let nodes = support::node_standin::Nodes::start(
        &bed.admin,
        &["fgtest-node-1"],
        std::net::Ipv4Addr::LOCALHOST.into(),
    );
    as_the_tool(&bed, &nodes);
}

fn as_the_tool(bed: &Bed, nodes: &support::node_standin::Nodes) {
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
    assert!(bed.api.requests().iter().any(|r| r.user == "tool-tool01"
        && r.verb == "patch"
        && r.uri.contains("fieldManager=toolctl")));

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
    nodes.set_log("tool-tool01", "GET / 200\nGET /favicon.ico 404\n");
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
    bed.api.apply(
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "other", "namespace": "tool-tool01"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "other"}},
                "template": {"metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.toolforge.test/other:1"}]}}}})
        .to_string(),
    );
    // The images webhook: nothing from another registry, even from an admin.
    let evil = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "miner", "namespace": "tool-tool01"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "miner"}},
            "template": {"metadata": {"labels": {"app": "miner"}},
                "spec": {"containers": [{"name": "c", "image": "evil.example/miner"}]}}}});
    let (ok, _, err) = bed
        .api
        .kubectl_with_input(&["create", "-f", "-"], &evil.to_string());
    assert!(
        !ok && err.contains("images.forgectl.io") && err.contains("evil.example/miner"),
        "{err}"
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
    nodes.set_log("tool-tool02", "updated 42 rows\n");
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
