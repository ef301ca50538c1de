//! TEST DOUBLE of a Kubernetes API server (no real kube-apiserver can run here). In-process, over
//! HTTPS with a serving certificate from the cluster CA and client certificates checked against
//! it (user = CN, groups = every O, plus `system:authenticated`; no certificate is
//! `system:anonymous` in `system:unauthenticated`), it keeps a generic object store and follows
//! the real API (v1.35) wherever it implements something:
//!
//! - Requests are parsed as the real RequestInfo does (namespace, resource, subresource, name,
//!   verb: `list`/`watch` for GETs of a collection, `deletecollection`, a list with
//!   `fieldSelector=metadata.name=X` is about `X`), authorised first, then routed; discovery
//!   (`/api`, `/apis`, group and resource lists with verbs and subresources; CRDs served once
//!   created, no longer once deleted); anonymous `/readyz` `/livez` `/healthz` `/version`.
//! - Authorisation (`rbac`): `system:masters` may do everything; everyone else goes through RBAC
//!   (Roles, ClusterRoles, their bindings, the bootstrap bindings of a kubeadm cluster) with the
//!   real 403 messages, privilege-escalation prevention on RBAC writes, and (Self)SubjectAccessReview
//!   and SelfSubjectReview answered.
//! - Objects: get / list / create / replace / patch (merge, strategic taken as merge, JSON patch,
//!   server-side apply with field ownership per manager and operation, conflicts unless `force`) /
//!   delete / deletecollection. Namespaced objects are created only in an existing namespace;
//!   names are validated; `generateName`; `resourceVersion` preconditions (409); a write that
//!   changes nothing changes nothing (not even the resourceVersion); `metadata.generation` starts
//!   at 1 and follows the spec for the kinds that have one; `status` changes only through the
//!   `status` subresource; finalizers hold a deletion (`deletionTimestamp`) until they are gone;
//!   `managedFields` with `fieldsV1`. Status errors with the real reasons, codes and messages.
//! - Lists (`select`): `labelSelector`, `fieldSelector`, and chunking with `limit` / `continue`
//!   over a consistent snapshot (every page at the first page's resourceVersion), etcd key order.
//! - Subresources: `status`, `scale` (autoscaling/v1 Scale) of deployments, statefulsets,
//!   replicasets and CRs that declare it, pod `log` (text stored with [`ApiServer::set_log`]),
//!   CSR `approval`.
//! - CertificateSigningRequests (`csr`): validation, requester identity set by the server,
//!   approval rules and admission (approve / sign permissions on `signers`, no `system:masters`
//!   through the client signer), and the kube-controller-manager's `kubernetes.io/kube-apiserver-client`
//!   signer running asynchronously with the CA the double was started with.
//! - Namespace deletion answers the namespace `Terminating` but removes it and its content at
//!   once (there is no namespace controller to wait for).
//!
//! - Watch streams (`watch`): events from the change history, with selectors, bookmarks,
//!   `timeoutSeconds`, and 410 Expired for a revision older than the last compaction.
//!
//! Deviations known and kept (the double has no etcd, controllers or admission webhooks): no
//! defaulting or schema validation of objects, labels
//! and selectors validated loosely, lists inside objects are atomic for apply and strategic merge
//! patch, ClusterRole aggregation is not done, the bootstrap RBAC policy is built in rather than
//! stored, and only the kube-apiserver-client signer signs.

mod apply;
mod csr;
mod errors;
mod objects;
mod policy;
mod rbac;
mod select;
mod watch;
mod x509;

pub use x509::kubeconfig_for;

use errors::{Fail, Reply, reply};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
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
    /// The verbs it answers.
    pub verbs: Vec<String>,
    /// Its subresources (`status`, `scale`, `log`, `approval`).
    pub subresources: Vec<String>,
    /// Whether `metadata.generation` follows its spec.
    pub generation: bool,
    /// Built in, not from a CRD.
    pub builtin: bool,
}

impl Resource {
    fn has(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }

    /// A review: create-only, answered, never stored.
    fn is_review(&self) -> bool {
        self.verbs == ["create"]
    }
}

/// Verbs of an ordinary resource.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Group, version, plural, kind, namespaced, traits: `status` `scale` `log` `approval`
/// (subresources), `gen` (generation), `ro` (get and list only), `review` (create only).
#[rustfmt::skip]
const BUILTIN: &[(&str, &str, &str, &str, bool, &str)] = &[
    ("", "v1", "namespaces", "Namespace", false, "status"),
    ("", "v1", "nodes", "Node", false, "status"),
    ("", "v1", "persistentvolumes", "PersistentVolume", false, "status"),
    ("", "v1", "configmaps", "ConfigMap", true, ""),
    ("", "v1", "secrets", "Secret", true, ""),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, ""),
    ("", "v1", "services", "Service", true, "status"),
    ("", "v1", "endpoints", "Endpoints", true, ""),
    ("", "v1", "events", "Event", true, ""),
    ("", "v1", "pods", "Pod", true, "status log gen"),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, "status"),
    ("", "v1", "resourcequotas", "ResourceQuota", true, "status"),
    ("", "v1", "limitranges", "LimitRange", true, ""),
    ("apps", "v1", "daemonsets", "DaemonSet", true, "status gen"),
    ("apps", "v1", "deployments", "Deployment", true, "status scale gen"),
    ("apps", "v1", "statefulsets", "StatefulSet", true, "status scale gen"),
    ("apps", "v1", "replicasets", "ReplicaSet", true, "status scale gen"),
    ("batch", "v1", "jobs", "Job", true, "status gen"),
    ("batch", "v1", "cronjobs", "CronJob", true, "status gen"),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, ""),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, ""),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true, ""),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, ""),
    ("networking.k8s.io", "v1", "ingressclasses", "IngressClass", false, ""),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", true, "status gen"),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, "gen"),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", false, ""),
    ("storage.k8s.io", "v1", "csidrivers", "CSIDriver", false, ""),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, "status gen"),
    ("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", false, ""),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, ""),
    ("events.k8s.io", "v1", "events", "Event", true, ""),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, "status gen"),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", false, "gen"),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", false, "gen"),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", false, "status gen"),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", false, "gen"),
    ("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", false, "status approval"),
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", false, "review"),
    ("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", false, "review"),
    ("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", true, "review"),
    ("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", false, "review"),
    ("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", true, "ro"),
    ("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", false, "ro"),
];

fn builtin_resources() -> Vec<Resource> {
    BUILTIN
        .iter()
        .map(|(g, v, p, k, n, traits)| {
            let traits: Vec<&str> = traits.split_whitespace().collect();
            let verbs: &[&str] = if traits.contains(&"ro") {
                &["get", "list"]
            } else if traits.contains(&"review") {
                &["create"]
            } else {
                VERBS
            };
            Resource {
                group: g.to_string(),
                version: v.to_string(),
                plural: p.to_string(),
                kind: k.to_string(),
                namespaced: *n,
                verbs: verbs.iter().map(|s| s.to_string()).collect(),
                subresources: traits
                    .iter()
                    .filter(|t| matches!(**t, "status" | "scale" | "log" | "approval"))
                    .map(|s| s.to_string())
                    .collect(),
                generation: traits.contains(&"gen"),
                builtin: true,
            }
        })
        .collect()
}

/// Key of a stored object: group, plural, namespace ("" when cluster-wide), name.
type Key = (String, String, String, String);
/// Field ownership of one object: (manager, operation) → owned leaf paths.
type Owners = BTreeMap<(String, String), BTreeSet<String>>;

#[derive(Default)]
struct Store {
    resources: Vec<Resource>,
    objects: BTreeMap<Key, Value>,
    owners: BTreeMap<Key, Owners>,
    revision: u64,
    writes: usize,
    requests: Vec<(String, String, String)>,
    /// Every change: (its revision, the key, the value before), for consistent list snapshots.
    history: Vec<(u64, Key, Option<Value>)>,
    /// Snapshots older than this are gone (as after an etcd compaction).
    compacted: u64,
    /// Pod logs: (namespace, pod) → text.
    logs: BTreeMap<(String, String), String>,
    /// Woken at every change, for the watch streams.
    changed: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Stores `obj` under `k` at a new revision (its resourceVersion); returns it.
    fn save(&mut self, k: Key, mut obj: Value) -> Value {
        self.revision += 1;
        obj["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        let before = self.objects.insert(k.clone(), obj.clone());
        self.history.push((self.revision, k, before));
        self.changed.notify_waiters();
        obj
    }

    /// Removes the object under `k` (and its field ownership) at a new revision.
    fn remove(&mut self, k: &Key) -> Option<Value> {
        let before = self.objects.remove(k)?;
        self.owners.remove(k);
        self.revision += 1;
        self.history
            .push((self.revision, k.clone(), Some(before.clone())));
        self.changed.notify_waiters();
        Some(before)
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .contains_key(&(String::new(), "namespaces".into(), String::new(), ns.into()))
    }

    /// The stored objects of `group` / `plural`, in key order.
    fn of<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> {
        self.objects
            .range(
                (
                    group.to_string(),
                    plural.to_string(),
                    String::new(),
                    String::new(),
                )..,
            )
            .take_while(move |((g, p, _, _), _)| g == group && p == plural)
    }

    /// The stored objects of `group` / `plural` in namespace `ns`, in key order.
    fn of_ns<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
        ns: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> {
        self.objects
            .range(
                (
                    group.to_string(),
                    plural.to_string(),
                    ns.to_string(),
                    String::new(),
                )..,
            )
            .take_while(move |((g, p, n, _), _)| g == group && p == plural && n == ns)
    }

    /// A fresh uid.
    fn uid(&self) -> String {
        format!("00000000-0000-4000-8000-{:012}", self.revision + 1)
    }
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
    /// the CA `ca_cert` / `ca_key` (PEM), which must also have signed every client certificate,
    /// and with which the double's kube-apiserver-client signer signs approved requests.
    pub fn start(bind: SocketAddr, ca_cert: &str, ca_key: &str, sans: &[String]) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let signer = Arc::new(x509::Ca::from_pem(ca_cert, ca_key));
        let acceptor = tls_acceptor(ca_cert, ca_key, sans);
        let store = Arc::new(Mutex::new(Store {
            resources: builtin_resources(),
            ..Default::default()
        }));
        // The namespaces a real API server makes for itself at start.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let mut st = store.lock().unwrap();
            st.save(
                ("".into(), "namespaces".into(), "".into(), ns.into()),
                json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "uid": format!("uid-ns-{ns}"),
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                        "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]},
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
                tokio::spawn(csr::signer(s.clone(), signer));
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = &mut stopped => return,
                    };
                    let Ok((tcp, _)) = accepted else {
                        continue;
                    };
                    tokio::spawn(serve_connection(acceptor.clone(), s.clone(), tcp));
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
        st.of(group, plural).map(|(_, v)| v.clone()).collect()
    }

    /// Client requests that changed the store (what controllers do is not counted).
    pub fn writes(&self) -> usize {
        self.store.lock().unwrap().writes
    }

    /// Every request: (user, method, path?query).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.store.lock().unwrap().requests.clone()
    }

    /// Stores `obj` as `group` / `plural` `ns`/its name, as a controller or kubelet would make it
    /// (a Node registering, a Pod scheduled): not a client write, no field manager, no
    /// validation. A stored object of that name is replaced.
    pub fn put(&self, group: &str, plural: &str, ns: &str, mut obj: Value) {
        let mut st = self.store.lock().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        obj["metadata"]["uid"] = json!(format!("uid-{plural}-{name}"));
        obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        if !ns.is_empty() {
            obj["metadata"]["namespace"] = json!(ns);
        }
        st.save((group.into(), plural.into(), ns.into(), name), obj);
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
        if let Some(mut o) = st.objects.get(&key).cloned() {
            o["status"] = status;
            st.save(key, o);
        }
    }

    /// Sets what the kubelet would answer for the log of pod `ns`/`pod`.
    pub fn set_log(&self, ns: &str, pod: &str, text: &str) {
        let mut st = self.store.lock().unwrap();
        st.logs.insert((ns.into(), pod.into()), text.into());
    }

    /// Forgets the history, as an etcd compaction does: a `continue` token from before answers
    /// 410 Expired.
    pub fn compact(&self) {
        let mut st = self.store.lock().unwrap();
        st.history.clear();
        st.compacted = st.revision;
        st.changed.notify_waiters();
    }
}

fn tls_acceptor(ca_cert: &str, ca_key: &str, sans: &[String]) -> tokio_rustls::TlsAcceptor {
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
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    store: Arc<Mutex<Store>>,
    tcp: tokio::net::TcpStream,
) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let user = identity(tls.get_ref().1.peer_certificates());
    let svc = hyper::service::service_fn(move |req| {
        let store = store.clone();
        let user = user.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(store, user, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
        .await;
}

/// Who is asking: the user and every group (`system:authenticated` included).
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Who a client certificate says the caller is (the x509 authenticator: CN, every O), or
/// anonymous.
fn identity(certs: Option<&[rustls_pki_types::CertificateDer<'_>]>) -> User {
    let anonymous = User {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    };
    let Some(c) = certs.and_then(|c| c.first()) else {
        return anonymous;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(c.as_ref()) else {
        return anonymous;
    };
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    groups.push("system:authenticated".into());
    User { name, groups }
}

/// A request, read.
pub struct Req {
    pub user: User,
    pub method: String,
    pub path: String,
    /// Query parameters, URL-decoded.
    pub query: BTreeMap<String, String>,
    pub ctype: String,
    /// The user agent (the default field manager is what comes before its first `/`).
    pub agent: String,
    pub body: Bytes,
    /// What the authorizer is asked.
    pub attrs: rbac::Attrs,
    /// The name in the path (a list's attrs may name an object from its field selector).
    pub path_name: Option<String>,
}

impl Req {
    async fn read(user: User, req: Request<Incoming>) -> (Self, String) {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let raw: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let logged = format!(
            "{path}?{}",
            raw.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        );
        let query = raw
            .iter()
            .map(|(k, v)| (url_decode(k), url_decode(v)))
            .collect();
        let header = |h: &str| {
            req.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (ctype, agent) = (header("content-type"), header("user-agent"));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let (attrs, path_name) = request_info(&method, &path, &query);
        let r = Self {
            user,
            method,
            path,
            query,
            ctype,
            agent,
            body,
            attrs,
            path_name,
        };
        (r, logged)
    }

    /// The field manager of a non-apply write: `fieldManager`, else from the user agent.
    fn manager(&self) -> String {
        match self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => self.agent.split('/').next().unwrap_or_default().to_string(),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the real RequestInfoFactory makes of a request: the authorizer's attributes, and the
/// name in the path.
fn request_info(
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
) -> (rbac::Attrs, Option<String>) {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = rbac::Attrs {
        verb: method.to_lowercase(),
        path: path.to_string(),
        ..Default::default()
    };
    let (group, rest) = match parts.as_slice() {
        ["api", rest @ ..] if rest.len() >= 2 => ("", rest),
        ["apis", g, rest @ ..] if rest.len() >= 2 => (*g, rest),
        _ => return (non_resource, None),
    };
    let mut verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_string();
    let mut cur = &rest[1..];
    if cur[0] == "watch" && cur.len() >= 2 {
        verb = "watch".into();
        cur = &cur[1..];
    }
    let mut namespace = String::new();
    if cur[0] == "namespaces" && cur.len() > 1 {
        namespace = cur[1].to_string();
        if cur.len() > 2 && !matches!(cur[2], "status" | "finalize") {
            cur = &cur[2..];
        }
    }
    let path_name = cur.get(1).map(|s| s.to_string());
    let mut name = path_name.clone().unwrap_or_default();
    if name.is_empty() && verb == "get" {
        let watch = query
            .get("watch")
            .is_some_and(|w| matches!(w.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"));
        verb = if watch { "watch" } else { "list" }.into();
        if let Some(n) = query
            .get("fieldSelector")
            .and_then(|f| select::exact_name(f))
        {
            name = n;
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection".into();
    }
    let attrs = rbac::Attrs {
        verb,
        group: group.to_string(),
        version: rest[0].to_string(),
        resource: cur[0].to_string(),
        subresource: cur.get(2).map(|s| s.to_string()).unwrap_or_default(),
        namespace,
        name,
        path: path.to_string(),
        resource_request: true,
    };
    (attrs, path_name)
}

/// Where a request points, once routed.
pub struct Target {
    pub res: Resource,
    /// The namespace ("" for a cluster-wide resource or a list across namespaces).
    pub ns: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    /// The store key of the named object.
    fn key(&self) -> Key {
        (
            self.res.group.clone(),
            self.res.plural.clone(),
            self.ns.clone(),
            self.name.clone().unwrap_or_default(),
        )
    }

    fn named(&self, name: &str) -> Self {
        Self {
            res: self.res.clone(),
            ns: self.ns.clone(),
            name: Some(name.to_string()),
            subresource: self.subresource.clone(),
        }
    }

    fn api_version(&self) -> String {
        api_version(&self.res)
    }
}

fn api_version(r: &Resource) -> String {
    if r.group.is_empty() {
        r.version.clone()
    } else {
        format!("{}/{}", r.group, r.version)
    }
}

/// The resource a request is for, if served.
fn route(st: &Store, r: &Req) -> Option<Target> {
    let a = &r.attrs;
    let res = st
        .resources
        .iter()
        .find(|x| x.group == a.group && x.version == a.version && x.plural == a.resource)?
        .clone();
    let is_namespaces = res.group.is_empty() && res.plural == "namespaces";
    if !a.namespace.is_empty() && !res.namespaced && !is_namespaces {
        return None;
    }
    if !a.subresource.is_empty() && !res.has(&a.subresource) {
        return None;
    }
    Some(Target {
        ns: if res.namespaced {
            a.namespace.clone()
        } else {
            String::new()
        },
        name: r.path_name.clone(),
        subresource: (!a.subresource.is_empty()).then(|| a.subresource.clone()),
        res,
    })
}

/// A reply as sent: a whole body, or a watch stream.
type Streamed = Response<BoxBody<Bytes, std::convert::Infallible>>;

async fn handle(store: Arc<Mutex<Store>>, user: User, req: Request<Incoming>) -> Streamed {
    let (r, logged) = Req::read(user, req).await;
    let mut st = store.lock().unwrap();
    st.requests
        .push((r.user.name.clone(), r.method.clone(), logged));
    if matches!(r.path.as_str(), "/readyz" | "/livez" | "/healthz") {
        return Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
    }
    if r.path == "/version" {
        return reply(
            200,
            json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0 (test double)"}),
        )
        .map(BodyExt::boxed);
    }
    if r.attrs.resource_request && r.attrs.verb == "watch" {
        let started = rbac::authorize(&st, &r.user, &r.attrs)
            .and_then(|()| route(&st, &r).ok_or_else(errors::no_route))
            .and_then(|t| watch::Watch::start(&st, &r, &t));
        drop(st);
        return match started {
            Ok(w) => w.serve(store),
            Err(e) => (*e).map(BodyExt::boxed),
        };
    }
    let before = st.revision;
    let out = serve(&mut st, &r).unwrap_or_else(|e| *e);
    if st.revision != before {
        st.writes += 1;
    }
    out.map(BodyExt::boxed)
}

fn serve(st: &mut Store, r: &Req) -> Result<Reply, Fail> {
    rbac::authorize(st, &r.user, &r.attrs)?;
    if !r.attrs.resource_request {
        return discovery(st, &r.path)
            .map(|d| reply(200, d))
            .ok_or_else(errors::no_route);
    }
    let t = route(st, r).ok_or_else(errors::no_route)?;
    objects::dispatch(st, r, &t)
}

fn discovery(st: &Store, path: &str) -> Option<Value> {
    let list = |group: &str, version: &str| {
        let mut rs = Vec::new();
        for r in st
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
        {
            rs.push(
                json!({"name": r.plural, "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs}),
            );
            for s in &r.subresources {
                let (kind, verbs) = match s.as_str() {
                    "scale" => ("Scale", json!(["get", "patch", "update"])),
                    "log" => ("Pod", json!(["get"])),
                    _ => (r.kind.as_str(), json!(["get", "patch", "update"])),
                };
                let mut e = json!({"name": format!("{}/{s}", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
                if s == "scale" {
                    e["group"] = json!("autoscaling");
                    e["version"] = json!("v1");
                }
                rs.push(e);
            }
        }
        (!rs.is_empty()).then(|| json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
            "resources": rs}))
    };
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in st.resources.iter().filter(|r| !r.group.is_empty()) {
        let vs = groups.entry(&r.group).or_default();
        if !vs.contains(&r.version.as_str()) {
            vs.push(&r.version);
        }
    }
    let group_doc = |g: &str, vs: &[&str]| {
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
            .collect();
        json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
    };
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["api"] => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        ["api", "v1"] => list("", "v1"),
        ["apis"] => {
            let gs: Vec<Value> = groups.iter().map(|(g, vs)| group_doc(g, vs)).collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}))
        }
        ["apis", g] => groups.get(g).map(|vs| {
            let mut d = group_doc(g, vs);
            d["kind"] = json!("APIGroup");
            d["apiVersion"] = json!("v1");
            d
        }),
        ["apis", g, v] => list(g, v),
        _ => None,
    }
}

/// Now, as the API server writes times (RFC 3339, seconds, UTC).
fn now() -> String {
    let d = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year(),
        d.month() as u8,
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

/// Starts the double on 127.0.0.1 with a new cluster CA (made by forgectl's PKI in `dir`) and
/// writes an admin kubeconfig (group `kubeadm:cluster-admins`) to `dir/admin.conf`: the
/// server, that path, and the CA (certificate, key PEM).
pub fn start_with_admin(
    dir: &std::path::Path,
) -> (ApiServer, std::path::PathBuf, (String, String)) {
    use forgectl::pki::{Pki, paths};
    let state = forgectl::state::StateDir::open(dir, "demo").unwrap();
    let pki = Pki::new(&state);
    pki.ensure(&[]).unwrap();
    let ca = (
        pki.read(paths::KUBE_CA, "crt").unwrap().unwrap(),
        pki.read(paths::KUBE_CA, "key").unwrap().unwrap(),
    );
    let api = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        &ca.0,
        &ca.1,
        &["127.0.0.1".to_string()],
    );
    let admin = dir.join("admin.conf");
    let server = format!("https://{}", api.addr);
    std::fs::write(
        &admin,
        kubeconfig(
            &server,
            &ca.0,
            &ca.1,
            "kubernetes-admin",
            "kubeadm:cluster-admins",
        ),
    )
    .unwrap();
    (api, admin, ca)
}

/// A kubeconfig for `server` with a client certificate for `user` in `group`, signed by the CA.
pub fn kubeconfig(server: &str, ca_cert: &str, ca_key: &str, user: &str, group: &str) -> String {
    kubeconfig_for(server, ca_cert, ca_key, user, &[group])
}
