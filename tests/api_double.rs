//! The API-server TEST DOUBLE (tests/support/apiserver/) through the `kube` client, as forgectl
//! uses it: list options (label and field selectors, chunking over a consistent snapshot), the
//! CertificateSigningRequest API with its asynchronous kube-apiserver-client signer, the RBAC
//! authorizer with the real 403 messages, access reviews, privilege-escalation prevention, and
//! scale, logs, metrics, status, finalizers and namespace deletion.

mod support;

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PostParams,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::apiserver::{ApiServer, kubeconfig_for};
use x509_parser::prelude::{FromDer, X509Certificate};

struct Bed {
    api: ApiServer,
    ca: (String, String),
}

/// A self-signed cluster CA (PEM cert, key).
fn ca() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn client_from(kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

impl Bed {
    fn new() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = ca();
        let api = ApiServer::start(
            "127.0.0.1:0".parse().unwrap(),
            &ca.0,
            &ca.1,
            &["127.0.0.1".to_string()],
        );
        Self { api, ca }
    }

    fn server(&self) -> String {
        format!("https://{}", self.api.addr)
    }

    async fn client(&self, user: &str, groups: &[&str]) -> kube::Client {
        client_from(&kubeconfig_for(
            &self.server(),
            &self.ca.0,
            &self.ca.1,
            user,
            groups,
        ))
        .await
    }

    async fn admin(&self) -> kube::Client {
        self.client("kubernetes-admin", &["kubeadm:cluster-admins"])
            .await
    }

    /// A client without a certificate.
    fn anonymous(&self) -> kube::Client {
        let mut cfg = kube::Config::new(self.server().parse().unwrap());
        let (_, pem) = x509_parser::pem::parse_x509_pem(self.ca.0.as_bytes()).unwrap();
        cfg.root_cert = Some(vec![pem.contents]);
        kube::Client::try_from(cfg).unwrap()
    }
}

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// The (code, reason, message) of a refused request.
fn refusal<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

async fn namespace(c: &kube::Client, name: &str) {
    Api::<Namespace>::all(c.clone())
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": name}})),
        )
        .await
        .unwrap();
}

async fn create<K>(c: &kube::Client, ns: Option<&str>, v: Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let dt = K::DynamicType::default();
    let url = K::url_path(&dt, ns);
    let req = kube::core::Request::new(url)
        .create(
            &PostParams::default(),
            serde_json::to_vec(&obj::<K>(v)).unwrap(),
        )
        .unwrap();
    c.request::<K>(req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors_filter_lists() {
    let bed = Bed::new();
    let admin = bed.admin().await;
    namespace(&admin, "sel").await;
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web", "tier": "back"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
        ("e", json!({"app": "web", "env": "prod"})),
        ("f", json!({"app": "cache", "tier": "front"})),
    ] {
        create::<ConfigMap>(
            &admin,
            Some("sel"),
            json!({"metadata": {"name": name, "labels": labels}}),
        )
        .await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "sel");
    let list = |labels: &'static str, fields: &'static str| {
        let cms = cms.clone();
        async move {
            let lp = ListParams::default().labels(labels).fields(fields);
            names(&cms.list(&lp).await.unwrap().items)
        }
    };
    assert_eq!(list("app=web", "").await, ["a", "b", "e"]);
    assert_eq!(list("app==web,tier!=back", "").await, ["a", "e"]);
    assert_eq!(list("tier", "").await, ["a", "b", "f"]);
    assert_eq!(list("!tier", "").await, ["c", "d", "e"]);
    assert_eq!(list("app in (db, cache)", "").await, ["c", "f"]);
    assert_eq!(list("app notin (web)", "").await, ["c", "d", "f"]);
    assert_eq!(list("", "metadata.name=c").await, ["c"]);
    assert_eq!(
        list("app=web", "metadata.name!=b,metadata.namespace=sel").await,
        ["a", "e"]
    );
    assert!(list("app=web", "metadata.namespace=other").await.is_empty());
    // Across namespaces, with the query URL-encoded by the client and decoded by the server.
    let all: Api<ConfigMap> = Api::all(admin.clone());
    let lp = ListParams::default().labels("tier=front");
    assert_eq!(names(&all.list(&lp).await.unwrap().items), ["a", "f"]);
    assert!(
        bed.api
            .requests()
            .iter()
            .any(|(_, _, q)| q.contains("labelSelector=tier%3Dfront")),
        "{:?}",
        bed.api.requests()
    );
    // Field selectors of a kind.
    create::<Secret>(
        &admin,
        Some("sel"),
        json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""}}),
    )
    .await;
    create::<Secret>(&admin, Some("sel"), json!({"metadata": {"name": "plain"}})).await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "sel");
    let lp = ListParams::default().fields("type=kubernetes.io/tls");
    assert_eq!(names(&secrets.list(&lp).await.unwrap().items), ["tls"]);
    // What the real API refuses.
    let (code, reason, msg) = refusal(cms.list(&ListParams::default().labels("app in web")).await);
    assert_eq!((code, reason.as_str()), (400, "BadRequest"), "{msg}");
    assert!(msg.contains("unable to parse requirement"), "{msg}");
    let (code, _, msg) = refusal(cms.list(&ListParams::default().fields("data.x=1")).await);
    assert_eq!(
        (code, msg.as_str()),
        (400, "field label not supported: data.x")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_lists_page_through_one_snapshot() {
    let bed = Bed::new();
    let admin = bed.admin().await;
    namespace(&admin, "chunks").await;
    namespace(&admin, "chunks-b").await;
    for i in 0..25 {
        create::<ConfigMap>(
            &admin,
            Some("chunks"),
            json!({"metadata": {"name": format!("cm-{i:02}"),
                "labels": {"parity": if i % 2 == 0 { "even" } else { "odd" }}}}),
        )
        .await;
    }
    create::<ConfigMap>(
        &admin,
        Some("chunks-b"),
        json!({"metadata": {"name": "other"}}),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "chunks");
    let writes = bed.api.writes();

    // Three pages of at most 10, all at the first page's resourceVersion: what changes between
    // pages is not seen.
    let mut lp = ListParams::default().limit(10);
    let first = cms.list(&lp).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    cms.delete("cm-15", &DeleteParams::default()).await.unwrap();
    create::<ConfigMap>(
        &admin,
        Some("chunks"),
        json!({"metadata": {"name": "cm-99"}}),
    )
    .await;
    let mut seen = names(&first.items);
    let mut token = first.metadata.continue_.clone();
    let mut pages = 1;
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        lp = lp.continue_token(&t);
        let page = cms.list(&lp).await.unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(rv.as_str()));
        pages += 1;
        seen.extend(names(&page.items));
        if page.metadata.continue_.is_some() {
            assert_eq!(page.metadata.remaining_item_count, Some(5));
        } else {
            assert_eq!(page.metadata.remaining_item_count, None);
        }
        token = page.metadata.continue_;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(
        (pages, seen),
        (3, expected),
        "every object once, in key order"
    );
    // A fresh list sees now.
    let now = names(&cms.list(&ListParams::default()).await.unwrap().items);
    assert!(
        now.len() == 25
            && !now.contains(&"cm-15".to_string())
            && now.contains(&"cm-99".to_string())
    );

    // With a selector: full pages of matches, no remaining count.
    let lp = ListParams::default().labels("parity=even").limit(5);
    let page = cms.list(&lp).await.unwrap();
    assert_eq!(
        names(&page.items),
        ["cm-00", "cm-02", "cm-04", "cm-06", "cm-08"]
    );
    assert_eq!(page.metadata.remaining_item_count, None);
    let rest = cms
        .list(
            &lp.clone()
                .continue_token(page.metadata.continue_.as_ref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        names(&rest.items),
        ["cm-10", "cm-12", "cm-14", "cm-16", "cm-18"]
    );
    assert_eq!(bed.api.writes(), writes + 2, "lists write nothing");

    // A token that is not one, and one whose snapshot is gone.
    let (code, reason, msg) = refusal(
        cms.list(&ListParams::default().limit(5).continue_token("garbage!"))
            .await,
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(msg.contains("continue key is not valid"), "{msg}");
    let page = cms.list(&ListParams::default().limit(5)).await.unwrap();
    create::<ConfigMap>(
        &admin,
        Some("chunks"),
        json!({"metadata": {"name": "cm-98"}}),
    )
    .await;
    bed.api.compact();
    let lp = ListParams::default()
        .limit(5)
        .continue_token(page.metadata.continue_.as_ref().unwrap());
    let (code, reason, msg) = refusal(cms.list(&lp).await);
    assert_eq!((code, reason.as_str()), (410, "Expired"), "{msg}");
}

/// A PEM certificate request for `cn` in `org` (rcgen) and its key.
fn request(cn: &str, org: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    (
        p.serialize_request(&key).unwrap().pem().unwrap(),
        key.serialize_pem(),
    )
}

fn csr_json(name: &str, pem: &str, signer: &str, usages: Value) -> Value {
    json!({"metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "usages": usages}})
}

fn approved(reason: &str) -> Patch<Value> {
    Patch::Merge(
        json!({"status": {"conditions": [{"type": "Approved", "status": "True",
        "reason": reason, "message": "approved by the test"}]}}),
    )
}

/// Polls `name` until `done` says so (at most 5 s).
async fn wait_for(
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
    done: impl Fn(&CertificateSigningRequest) -> bool,
) -> CertificateSigningRequest {
    let start = Instant::now();
    loop {
        let c = csrs.get(name).await.unwrap();
        if done(&c) {
            return c;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{name}: {c:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn certificate(c: &CertificateSigningRequest) -> Option<String> {
    c.status
        .as_ref()?
        .certificate
        .as_ref()
        .map(|b| String::from_utf8(b.0.clone()).unwrap())
}

fn condition(c: &CertificateSigningRequest, kind: &str) -> Option<(String, String)> {
    c.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|x| x.type_ == kind)
        .map(|x| {
            (
                x.reason.clone().unwrap_or_default(),
                x.message.clone().unwrap_or_default(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_request_is_signed_by_the_controller_not_the_request() {
    let bed = Bed::new();
    let admin = bed.admin().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let (pem, key) = request("tool-x", "tools");
    let mut body = csr_json(
        "tool-x",
        &pem,
        "kubernetes.io/kube-apiserver-client",
        json!(["client auth", "digital signature"]),
    );
    body["spec"]["expirationSeconds"] = json!(3600);
    // Who asks is the server's to say.
    body["spec"]["username"] = json!("mallory");
    body["spec"]["groups"] = json!(["system:masters"]);
    body["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
    let created = csrs
        .create(&PostParams::default(), &obj(body))
        .await
        .unwrap();
    assert_eq!(created.spec.username.as_deref(), Some("kubernetes-admin"));
    assert_eq!(
        created.spec.groups.as_deref(),
        Some(
            &[
                "kubeadm:cluster-admins".to_string(),
                "system:authenticated".to_string()
            ][..]
        )
    );
    assert!(certificate(&created).is_none() && condition(&created, "Approved").is_none());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        certificate(&csrs.get("tool-x").await.unwrap()).is_none(),
        "not approved: not signed"
    );

    // Approval (the subresource, as a merge patch) answers before the signer runs.
    let approval = csrs
        .patch_approval("tool-x", &PatchParams::default(), &approved("Test"))
        .await
        .unwrap();
    assert!(
        certificate(&approval).is_none(),
        "signing is not part of the approval"
    );
    let cond = &approval
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()[0];
    assert!(cond.last_update_time.is_some() && cond.last_transition_time.is_some());
    let writes = bed.api.writes();
    let approved_rv = approval.metadata.resource_version.clone().unwrap();
    let signed = wait_for(&csrs, "tool-x", |c| certificate(c).is_some()).await;
    assert_ne!(
        signed.metadata.resource_version.as_deref(),
        Some(approved_rv.as_str())
    );
    assert_eq!(
        bed.api.writes(),
        writes,
        "the signer is a controller, not a client write"
    );

    // The certificate: as requested, client auth, an hour from now, from the CA.
    let cert_pem = certificate(&signed).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&p.contents).unwrap();
    let attr = |it: Option<&x509_parser::x509::AttributeTypeAndValue>| {
        it.and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    assert_eq!(
        attr(cert.subject().iter_common_name().next()).as_deref(),
        Some("tool-x")
    );
    assert_eq!(
        attr(cert.subject().iter_organization().next()).as_deref(),
        Some("tools")
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_encipherment());
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let now = secs(SystemTime::now());
    let not_after = cert.validity().not_after.timestamp();
    let not_before = cert.validity().not_before.timestamp();
    assert!(
        (not_after - (now + 3600)).abs() < 30,
        "{not_after} vs {now}"
    );
    assert!(
        (not_before - (now - 300)).abs() < 30,
        "{not_before} vs {now}"
    );
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(bed.ca.0.as_bytes()).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_pem.contents).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    cert.verify_signature(Some(ca.public_key()))
        .expect("signed by the CA");

    // It authenticates: who am I?
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: c\n\
         contexts:\n- context:\n    cluster: c\n    user: u\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user:\n\
         \x20   client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&bed.ca.0),
        bed.server(),
        b64(&cert_pem),
        b64(&key)
    );
    let tool = client_from(&kubeconfig).await;
    let me = Api::<SelfSubjectReview>::all(tool)
        .create(&PostParams::default(), &obj(json!({})))
        .await
        .unwrap();
    let info = me.status.unwrap().user_info.unwrap();
    assert_eq!(info.username.as_deref(), Some("tool-x"));
    assert_eq!(
        info.groups.unwrap(),
        ["tools".to_string(), "system:authenticated".to_string()]
    );

    // The main resource cannot change the status, and nothing changed writes nothing.
    let mut edited = signed.clone();
    edited.status.as_mut().unwrap().certificate = None;
    edited.spec.usages = Some(vec!["server auth".into()]);
    let writes = bed.api.writes();
    let replaced = csrs
        .replace("tool-x", &PostParams::default(), &edited)
        .await
        .unwrap();
    assert_eq!(certificate(&replaced), Some(cert_pem));
    assert_eq!(replaced.spec.usages, signed.spec.usages);
    assert_eq!(
        replaced.metadata.resource_version,
        signed.metadata.resource_version
    );
    assert_eq!(bed.api.writes(), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_validated_and_the_signer_fails_what_it_cannot_sign() {
    let bed = Bed::new();
    let admin = bed.admin().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let pp = PostParams::default();
    let client = "kubernetes.io/kube-apiserver-client";
    let (pem, _) = request("u", "g");
    let usages = json!(["client auth"]);

    let mut short = csr_json("short", &pem, client, usages.clone());
    short["spec"]["expirationSeconds"] = json!(599);
    let (code, reason, msg) = refusal(csrs.create(&pp, &obj(short)).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        msg,
        "CertificateSigningRequest.certificates.k8s.io \"short\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)"
    );
    let (_, _, msg) = refusal(
        csrs.create(&pp, &obj(csr_json("junk", "hello", client, usages.clone())))
            .await,
    );
    assert!(
        msg.starts_with("CertificateSigningRequest.certificates.k8s.io \"junk\" is invalid: spec.request: Invalid value: []byte{0x68, 0x65")
            && msg.ends_with(": PEM block type must be CERTIFICATE REQUEST"),
        "{msg}"
    );
    let (_, _, msg) = refusal(
        csrs.create(&pp, &obj(csr_json("bare", &pem, "", json!([]))))
            .await,
    );
    assert_eq!(
        msg,
        "CertificateSigningRequest.certificates.k8s.io \"bare\" is invalid: [spec.usages: Required value, spec.signerName: Required value]"
    );
    let (masters, _) = request("root", "system:masters");
    let (code, _, msg) = refusal(
        csrs.create(
            &pp,
            &obj(csr_json("root", &masters, client, usages.clone())),
        )
        .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "certificatesigningrequests.certificates.k8s.io \"root\" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
        )
    );

    // Usages the client signer does not sign: Failed, not signed.
    for (name, usages, why) in [
        (
            "server",
            json!(["server auth"]),
            "invalid usage for client certificate: server auth",
        ),
        (
            "no-client",
            json!(["digital signature"]),
            "missing required usage for client certificate: client auth",
        ),
    ] {
        csrs.create(&pp, &obj(csr_json(name, &pem, client, usages)))
            .await
            .unwrap();
        // As forgectl approves: the whole object to the approval subresource.
        let mut c = csrs.get(name).await.unwrap();
        c.status = Some(obj(
            json!({"conditions": [{"type": "Approved", "status": "True",
            "reason": "Test", "message": "ok"}]}),
        ));
        csrs.replace_subresource("approval", name, &pp, &c)
            .await
            .unwrap();
        let failed = wait_for(&csrs, name, |c| condition(c, "Failed").is_some()).await;
        assert_eq!(
            condition(&failed, "Failed"),
            Some(("SignerValidationFailure".to_string(), why.to_string()))
        );
        assert!(certificate(&failed).is_none());
    }
    // Approved and Denied at once; Denied alone; another signer: never signed.
    csrs.create(&pp, &obj(csr_json("both", &pem, client, usages.clone())))
        .await
        .unwrap();
    let both = Patch::Merge(json!({"status": {"conditions": [
        {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}}));
    let (code, _, msg) = refusal(
        csrs.patch_approval("both", &PatchParams::default(), &both)
            .await,
    );
    assert_eq!(code, 422);
    assert!(
        msg.ends_with("status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"),
        "{msg}"
    );
    let denied =
        Patch::Merge(json!({"status": {"conditions": [{"type": "Denied", "status": "True"}]}}));
    csrs.patch_approval("both", &PatchParams::default(), &denied)
        .await
        .unwrap();
    csrs.create(
        &pp,
        &obj(csr_json("other", &pem, "example.com/other", usages.clone())),
    )
    .await
    .unwrap();
    csrs.patch_approval("other", &PatchParams::default(), &approved("Test"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for name in ["both", "other"] {
        let c = csrs.get(name).await.unwrap();
        assert!(
            certificate(&c).is_none() && condition(&c, "Failed").is_none(),
            "{name}"
        );
    }
    let (code, _, msg) = refusal(
        csrs.patch_approval(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": []}})),
        )
        .await,
    );
    assert!(
        code == 422 && msg.contains("updates may not remove a condition of type \"Approved\""),
        "{msg}"
    );

    // Approving needs `approve` on the signer, besides updating the approval subresource.
    create::<ClusterRole>(
        &admin,
        None,
        json!({"metadata": {"name": "csr-approver"}, "rules": [{"apiGroups": ["certificates.k8s.io"],
            "resources": ["certificatesigningrequests", "certificatesigningrequests/approval"],
            "verbs": ["get", "list", "update", "patch"]}]}),
    )
    .await;
    create::<ClusterRoleBinding>(
        &admin,
        None,
        json!({"metadata": {"name": "alice-approves"}, "subjects": [{"kind": "User", "name": "alice"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "csr-approver"}}),
    )
    .await;
    csrs.create(
        &pp,
        &obj(csr_json("for-alice", &pem, client, usages.clone())),
    )
    .await
    .unwrap();
    let alice: Api<CertificateSigningRequest> = Api::all(bed.client("alice", &[]).await);
    let (code, _, msg) = refusal(
        alice
            .patch_approval("for-alice", &PatchParams::default(), &approved("Alice"))
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "certificatesigningrequests.certificates.k8s.io \"for-alice\" is forbidden: user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""
        )
    );
    create::<ClusterRole>(
        &admin,
        None,
        json!({"metadata": {"name": "signer-approver"}, "rules": [{"apiGroups": ["certificates.k8s.io"],
            "resources": ["signers"], "resourceNames": ["kubernetes.io/*"], "verbs": ["approve"]}]}),
    )
    .await;
    create::<ClusterRoleBinding>(
        &admin,
        None,
        json!({"metadata": {"name": "alice-signers"}, "subjects": [{"kind": "User", "name": "alice"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "signer-approver"}}),
    )
    .await;
    alice
        .patch_approval("for-alice", &PatchParams::default(), &approved("Alice"))
        .await
        .unwrap();
    wait_for(&csrs, "for-alice", |c| certificate(c).is_some()).await;
}

/// Namespaces tool-a and tool-b, each with pod p1; a secret in tool-a; alice (group tools) may
/// read pods and their logs in tool-a through a Role and a RoleBinding.
async fn rbac_bed() -> (Bed, kube::Client) {
    let bed = Bed::new();
    let admin = bed.admin().await;
    for ns in ["tool-a", "tool-b"] {
        namespace(&admin, ns).await;
        create::<Pod>(
            &admin,
            Some(ns),
            json!({"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "main", "image": "x"}]}}),
        )
        .await;
    }
    create::<Secret>(&admin, Some("tool-a"), json!({"metadata": {"name": "s"}})).await;
    create::<Role>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "reader"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]}),
    )
    .await;
    create::<RoleBinding>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "alice-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}}),
    )
    .await;
    bed.api.set_log("tool-a", "p1", "one\ntwo\n");
    (bed, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_binding_grants_its_role_in_its_namespace_only() {
    let (bed, admin) = rbac_bed().await;
    let alice = bed.client("alice", &["tools"]).await;
    let pods_a: Api<Pod> = Api::namespaced(alice.clone(), "tool-a");
    let pods_b: Api<Pod> = Api::namespaced(alice.clone(), "tool-b");
    assert_eq!(
        names(&pods_a.list(&ListParams::default()).await.unwrap().items),
        ["p1"]
    );
    pods_a.get("p1").await.unwrap();
    assert_eq!(
        pods_a.logs("p1", &LogParams::default()).await.unwrap(),
        "one\ntwo\n"
    );
    let forbidden = |r: (u16, String, String)| {
        assert_eq!((r.0, r.1.as_str()), (403, "Forbidden"), "{}", r.2);
        r.2
    };
    assert_eq!(
        forbidden(refusal(pods_b.list(&ListParams::default()).await)),
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"tool-b\""
    );
    assert_eq!(
        forbidden(refusal(pods_b.get("p1").await)),
        "pods \"p1\" is forbidden: User \"alice\" cannot get resource \"pods\" in API group \"\" in the namespace \"tool-b\""
    );
    assert_eq!(
        forbidden(refusal(pods_b.logs("p1", &LogParams::default()).await)),
        "pods \"p1\" is forbidden: User \"alice\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"tool-b\""
    );
    let secrets_a: Api<Secret> = Api::namespaced(alice.clone(), "tool-a");
    assert_eq!(
        forbidden(refusal(secrets_a.get("s").await)),
        "secrets \"s\" is forbidden: User \"alice\" cannot get resource \"secrets\" in API group \"\" in the namespace \"tool-a\""
    );
    assert_eq!(
        forbidden(refusal(pods_a.delete("p1", &DeleteParams::default()).await)),
        "pods \"p1\" is forbidden: User \"alice\" cannot delete resource \"pods\" in API group \"\" in the namespace \"tool-a\""
    );
    let deploys: Api<Deployment> = Api::namespaced(alice.clone(), "tool-a");
    assert_eq!(
        forbidden(refusal(deploys.list(&ListParams::default()).await)),
        "deployments.apps is forbidden: User \"alice\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"tool-a\""
    );
    assert_eq!(
        forbidden(refusal(
            Api::<Pod>::all(alice.clone())
                .list(&ListParams::default())
                .await
        )),
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
    // A rule with resourceNames: that object only, never a list.
    create::<Role>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "one-secret"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"], "verbs": ["get", "list"]}]}),
    )
    .await;
    create::<RoleBinding>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "tools-one-secret"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "tools"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-secret"}}),
    )
    .await;
    secrets_a.get("s").await.unwrap();
    forbidden(refusal(secrets_a.list(&ListParams::default()).await));
    // A list for one name by field selector is a request about that name.
    let lp = ListParams::default().fields("metadata.name=s");
    assert_eq!(names(&secrets_a.list(&lp).await.unwrap().items), ["s"]);
    // A service account subject, its namespace defaulting to the binding's.
    create::<RoleBinding>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "bot-reader"}, "subjects": [{"kind": "ServiceAccount", "name": "bot"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}}),
    )
    .await;
    let bot = bed.client("system:serviceaccount:tool-a:bot", &[]).await;
    Api::<Pod>::namespaced(bot.clone(), "tool-a")
        .get("p1")
        .await
        .unwrap();
    forbidden(refusal(
        Api::<Pod>::namespaced(bot, "tool-b").get("p1").await,
    ));
    // No certificate: anonymous, allowed nothing but the public endpoints.
    let anon = bed.anonymous();
    let (code, _, msg) = refusal(
        Api::<Pod>::namespaced(anon.clone(), "tool-a")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"tool-a\""
        )
    );
    assert_eq!(anon.apiserver_version().await.unwrap().minor, "35");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_role_binding_grants_everywhere() {
    let (bed, admin) = rbac_bed().await;
    create::<ClusterRole>(
        &admin,
        None,
        json!({"metadata": {"name": "pod-reader"}, "rules": [
            {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]}]}),
    )
    .await;
    create::<ClusterRoleBinding>(
        &admin,
        None,
        json!({"metadata": {"name": "ops-pod-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"}}),
    )
    .await;
    bed.api.put(
        "",
        "nodes",
        "",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    );
    let bob = bed.client("bob", &["ops"]).await;
    for ns in ["tool-a", "tool-b"] {
        Api::<Pod>::namespaced(bob.clone(), ns)
            .get("p1")
            .await
            .unwrap();
    }
    let all = Api::<Pod>::all(bob.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(
        names(
            &Api::<Node>::all(bob.clone())
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
        ),
        ["n1"]
    );
    let (_, _, msg) = refusal(
        Api::<Namespace>::all(bob.clone())
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        msg,
        "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    let (_, _, msg) = refusal(Api::<Namespace>::all(bob.clone()).get("tool-a").await);
    assert_eq!(
        msg,
        "namespaces \"tool-a\" is forbidden: User \"bob\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"tool-a\""
    );
    // A ClusterRole through a RoleBinding: in that namespace only.
    create::<ClusterRole>(
        &admin,
        None,
        json!({"metadata": {"name": "cm-editor"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
    )
    .await;
    create::<RoleBinding>(
        &admin,
        Some("tool-b"),
        json!({"metadata": {"name": "bob-cm"}, "subjects": [{"kind": "User", "name": "bob"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-editor"}}),
    )
    .await;
    create::<ConfigMap>(&bob, Some("tool-b"), json!({"metadata": {"name": "mine"}})).await;
    let (_, _, msg) = refusal(
        Api::<ConfigMap>::namespaced(bob.clone(), "tool-a")
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": "mine"}})),
            )
            .await,
    );
    assert_eq!(
        msg,
        "configmaps is forbidden: User \"bob\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"tool-a\""
    );
    // `*/scale` matches the scale subresource of any resource of the group.
    create::<Deployment>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "x"}]}}}}),
    )
    .await;
    let deploys: Api<Deployment> = Api::namespaced(bob.clone(), "tool-a");
    assert_eq!(
        deploys
            .get_scale("web")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
    refusal(deploys.get("web").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_answer_from_the_authorizer() {
    let (bed, admin) = rbac_bed().await;
    let alice = bed.client("alice", &["tools"]).await;
    let ssar = |ns: &str, verb: &str, resource: &str, sub: &str| {
        obj::<SelfSubjectAccessReview>(json!({"spec": {"resourceAttributes": {
            "namespace": ns, "verb": verb, "resource": resource, "subresource": sub}}}))
    };
    let ask = |client: kube::Client, review: SelfSubjectAccessReview| async move {
        Api::<SelfSubjectAccessReview>::all(client)
            .create(&PostParams::default(), &review)
            .await
            .unwrap()
            .status
            .unwrap()
    };
    let s = ask(alice.clone(), ssar("tool-a", "list", "pods", "")).await;
    assert!(s.allowed);
    assert_eq!(
        s.reason.as_deref(),
        Some(
            "RBAC: allowed by RoleBinding \"alice-reader/tool-a\" of Role \"reader\" to User \"alice\""
        )
    );
    assert!(
        ask(alice.clone(), ssar("tool-a", "get", "pods", "log"))
            .await
            .allowed
    );
    let s = ask(alice.clone(), ssar("tool-b", "list", "pods", "")).await;
    assert!(!s.allowed && s.reason.is_none());
    assert!(
        !ask(alice.clone(), ssar("tool-a", "create", "pods", ""))
            .await
            .allowed
    );
    let discovery =
        obj(json!({"spec": {"nonResourceAttributes": {"path": "/apis", "verb": "get"}}}));
    assert!(ask(alice.clone(), discovery).await.allowed);
    let s = ask(admin.clone(), ssar("tool-b", "delete", "secrets", "")).await;
    assert_eq!(
        s.reason.as_deref(),
        Some(
            "RBAC: allowed by ClusterRoleBinding \"kubeadm:cluster-admins\" of ClusterRole \"cluster-admin\" to Group \"kubeadm:cluster-admins\""
        )
    );
    // An admin asks about someone else; someone else may not.
    let sar: SubjectAccessReview = obj(json!({"spec": {"user": "alice", "groups": ["tools"],
        "resourceAttributes": {"namespace": "tool-a", "verb": "get", "resource": "pods"}}}));
    let s = Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &sar)
        .await
        .unwrap();
    assert!(s.status.unwrap().allowed);
    let (code, _, msg) = refusal(
        Api::<SubjectAccessReview>::all(alice.clone())
            .create(&PostParams::default(), &sar)
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "subjectaccessreviews.authorization.k8s.io is forbidden: User \"alice\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope"
        )
    );
    let (code, _, _) = refusal(
        Api::<SelfSubjectAccessReview>::all(alice)
            .create(&PostParams::default(), &obj(json!({"spec": {}})))
            .await,
    );
    assert_eq!(code, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_writes_cannot_grant_more_than_the_writer_holds() {
    let (bed, admin) = rbac_bed().await;
    create::<Role>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "rbac-editor"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
                "verbs": ["create", "get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    )
    .await;
    create::<RoleBinding>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "carol-rbac"}, "subjects": [{"kind": "User", "name": "carol"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-editor"}}),
    )
    .await;
    let carol = bed.client("carol", &["devs"]).await;
    let roles: Api<Role> = Api::namespaced(carol.clone(), "tool-a");
    let bindings: Api<RoleBinding> = Api::namespaced(carol.clone(), "tool-a");
    let pp = PostParams::default();
    roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "pods-get"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})),
        )
        .await
        .unwrap();
    let secrets_role = json!({"metadata": {"name": "secrets"}, "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
    let (code, _, msg) = refusal(roles.create(&pp, &obj(secrets_role.clone())).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "roles.rbac.authorization.k8s.io \"secrets\" is forbidden: user \"carol\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
        )
    );
    // Binding a role one does not hold, or one that does not exist.
    create::<ClusterRole>(
        &admin,
        None,
        json!({"metadata": {"name": "admin-ish"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    )
    .await;
    let binding = |name: &str, kind: &str, role: &str| {
        obj::<RoleBinding>(
            json!({"metadata": {"name": name}, "subjects": [{"kind": "User", "name": "dave"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}}),
        )
    };
    let (code, _, msg) = refusal(
        bindings
            .create(&pp, &binding("dave-admin", "ClusterRole", "admin-ish"))
            .await,
    );
    assert!(
        code == 403 && msg.contains("is attempting to grant RBAC permissions not currently held"),
        "{msg}"
    );
    let (_, _, msg) = refusal(
        bindings
            .create(&pp, &binding("dave-x", "Role", "nope"))
            .await,
    );
    assert_eq!(
        msg,
        "rolebindings.rbac.authorization.k8s.io \"dave-x\" is forbidden: roles.rbac.authorization.k8s.io \"nope\" not found"
    );
    bindings
        .create(&pp, &binding("dave-pods", "Role", "pods-get"))
        .await
        .unwrap();
    // `bind` on that role, `escalate` on roles: then allowed.
    create::<Role>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "delegate"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                "resourceNames": ["admin-ish"], "verbs": ["bind"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]}),
    )
    .await;
    create::<RoleBinding>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "carol-delegate"}, "subjects": [{"kind": "User", "name": "carol"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "delegate"}}),
    )
    .await;
    bindings
        .create(&pp, &binding("dave-admin", "ClusterRole", "admin-ish"))
        .await
        .unwrap();
    roles.create(&pp, &obj(secrets_role)).await.unwrap();
    // A binding's roleRef never changes.
    let mut b = Api::<RoleBinding>::namespaced(admin.clone(), "tool-a")
        .get("dave-pods")
        .await
        .unwrap();
    b.role_ref.name = "secrets".into();
    let (code, _, msg) = refusal(
        Api::<RoleBinding>::namespaced(admin, "tool-a")
            .replace("dave-pods", &pp, &b)
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            422,
            "RoleBinding.rbac.authorization.k8s.io \"dave-pods\" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"secrets\"}: cannot change roleRef"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_status_generation_logs_metrics_finalizers_and_namespace_deletion() {
    let bed = Bed::new();
    let admin = bed.admin().await;
    namespace(&admin, "work").await;
    let pp = PostParams::default();
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), "work");
    let d: Deployment = create(
        &admin,
        Some("work"),
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web", "tier": "front"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {"containers": [{"name": "w", "image": "x"}]}}},
            "status": {"replicas": 9}}),
    )
    .await;
    assert_eq!(d.metadata.generation, Some(1));
    assert!(d.status.is_none(), "status is not the client's to set");
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=web,tier=front")
    );
    let mut s = scale.clone();
    s.spec.as_mut().unwrap().replicas = Some(5);
    assert_eq!(
        deploys
            .replace_scale("web", &pp, &s)
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(5)
    );
    let d = deploys.get("web").await.unwrap();
    assert_eq!(
        (d.spec.as_ref().unwrap().replicas, d.metadata.generation),
        (Some(5), Some(2))
    );
    let (code, _, _) = refusal(deploys.replace_scale("web", &pp, &s).await);
    assert_eq!(code, 409, "a stale resourceVersion");
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let labelled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            labelled.spec.unwrap().replicas,
            labelled.metadata.generation
        ),
        (Some(3), Some(3)),
        "metadata does not bump the generation"
    );
    // Status: only through its subresource, which leaves the spec alone.
    let st = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 3}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().ready_replicas, Some(3));
    assert_eq!(st.spec.unwrap().replicas, Some(3));
    let mut d = deploys.get("web").await.unwrap();
    d.status = None;
    let writes = bed.api.writes();
    let same = deploys.replace("web", &pp, &d).await.unwrap();
    assert_eq!(same.status.unwrap().ready_replicas, Some(3));
    assert_eq!(same.metadata.resource_version, d.metadata.resource_version);
    assert_eq!(
        bed.api.writes(),
        writes,
        "a write that changes nothing writes nothing"
    );
    // A StatefulSet scales the same way.
    create::<StatefulSet>(
        &admin,
        Some("work"),
        json!({"metadata": {"name": "db"}, "spec": {"replicas": 1, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "d", "image": "x"}]}}}}),
    )
    .await;
    let sts: Api<StatefulSet> = Api::namespaced(admin.clone(), "work");
    sts.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    assert_eq!(sts.get("db").await.unwrap().spec.unwrap().replicas, Some(0));

    // Logs.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "work");
    create::<Pod>(
        &admin,
        Some("work"),
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}}),
    )
    .await;
    bed.api.set_log("work", "p", "first\nsecond\n");
    let lp = LogParams {
        container: Some("a".into()),
        tail_lines: Some(1),
        ..Default::default()
    };
    assert_eq!(pods.logs("p", &lp).await.unwrap(), "second\n");
    let (code, _, msg) = refusal(pods.logs("p", &LogParams::default()).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            400,
            "a container name must be specified for pod p, choose one of: [a b]"
        )
    );
    let (code, _, msg) = refusal(pods.logs("nope", &LogParams::default()).await);
    assert_eq!((code, msg.as_str()), (404, "pods \"nope\" not found"));

    // Pod metrics, read only.
    bed.api.put(
        "metrics.k8s.io",
        "pods",
        "work",
        json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics", "metadata": {"name": "p"},
            "window": "30s", "containers": [{"name": "a", "usage": {"cpu": "5m", "memory": "20Mi"}}]}),
    );
    let ar = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let metrics: Api<DynamicObject> = Api::namespaced_with(admin.clone(), "work", &ar);
    let m = metrics.list(&ListParams::default()).await.unwrap();
    assert_eq!(m.items[0].data["containers"][0]["usage"]["cpu"], "5m");
    let mut pm = m.items[0].clone();
    pm.metadata.name = Some("q".into());
    pm.metadata.resource_version = None;
    let (code, _, _) = refusal(metrics.create(&pp, &pm).await);
    assert_eq!(code, 405);

    // Finalizers hold a deletion.
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "work");
    create::<ConfigMap>(
        &admin,
        Some("work"),
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(refusal(cms.get("held").await).0, 404);

    // Namespace deletion answers Terminating; the double removes it and its content at once.
    create::<ConfigMap>(&admin, Some("work"), json!({"metadata": {"name": "c"}})).await;
    let nss: Api<Namespace> = Api::all(admin.clone());
    let gone = nss.delete("work", &DeleteParams::default()).await.unwrap();
    let ns = gone.left().expect("the namespace, not a Status");
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(ns.metadata.deletion_timestamp.is_some());
    assert_eq!(refusal(nss.get("work").await).0, 404);
    assert!(bed.api.objects("", "configmaps").is_empty());
    let (code, _, msg) = refusal(nss.delete("default", &DeleteParams::default()).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "namespaces \"default\" is forbidden: this namespace may not be deleted"
        )
    );
    let (code, _, msg) = refusal(
        cms.create(&pp, &obj(json!({"metadata": {"name": "late"}})))
            .await,
    );
    assert_eq!((code, msg.as_str()), (404, "namespaces \"work\" not found"));
}

/// The next `n` events of a watch stream (failing after 10 s), as (type, name, `app` label).
async fn next_events<S>(s: &mut S, n: usize) -> Vec<(String, String, String)>
where
    S: futures::Stream<Item = Result<kube::api::WatchEvent<ConfigMap>, kube::Error>> + Unpin,
{
    use futures::StreamExt as _;
    use kube::api::WatchEvent;
    let mut out = Vec::new();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a watch event within 10 s")
            .expect("the stream goes on")
            .unwrap();
        let (kind, cm) = match e {
            WatchEvent::Added(c) => ("ADDED", c),
            WatchEvent::Modified(c) => ("MODIFIED", c),
            WatchEvent::Deleted(c) => ("DELETED", c),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        };
        let app = cm
            .metadata
            .labels
            .and_then(|l| l.get("app").cloned())
            .unwrap_or_default();
        out.push((kind.into(), cm.metadata.name.unwrap_or_default(), app));
    }
    out
}

fn ev(kind: &str, name: &str, app: &str) -> (String, String, String) {
    (kind.into(), name.into(), app.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_stream_changes_through_selectors_from_a_resource_version() {
    use futures::StreamExt as _;
    use kube::api::{WatchEvent, WatchParams};
    let bed = Bed::new();
    let admin = bed.admin().await;
    namespace(&admin, "w").await;
    namespace(&admin, "other").await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "w");
    let label = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    create::<ConfigMap>(
        &admin,
        Some("w"),
        json!({"metadata": {"name": "a", "labels": {"app": "x"}}}),
    )
    .await;
    create::<ConfigMap>(&admin, Some("w"), json!({"metadata": {"name": "quiet"}})).await;
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // From "0": what matches now, then the changes as they come, seen through the selector.
    let selected = WatchParams::default().labels("app=x").timeout(20);
    let mut from_now = cms.watch(&selected, "0").await.unwrap().boxed();
    assert_eq!(next_events(&mut from_now, 1).await, [ev("ADDED", "a", "x")]);
    create::<ConfigMap>(
        &admin,
        Some("w"),
        json!({"metadata": {"name": "b", "labels": {"app": "x"}}}),
    )
    .await;
    create::<ConfigMap>(
        &admin,
        Some("other"),
        json!({"metadata": {"name": "c", "labels": {"app": "x"}}}),
    )
    .await;
    cms.patch("a", &PatchParams::default(), &label("y"))
        .await
        .unwrap();
    cms.patch("quiet", &PatchParams::default(), &label("x"))
        .await
        .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        next_events(&mut from_now, 4).await,
        [
            ev("ADDED", "b", "x"),
            ev("DELETED", "a", "x"),
            ev("ADDED", "quiet", "x"),
            ev("DELETED", "b", "x")
        ],
        "a stops matching: DELETED (as it was); starts matching: ADDED; other namespaces unseen"
    );

    // From a list's resourceVersion: every change after it, in order, each at its own revision.
    let mut replay = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        next_events(&mut replay, 4).await,
        [
            ev("ADDED", "b", "x"),
            ev("MODIFIED", "a", "y"),
            ev("MODIFIED", "quiet", "x"),
            ev("DELETED", "b", "x")
        ]
    );

    // Across namespaces, with bookmarks: the stream ends at timeoutSeconds with a BOOKMARK.
    let all: Api<ConfigMap> = Api::all(admin.clone());
    let short = WatchParams::default().labels("app=x").timeout(1);
    let events: Vec<_> = tokio::time::timeout(
        Duration::from_secs(10),
        all.watch(&short, "0").await.unwrap().collect::<Vec<_>>(),
    )
    .await
    .expect("the stream ends at its timeout");
    let kinds: Vec<String> = events
        .into_iter()
        .map(|e| match e.unwrap() {
            WatchEvent::Added(c) => format!("ADDED {}", c.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => {
                format!("BOOKMARK {}", !b.metadata.resource_version.is_empty())
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["ADDED c", "ADDED quiet", "BOOKMARK true"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_needs_the_watch_verb_and_a_compacted_revision_is_gone() {
    use futures::StreamExt as _;
    use kube::api::{WatchEvent, WatchParams};
    let (bed, admin) = rbac_bed().await;
    let alice = bed.client("alice", &["tools"]).await;
    let pods: Api<Pod> = Api::namespaced(alice, "tool-a");
    match pods.watch(&WatchParams::default(), "0").await {
        Err(e) => assert_eq!(
            refusal::<()>(Err(e)).2,
            "pods is forbidden: User \"alice\" cannot watch resource \"pods\" in API group \"\" in the namespace \"tool-a\""
        ),
        Ok(_) => panic!("alice may get and list pods, not watch them"),
    }

    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "tool-a");
    let old = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    create::<ConfigMap>(
        &admin,
        Some("tool-a"),
        json!({"metadata": {"name": "late"}}),
    )
    .await;
    // A stream that is up to date goes on through a compaction (it needs no history).
    let mut open = cms
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    assert_eq!(next_events(&mut open, 1).await, [ev("ADDED", "late", "")]);
    bed.api.compact();
    cms.delete("late", &DeleteParams::default()).await.unwrap();
    assert_eq!(next_events(&mut open, 1).await, [ev("DELETED", "late", "")]);
    let gone = |e: Option<Result<WatchEvent<ConfigMap>, kube::Error>>| match e {
        Some(Ok(WatchEvent::Error(e))) => (e.code, e.reason),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    };
    // A new watch from before the compaction: one 410 ERROR event, then the end.
    let mut stale = cms
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    assert_eq!(gone(stale.next().await), (410, "Expired".to_string()));
    assert!(stale.next().await.is_none());
}
