//! forgectl's server-side apply against a REAL kube-apiserver (tests/support/kube.rs):
//! dependency order, a converged re-apply that writes nothing, changes and removals, namespaces
//! that must exist, CRDs served once applied, and authorisation.

mod support;

use forgectl::kube::Kube;

const BUNDLE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: settings, namespace: fgtest-apply }
data: { a: "1", b: "2" }
---
apiVersion: v1
kind: Namespace
metadata: { name: fgtest-apply, labels: { team: x, pod-security.kubernetes.io/enforce: baseline } }
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: widgets.fgtest.example.org }
spec:
  group: fgtest.example.org
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
    - name: v1
      served: true
      storage: true
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
---
apiVersion: fgtest.example.org/v1
kind: Widget
metadata: { name: w1, namespace: fgtest-apply }
spec: { size: 3 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_in_order_converge_change_and_refuse() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = support::kube::shared();
    let dir = tempfile::tempdir().unwrap();
    let admin = api.admin_kubeconfig("fgtest-apply", &dir.path().join("admin.conf"));
    let kube = Kube::from_kubeconfig(&admin).await.unwrap();

    // First apply: the namespace and the CRD go first, whatever the file order.
    let r = kube.apply_yaml("bundle", BUNDLE).await.unwrap();
    assert_eq!(
        r.created,
        [
            "Namespace fgtest-apply",
            "CustomResourceDefinition widgets.fgtest.example.org",
            "ConfigMap fgtest-apply/settings",
            "Widget fgtest-apply/w1"
        ]
    );
    let versions = || -> Vec<String> {
        [
            ("namespaces", None, "fgtest-apply"),
            (
                "customresourcedefinitions",
                None,
                "widgets.fgtest.example.org",
            ),
            ("configmaps", Some("fgtest-apply"), "settings"),
            ("widgets.fgtest.example.org", Some("fgtest-apply"), "w1"),
        ]
        .into_iter()
        .map(|(r, ns, name)| {
            api.get(r, ns, name).unwrap()["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
    };
    let stored = versions();
    let ns = api.get("namespaces", None, "fgtest-apply").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    let cm = api
        .get("configmaps", Some("fgtest-apply"), "settings")
        .unwrap();
    assert_eq!(cm["data"]["b"], "2");
    assert_eq!(cm["metadata"]["managedFields"][0]["manager"], "forgectl");

    // Converged: nothing changed, not even a resourceVersion (server-side apply of the same
    // fields is a no-op on the server).
    let r = kube.apply_yaml("bundle", BUNDLE).await.unwrap();
    assert_eq!((r.changes(), r.unchanged.len()), (0, 4));
    assert_eq!(versions(), stored);

    // A changed value and a removed key: the object follows the manifest.
    let changed = BUNDLE.replace(r#"data: { a: "1", b: "2" }"#, r#"data: { a: "9" }"#);
    let r = kube.apply_yaml("bundle", &changed).await.unwrap();
    assert_eq!(r.configured, ["ConfigMap fgtest-apply/settings"]);
    let cm = api
        .get("configmaps", Some("fgtest-apply"), "settings")
        .unwrap();
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
    let other = dir.path().join("other.conf");
    std::fs::write(&other, api.kubeconfig("tool-x", &["tools"])).unwrap();
    let e = Kube::from_kubeconfig(&other)
        .await
        .unwrap()
        .apply_yaml("bundle", BUNDLE)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("forbidden: User \"tool-x\" cannot"), "{e}");
}
