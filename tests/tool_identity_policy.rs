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
