//! forgectl's server-side apply against the API-server TEST DOUBLE (tests/support/apiserver.rs):
//! dependency order, a converged re-apply that writes nothing, changes and removals, namespaces
//! that must exist, CRDs served once applied, and authorisation.

mod support;

use forgectl::kube::Kube;
use support::apiserver::{ApiServer, kubeconfig, start_with_admin};

const BUNDLE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: settings, namespace: demo }
data: { a: "1", b: "2" }
---
apiVersion: v1
kind: Namespace
metadata: { name: demo, labels: { team: x, pod-security.kubernetes.io/enforce: baseline } }
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: widgets.example.org }
spec:
  group: example.org
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
    - name: v1
      served: true
      storage: true
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
---
apiVersion: example.org/v1
kind: Widget
metadata: { name: w1, namespace: demo }
spec: { size: 3 }
"#;

struct Bed {
    _dir: tempfile::TempDir,
    api: ApiServer,
    admin: std::path::PathBuf,
    ca: (String, String),
}

fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let (api, admin, ca) = start_with_admin(dir.path());
    Bed {
        _dir: dir,
        api,
        admin,
        ca,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_in_order_converge_change_and_refuse() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let b = bed();
    let kube = Kube::from_kubeconfig(&b.admin).await.unwrap();

    // First apply: the namespace and the CRD go first, whatever the file order.
    let r = kube.apply_yaml("bundle", BUNDLE).await.unwrap();
    assert_eq!(
        r.created,
        [
            "Namespace demo",
            "CustomResourceDefinition widgets.example.org",
            "ConfigMap demo/settings",
            "Widget demo/w1"
        ]
    );
    let writes = b.api.writes();
    let ns = &b
        .api
        .objects("", "namespaces")
        .into_iter()
        .find(|n| n["metadata"]["name"] == "demo")
        .unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    let cm = &b.api.objects("", "configmaps")[0];
    assert_eq!(cm["data"]["b"], "2");
    assert_eq!(cm["metadata"]["managedFields"][0]["manager"], "forgectl");

    // Converged: nothing written, not even a resourceVersion.
    let r = kube.apply_yaml("bundle", BUNDLE).await.unwrap();
    assert_eq!((r.changes(), r.unchanged.len()), (0, 4));
    assert_eq!(b.api.writes(), writes);

    // A changed value and a removed key: the object follows the manifest.
    let changed = BUNDLE.replace(r#"data: { a: "1", b: "2" }"#, r#"data: { a: "9" }"#);
    let r = kube.apply_yaml("bundle", &changed).await.unwrap();
    assert_eq!(r.configured, ["ConfigMap demo/settings"]);
    let cm = &b.api.objects("", "configmaps")[0];
    assert_eq!(cm["data"], serde_json::json!({"a": "9"}));

    // Namespaces must exist, as on a real API server.
    let orphan = "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x, namespace: nope }\n";
    let e = kube
        .apply_yaml("orphan", orphan)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("namespaces \"nope\" not found"), "{e}");

    // A kind nobody serves.
    let unknown = "apiVersion: nowhere.example/v1\nkind: Thing\nmetadata: { name: t }\n";
    let e = kube
        .apply_yaml("unknown", unknown)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not served by the API server"), "{e}");

    // A document without a name.
    let e = forgectl::kube::documents("t", "apiVersion: v1\nkind: ConfigMap\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("document 1: no metadata.name"), "{e}");

    // Someone without rights is refused.
    let other = b._dir.path().join("other.conf");
    std::fs::write(
        &other,
        kubeconfig(
            &format!("https://{}", b.api.addr),
            &b.ca.0,
            &b.ca.1,
            "tool-x",
            "tools",
        ),
    )
    .unwrap();
    let e = Kube::from_kubeconfig(&other)
        .await
        .unwrap()
        .apply_yaml("bundle", BUNDLE)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("forbidden: User \"tool-x\" cannot"), "{e}");
}
