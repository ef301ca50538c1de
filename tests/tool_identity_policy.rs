//! The ValidatingAdmissionPolicy `forgectl-tool-identity` the platform phase applies: tool pods
//! run as their tool's uid and gid (from the namespace's annotations). Evaluated by the
//! ValidatingAdmissionPolicy TEST DOUBLE (tests/support/vap.rs, the cel crate) over the policy
//! exactly as rendered for the toolforge-like inventory.

mod support;

use serde_json::{Value, json};
use support::vap::{admit, rendered};

fn policy() -> Value {
    rendered(
        "toolforge-like",
        "ValidatingAdmissionPolicy",
        "forgectl-tool-identity",
    )
}

fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tool-web",
        "labels": {"forgectl.io/tenant": "true"},
        "annotations": {"forgectl.io/uid": "52001", "forgectl.io/gid": "52001"}}})
}

/// A pod as toolctl makes them: the tool's ids on the pod, containers without their own.
fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "tool-web"},
        "spec": {"securityContext": {"runAsUser": 52001, "runAsGroup": 52001, "fsGroup": 52001,
                "runAsNonRoot": true},
            "containers": [{"name": "web", "image": "registry.toolforge.test/web:1",
                "securityContext": {"allowPrivilegeEscalation": false}}]}})
}

fn denied(p: &Value) -> String {
    admit(&policy(), p, &namespace()).expect_err("denied")
}

#[test]
fn the_policy_and_its_binding_cover_tool_pods_only() {
    let p = policy();
    let rules = &p["spec"]["matchConstraints"]["resourceRules"];
    assert_eq!(rules[0]["resources"], json!(["pods"]));
    assert_eq!(rules[0]["operations"], json!(["CREATE"]));
    assert_eq!(rules[1]["resources"], json!(["pods/ephemeralcontainers"]));
    assert_eq!(p["spec"]["failurePolicy"], "Fail");
    let b = rendered(
        "toolforge-like",
        "ValidatingAdmissionPolicyBinding",
        "forgectl-tool-identity",
    );
    assert_eq!(b["spec"]["policyName"], "forgectl-tool-identity");
    assert_eq!(b["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(
        b["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"],
        json!([{"key": "forgectl.io/tenant", "operator": "Exists"}])
    );
}

#[test]
fn pods_run_as_their_tool_and_as_nobody_else() {
    assert_eq!(admit(&policy(), &pod(), &namespace()), Ok(()));
    // Every container may name the ids itself instead of the pod.
    let mut p = pod();
    p["spec"]["securityContext"] = json!({});
    p["spec"]["containers"][0]["securityContext"] =
        json!({"runAsUser": 52001, "runAsGroup": 52001});
    assert_eq!(admit(&policy(), &p, &namespace()), Ok(()));

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
    let mut p = pod();
    p["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "registry.toolforge.test/x:1"}]);
    assert_eq!(
        admit(&policy(), &p, &namespace()),
        Ok(()),
        "inherits the pod's ids"
    );
    p["spec"]["initContainers"][0]["securityContext"] = json!({"runAsUser": 0});
    assert!(denied(&p).starts_with("init containers"), "{}", denied(&p));

    let mut p = pod();
    p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "registry.toolforge.test/x:1",
        "securityContext": {"runAsGroup": 52002}}]);
    assert!(
        denied(&p).starts_with("ephemeral (debug) containers"),
        "{}",
        denied(&p)
    );
}

#[test]
fn a_namespace_without_the_ids_admits_nothing() {
    let mut ns = namespace();
    ns["metadata"]["annotations"] = json!({});
    let why = admit(&policy(), &pod(), &ns).expect_err("denied");
    assert!(why.starts_with("policy error"), "{why}");
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Through the API (the API-server TEST DOUBLE, which runs bound policies on writes as the real
/// server does): the policy as the platform phase applies it, tools made by `accounts sync`.
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
    let binding = rendered(
        "toolforge-like",
        "ValidatingAdmissionPolicyBinding",
        "forgectl-tool-identity",
    );
    admin
        .apply_yaml("identity", &format!("{}\n---\n{binding}", policy()))
        .await
        .unwrap();
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
    // Not even an admin puts a pod with tool01's uid into tool00's namespace.
    let admin = client(&bed.admin).await;
    let err = Api::<Pod>::namespaced(admin.clone(), "tool-tool00")
        .create(&PostParams::default(), &pod("borrowed", uid))
        .await
        .expect_err("another tool's uid is refused");
    assert!(err.to_string().contains("runAsUser"), "{err}");
    // Namespaces outside the platform are not the policy's business.
    let plain: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "plain"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &plain)
        .await
        .unwrap();
    Api::<Pod>::namespaced(admin, "plain")
        .create(&PostParams::default(), &pod("root", 0))
        .await
        .expect("no policy outside tool namespaces");
}
