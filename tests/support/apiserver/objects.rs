//! The object verbs and subresources, and the one write path every client write takes
//! ([`commit`]): namespace lifecycle, the kind's strategy (status kept out of main-resource
//! writes, CSR rules), admission (RBAC escalation, CSR approval and signing), server-set
//! metadata (uid, creationTimestamp, generation, managedFields), finalizers, and no write at all
//! when nothing changed.

use serde_json::{Value, json};

use super::apply;
use super::errors::{self, Fail, FieldError, Reply, reply};
use super::{Owners, Req, Store, Target, csr, rbac, select};

/// What becomes of field ownership in a write.
pub enum Manage {
    /// The ownership an apply computed.
    Owners(Owners),
    /// A non-apply write by this manager.
    Update(String),
    /// Unchanged (subresources, controllers).
    Keep,
}

/// Serves a routed request.
pub fn dispatch(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let verb = r.attrs.verb.as_str();
    if t.subresource.is_none() && !t.res.verbs.iter().any(|v| v == verb) {
        return Err(errors::method_not_allowed());
    }
    let named = t.name.is_some();
    match (t.subresource.as_deref(), verb) {
        (None, "create") if t.res.is_review() => {
            let body = parse_body(r, t)?;
            rbac::review(st, r, t, body)
        }
        (None, "list" | "watch") => select::list(st, r, t),
        // Namespaced objects live in a namespace: only lists span them.
        (None, _) if t.res.namespaced && t.ns.is_empty() => Err(if named {
            errors::no_route()
        } else {
            errors::method_not_allowed()
        }),
        (None, "create") if named => Err(errors::method_not_allowed()),
        (None, "create") => create(st, r, t),
        (None, "get") => Ok(reply(200, current(st, t)?)),
        (None, "update") => update(st, r, t),
        (None, "patch") => patch(st, r, t),
        (None, "delete") => delete(st, r, t),
        (None, "deletecollection") => delete_collection(st, r, t),
        (Some("log"), "get") => pod_log(st, r, t),
        (Some("scale"), "get" | "update" | "patch") => scale(st, r, t),
        (Some("status" | "approval"), "get" | "update" | "patch") => sub_object(st, r, t),
        _ => Err(errors::method_not_allowed()),
    }
}

/// The stored object the target names, or 404.
fn current(st: &Store, t: &Target) -> Result<Value, Fail> {
    st.objects
        .get(&t.key())
        .cloned()
        .ok_or_else(|| errors::not_found(&t.res, t.name.as_deref().unwrap_or_default()))
}

/// The request body as an object (JSON, or YAML).
pub fn parse_body(r: &Req, t: &Target) -> Result<Value, Fail> {
    let parsed: Option<Value> = serde_json::from_slice(&r.body)
        .ok()
        .or_else(|| serde_saphyr::from_slice::<Value>(&r.body).ok());
    match parsed {
        Some(v) if v.is_object() || v.is_array() => Ok(v),
        _ => Err(errors::bad_request(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (for {})",
            t.res.kind
        ))),
    }
}

/// apiVersion and kind of a body: as the URL says (filled in when missing, unless `strict`).
pub fn check_kind(t: &Target, obj: &Value, strict: bool) -> Result<(), Fail> {
    let (av, kind) = (obj["apiVersion"].as_str(), obj["kind"].as_str());
    let missing = av.is_none() && kind.is_none();
    if (missing && !strict) || (av == Some(&t.api_version()) && kind == Some(&t.res.kind)) {
        return Ok(());
    }
    Err(errors::bad_request(format!(
        "the object is {} {}, the URL is for {} {}",
        obj["apiVersion"],
        obj["kind"],
        t.api_version(),
        t.res.kind
    )))
}

/// The name of a body, which must match the URL's (and the namespace too).
pub fn check_name(t: &Target, obj: &Value) -> Result<String, Fail> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(errors::invalid(
            &t.res.group,
            &t.res.kind,
            "",
            &[FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    if let Some(n) = &t.name
        && n != name
    {
        return Err(errors::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({n})"
        )));
    }
    if let Some(ns) = obj["metadata"]["namespace"].as_str()
        && t.res.namespaced
        && !ns.is_empty()
        && ns != t.ns
    {
        return Err(errors::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(name.to_string())
}

fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The name rules of the real validation: DNS-1123 label (namespaces), DNS-1035 label
/// (services), path segment (RBAC, CSRs, reviews), DNS-1123 subdomain (the rest).
pub fn validate_name(t: &Target, name: &str) -> Result<(), Fail> {
    let group = t.res.group.as_str();
    let detail = match (group, t.res.plural.as_str()) {
        ("", "namespaces") if !dns_label(name) => Some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string(),
        ),
        ("", "services") if !(dns_label(name) && name.as_bytes()[0].is_ascii_lowercase()) => Some(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string(),
        ),
        ("", "namespaces" | "services") => None,
        ("rbac.authorization.k8s.io" | "certificates.k8s.io", _) => match name {
            "." | ".." => Some(format!("may not be '{name}'")),
            n if n.contains('/') => Some("may not contain '/'".into()),
            n if n.contains('%') => Some("may not contain '%'".into()),
            _ => None,
        },
        _ if name.len() > 253 || !name.split('.').all(dns_label) => Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string(),
        ),
        _ => None,
    };
    match detail {
        Some(d) => Err(errors::invalid(
            group,
            &t.res.kind,
            name,
            &[FieldError::invalid("metadata.name", name, d)],
        )),
        None => Ok(()),
    }
}

/// 409 unless `body`'s resourceVersion (if any) is `old`'s.
fn precondition(t: &Target, old: &Value, body: &Value, name: &str) -> Result<(), Fail> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            Err(errors::conflict(&t.res, name))
        }
        _ => Ok(()),
    }
}

/// The object minus what only the server sets, for comparisons.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    v
}

/// What `metadata.generation` follows: for built-in kinds their spec (a webhook
/// configuration's webhooks), for custom resources everything but metadata and status.
fn generation_input(t: &Target, v: &Value) -> Value {
    if t.res.builtin {
        let field = if t.res.plural.ends_with("webhookconfigurations") {
            "webhooks"
        } else {
            "spec"
        };
        return v.get(field).cloned().unwrap_or(Value::Null);
    }
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// Whether the custom resource's CRD gives it a status subresource.
fn cr_has_status(st: &Store, t: &Target) -> bool {
    crd_version(st, t).is_some_and(|v| v["subresources"]["status"].is_object())
}

/// The CRD version that serves a custom resource.
fn crd_version(st: &Store, t: &Target) -> Option<Value> {
    st.of("apiextensions.k8s.io", "customresourcedefinitions")
        .map(|(_, c)| c)
        .find(|c| {
            c["spec"]["group"] == t.res.group && c["spec"]["names"]["plural"] == t.res.plural
        })?["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == t.res.version)
        .cloned()
}

/// The kind's strategy for a write of the main resource (or, with `sub`, a subresource): what
/// the server keeps, resets or sets.
fn prepare(
    st: &Store,
    r: &Req,
    t: &Target,
    old: Option<&Value>,
    new: &mut Value,
    sub: Option<&str>,
) -> Result<(), Fail> {
    if t.res.group == "certificates.k8s.io" {
        return csr::prepare(r, old, new, sub);
    }
    let status_sub = if t.res.builtin {
        t.res.has("status")
    } else {
        cr_has_status(st, t)
    };
    match (old, sub) {
        (_, Some(_)) => {}
        (Some(o), None) if status_sub => match o.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => remove(new, "status"),
        },
        (None, None) => match (t.res.group.as_str(), t.res.plural.as_str()) {
            ("", "namespaces") => {
                new["status"] = json!({"phase": "Active"});
                new["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            ("", "pods") => new["status"] = json!({"phase": "Pending"}),
            ("", "nodes") => {}
            _ if status_sub => remove(new, "status"),
            _ => {}
        },
        _ => {}
    }
    if t.res.group.is_empty() && t.res.plural == "namespaces" && sub.is_none() {
        // Its name label, always; its finalizers are the `finalize` subresource's.
        let name = new["metadata"]["name"].clone();
        new["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
        if let Some(o) = old {
            new["spec"]["finalizers"] = o["spec"]["finalizers"].clone();
        }
    }
    Ok(())
}

fn remove(v: &mut Value, k: &str) {
    if let Some(m) = v.as_object_mut() {
        m.remove(k);
    }
}

/// The one write path (see the module doc): the stored object, or `old` if nothing changed.
pub fn commit(
    st: &mut Store,
    r: &Req,
    t: &Target,
    old: Option<&Value>,
    mut new: Value,
    sub: Option<&str>,
    manage: Manage,
) -> Result<Value, Fail> {
    let k = t.key();
    if old.is_none() && t.res.namespaced && !st.namespace_exists(&t.ns) {
        return Err(errors::namespace_not_found(&t.ns));
    }
    new["apiVersion"] = json!(t.api_version());
    new["kind"] = json!(t.res.kind);
    if let Some(m) = new["metadata"].as_object_mut() {
        for f in [
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "resourceVersion",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
    prepare(st, r, t, old, &mut new, sub)?;
    rbac::admit(st, r, t, old, &new)?;
    csr::admit(st, r, t, old, &new, sub)?;
    super::policy::admit(st, t, old, &new, sub)?;
    complete_metadata(st, t, old, &mut new);
    let old_owners = st.owners.get(&k).cloned();
    let owners = match manage {
        Manage::Owners(o) => o,
        Manage::Update(m) => {
            apply::update_owners(&old_owners.clone().unwrap_or_default(), &m, old, &new)
        }
        Manage::Keep => old_owners.clone().unwrap_or_default(),
    };
    if !owners.is_empty() {
        new["metadata"]["managedFields"] =
            apply::managed_fields(old, old_owners.as_ref(), &owners, &t.api_version());
    }
    if t.res.plural == "customresourcedefinitions" {
        serve_crd(st, &mut new);
    }
    if let Some(o) = old
        && comparable(o) == comparable(&new)
    {
        return Ok(o.clone());
    }
    if new["metadata"]["deletionTimestamp"].is_string() && finalizers(&new).is_empty() {
        st.remove(&k);
        return Ok(new);
    }
    if owners.is_empty() {
        st.owners.remove(&k);
    } else {
        st.owners.insert(k.clone(), owners);
    }
    Ok(st.save(k, new))
}

fn finalizers(v: &Value) -> Vec<Value> {
    v["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Namespace, uid, creationTimestamp, deletionTimestamp, generation.
fn complete_metadata(st: &Store, t: &Target, old: Option<&Value>, new: &mut Value) {
    if t.res.namespaced {
        new["metadata"]["namespace"] = json!(t.ns);
    }
    match old {
        Some(o) => {
            for f in ["uid", "creationTimestamp", "deletionTimestamp"] {
                if let Some(v) = o["metadata"].get(f) {
                    new["metadata"][f] = v.clone();
                }
            }
        }
        None => {
            new["metadata"]["uid"] = json!(st.uid());
            new["metadata"]["creationTimestamp"] = json!(super::now());
        }
    }
    if t.res.generation {
        let g = match old {
            Some(o) => {
                o["metadata"]["generation"].as_u64().unwrap_or(1)
                    + u64::from(generation_input(t, o) != generation_input(t, new))
            }
            None => 1,
        };
        new["metadata"]["generation"] = json!(g);
    }
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
        let subresources: Vec<String> = ["status", "scale"]
            .into_iter()
            .filter(|s| v["subresources"][s].is_object())
            .map(str::to_string)
            .collect();
        let r = super::Resource {
            group: group.into(),
            version: v["name"].as_str().unwrap_or_default().into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            verbs: super::VERBS.iter().map(|s| s.to_string()).collect(),
            subresources,
            generation: true,
            builtin: false,
        };
        st.resources
            .retain(|x| !(x.group == r.group && x.version == r.version && x.plural == r.plural));
        st.resources.push(r);
    }
    crd["status"] = json!({"conditions": [{"type": "Established", "status": "True"}, {"type": "NamesAccepted", "status": "True"}],
        "acceptedNames": spec["names"].clone()});
}

fn create(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let mut obj = parse_body(r, t)?;
    check_kind(t, &obj, false)?;
    if obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
        && let Some(prefix) = obj["metadata"]["generateName"].as_str()
    {
        let suffix = format!("{:05x}", st.revision.wrapping_mul(2654435761) % 0xfffff);
        obj["metadata"]["name"] = json!(format!("{prefix}{suffix}"));
    }
    let name = check_name(t, &obj)?;
    validate_name(t, &name)?;
    let t = t.named(&name);
    if st.objects.contains_key(&t.key()) {
        return Err(errors::already_exists(&t.res, &name));
    }
    let saved = commit(st, r, &t, None, obj, None, Manage::Update(r.manager()))?;
    Ok(reply(201, saved))
}

fn update(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let obj = parse_body(r, t)?;
    check_kind(t, &obj, false)?;
    let name = check_name(t, &obj)?;
    let old = current(st, t)?;
    if !t.res.builtin
        && obj["metadata"]["resourceVersion"]
            .as_str()
            .is_none_or(str::is_empty)
    {
        return Err(errors::invalid(
            &t.res.group,
            &t.res.kind,
            &name,
            &[FieldError::invalid(
                "metadata.resourceVersion",
                "",
                "must be specified for an update",
            )],
        ));
    }
    precondition(t, &old, &obj, &name)?;
    let saved = commit(st, r, t, Some(&old), obj, None, Manage::Update(r.manager()))?;
    Ok(reply(200, saved))
}

/// `old` with the request's (non-apply) patch applied.
fn patched(r: &Req, t: &Target, old: &Value) -> Result<Value, Fail> {
    let patch = parse_body(r, t)?;
    let mut out = old.clone();
    if r.ctype.starts_with("application/json-patch+json") {
        apply::json_patch(&mut out, &patch).map_err(errors::bad_request)?;
    } else if r.ctype.starts_with("application/merge-patch+json")
        || r.ctype
            .starts_with("application/strategic-merge-patch+json")
    {
        apply::merge_patch(&mut out, &patch);
    } else {
        return Err(Box::new(errors::status(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {})",
                r.ctype
            ),
            json!({}),
        )));
    }
    Ok(out)
}

fn patch(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    if r.ctype.starts_with("application/apply-patch") {
        let Some(manager) = r.query.get("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(errors::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        };
        let obj = parse_body(r, t)?;
        let force = r.query.get("force").is_some_and(|f| f == "true");
        return apply::apply(st, r, t, manager, obj, force);
    }
    let old = current(st, t)?;
    let new = patched(r, t, &old)?;
    let name = t.name.clone().unwrap_or_default();
    if new["metadata"]["name"] != old["metadata"]["name"] {
        return Err(errors::invalid(
            &t.res.group,
            &t.res.kind,
            &name,
            &[FieldError::invalid(
                "metadata.name",
                new["metadata"]["name"].as_str().unwrap_or_default(),
                "field is immutable",
            )],
        ));
    }
    precondition(t, &old, &new, &name)?;
    let saved = commit(st, r, t, Some(&old), new, None, Manage::Update(r.manager()))?;
    Ok(reply(200, saved))
}

/// Removes the object, or marks it deleted while finalizers remain.
fn delete_one(st: &mut Store, t: &Target, old: Value) -> Value {
    let k = t.key();
    if !finalizers(&old).is_empty() {
        let mut o = old;
        if !o["metadata"]["deletionTimestamp"].is_string() {
            o["metadata"]["deletionTimestamp"] = json!(super::now());
            return st.save(k, o);
        }
        return o;
    }
    st.remove(&k);
    if t.res.plural == "customresourcedefinitions" {
        unserve_crd(st, &old);
    }
    old
}

/// A deleted CRD: its kind is no longer served and its objects are gone.
fn unserve_crd(st: &mut Store, crd: &Value) {
    let (group, plural) = (
        crd["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        crd["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    );
    st.resources
        .retain(|r| r.builtin || r.group != group || r.plural != plural);
    let keys: Vec<_> = st.of(&group, &plural).map(|(k, _)| k.clone()).collect();
    for k in keys {
        st.remove(&k);
    }
}

fn delete(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let old = current(st, t)?;
    let name = t.name.clone().unwrap_or_default();
    if !r.body.is_empty()
        && let Ok(opts) = serde_json::from_slice::<Value>(&r.body)
    {
        let pre = &opts["preconditions"];
        for (f, v) in [
            ("uid", &pre["uid"]),
            ("resourceVersion", &pre["resourceVersion"]),
        ] {
            if v.is_string() && *v != old["metadata"][f] {
                return Err(errors::conflict(&t.res, &name));
            }
        }
    }
    if t.res.group.is_empty() && t.res.plural == "namespaces" {
        return delete_namespace(st, t, old);
    }
    let out = delete_one(st, t, old);
    if st.objects.contains_key(&t.key()) || (t.res.group.is_empty() && t.res.plural == "pods") {
        return Ok(reply(200, out));
    }
    Ok(reply(
        200,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": t.res.group, "kind": t.res.plural,
                "uid": out["metadata"]["uid"]}}),
    ))
}

/// The real answer (the namespace, Terminating) with the double's effect (gone at once, with
/// everything in it).
fn delete_namespace(st: &mut Store, t: &Target, old: Value) -> Result<Reply, Fail> {
    let name = t.name.clone().unwrap_or_default();
    if matches!(name.as_str(), "default" | "kube-system" | "kube-public") {
        return Err(errors::forbidden(
            "",
            "namespaces",
            &name,
            "this namespace may not be deleted",
        ));
    }
    // Everything in it, whatever its kind (objects put there by a test included).
    let content: Vec<_> = st.objects.keys().filter(|k| k.2 == name).cloned().collect();
    for k in content {
        st.remove(&k);
    }
    st.logs.retain(|(ns, _), _| *ns != name);
    st.remove(&t.key());
    let mut out = old;
    out["metadata"]["deletionTimestamp"] = json!(super::now());
    out["status"]["phase"] = json!("Terminating");
    let rv = st.revision.to_string();
    out["metadata"]["resourceVersion"] = json!(rv);
    Ok(reply(200, out))
}

fn delete_collection(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let mut items = Vec::new();
    for (k, v) in select::matching(st, r, t)? {
        let one = Target {
            res: t.res.clone(),
            ns: k.2.clone(),
            name: Some(k.3.clone()),
            subresource: None,
        };
        items.push(delete_one(st, &one, v));
    }
    Ok(reply(
        200,
        json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": st.revision.to_string()}, "items": items}),
    ))
}

/// `status` and `approval`: GET the object; PUT or PATCH changes only what the subresource
/// owns.
fn sub_object(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let old = current(st, t)?;
    let body = match r.attrs.verb.as_str() {
        "get" => return Ok(reply(200, old)),
        "update" => {
            let b = parse_body(r, t)?;
            check_kind(t, &b, false)?;
            check_name(t, &b)?;
            b
        }
        _ => patched(r, t, &old)?,
    };
    let name = t.name.clone().unwrap_or_default();
    precondition(t, &old, &body, &name)?;
    let sub = t.subresource.as_deref();
    let new = if sub == Some("status") && t.res.group != "certificates.k8s.io" {
        let mut n = old.clone();
        n["status"] = body["status"].clone();
        n
    } else {
        body
    };
    let saved = commit(st, r, t, Some(&old), new, sub, Manage::Keep)?;
    Ok(reply(200, saved))
}

/// Where a kind keeps its replicas: (spec path, status path, selector path or the workload's
/// `spec.selector`).
fn scale_paths(st: &Store, t: &Target) -> (String, String, Option<String>) {
    if t.res.builtin {
        return ("spec.replicas".into(), "status.replicas".into(), None);
    }
    let s = crd_version(st, t)
        .map(|v| v["subresources"]["scale"].clone())
        .unwrap_or_default();
    let p = |k: &str, d: &str| {
        s[k].as_str()
            .unwrap_or(d)
            .trim_start_matches('.')
            .to_string()
    };
    let selector = s["labelSelectorPath"]
        .as_str()
        .map(|x| x.trim_start_matches('.').to_string());
    (
        p("specReplicasPath", "spec.replicas"),
        p("statusReplicasPath", "status.replicas"),
        selector,
    )
}

fn at<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    dotted.split('.').fold(v, |cur, k| &cur[k])
}

/// The autoscaling/v1 Scale of a workload.
fn scale_of(st: &Store, t: &Target, o: &Value) -> Value {
    let (spec, status, selector) = scale_paths(st, t);
    let m = &o["metadata"];
    let selector = match selector {
        Some(p) => at(o, &p).as_str().unwrap_or_default().to_string(),
        None => select::selector_string(&o["spec"]["selector"]),
    };
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": at(o, &spec).as_i64().unwrap_or(1)},
        "status": {"replicas": at(o, &status).as_i64().unwrap_or(0), "selector": selector}})
}

fn scale(st: &mut Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let old = current(st, t)?;
    let cur = scale_of(st, t, &old);
    let body = match r.attrs.verb.as_str() {
        "get" => return Ok(reply(200, cur)),
        "update" => parse_body(r, t)?,
        _ => {
            let mut p = cur.clone();
            let patch = parse_body(r, t)?;
            if r.ctype.starts_with("application/json-patch+json") {
                apply::json_patch(&mut p, &patch).map_err(errors::bad_request)?;
            } else {
                apply::merge_patch(&mut p, &patch);
            }
            p
        }
    };
    let name = t.name.clone().unwrap_or_default();
    if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(errors::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            body["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    precondition(t, &old, &body, &name)?;
    let replicas = body["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(errors::invalid(
            "autoscaling",
            "Scale",
            &name,
            &[FieldError::new(
                "spec.replicas",
                errors::FieldKind::Invalid,
                replicas.to_string(),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let (spec_path, _, _) = scale_paths(st, t);
    let mut new = old.clone();
    let mut cur = &mut new;
    let parts: Vec<&str> = spec_path.split('.').collect();
    for k in &parts[..parts.len() - 1] {
        cur = &mut cur[*k];
    }
    cur[parts[parts.len() - 1]] = json!(replicas);
    let saved = commit(st, r, t, Some(&old), new, None, Manage::Keep)?;
    Ok(reply(200, scale_of(st, t, &saved)))
}

/// A pod's log, as text: what [`super::ApiServer::set_log`] stored.
fn pod_log(st: &Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let pod = current(st, t)?;
    let name = t.name.clone().unwrap_or_default();
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match r.query.get("container") {
        Some(c) if !containers.is_empty() && !containers.contains(&c.as_str()) => {
            return Err(errors::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() > 1 => {
            return Err(errors::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
        _ => {}
    }
    let log = st
        .logs
        .get(&(t.ns.clone(), name))
        .cloned()
        .unwrap_or_default();
    let out = match r
        .query
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => {
            let lines: Vec<&str> = log.lines().collect();
            let mut s = lines[lines.len().saturating_sub(n)..].join("\n");
            if !s.is_empty() && log.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        None => log,
    };
    Ok(errors::text(out))
}
