//! The platform's ValidatingAdmissionPolicy `forgectl-tool-identity` as the platform phase
//! renders it, installed on the REAL API server of tests/support/kube.rs, and asked through
//! server-side dry runs whether a pod is admitted in a namespace (the server's own CEL).

use serde_json::{Value, json};

use super::kube::ControlPlane;

/// The object `kind`/`name` that `up` would apply for `inventory` (under inventories/).
pub fn rendered(inventory: &str, kind: &str, name: &str) -> Value {
    use forgectl::engine::{self, Selection};
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let inv = forgectl::inventory::load(Some(
        &root
            .join("inventories")
            .join(inventory)
            .join("cluster.yaml"),
    ))
    .unwrap();
    let templates = forgectl::render::Templates::load(None).unwrap();
    let pb = forgectl::playbook::load("cluster").unwrap();
    let plan = engine::plan(
        &inv,
        &pb,
        &templates,
        &forgectl::phases::Presence::default(),
        &Selection::default(),
    )
    .unwrap();
    plan.phases
        .iter()
        .flat_map(|p| &p.actions)
        .filter_map(|a| match &a.op {
            forgectl::plan::Op::ApplyManifests {
                template, content, ..
            } => Some(forgectl::kube::documents(template, content).unwrap()),
            _ => None,
        })
        .flatten()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered for {inventory}"))
}

/// The policy and its binding as rendered for the toolforge-like inventory.
pub fn policy_and_binding() -> (Value, Value) {
    (
        rendered(
            "toolforge-like",
            "ValidatingAdmissionPolicy",
            "forgectl-tool-identity",
        ),
        rendered(
            "toolforge-like",
            "ValidatingAdmissionPolicyBinding",
            "forgectl-tool-identity",
        ),
    )
}

/// Applies the policy and its binding, and waits until the server enforces them (a policy is
/// compiled and its binding picked up asynchronously): a pod as root in `probe_ns` (a tool
/// namespace) must be refused.
pub fn install(api: &ControlPlane, probe_ns: &str) {
    let (policy, binding) = policy_and_binding();
    api.apply(&format!("{policy}\n---\n{binding}"));
    let root = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fgtest-probe", "namespace": probe_ns},
        "spec": {"securityContext": {"runAsUser": 0},
            "containers": [{"name": "c", "image": "registry.toolforge.test/x:1"}]}});
    let t = std::time::Instant::now();
    while admit(api, &root).is_ok() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "the API server does not enforce forgectl-tool-identity"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Whether the server admits `pod` (a server-side dry run of its creation, as the admin); the
/// error is the policy's denial message (what follows `denied request: `), or the whole
/// refusal for anything else.
pub fn admit(api: &ControlPlane, pod: &Value) -> Result<(), String> {
    let (ok, _, err) = api.kubectl_with_input(
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        &pod.to_string(),
    );
    if ok {
        return Ok(());
    }
    let err = err
        .trim()
        .trim_start_matches("Error from server (Forbidden): ");
    Err(match err.split_once("denied request: ") {
        Some((_, why)) => why.to_string(),
        None => err.to_string(),
    })
}

/// forgectl's admission webhooks, served in-process on a free port of 127.0.0.1 with a
/// certificate from the cluster CA (as the platform phase runs them on each control plane's
/// loopback), and registered with the configuration the platform phase renders, pointed at that
/// port with the CA as its bundle. Images only from `registry`; tool domain `toolforge.test`.
/// Waits until the server calls them: a pod from elsewhere in `probe_ns` must be refused.
pub async fn webhooks(api: &ControlPlane, dir: &std::path::Path, registry: &str, probe_ns: &str) {
    use base64::Engine as _;
    use forgectl::admission::{Policy, ServeOptions, serve};
    let localhost = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let (crt, key) = super::kube::serving(&api.ca, &[], &[localhost]);
    std::fs::write(dir.join("webhook.crt"), crt).unwrap();
    std::fs::write(dir.join("webhook.key"), key).unwrap();
    let policy = Policy {
        allowed_registries: vec![registry.to_string()],
        tool_domain: "toolforge.test".into(),
        namespace_prefix: "tool-".into(),
    };
    let opts = ServeOptions {
        listen: std::net::SocketAddr::new(localhost, 0),
        cert: dir.join("webhook.crt"),
        key: dir.join("webhook.key"),
        reload_every: std::time::Duration::from_secs(30),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(policy, opts, Some(tx)));
    let port = rx.await.unwrap().port();
    let mut config = rendered(
        "toolforge-like",
        "ValidatingWebhookConfiguration",
        "forgectl-tools",
    );
    let bundle = base64::engine::general_purpose::STANDARD.encode(&api.ca.0);
    for hook in config["webhooks"].as_array_mut().unwrap() {
        let url = hook["clientConfig"]["url"].as_str().unwrap().to_string();
        let path = url.split_once("/validate/").unwrap().1.to_string();
        hook["clientConfig"] = json!({"url": format!("https://127.0.0.1:{port}/validate/{path}"),
            "caBundle": bundle});
    }
    api.apply(&config.to_string());
    // As the tool, so that only the image is wrong.
    let ns = api.get("namespaces", None, probe_ns).unwrap();
    let id = |k: &str| -> i64 {
        ns["metadata"]["annotations"][k]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let foreign = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fgtest-probe", "namespace": probe_ns},
        "spec": {"securityContext": {"runAsUser": id("forgectl.io/uid"),
                "runAsGroup": id("forgectl.io/gid")},
            "containers": [{"name": "c", "image": "elsewhere.example/x:1"}]}});
    let t = std::time::Instant::now();
    loop {
        let got = admit(api, &foreign);
        if got.as_ref().is_err_and(|e| e.contains("elsewhere.example")) {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "the API server does not call the webhooks: {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
