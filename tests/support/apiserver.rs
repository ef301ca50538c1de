//! TEST DOUBLE of a Kubernetes API server (no real kube-apiserver can run here). In-process, over
//! HTTPS with a serving certificate from the cluster CA and client certificates checked against it,
//! it keeps a generic object store and follows the real API where forgectl depends on it:
//! discovery (`/api`, `/apis`, resource lists, CRDs served once created), namespaced objects need
//! their namespace, server-side apply (`application/apply-patch+yaml`, `fieldManager` required,
//! field ownership per manager, conflicts unless `force`, a no-op apply changes nothing, not even
//! the resourceVersion), get / list / create / replace / merge-patch / delete, Status errors with
//! the real reasons and codes, anonymous `/readyz` `/livez` `/healthz` `/version`. Authorisation:
//! the groups `system:masters` and `kubeadm:cluster-admins` may do everything; anyone else is
//! Forbidden (RBAC comes with the tenant platform).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A resource the double serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural name.
    pub plural: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-wide.
    pub namespaced: bool,
}

const BUILTIN: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "namespaces", "Namespace", false),
    ("", "v1", "nodes", "Node", false),
    ("", "v1", "configmaps", "ConfigMap", true),
    ("", "v1", "secrets", "Secret", true),
    ("", "v1", "serviceaccounts", "ServiceAccount", true),
    ("", "v1", "services", "Service", true),
    ("", "v1", "pods", "Pod", true),
    ("", "v1", "resourcequotas", "ResourceQuota", true),
    ("", "v1", "limitranges", "LimitRange", true),
    ("apps", "v1", "daemonsets", "DaemonSet", true),
    ("apps", "v1", "deployments", "Deployment", true),
    ("batch", "v1", "jobs", "Job", true),
    ("batch", "v1", "cronjobs", "CronJob", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
    ),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", true),
    (
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
    ),
    (
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
    ),
    ("storage.k8s.io", "v1", "csidrivers", "CSIDriver", false),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
    ),
    ("coordination.k8s.io", "v1", "leases", "Lease", true),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
    ),
    (
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        false,
    ),
];

/// Key of a stored object: group, plural, namespace ("" when cluster-wide), name.
type Key = (String, String, String, String);
/// A reply to send.
type Reply = Response<Full<Bytes>>;

#[derive(Default)]
struct Store {
    resources: Vec<Resource>,
    objects: BTreeMap<Key, Value>,
    /// Per object: manager → owned leaf paths.
    owners: BTreeMap<Key, BTreeMap<String, BTreeSet<String>>>,
    revision: u64,
    writes: usize,
    requests: Vec<(String, String, String)>,
}

/// A running API server double; stops when dropped.
pub struct ApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ApiServer {
    /// Starts serving on `bind` (port 0 picks one) with a serving certificate for `sans` signed by
    /// the CA `ca_cert` / `ca_key` (PEM), which must also have signed every client certificate.
    pub fn start(bind: SocketAddr, ca_cert: &str, ca_key: &str, sans: &[String]) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca_key = rcgen::KeyPair::from_pem(ca_key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert, ca_key).unwrap();
        let mut params = rcgen::CertificateParams::new(sans.to_vec()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver (test double)");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_cert.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .unwrap();
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
                    .unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let store = Arc::new(Mutex::new(Store {
            resources: BUILTIN
                .iter()
                .map(|(g, v, p, k, n)| Resource {
                    group: g.to_string(),
                    version: v.to_string(),
                    plural: p.to_string(),
                    kind: k.to_string(),
                    namespaced: *n,
                })
                .collect(),
            ..Default::default()
        }));
        // The namespaces a real API server makes for itself at start.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let mut st = store.lock().unwrap();
            st.revision += 1;
            let rv = st.revision.to_string();
            st.objects.insert(
                ("".into(), "namespaces".into(), "".into(), ns.into()),
                json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "resourceVersion": rv, "uid": format!("uid-ns-{ns}"),
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "status": {"phase": "Active"}}),
            );
        }
        let std_listener = std::net::TcpListener::bind(bind).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let s = store.clone();
        // Its own thread and runtime, so that it serves whatever the test's runtime does (or
        // while the test waits for a forgectl process).
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = &mut stopped => return,
                    };
                    let Ok((tcp, _)) = accepted else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let store = s.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let who = identity(tls.get_ref().1.peer_certificates());
                        let svc = hyper::service::service_fn(move |req| {
                            let store = store.clone();
                            let who = who.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(handle(&store, who, req).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .await;
                    });
                }
            });
        });
        Self {
            addr,
            store,
            _stop: stop,
        }
    }

    /// Every stored object of `group` / `plural`.
    pub fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        let st = self.store.lock().unwrap();
        st.objects
            .iter()
            .filter(|((g, p, _, _), _)| g == group && p == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Requests that changed the store.
    pub fn writes(&self) -> usize {
        self.store.lock().unwrap().writes
    }

    /// Every request: (user, method, path?query).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.store.lock().unwrap().requests.clone()
    }

    /// Stores `obj` as `group` / `plural` `ns`/its name, as a controller or kubelet would make it
    /// (a Node registering, a Pod scheduled): not a client write, no field manager. A stored
    /// object of that name is replaced.
    pub fn put(&self, group: &str, plural: &str, ns: &str, mut obj: Value) {
        let mut st = self.store.lock().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        st.revision += 1;
        let rv = st.revision.to_string();
        obj["metadata"]["resourceVersion"] = json!(rv);
        obj["metadata"]["uid"] = json!(format!("uid-{plural}-{name}"));
        obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        if !ns.is_empty() {
            obj["metadata"]["namespace"] = json!(ns);
        }
        st.objects
            .insert((group.into(), plural.into(), ns.into(), name), obj);
    }

    /// One round of what the controllers and kubelets the double lacks would do: every
    /// DaemonSet and Deployment whose status has not seen its latest spec reports it rolled out
    /// (one ready pod per DaemonSet, two replicas per Deployment), and a pod of it runs and is
    /// ready in its namespace.
    pub fn roll_out_workloads(&self) {
        let ready = json!([{"type": "Ready", "status": "True"}]);
        for (plural, status) in [
            (
                "daemonsets",
                json!({"desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                    "updatedNumberScheduled": 1, "numberReady": 1, "numberAvailable": 1,
                    "numberMisscheduled": 0}),
            ),
            (
                "deployments",
                json!({"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                    "availableReplicas": 2}),
            ),
        ] {
            for o in self.objects("apps", plural) {
                let g = o["metadata"]["generation"].clone();
                if o["status"]["observedGeneration"] == g {
                    continue;
                }
                let mut status = status.clone();
                status["observedGeneration"] = g;
                let name = o["metadata"]["name"].as_str().unwrap();
                let ns = o["metadata"]["namespace"].as_str().unwrap();
                self.set_status("apps", plural, ns, name, status);
                self.put(
                    "",
                    "pods",
                    ns,
                    json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("{name}-fgtest")},
                        "status": {"phase": "Running", "conditions": ready}}),
                );
            }
        }
    }

    /// Sets `status` of a stored object (what a controller or kubelet would report).
    pub fn set_status(&self, group: &str, plural: &str, ns: &str, name: &str, status: Value) {
        let mut st = self.store.lock().unwrap();
        let key = (group.into(), plural.into(), ns.into(), name.into());
        st.revision += 1;
        let rv = st.revision.to_string();
        if let Some(o) = st.objects.get_mut(&key) {
            o["status"] = status;
            o["metadata"]["resourceVersion"] = json!(rv);
        }
    }
}

/// Who a client certificate says the caller is: (user, groups); None when anonymous.
#[derive(Clone, Debug)]
struct Who(Option<(String, Vec<String>)>);

fn identity(certs: Option<&[rustls_pki_types::CertificateDer<'_>]>) -> Who {
    let Some(c) = certs.and_then(|c| c.first()) else {
        return Who(None);
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(c.as_ref()) else {
        return Who(None);
    };
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    Who(Some((user, groups)))
}

fn reply(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Response<Full<Bytes>> {
    reply(
        StatusCode::from_u16(code).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "details": details, "code": code}),
    )
}

/// Where a request points.
struct Target {
    res: Resource,
    ns: String,
    name: Option<String>,
    subresource: Option<String>,
}

async fn handle(store: &Mutex<Store>, who: Who, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let user = who
        .0
        .as_ref()
        .map(|(u, _)| u.clone())
        .unwrap_or("system:anonymous".into());
    store.lock().unwrap().requests.push((
        user.clone(),
        method.clone(),
        format!(
            "{path}?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        ),
    ));
    if matches!(path.as_str(), "/readyz" | "/livez" | "/healthz") {
        return Response::new(Full::new(Bytes::from_static(b"ok")));
    }
    if path == "/version" {
        return reply(
            StatusCode::OK,
            json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0 (test double)"}),
        );
    }
    let Some((_, groups)) = who.0 else {
        return status(401, "Unauthorized", "Unauthorized".into(), json!({}));
    };
    let admin = groups
        .iter()
        .any(|g| g == "system:masters" || g == "kubeadm:cluster-admins");
    let mut st = store.lock().unwrap();
    if let Some(d) = discovery(&st, &path) {
        return reply(StatusCode::OK, d);
    }
    let Some(t) = target(&st, &path) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    };
    let verb = match (method.as_str(), &t.name) {
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported"),
                json!({}),
            );
        }
    };
    if !admin {
        let scope = if t.res.namespaced {
            format!(" in the namespace \"{}\"", t.ns)
        } else {
            String::new()
        };
        return status(
            403,
            "Forbidden",
            format!(
                "{} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
                t.res.plural, t.res.plural, t.res.group
            ),
            json!({"kind": t.res.plural}),
        );
    }
    if t.res.namespaced
        && !st.objects.contains_key(&(
            String::new(),
            "namespaces".into(),
            String::new(),
            t.ns.clone(),
        ))
        && verb != "list"
    {
        return status(
            404,
            "NotFound",
            format!("namespaces \"{}\" not found", t.ns),
            json!({"name": t.ns, "kind": "namespaces"}),
        );
    }
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body)
            .ok()
            .or_else(|| serde_saphyr::from_slice::<Value>(&body).ok())
    };
    match verb {
        "list" => {
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((g, p, ns, _), _)| {
                    *g == t.res.group && *p == t.res.plural && (t.ns.is_empty() || *ns == t.ns)
                })
                .map(|(_, v)| v.clone())
                .collect();
            let rv = st.revision.to_string();
            reply(
                StatusCode::OK,
                json!({"kind": format!("{}List", t.res.kind), "apiVersion": api_version(&t.res),
                "metadata": {"resourceVersion": rv}, "items": items}),
            )
        }
        "get" => match st.objects.get(&key(&t)) {
            Some(o) => reply(StatusCode::OK, o.clone()),
            None => not_found(&t),
        },
        "delete" => {
            let k = key(&t);
            match st.objects.remove(&k) {
                Some(o) => {
                    st.owners.remove(&k);
                    if t.res.plural == "namespaces" {
                        let ns = t.name.clone().unwrap_or_default();
                        st.objects.retain(|(_, _, n, _), _| *n != ns);
                        st.owners.retain(|(_, _, n, _), _| *n != ns);
                    }
                    st.writes += 1;
                    reply(StatusCode::OK, o)
                }
                None => not_found(&t),
            }
        }
        "patch" if ctype.starts_with("application/apply-patch") => {
            let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                return status(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(), json!({}));
            };
            let Some(obj) = parsed else {
                return status(
                    400,
                    "BadRequest",
                    "the apply patch is not a valid object".into(),
                    json!({}),
                );
            };
            let force = query.get("force").is_some_and(|f| f == "true");
            apply(&mut st, &t, manager, obj, force)
        }
        "patch" => {
            let k = key(&t);
            let (Some(patch), Some(mut o)) = (parsed, st.objects.get(&k).cloned()) else {
                return not_found(&t);
            };
            merge_patch(&mut o, &patch);
            if Some(&o) != st.objects.get(&k) {
                bump(&mut st, &mut o);
                st.objects.insert(k, o.clone());
            }
            reply(StatusCode::OK, o)
        }
        "create" | "update" => {
            let Some(mut obj) = parsed else {
                return status(
                    400,
                    "BadRequest",
                    "no object in the request".into(),
                    json!({}),
                );
            };
            if let Err(r) = check_object(&t, &obj) {
                return *r;
            }
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let t = Target {
                name: Some(name),
                ..t
            };
            let k = key(&t);
            let exists = st.objects.contains_key(&k);
            if verb == "create" && exists {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{} \"{}\" already exists", t.res.plural, k.3),
                    json!({"name": k.3, "kind": t.res.plural}),
                );
            }
            if verb == "update" && !exists {
                return not_found(&t);
            }
            let old = st_get(&k, &st);
            complete_metadata(&mut st, &t, &mut obj, old);
            st.objects.insert(k, obj.clone());
            reply(
                if exists {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                obj,
            )
        }
        _ => status(405, "MethodNotAllowed", "unsupported".into(), json!({})),
    }
}

fn st_get(k: &Key, st: &Store) -> Option<Value> {
    st.objects.get(k).cloned()
}

fn api_version(r: &Resource) -> String {
    if r.group.is_empty() {
        r.version.clone()
    } else {
        format!("{}/{}", r.group, r.version)
    }
}

fn key(t: &Target) -> Key {
    let ns = if t.res.namespaced {
        t.ns.clone()
    } else {
        String::new()
    };
    (
        t.res.group.clone(),
        t.res.plural.clone(),
        ns,
        t.name.clone().unwrap_or_default(),
    )
}

fn not_found(t: &Target) -> Response<Full<Bytes>> {
    let name = t.name.clone().unwrap_or_default();
    let gr = if t.res.group.is_empty() {
        t.res.plural.clone()
    } else {
        format!("{}.{}", t.res.plural, t.res.group)
    };
    status(
        404,
        "NotFound",
        format!("{gr} \"{name}\" not found"),
        json!({"name": name, "group": t.res.group, "kind": t.res.plural}),
    )
}

fn discovery(st: &Store, path: &str) -> Option<Value> {
    let list = |group: &str, version: &str| {
        let rs: Vec<Value> = st.resources.iter().filter(|r| r.group == group && r.version == version)
            .map(|r| json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update"]}))
            .collect();
        (!rs.is_empty()).then(|| json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }, "resources": rs}))
    };
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["api"] => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        ["api", "v1"] => list("", "v1"),
        ["apis"] => {
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for r in st.resources.iter().filter(|r| !r.group.is_empty()) {
                let vs = groups.entry(&r.group).or_default();
                if !vs.contains(&r.version.as_str()) {
                    vs.push(&r.version);
                }
            }
            let gs: Vec<Value> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}))
        }
        ["apis", g, v] => list(g, v),
        _ => None,
    }
}

fn target(st: &Store, path: &str) -> Option<Target> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match seg.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let find = |plural: &str| {
        st.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    };
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(res) = find(rest[2]).filter(|r| r.namespaced)
    {
        return Some(Target {
            res,
            ns: rest[1].into(),
            name: rest.get(3).map(|s| s.to_string()),
            subresource: rest.get(4).map(|s| s.to_string()),
        });
    }
    let res = find(rest.first()?)?;
    Some(Target {
        ns: String::new(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        res,
    })
}

fn check_object(t: &Target, obj: &Value) -> Result<(), Box<Reply>> {
    let bad = |m: String| Err(Box::new(status(400, "BadRequest", m, json!({}))));
    if obj["apiVersion"].as_str() != Some(&api_version(&t.res))
        || obj["kind"].as_str() != Some(&t.res.kind)
    {
        return bad(format!(
            "the object is {} {}, the URL is for {} {}",
            obj["apiVersion"],
            obj["kind"],
            api_version(&t.res),
            t.res.kind
        ));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(Box::new(status(
            422,
            "Invalid",
            format!(
                "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                t.res.kind
            ),
            json!({}),
        )));
    }
    if let Some(n) = &t.name
        && n != name
    {
        return bad(format!(
            "the name of the object ({name}) does not match the name on the URL ({n})"
        ));
    }
    if let Some(ns) = obj["metadata"]["namespace"].as_str()
        && t.res.namespaced
        && ns != t.ns
    {
        return bad(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_string(),
        );
    }
    let _ = &t.subresource;
    Ok(())
}

fn bump(st: &mut Store, obj: &mut Value) {
    st.revision += 1;
    st.writes += 1;
    obj["metadata"]["resourceVersion"] = json!(st.revision.to_string());
}

fn complete_metadata(st: &mut Store, t: &Target, obj: &mut Value, old: Option<Value>) {
    if t.res.namespaced {
        obj["metadata"]["namespace"] = json!(t.ns);
    }
    let (uid, created, generation) = match &old {
        Some(o) => (
            o["metadata"]["uid"].clone(),
            o["metadata"]["creationTimestamp"].clone(),
            o["metadata"]["generation"].as_u64().unwrap_or(1)
                + u64::from(o.get("spec") != obj.get("spec")),
        ),
        None => (
            json!(format!("00000000-0000-4000-8000-{:012}", st.revision + 1)),
            json!("2026-12-01T00:00:00Z"),
            1,
        ),
    };
    obj["metadata"]["uid"] = uid;
    obj["metadata"]["creationTimestamp"] = created;
    obj["metadata"]["generation"] = json!(generation);
    if let Some(o) = &old
        && o.get("status").is_some()
    {
        obj["status"] = o["status"].clone();
    }
    if t.res.kind == "CustomResourceDefinition" {
        serve_crd(st, obj);
    }
    bump(st, obj);
}

/// A CRD's resources are served once it exists, and it reports Established.
fn serve_crd(st: &mut Store, crd: &mut Value) {
    let spec = &crd["spec"];
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        spec["names"]["plural"].as_str(),
        spec["names"]["kind"].as_str(),
    ) else {
        return;
    };
    let namespaced = spec["scope"].as_str() == Some("Namespaced");
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() != Some(true) {
            continue;
        }
        let r = Resource {
            group: group.into(),
            version: v["name"].as_str().unwrap_or_default().into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
        };
        if !st.resources.contains(&r) {
            st.resources.push(r);
        }
    }
    crd["status"] = json!({"conditions": [{"type": "Established", "status": "True"}, {"type": "NamesAccepted", "status": "True"}],
        "acceptedNames": spec["names"].clone()});
}

/// Leaf paths of an object: maps are walked, anything else (lists included, atomic here) is a leaf.
/// Identity and server-set metadata are left out.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                // Keys may hold dots (label names): paths are joined with SEP.
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}{SEP}{k}")
                };
                if matches!(
                    p.replace(SEP, ".").as_str(),
                    "apiVersion"
                        | "kind"
                        | "metadata.name"
                        | "metadata.namespace"
                        | "metadata.managedFields"
                        | "metadata.resourceVersion"
                        | "metadata.uid"
                        | "metadata.creationTimestamp"
                        | "metadata.generation"
                        | "status"
                ) {
                    continue;
                }
                leaves(x, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// Separates the keys of a field path (keys may contain dots).
const SEP: char = '\u{1f}';

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split(SEP).try_fold(v, |cur, k| cur.get(k))
}

fn set_path(v: &mut Value, path: &str, x: Value) {
    let parts: Vec<&str> = path.split(SEP).collect();
    let mut cur = v;
    for k in &parts[..parts.len() - 1] {
        if !cur.get(*k).is_some_and(Value::is_object) {
            cur[*k] = Value::Object(Map::new());
        }
        cur = &mut cur[*k];
    }
    cur[parts[parts.len() - 1]] = x;
}

fn remove_path(v: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split(SEP).collect();
    let mut cur = v;
    for k in &parts[..parts.len() - 1] {
        match cur.get_mut(*k) {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(parts[parts.len() - 1]);
    }
}

fn apply(
    st: &mut Store,
    t: &Target,
    manager: &str,
    obj: Value,
    force: bool,
) -> Response<Full<Bytes>> {
    if let Err(r) = check_object(t, &obj) {
        return *r;
    }
    let k = key(t);
    let mut applied = BTreeMap::new();
    leaves(&obj, "", &mut applied);
    let old = st.objects.get(&k).cloned();
    let mut owners = st.owners.get(&k).cloned().unwrap_or_default();
    let mut conflicts = Vec::new();
    if let Some(o) = &old {
        for (path, value) in &applied {
            for (m, fields) in &owners {
                if m != manager && fields.contains(path) && get_path(o, path) != Some(value) {
                    conflicts.push((m.clone(), path.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let list = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": .{}", p.replace(SEP, ".")))
            .collect::<Vec<_>>()
            .join("\n");
        return status(
            409,
            "Conflict",
            format!("Apply failed with {} conflict(s): {list}", conflicts.len()),
            json!({}),
        );
    }
    let mut next = old.clone().unwrap_or_else(|| json!({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": obj["metadata"]["name"]}}));
    // Fields this manager applied before and no longer applies are removed, unless others own them.
    let before: BTreeSet<String> = owners.get(manager).cloned().unwrap_or_default();
    for p in before.iter().filter(|p| !applied.contains_key(*p)) {
        if !owners.iter().any(|(m, f)| m != manager && f.contains(p)) {
            remove_path(&mut next, p);
        }
    }
    for (p, v) in &applied {
        set_path(&mut next, p, v.clone());
    }
    for (m, f) in owners.iter_mut() {
        if m != manager {
            f.retain(|p| !applied.contains_key(p));
        }
    }
    owners.insert(manager.to_string(), applied.keys().cloned().collect());
    owners.retain(|_, f| !f.is_empty());
    let changed = old.as_ref() != Some(&next) || st.owners.get(&k) != Some(&owners);
    if changed {
        let mut managed: Vec<Value> = owners.keys().map(|m| json!({"manager": m, "operation": "Apply", "apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1"})).collect();
        managed.sort_by_key(|v| v["manager"].to_string());
        next["metadata"]["managedFields"] = Value::Array(managed);
        complete_metadata(st, t, &mut next, old.clone());
        st.objects.insert(k.clone(), next.clone());
        st.owners.insert(k, owners);
    }
    reply(
        if old.is_none() {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        next,
    )
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// A kubeconfig for `server` with a client certificate for `user` in `group`, signed by the CA.
pub fn kubeconfig(server: &str, ca_cert: &str, ca_key: &str, user: &str, group: &str) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(ca_cert, rcgen::KeyPair::from_pem(ca_key).unwrap())
            .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, group);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: c\n\
         contexts:\n- context:\n    cluster: c\n    user: u\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user:\n\
         \x20   client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_cert),
        b64(&cert.pem()),
        b64(&key.serialize_pem())
    )
}
