//! The admission rules, as pure functions of the object: which images a tool may run and which
//! hosts its Ingresses may claim.

use serde_json::Value;

/// What the webhooks enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Registries (optionally with a path: `registry.example.org/toolforge`) images may come
    /// from.
    pub allowed_registries: Vec<String>,
    /// The tool domain: a tool may claim `NAME.<tool_domain>` only.
    pub tool_domain: String,
    /// Tool namespaces are `PREFIX` + the tool's name.
    pub namespace_prefix: String,
}

/// The registry and repository of an image reference, the way container runtimes read it: the
/// first path component is a registry when it has a `.` or a `:` or is `localhost`, else the
/// image is on Docker Hub (`docker.io`, official images under `library/`).
pub fn normalize(image: &str) -> String {
    let (first, rest) = match image.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (image, None),
    };
    let is_registry = |s: &str| s.contains('.') || s.contains(':') || s == "localhost";
    match rest {
        Some(r) if is_registry(first) => format!("{}/{r}", first.to_ascii_lowercase()),
        Some(_) => format!("docker.io/{image}"),
        None => format!("docker.io/library/{image}"),
    }
}

/// The normalized repository of an image reference, without its tag or digest
/// (`python:3.11` → `docker.io/library/python`).
pub fn repository(image: &str) -> String {
    let n = normalize(image);
    let repo = n.split('@').next().unwrap_or(&n);
    match repo.rsplit_once(':') {
        // A colon after the last slash is a tag; one before it is a registry's port.
        Some((r, tag)) if !tag.contains('/') => r.to_string(),
        _ => repo.to_string(),
    }
}

/// Whether `image` comes from one of `allowed`: a registry, a registry and path prefix, or a
/// whole repository (any tag or digest of it), matched on whole path components.
pub fn image_allowed(allowed: &[String], image: &str) -> bool {
    let repo = repository(image);
    allowed.iter().any(|a| {
        let a = a.trim_end_matches('/').to_ascii_lowercase();
        repo == a
            || repo
                .strip_prefix(&a)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The pod spec inside an object of `kind` (a Pod or a workload with a pod template).
pub fn pod_spec<'a>(kind: &str, obj: &'a Value) -> Option<&'a Value> {
    let spec = match kind {
        "Pod" => &obj["spec"],
        "CronJob" => &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => &obj["spec"]["template"]["spec"],
        _ => return None,
    };
    spec.is_object().then_some(spec)
}

/// Every image of a pod spec that is not from an allowed registry, as `LIST NAME: IMAGE`.
pub fn disallowed_images(policy: &Policy, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            let image = c["image"].as_str().unwrap_or_default();
            if !image_allowed(&policy.allowed_registries, image) {
                let name = c["name"].as_str().unwrap_or("?");
                out.push(format!(
                    "{list} {name}: {}",
                    if image.is_empty() {
                        "(no image)"
                    } else {
                        image
                    }
                ));
            }
        }
    }
    out
}

/// The registry rule for an object of `kind`: Ok, or the message to deny it with.
pub fn check_images(policy: &Policy, kind: &str, obj: &Value) -> Result<(), String> {
    let Some(spec) = pod_spec(kind, obj) else {
        return Ok(());
    };
    let bad = disallowed_images(policy, spec);
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "images must come from {}: {}",
        policy.allowed_registries.join(", "),
        bad.join("; ")
    ))
}

/// Volume types a tool's pod may not declare inline: they reach past the tool's own storage
/// (any path of the node, any NFS export). The tool's home comes as the PersistentVolumeClaim
/// the provisioner binds to its own directory.
pub const INLINE_VOLUMES_DENIED: &[&str] = &["hostPath", "nfs"];

/// The volume rule for an object of `kind`: no inline `hostPath` or `nfs` volume (PSA baseline
/// forbids hostPath; nfs it allows).
pub fn check_volumes(kind: &str, obj: &Value) -> Result<(), String> {
    let Some(spec) = pod_spec(kind, obj) else {
        return Ok(());
    };
    let bad: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let t = INLINE_VOLUMES_DENIED.iter().find(|t| !v[**t].is_null())?;
            Some(format!("{} ({t})", v["name"].as_str().unwrap_or("?")))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "tool pods may not mount hostPath or nfs volumes directly: {}; the tool's home is the PersistentVolumeClaim tool-home",
        bad.join(", ")
    ))
}

/// The ingress rule: an Ingress in `namespace` may only name the host `TOOL.<tool_domain>` of
/// the tool that namespace belongs to, in every rule and TLS entry, and no default backend.
pub fn check_ingress(policy: &Policy, namespace: &str, obj: &Value) -> Result<(), String> {
    let Some(tool) = namespace
        .strip_prefix(&policy.namespace_prefix)
        .filter(|t| !t.is_empty())
    else {
        return Err(format!(
            "Ingresses are only for tool namespaces ({}NAME); {namespace} is not one",
            policy.namespace_prefix
        ));
    };
    let own = format!("{tool}.{}", policy.tool_domain).to_ascii_lowercase();
    let spec = &obj["spec"];
    if !spec["defaultBackend"].is_null() {
        return Err(
            "a tool's Ingress may not set a default backend (it would take every unclaimed host)"
                .into(),
        );
    }
    let mut hosts: Vec<Option<&str>> = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["host"].as_str())
        .collect();
    for t in spec["tls"].as_array().into_iter().flatten() {
        hosts.extend(
            t["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::as_str),
        );
    }
    let bad: Vec<String> = hosts
        .into_iter()
        .filter(|h| h.map(str::to_ascii_lowercase).as_deref() != Some(own.as_str()))
        .map(|h| h.map_or_else(|| "(any host)".to_string(), str::to_string))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "tool {tool} may only use the host {own}, not {}",
            bad.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy {
            allowed_registries: vec!["registry.toolforge.test".into(), "quay.io/toolforge".into()],
            tool_domain: "toolforge.test".into(),
            namespace_prefix: "tool-".into(),
        }
    }

    #[test]
    fn the_repository_drops_tag_and_digest_but_keeps_a_port() {
        assert_eq!(repository("python:3.11"), "docker.io/library/python");
        assert_eq!(
            repository("localhost:5000/tools/web:1@sha256:abc"),
            "localhost:5000/tools/web"
        );
        assert_eq!(
            repository("registry.example:5000/web"),
            "registry.example:5000/web"
        );
    }

    #[test]
    fn image_references_are_read_like_the_runtime_reads_them() {
        assert_eq!(normalize("nginx"), "docker.io/library/nginx");
        assert_eq!(normalize("bitnami/nginx:1"), "docker.io/bitnami/nginx:1");
        assert_eq!(normalize("localhost/x"), "localhost/x");
        assert_eq!(
            normalize("Registry.Toolforge.Test:5000/a"),
            "registry.toolforge.test:5000/a"
        );
        let a = policy().allowed_registries;
        assert!(image_allowed(&a, "registry.toolforge.test/python:3.12"));
        assert!(image_allowed(&a, "quay.io/toolforge/php@sha256:abcd"));
        assert!(
            !image_allowed(&a, "quay.io/toolforgeevil/php"),
            "whole path components"
        );
        assert!(!image_allowed(&a, "registry.toolforge.test.evil.com/x"));
        assert!(
            !image_allowed(&a, "registry.toolforge.test:5000/x"),
            "another port is another registry"
        );
        assert!(!image_allowed(&a, "nginx"));
        assert!(
            !image_allowed(&a, "registry.toolforge.test"),
            "a bare name is a Docker Hub image"
        );
        // A whole repository: any tag or digest of it, nothing beside it.
        let repo = vec!["docker.io/library/python".to_string()];
        for ok in [
            "python",
            "python:3.11-slim",
            "docker.io/library/python@sha256:ab",
        ] {
            assert!(image_allowed(&repo, ok), "{ok}");
        }
        for bad in ["python2:1", "debian", "docker.io/library/pythonista:1"] {
            assert!(!image_allowed(&repo, bad), "{bad}");
        }
    }

    #[test]
    fn every_container_list_is_checked() {
        let ok = "registry.toolforge.test/python:3.12";
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            let mut spec = json!({"containers": [{"name": "main", "image": ok}]});
            let entry = json!({"name": "x", "image": "docker.io/evil/miner"});
            match spec[list].as_array_mut() {
                Some(a) => a.push(entry),
                None => spec[list] = json!([entry]),
            }
            let pod = json!({"spec": spec});
            let e = check_images(&policy(), "Pod", &pod).unwrap_err();
            assert!(
                e.contains(&format!("{list} x: docker.io/evil/miner")),
                "{e}"
            );
        }
        let pod = json!({"spec": {"containers": [{"name": "main", "image": ok}]}});
        assert!(check_images(&policy(), "Pod", &pod).is_ok());
    }

    #[test]
    fn workload_templates_are_checked_too() {
        let bad = json!({"containers": [{"name": "c", "image": "evil.example/x"}]});
        let deploy = json!({"spec": {"template": {"spec": bad}}});
        assert!(check_images(&policy(), "Deployment", &deploy).is_err());
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": bad}}}}});
        assert!(check_images(&policy(), "CronJob", &cron).is_err());
        assert!(check_images(&policy(), "ConfigMap", &json!({"data": {}})).is_ok());
    }

    #[test]
    fn inline_node_and_nfs_volumes_are_refused_claims_are_not() {
        let pod = |vol: Value| json!({"spec": {"containers": [], "volumes": [vol]}});
        let e = check_volumes("Pod", &pod(json!({"name": "h", "hostPath": {"path": "/"}})))
            .unwrap_err();
        assert!(e.contains("h (hostPath)"), "{e}");
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"volumes": [
            {"name": "other", "nfs": {"server": "nfs-1", "path": "/srv/tools/home/other"}}]}}}}}});
        let e = check_volumes("CronJob", &cron).unwrap_err();
        assert!(e.contains("other (nfs)"), "{e}");
        for ok in [
            json!({"name": "home", "persistentVolumeClaim": {"claimName": "tool-home"}}),
            json!({"name": "tmp", "emptyDir": {}}),
            json!({"name": "cfg", "configMap": {"name": "x"}}),
        ] {
            assert!(check_volumes("Pod", &pod(ok.clone())).is_ok(), "{ok}");
        }
        assert!(check_volumes("Service", &json!({"spec": {}})).is_ok());
    }

    fn ingress(host: &str) -> Value {
        json!({"spec": {"rules": [{"host": host, "http": {"paths": []}}]}})
    }

    #[test]
    fn a_tool_claims_its_own_host_only() {
        let p = policy();
        assert!(check_ingress(&p, "tool-mytool", &ingress("mytool.toolforge.test")).is_ok());
        assert!(check_ingress(&p, "tool-mytool", &ingress("MyTool.toolforge.test")).is_ok());
        for evil in [
            "evil.mytool.toolforge.test",
            "mytool.toolforge.test.evil.com",
            "other.toolforge.test",
            "toolforge.test",
            "mytool.toolforge.testx",
            "*.toolforge.test",
        ] {
            let e = check_ingress(&p, "tool-mytool", &ingress(evil)).unwrap_err();
            assert!(
                e.contains("may only use the host mytool.toolforge.test"),
                "{evil}: {e}"
            );
        }
        // No host at all is every host.
        let any = json!({"spec": {"rules": [{"http": {"paths": []}}]}});
        assert!(
            check_ingress(&p, "tool-mytool", &any)
                .unwrap_err()
                .contains("(any host)")
        );
        // TLS hosts count too, and no default backend.
        let tls = json!({"spec": {"rules": [{"host": "mytool.toolforge.test"}], "tls": [{"hosts": ["other.toolforge.test"]}]}});
        assert!(check_ingress(&p, "tool-mytool", &tls).is_err());
        let backend = json!({"spec": {"defaultBackend": {"service": {"name": "s"}}}});
        assert!(check_ingress(&p, "tool-mytool", &backend).is_err());
    }

    #[test]
    fn only_in_tool_namespaces() {
        let p = policy();
        // The namespace decides whose host it is: another tool's namespace cannot claim mytool.
        assert!(check_ingress(&p, "tool-other", &ingress("mytool.toolforge.test")).is_err());
        assert!(check_ingress(&p, "default", &ingress("mytool.toolforge.test")).is_err());
        assert!(check_ingress(&p, "tool-", &ingress(".toolforge.test")).is_err());
    }
}
