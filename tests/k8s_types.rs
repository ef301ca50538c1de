//! Every Kubernetes object forgectl renders, for every example inventory, checked against the API's
//! types (k8s-openapi, Kubernetes 1.35): each document must deserialize into the type of its kind
//! and serialize back to exactly what was rendered, so a misspelt or misplaced field (which a
//! lenient parser would drop) fails here. Custom resources (Calico's IP pool and Felix
//! configuration) are checked against the schema of their CRD in the same manifest, strictly:
//! every field forgectl writes must be declared there.

use forgectl::engine::{self, Selection};
use forgectl::inventory;
use forgectl::phases::Presence;
use forgectl::plan::Op;
use forgectl::playbook;
use forgectl::render::Templates;
use k8s_openapi::api::{admissionregistration, apps, core, networking, rbac, storage};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Value {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", doc["metadata"]["name"]));
    serde_json::to_value(typed).unwrap()
}

fn typed(doc: &Value) -> Value {
    match doc["kind"].as_str().unwrap() {
        "Namespace" => round_trip::<core::v1::Namespace>(doc),
        "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(doc),
        "ConfigMap" => round_trip::<core::v1::ConfigMap>(doc),
        "Service" => round_trip::<core::v1::Service>(doc),
        "Deployment" => round_trip::<apps::v1::Deployment>(doc),
        "DaemonSet" => round_trip::<apps::v1::DaemonSet>(doc),
        "ClusterRole" => round_trip::<rbac::v1::ClusterRole>(doc),
        "ClusterRoleBinding" => round_trip::<rbac::v1::ClusterRoleBinding>(doc),
        "Role" => round_trip::<rbac::v1::Role>(doc),
        "RoleBinding" => round_trip::<rbac::v1::RoleBinding>(doc),
        "IngressClass" => round_trip::<networking::v1::IngressClass>(doc),
        "CustomResourceDefinition" => round_trip::<CustomResourceDefinition>(doc),
        "CSIDriver" => round_trip::<storage::v1::CSIDriver>(doc),
        "StorageClass" => round_trip::<storage::v1::StorageClass>(doc),
        "ValidatingWebhookConfiguration" => {
            round_trip::<admissionregistration::v1::ValidatingWebhookConfiguration>(doc)
        }
        "ValidatingAdmissionPolicy" => {
            round_trip::<admissionregistration::v1::ValidatingAdmissionPolicy>(doc)
        }
        "ValidatingAdmissionPolicyBinding" => {
            round_trip::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(doc)
        }
        k => panic!("no type check for kind {k}: add it here"),
    }
}

#[test]
fn rendered_objects_are_valid_kubernetes_objects() {
    let templates = Templates::load(None).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut custom = 0;
    for name in ["local", "static", "openstack", "vagrant", "toolforge-like"] {
        let inv = inventory::load(Some(
            &root.join("inventories").join(name).join("cluster.yaml"),
        ))
        .unwrap();
        let pb = playbook::load("cluster").unwrap();
        let plan = engine::plan(
            &inv,
            &pb,
            &templates,
            &Presence::default(),
            &Selection::default(),
        )
        .unwrap();
        for a in plan.phases.iter().flat_map(|p| &p.actions) {
            let Op::ApplyManifests {
                template, content, ..
            } = &a.op
            else {
                continue;
            };
            let docs = forgectl::kube::documents(template, content).unwrap();
            let crds: Vec<&Value> = docs
                .iter()
                .filter(|d| d["kind"] == "CustomResourceDefinition")
                .collect();
            for crd in &crds {
                let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
                structural(&format!("{}", crd["metadata"]["name"]), schema);
            }
            for doc in &docs {
                if let Some(crd) = crds.iter().find(|c| defines(c, doc)) {
                    custom_resource(crd, doc);
                    custom += 1;
                    continue;
                }
                assert_eq!(
                    typed(doc),
                    *doc,
                    "{name}: {template}: {} {} does not survive its type",
                    doc["kind"],
                    doc["metadata"]["name"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} objects checked");
    assert!(custom >= 2, "only {custom} custom resources checked");
}

/// Whether `crd` defines the kind of `doc`.
fn defines(crd: &Value, doc: &Value) -> bool {
    let group = crd["spec"]["group"].as_str().unwrap();
    crd["spec"]["names"]["kind"] == doc["kind"]
        && crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| doc["apiVersion"] == format!("{group}/{}", v["name"].as_str().unwrap()))
}

/// apiextensions v1's rule for structural schemas: every node says its type (or that it keeps
/// unknown fields), all the way down.
fn structural(at: &str, s: &Value) {
    assert!(
        s["type"].is_string() || s["x-kubernetes-preserve-unknown-fields"] == true,
        "{at}: no type"
    );
    if let Some(props) = s["properties"].as_object() {
        for (k, v) in props {
            structural(&format!("{at}.{k}"), v);
        }
    }
    if s["items"].is_object() {
        structural(&format!("{at}[]"), &s["items"]);
    }
}

/// The schema with every declared object closed (`additionalProperties: false`) except
/// metadata: in this check a field must be declared even where the CRD keeps unknown ones.
fn strict(mut s: Value) -> Value {
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        for (k, v) in props.iter_mut() {
            if k != "metadata" {
                *v = strict(v.take());
            }
        }
        s["additionalProperties"] = false.into();
    }
    if let Some(items) = s.get_mut("items").filter(|i| i.is_object()) {
        *items = strict(items.take());
    }
    s
}

fn custom_resource(crd: &Value, doc: &Value) {
    let version = doc["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let v = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version)
        .unwrap();
    assert_eq!(v["served"], true, "{} not served", doc["apiVersion"]);
    let schema = strict(v["schema"]["openAPIV3Schema"].clone());
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} {}: {errors:?}",
        doc["kind"],
        doc["metadata"]["name"]
    );
}
