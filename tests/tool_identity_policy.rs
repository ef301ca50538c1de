//! The ValidatingAdmissionPolicy `forgectl-tool-identity` the platform phase applies: tool pods
//! run as their tool's uid and gid (from the namespace's annotations). Enforced by a REAL
//! kube-apiserver (tests/support/kube.rs) with the policy exactly as rendered for the
//! toolforge-like inventory; each test in a tool namespace of its own.

mod support;

use serde_json::{Value, json};
use support::kube::{ControlPlane, shared};
use support::tool_policy::policy_and_binding;

/// The shared control plane with the policy enforced and a tool namespace `name` (uid and gid
/// 52001).
fn with_namespace(name: &str) -> &'static ControlPlane {
    let api = shared();
    api.apply(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
            "labels": {"forgectl.io/tenant": "true"},
            "annotations": {"forgectl.io/uid": "52001", "forgectl.io/gid": "52001"}}})
        .to_string(),
    );
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| support::tool_policy::install(api, name));
    api
}

/// A pod as toolctl makes them in `ns`: the tool's ids on the pod, containers without their own.
fn pod(ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": ns},
        "spec": {"securityContext": {"runAsUser": 52001, "runAsGroup": 52001, "fsGroup": 52001,
                "runAsNonRoot": true},
            "containers": [{"name": "web", "image": "registry.toolforge.test/web:1",
                "securityContext": {"allowPrivilegeEscalation": false}}]}})
}

fn admit(p: &Value) -> Result<(), String> {
    support::tool_policy::admit(shared(), p)
}

fn denied(p: &Value) -> String {
    admit(p).expect_err("denied")
}

#[test]
fn the_policy_and_its_binding_cover_tool_pods_only() {
    let (p, b) = policy_and_binding();
    let rules = &p["spec"]["matchConstraints"]["resourceRules"];
    assert_eq!(rules[0]["resources"], json!(["pods"]));
    assert_eq!(rules[0]["operations"], json!(["CREATE"]));
    assert_eq!(rules[1]["resources"], json!(["pods/ephemeralcontainers"]));
    assert_eq!(p["spec"]["failurePolicy"], "Fail");
    assert_eq!(b["spec"]["policyName"], "forgectl-tool-identity");
    assert_eq!(b["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(
        b["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"],
        json!([{"key": "forgectl.io/tenant", "operator": "Exists"}])
    );
}

#[test]
fn pods_run_as_their_tool_and_as_nobody_else() {
    with_namespace("fgtest-ids");
    let pod = || pod("fgtest-ids");
    assert_eq!(admit(&pod()), Ok(()));
    // Every container may name the ids itself instead of the pod.
    let mut p = pod();
    p["spec"]["securityContext"] = json!({});
    p["spec"]["containers"][0]["securityContext"] =
        json!({"runAsUser": 52001, "runAsGroup": 52001});
    assert_eq!(admit(&p), Ok(()));

    // No ids at all: the image's user (root, often).
    let mut p = pod();
    p["spec"].as_object_mut().unwrap().remove("securityContext");
    assert!(denied(&p).contains("runAsUser 52001"), "{}", denied(&p));
    // Root, another tool's uid, the tool's uid with root's group.
    for (field, value, says) in [
        ("runAsUser", 0, "runAsUser 52001"),
        ("runAsUser", 52002, "runAsUser 52001"),
        ("runAsGroup", 0, "runAsGroup 52001"),
        ("fsGroup", 52002, "fsGroup only to the tool gid 52001"),
    ] {
        let mut p = pod();
        p["spec"]["securityContext"][field] = json!(value);
        let why = denied(&p);
        assert!(why.contains(says), "{field}={value}: {why}");
    }
    let mut p = pod();
    p["spec"]["securityContext"]["supplementalGroups"] = json!([52001, 0]);
    assert!(denied(&p).contains("supplementalGroups"));
    // One container of two overriding the pod's uid.
    let mut p = pod();
    let second = json!({"name": "side", "image": "registry.toolforge.test/side:1",
        "securityContext": {"runAsUser": 0}});
    p["spec"]["containers"].as_array_mut().unwrap().push(second);
    assert!(denied(&p).starts_with("containers of tool pods"));
}

#[test]
fn init_and_ephemeral_containers_too() {
    let api = with_namespace("fgtest-init");
    let pod = || pod("fgtest-init");
    let mut p = pod();
    p["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "registry.toolforge.test/x:1"}]);
    assert_eq!(admit(&p), Ok(()), "inherits the pod's ids");
    p["spec"]["initContainers"][0]["securityContext"] = json!({"runAsUser": 0});
    assert!(denied(&p).starts_with("init containers"), "{}", denied(&p));

    // Ephemeral containers join a running pod through their subresource (`kubectl debug`).
    api.apply(&pod().to_string());
    let debug = |security: Value| {
        let patch = json!({"spec": {"ephemeralContainers": [{"name": "debug",
            "image": "registry.toolforge.test/x:1", "securityContext": security}]}});
        api.kubectl(&[
            "-n",
            "fgtest-init",
            "patch",
            "pod",
            "web",
            "--subresource=ephemeralcontainers",
            "--type=strategic",
            "--dry-run=server",
            "-p",
            &patch.to_string(),
        ])
    };
    let (ok, _, err) = debug(json!({"runAsGroup": 52002}));
    assert!(
        !ok && err.contains("denied request: ephemeral (debug) containers"),
        "{err}"
    );
    let (ok, _, err) = debug(json!({}));
    assert!(ok, "the pod's own ids: {err}");
}

#[test]
fn a_namespace_without_the_ids_admits_nothing() {
    let api = with_namespace("fgtest-ids-probe");
    api.apply(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fgtest-no-ids",
            "labels": {"forgectl.io/tenant": "true"}}})
        .to_string(),
    );
    let why = admit(&pod("fgtest-no-ids")).expect_err("denied");
    assert!(why.contains("fails to evaluate"), "{why}");
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Through the API as a tool: the policy as the platform phase applies it, tools made by
/// `accounts sync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_a_tool_pod_that_is_not_its_tool() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let bed = support::accounts_bed::bed();
    bed.tools(2, &[], &[]);
    let (code, _, err) = bed.sync(&bed.inventory(""), &[]);
    assert_eq!(code, 0, "{err}");
    let admin = forgectl::kube::Kube::from_kubeconfig(&bed.admin)
        .await
        .unwrap();
    let (policy, binding) = policy_and_binding();
    admin
        .apply_yaml("identity", &format!("{policy}\n---\n{binding}"))
        .await
        .unwrap();
    support::tool_policy::install(bed.api, "tool-tool00");
    let ns = bed.object("", "namespaces", "", "tool-tool01").unwrap();
    let uid: i64 = ns["metadata"]["annotations"]["forgectl.io/uid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pod = |name: &str, user: i64| -> Pod {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"securityContext": {"runAsUser": user, "runAsGroup": uid},
                "containers": [{"name": "c", "image": "registry.toolforge.test/web:1"}]}}))
        .unwrap()
    };
    let tool = client(&bed.home("tool01").join(".kube/config")).await;
    let pods: Api<Pod> = Api::namespaced(tool, "tool-tool01");
    pods.create(&PostParams::default(), &pod("mine", uid))
        .await
        .expect("the tool's own ids are admitted");
    let err = pods
        .create(&PostParams::default(), &pod("root", 0))
        .await
        .expect_err("root is refused");
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!(s.code, 403);
    assert!(
        s.message.starts_with(
            "pods \"root\" is forbidden: ValidatingAdmissionPolicy 'forgectl-tool-identity' with binding 'forgectl-tool-identity' denied request: containers of tool pods run as the tool: runAsUser"
        ),
        "{}",
        s.message
    );
    assert!(bed.object("", "pods", "tool-tool01", "root").is_none());
    // Pod Security, as the accounts provisioner labels tool namespaces (enforce baseline): the
    // tool's own ids, but privileged, are refused.
    let mut privileged = pod("privileged", uid);
    privileged.spec.as_mut().unwrap().containers[0].security_context =
        Some(serde_json::from_value(json!({"privileged": true})).unwrap());
    let err = pods
        .create(&PostParams::default(), &privileged)
        .await
        .expect_err("a privileged pod is refused");
    assert!(
        err.to_string()
            .contains("violates PodSecurity \"baseline:latest\": privileged"),
        "{err}"
    );
    // Not even an admin puts a pod with tool01's uid into tool00's namespace.
    let admin = client(&bed.admin).await;
    let err = Api::<Pod>::namespaced(admin.clone(), "tool-tool00")
        .create(&PostParams::default(), &pod("borrowed", uid))
        .await
        .expect_err("another tool's uid is refused");
    assert!(err.to_string().contains("runAsUser"), "{err}");
    // Namespaces outside the platform are not the policy's business.
    let plain: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "fgtest-plain"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &plain)
        .await
        .unwrap();
    Api::<Pod>::namespaced(admin, "fgtest-plain")
        .create(&PostParams::default(), &pod("root", 0))
        .await
        .expect("no policy outside tool namespaces");
}
