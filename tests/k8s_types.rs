//! Every Kubernetes object forgectl renders, for every example inventory, checked against the API's
//! types (k8s-openapi, Kubernetes 1.35): each document must deserialize into the type of its kind
//! and serialize back to exactly what was rendered, so a misspelt or misplaced field (which a
//! lenient parser would drop) fails here.

use forgectl::engine::{self, Selection};
use forgectl::inventory;
use forgectl::phases::Presence;
use forgectl::plan::Op;
use forgectl::playbook;
use forgectl::render::Templates;
use k8s_openapi::api::{apps, core, networking, rbac};
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
        k => panic!("no type check for kind {k}: add it here"),
    }
}

#[test]
fn rendered_objects_are_valid_kubernetes_objects() {
    let templates = Templates::load(None).unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
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
            for doc in forgectl::kube::documents(template, content).unwrap() {
                assert_eq!(
                    typed(&doc),
                    doc,
                    "{name}: {template}: {} {} does not survive its type",
                    doc["kind"],
                    doc["metadata"]["name"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} objects checked");
}
