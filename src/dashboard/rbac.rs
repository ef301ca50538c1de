//! The dashboard's own read-only rights: get, list and watch on the kinds it shows, and
//! nothing else (no Secrets, no writes).

use serde_json::{Value, json};

/// The ClusterRole's name.
pub const CLUSTER_ROLE: &str = "forgectl:dashboard";

/// The ClusterRole.
pub fn cluster_role() -> Value {
    let read = json!(["get", "list", "watch"]);
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE,
            "labels": {"app.kubernetes.io/managed-by": "forgectl"}},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces", "pods", "nodes", "resourcequotas"], "verbs": read},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": read},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": read},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": read},
        ]
    })
}

/// A ClusterRoleBinding of the ClusterRole to user `user`.
pub fn binding(user: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE,
            "labels": {"app.kubernetes.io/managed-by": "forgectl"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_and_never_secrets() {
        let role = cluster_role();
        for rule in role["rules"].as_array().unwrap() {
            assert_eq!(rule["verbs"], json!(["get", "list", "watch"]));
            assert!(!rule["resources"].to_string().contains("secrets"));
        }
    }
}
