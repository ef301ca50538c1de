//! What the cluster should hold for each tool and admin: the objects forgectl applies (with
//! server-side apply), labelled so one list per kind finds them all, and a hash of each in an
//! annotation so an unchanged object is recognised without a write.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::directory::{Person, ToolAccount};
use crate::inventory::accounts::{Accounts, NetworkPolicyDefault};

/// Label on everything the provisioner manages.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGER: &str = "forgectl-accounts";
/// Label naming the tool an object belongs to.
pub const TOOL_LABEL: &str = "forgectl.io/tool";
/// Label naming the admin a binding belongs to.
pub const ADMIN_LABEL: &str = "forgectl.io/admin";
/// Label on tool namespaces (what the admission webhooks select).
pub const TENANT_LABEL: &str = "forgectl.io/tenant";
/// Label on the namespaces of disabled tools.
pub const DISABLED_LABEL: &str = "forgectl.io/disabled";
/// Annotation with the hash of what forgectl applied.
pub const HASH_ANNOTATION: &str = "forgectl.io/applied-hash";
/// Annotation set when a tool's account is gone from the source (RFC 3339 time).
pub const REMOVED_ANNOTATION: &str = "forgectl.io/removed-at";
/// Annotations with the tool's uid, gid, home and maintainers (for the webhooks and toolctl).
pub const UID_ANNOTATION: &str = "forgectl.io/uid";
/// See [`UID_ANNOTATION`].
pub const GID_ANNOTATION: &str = "forgectl.io/gid";
/// See [`UID_ANNOTATION`].
pub const HOME_ANNOTATION: &str = "forgectl.io/home";
/// See [`UID_ANNOTATION`].
pub const MAINTAINERS_ANNOTATION: &str = "forgectl.io/maintainers";
/// Group (certificate O) of every tool user.
pub const TOOLS_GROUP: &str = "forgectl:tools";
/// Group of every admin user.
pub const ADMINS_GROUP: &str = "forgectl:admins";
/// The signer of client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Names of the per-tool objects.
pub const QUOTA_NAME: &str = "tool-quota";
/// See [`QUOTA_NAME`].
pub const LIMITS_NAME: &str = "tool-limits";
/// See [`QUOTA_NAME`]: the RoleBinding that gives the tool [`TOOL_CLUSTER_ROLE`] in its
/// namespace (and, before the ClusterRole, the name of each tool's own Role).
pub const ROLE_NAME: &str = "tool";
/// The ClusterRole every tool is bound to in its own namespace (one object for all tools, not
/// a Role per tool: a write less per tool).
pub const TOOL_CLUSTER_ROLE: &str = "forgectl-tool";
/// See [`QUOTA_NAME`].
pub const POLICY_NAME: &str = "tool-isolate";

/// The kinds the provisioner manages, as (group, version, kind, namespaced).
/// (Role: tools' own Roles from before [`TOOL_CLUSTER_ROLE`], found so they are deleted.)
pub const KINDS: &[(&str, &str, &str, bool)] = &[
    ("", "v1", "Namespace", false),
    ("", "v1", "ResourceQuota", true),
    ("", "v1", "LimitRange", true),
    ("rbac.authorization.k8s.io", "v1", "Role", true),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", true),
    ("networking.k8s.io", "v1", "NetworkPolicy", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        false,
    ),
    ("", "v1", "PersistentVolume", false),
    ("", "v1", "PersistentVolumeClaim", true),
];

/// The namespace of tool `name`.
pub fn namespace(cfg: &Accounts, name: &str) -> String {
    format!("{}{name}", cfg.namespace_prefix)
}

/// The Kubernetes user of tool `name`.
pub fn tool_user(cfg: &Accounts, name: &str) -> String {
    format!("{}{name}", cfg.user_prefix)
}

fn labels(tool: &str) -> Value {
    json!({MANAGED_BY: MANAGER, TOOL_LABEL: tool})
}

/// Sets the hash annotation of `obj` (over everything else in it).
pub fn with_hash(mut obj: Value) -> Value {
    let digest = Sha256::digest(obj.to_string().as_bytes());
    let hash: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    obj["metadata"]["annotations"][HASH_ANNOTATION] = json!(hash);
    obj
}

/// The hash annotation of an object (as stored).
pub fn hash_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["annotations"][HASH_ANNOTATION].as_str()
}

/// The objects of tool `t`, namespace first; a disabled tool has no RoleBinding.
pub fn tool_objects(cfg: &Accounts, t: &ToolAccount) -> Vec<Value> {
    let ns = namespace(cfg, &t.name);
    let psa = cfg.pod_security.as_str();
    let mut ns_labels = json!({
        MANAGED_BY: MANAGER, TOOL_LABEL: t.name, TENANT_LABEL: "true",
        "pod-security.kubernetes.io/enforce": psa,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    });
    if t.disabled {
        ns_labels[DISABLED_LABEL] = json!("true");
    }
    let limits = cfg.limits_for(Some(&t.name));
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": ns_labels, "annotations": {
            UID_ANNOTATION: t.uid.to_string(), GID_ANNOTATION: t.gid.to_string(),
            HOME_ANNOTATION: t.home.display().to_string(),
            MAINTAINERS_ANNOTATION: t.maintainers.join(","),
        }}}),
        json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": QUOTA_NAME, "namespace": ns, "labels": labels(&t.name)},
            "spec": {"hard": limits.quota}}),
        json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": LIMITS_NAME, "namespace": ns, "labels": labels(&t.name)},
        "spec": {"limits": [{"type": "Container",
            "default": limits.default, "defaultRequest": limits.default_request,
            "max": limits.max,
        }]}}),
    ];
    if !t.disabled {
        out.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": ROLE_NAME, "namespace": ns, "labels": labels(&t.name)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": TOOL_CLUSTER_ROLE},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                "name": tool_user(cfg, &t.name)}]}),
        );
    }
    if cfg.network_policy == NetworkPolicyDefault::Isolate {
        out.push(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": POLICY_NAME, "namespace": ns, "labels": labels(&t.name)},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [
                {"podSelector": {}},
                {"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": crate::phases::ingress::NAMESPACE}}},
            ]}]}}),
        );
    }
    out.extend(super::home_volume::home_objects(cfg, t));
    out.into_iter().map(with_hash).collect()
}

/// The ClusterRole [`TOOL_CLUSTER_ROLE`] with [`tool_rules`], as the platform phase applies it
/// (field manager `forgectl`, label `app.kubernetes.io/managed-by: forgectl`): the provisioner
/// applies the very same object when it is missing or differs, so the two never take turns.
pub fn tool_cluster_role() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": TOOL_CLUSTER_ROLE,
            "labels": {MANAGED_BY: crate::kube::FIELD_MANAGER}},
        "rules": tool_rules()})
}

/// What a tool may do in its own namespace: run and inspect pods (logs, exec, port-forward,
/// `top`), manage its workloads, services, ingresses, jobs, config maps and secrets, read its
/// quota, limits and events. Nothing cluster-wide, no RBAC, no network policies.
pub fn tool_rules() -> Value {
    let all = json!([
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection"
    ]);
    let read = json!(["get", "list", "watch"]);
    json!([
        {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "secrets",
            "persistentvolumeclaims"], "verbs": all},
        {"apiGroups": [""], "resources": ["pods/log", "events", "endpoints", "resourcequotas",
            "limitranges"], "verbs": read},
        {"apiGroups": [""], "resources": ["pods/exec", "pods/attach", "pods/portforward"],
            "verbs": ["get", "create"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": all},
        {"apiGroups": ["apps"], "resources": ["deployments/scale", "statefulsets/scale"],
            "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": read},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": all},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": all},
        {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": read},
    ])
}

/// The ClusterRoleBindings of admin `a`, one per configured ClusterRole.
pub fn admin_objects(cfg: &Accounts, a: &Person) -> Vec<Value> {
    cfg.admin_cluster_roles
        .iter()
        .map(|role| {
            with_hash(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("forgectl-admin-{}-{role}", a.name),
                    "labels": {MANAGED_BY: MANAGER, ADMIN_LABEL: a.name}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                    "name": a.name}]}))
        })
        .collect()
}

/// Whether every field of `want` is in `have` with the same value (objects compared key by
/// key, lists element by element): what the server added (defaults, status, metadata) is
/// ignored.
pub fn contained(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| contained(v, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| contained(a, b))
        }
        _ => want == have,
    }
}

/// The key of an object: `Kind namespace/name`.
pub fn key_of(obj: &Value) -> String {
    key(
        obj["kind"].as_str().unwrap_or_default(),
        obj["metadata"]["namespace"].as_str(),
        obj["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

/// `Kind namespace/name`, or `Kind name` for a cluster-wide object.
pub fn key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}
