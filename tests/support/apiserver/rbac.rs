//! The authorizer: `system:masters` may do anything (the privileged-group authorizer); anyone
//! else is allowed what RBAC grants, as the real RBAC authorizer decides it. ClusterRoleBindings
//! grant their ClusterRole everywhere (cluster-scoped resources too); a RoleBinding grants its
//! Role (of its namespace) or ClusterRole in its namespace only. Subjects: `User` (name),
//! `Group` (every authenticated user is in `system:authenticated`), `ServiceAccount` (user
//! `system:serviceaccount:NS:NAME`, NS defaulting to the binding's). Rules match on `verbs`,
//! `apiGroups`, `resources` (`*`, `pods/log`, `*/scale`), `resourceNames` (which only a request
//! for a named object can match: never a create or an unnamed list) and, for the non-resource
//! paths, `nonResourceURLs` (`/apis/*`).
//!
//! The bootstrap policy of a kubeadm cluster is built in (not stored): `system:basic-user`,
//! `system:discovery` and `system:public-info-viewer` for every authenticated user, and
//! `cluster-admin` for the group `kubeadm:cluster-admins`.
//!
//! Privilege escalation is prevented as the real RBAC storage does for anyone but
//! `system:masters`: a Role or ClusterRole may only be written by who holds every permission it
//! grants (in its namespace, or cluster-wide for a ClusterRole) or may `escalate` it; a binding
//! only by who holds every permission of the role it refers to (in the binding's namespace) or
//! may `bind` that role. "Holds" is checked rule by rule after breaking rules down to one verb,
//! group, resource and name each (the real `Covers`); a write that changes only ownerReferences
//! or finalizers is not checked. Refusals are 403 with the real message.

use serde_json::{Value, json};

use super::errors::{self, Fail, FieldError, FieldKind, Reply, group_resource, quote, quote_list};
use super::{Req, Store, Target, User};

const RBAC: &str = "rbac.authorization.k8s.io";

/// What the authorizer is asked (the real `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attrs {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The path of a non-resource request.
    pub path: String,
    pub resource_request: bool,
}

impl Attrs {
    /// A resource request for `verb` on `group`/`resource` `name` in `namespace`.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            verb: verb.into(),
            group: group.into(),
            version: "*".into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            resource_request: true,
            ..Default::default()
        }
    }
}

/// A policy rule.
#[derive(Clone, Debug, Default, PartialEq)]
struct Rule {
    verbs: Vec<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    urls: Vec<String>,
}

fn strs(v: &Value, k: &str) -> Vec<String> {
    v[k].as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn has(list: &[String], x: &str) -> bool {
    list.iter().any(|s| s == x)
}

fn has_all(list: &[String], xs: &[String]) -> bool {
    xs.iter().all(|x| has(list, x))
}

impl Rule {
    fn parse(v: &Value) -> Self {
        Self {
            verbs: strs(v, "verbs"),
            groups: strs(v, "apiGroups"),
            resources: strs(v, "resources"),
            names: strs(v, "resourceNames"),
            urls: strs(v, "nonResourceURLs"),
        }
    }

    fn allows(&self, a: &Attrs) -> bool {
        if !(has(&self.verbs, "*") || has(&self.verbs, &a.verb)) {
            return false;
        }
        if !a.resource_request {
            return self.urls.iter().any(|u| {
                u == "*"
                    || *u == a.path
                    || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
            });
        }
        let combined = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
        });
        (has(&self.groups, "*") || has(&self.groups, &a.group))
            && resource
            && (self.names.is_empty() || has(&self.names, &a.name))
    }

    /// The real `BreakdownRule`: one verb, group, resource (and name) each.
    fn breakdown(&self) -> Vec<Rule> {
        let one = |s: &String| vec![s.clone()];
        let mut out = Vec::new();
        for g in &self.groups {
            for r in &self.resources {
                for v in &self.verbs {
                    let base = Rule {
                        verbs: one(v),
                        groups: one(g),
                        resources: one(r),
                        ..Default::default()
                    };
                    if self.names.is_empty() {
                        out.push(base);
                    } else {
                        out.extend(self.names.iter().map(|n| Rule {
                            names: one(n),
                            ..base.clone()
                        }));
                    }
                }
            }
        }
        for u in &self.urls {
            for v in &self.verbs {
                out.push(Rule {
                    verbs: one(v),
                    urls: one(u),
                    ..Default::default()
                });
            }
        }
        out
    }

    /// The real `ruleCovers`: whether this rule grants everything `sub` grants.
    fn covers(&self, sub: &Rule) -> bool {
        let verbs = has(&self.verbs, "*") || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.groups, "*") || has_all(&self.groups, &sub.groups);
        let resources = has(&self.resources, "*")
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/')
                        .is_some_and(|(_, s)| has(&self.resources, &format!("*/{s}")))
            });
        let urls = sub.urls.iter().all(|u| {
            self.urls
                .iter()
                .any(|o| o == u || (o.ends_with('*') && u.starts_with(o.trim_end_matches('*'))))
        });
        let names =
            self.names.is_empty() || (!sub.names.is_empty() && has_all(&self.names, &sub.names));
        verbs && groups && resources && urls && names
    }

    /// The real `CompactString`.
    fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.urls),
            ("ResourceNames", &self.names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", quote_list(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// Rules granted to a user, and by what (for the `reason` of an access review).
struct Grant {
    describe: String,
    rules: Vec<Rule>,
}

fn rules_of(role: Option<&Value>) -> Vec<Rule> {
    role.and_then(|r| r["rules"].as_array())
        .into_iter()
        .flatten()
        .map(Rule::parse)
        .collect()
}

/// A built-in ClusterRoleBinding: binding, role, group, rules.
type Bootstrap = (&'static str, &'static str, &'static str, Vec<Rule>);

/// The bootstrap ClusterRoleBindings built in.
static BOOTSTRAP: std::sync::LazyLock<Vec<Bootstrap>> = std::sync::LazyLock::new(|| {
    bootstrap()
        .into_iter()
        .map(|(b, r, g, rules)| (b, r, g, rules_of(Some(&json!({ "rules": rules })))))
        .collect()
});

fn bootstrap() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let info = json!(["/healthz", "/livez", "/readyz", "/version", "/version/"]);
    vec![
        (
            "kubeadm:cluster-admins",
            "cluster-admin",
            "kubeadm:cluster-admins",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        (
            "system:basic-user",
            "system:basic-user",
            "system:authenticated",
            json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                    "verbs": ["create"]}]),
        ),
        (
            "system:discovery",
            "system:discovery",
            "system:authenticated",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                "verbs": ["get"]}]),
        ),
        (
            "system:public-info-viewer",
            "system:public-info-viewer",
            "system:authenticated",
            json!([{"nonResourceURLs": info, "verbs": ["get"]}]),
        ),
        (
            "system:public-info-viewer",
            "system:public-info-viewer",
            "system:unauthenticated",
            json!([{"nonResourceURLs": info, "verbs": ["get"]}]),
        ),
    ]
}

/// Whether binding subject `s` is `user` (the real `appliesToUser`).
fn applies(s: &Value, user: &User, binding_ns: &str) -> bool {
    let name = s["name"].as_str().unwrap_or_default();
    match s["kind"].as_str() {
        Some("User") => user.name == name,
        Some("Group") => has(&user.groups, name),
        Some("ServiceAccount") => {
            let ns = s["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn describe_subject(s: &Value, binding_ns: &str) -> String {
    let kind = s["kind"].as_str().unwrap_or_default();
    let name = s["name"].as_str().unwrap_or_default();
    if kind == "ServiceAccount" {
        let ns = s["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_ns);
        format!("{kind} {}", quote(&format!("{name}/{ns}")))
    } else {
        format!("{kind} {}", quote(name))
    }
}

/// The role a binding refers to, from the store.
fn role_of<'a>(st: &'a Store, role_ref: &Value, binding_ns: &str) -> Option<&'a Value> {
    let name = role_ref["name"].as_str().unwrap_or_default().to_string();
    let (plural, ns) = match role_ref["kind"].as_str() {
        Some("Role") => ("roles", binding_ns),
        Some("ClusterRole") => ("clusterroles", ""),
        _ => return None,
    };
    st.objects
        .get(&(RBAC.into(), plural.into(), ns.into(), name))
}

/// Visits every grant that applies to `user` in `ns` ("": the cluster-wide ones only) until
/// `stop` says so (the real `VisitRulesFor`).
fn visit(st: &Store, user: &User, ns: &str, mut stop: impl FnMut(Grant) -> bool) {
    for (binding, role, group, rules) in BOOTSTRAP.iter() {
        if has(&user.groups, group)
            && stop(Grant {
                describe: format!(
                    "ClusterRoleBinding {} of ClusterRole {} to Group {}",
                    quote(binding),
                    quote(role),
                    quote(group)
                ),
                rules: rules.clone(),
            })
        {
            return;
        }
    }
    let grant = |b: &Value, binding_ns: &str, what: String| {
        let role_ref = &b["roleRef"];
        if binding_ns.is_empty() && role_ref["kind"] != "ClusterRole" {
            return None;
        }
        let s = b["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| applies(s, user, binding_ns))?;
        Some(Grant {
            describe: format!(
                "{what} of {} {} to {}",
                role_ref["kind"].as_str().unwrap_or_default(),
                quote(role_ref["name"].as_str().unwrap_or_default()),
                describe_subject(s, binding_ns)
            ),
            rules: rules_of(role_of(st, role_ref, binding_ns)),
        })
    };
    for (k, b) in st.of(RBAC, "clusterrolebindings") {
        if let Some(g) = grant(b, "", format!("ClusterRoleBinding {}", quote(&k.3)))
            && stop(g)
        {
            return;
        }
    }
    if ns.is_empty() {
        return;
    }
    for (k, b) in st.of_ns(RBAC, "rolebindings", ns) {
        let what = format!("RoleBinding {}", quote(&format!("{}/{ns}", k.3)));
        if let Some(g) = grant(b, ns, what)
            && stop(g)
        {
            return;
        }
    }
}

/// Whether `user` may do `a`: the reason when allowed (empty for `system:masters`).
pub fn decide(st: &Store, user: &User, a: &Attrs) -> Option<String> {
    if has(&user.groups, "system:masters") {
        return Some(String::new());
    }
    let mut reason = None;
    visit(st, user, &a.namespace, |g| {
        let allows = g.rules.iter().any(|r| r.allows(a));
        if allows {
            reason = Some(format!("RBAC: allowed by {}", g.describe));
        }
        allows
    });
    reason
}

/// The real `forbiddenMessage`.
fn forbidden_message(user: &User, a: &Attrs) -> String {
    let who = quote(&user.name);
    if !a.resource_request {
        return format!("User {who} cannot {} path {}", a.verb, quote(&a.path));
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {}", quote(&a.namespace))
    };
    format!(
        "User {who} cannot {} resource {} in API group {} {scope}",
        a.verb,
        quote(&resource),
        quote(&a.group)
    )
}

/// Allowed, or the real 403.
pub fn authorize(st: &Store, user: &User, a: &Attrs) -> Result<(), Fail> {
    if decide(st, user, a).is_some() {
        return Ok(());
    }
    let why = forbidden_message(user, a);
    if !a.resource_request {
        return Err(errors::forbidden("", "", "", &why));
    }
    Err(errors::forbidden(&a.group, &a.resource, &a.name, &why))
}

/// The real `ConfirmNoEscalation`: `rules` must be covered by what `user` holds in `ns`.
fn confirm_no_escalation(st: &Store, user: &User, ns: &str, rules: &[Rule]) -> Result<(), String> {
    let mut owned: Vec<Rule> = Vec::new();
    visit(st, user, ns, |g| {
        owned.extend(g.rules);
        false
    });
    let missing: Vec<Rule> = rules
        .iter()
        .flat_map(Rule::breakdown)
        .filter(|a| !owned.iter().any(|o| o.covers(a)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // The real `CompactRules`: simple rules of one group and resource merge their verbs.
    let mut merged: Vec<Rule> = Vec::new();
    for m in missing {
        let simple = |r: &Rule| r.names.is_empty() && r.urls.is_empty();
        if let Some(x) = merged
            .iter_mut()
            .find(|x| simple(x) && simple(&m) && x.groups == m.groups && x.resources == m.resources)
        {
            if !has(&x.verbs, &m.verbs[0]) {
                x.verbs.push(m.verbs[0].clone());
            }
            continue;
        }
        merged.push(m);
    }
    let mut lines: Vec<String> = merged.iter().map(Rule::compact_string).collect();
    lines.sort();
    lines.dedup();
    Err(format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        quote(&user.name),
        quote_list(&user.groups),
        lines.join("\n")
    ))
}

/// Only ownerReferences, finalizers or server-set metadata differ.
fn only_gc_fields(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            for k in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
                "generation",
            ] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// The real roleRef validation of a binding: group, kind, name, and immutability.
fn validate_role_ref(t: &Target, old: Option<&Value>, new: &Value) -> Result<(), Fail> {
    let r = &new["roleRef"];
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let mut errs = Vec::new();
    let group = r["apiGroup"].as_str().unwrap_or_default();
    if group != RBAC {
        errs.push(FieldError::new(
            "roleRef.apiGroup",
            FieldKind::NotSupported,
            quote(group),
            format!("supported values: {}", quote(RBAC)),
        ));
    }
    let kinds: &[&str] = if t.res.plural == "clusterrolebindings" {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    let kind = r["kind"].as_str().unwrap_or_default();
    if !kinds.contains(&kind) {
        let supported: Vec<String> = kinds.iter().map(|k| quote(k)).collect();
        errs.push(FieldError::new(
            "roleRef.kind",
            FieldKind::NotSupported,
            quote(kind),
            format!("supported values: {}", supported.join(", ")),
        ));
    }
    if r["name"].as_str().unwrap_or_default().is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    if let Some(o) = old
        && o["roleRef"] != *r
    {
        let value = format!(
            "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
            quote(group),
            quote(kind),
            quote(r["name"].as_str().unwrap_or_default())
        );
        errs.push(FieldError::new(
            "roleRef",
            FieldKind::Invalid,
            value,
            "cannot change roleRef",
        ));
    }
    errors::check_fields(RBAC, &t.res.kind, name, &errs)
}

/// RBAC admission of a write to a role or binding (see the module doc).
pub fn admit(
    st: &Store,
    r: &Req,
    t: &Target,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), Fail> {
    let plural = t.res.plural.as_str();
    let binding = matches!(plural, "rolebindings" | "clusterrolebindings");
    if t.res.group != RBAC || !(binding || matches!(plural, "roles" | "clusterroles")) {
        return Ok(());
    }
    if binding {
        validate_role_ref(t, old, new)?;
    }
    if has(&r.user.groups, "system:masters") || old.is_some_and(|o| only_gc_fields(o, new)) {
        return Ok(());
    }
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let refuse = |why: String| errors::forbidden(RBAC, plural, name, &why);
    if !binding {
        let escalate = Attrs::resource("escalate", RBAC, plural, &t.ns, &r.attrs.name);
        if decide(st, &r.user, &escalate).is_some() {
            return Ok(());
        }
        return confirm_no_escalation(st, &r.user, &t.ns, &rules_of(Some(new))).map_err(refuse);
    }
    let role_ref = &new["roleRef"];
    let role_plural = if role_ref["kind"] == "Role" {
        "roles"
    } else {
        "clusterroles"
    };
    let role_name = role_ref["name"].as_str().unwrap_or_default();
    let bind = Attrs::resource(
        "bind",
        role_ref["apiGroup"].as_str().unwrap_or_default(),
        role_plural,
        &t.ns,
        role_name,
    );
    if decide(st, &r.user, &bind).is_some() {
        return Ok(());
    }
    let Some(role) = role_of(st, role_ref, &t.ns) else {
        return Err(refuse(format!(
            "{} {} not found",
            group_resource(RBAC, role_plural),
            quote(role_name)
        )));
    };
    confirm_no_escalation(st, &r.user, &t.ns, &rules_of(Some(role))).map_err(refuse)
}

/// The attributes a SubjectAccessReview spec asks about.
fn review_attrs(spec: &Value) -> Attrs {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let ra = &spec["resourceAttributes"];
    if ra.is_object() {
        return Attrs {
            verb: s(ra, "verb"),
            group: s(ra, "group"),
            version: s(ra, "version"),
            resource: s(ra, "resource"),
            subresource: s(ra, "subresource"),
            namespace: s(ra, "namespace"),
            name: s(ra, "name"),
            path: String::new(),
            resource_request: true,
        };
    }
    let nra = &spec["nonResourceAttributes"];
    Attrs {
        verb: s(nra, "verb"),
        path: s(nra, "path"),
        ..Default::default()
    }
}

/// Answers a SelfSubjectAccessReview, SubjectAccessReview or SelfSubjectReview (201, never
/// stored).
pub fn review(st: &Store, r: &Req, t: &Target, body: Value) -> Result<Reply, Fail> {
    let mut out = json!({"kind": t.res.kind, "apiVersion": t.api_version(),
        "metadata": {"creationTimestamp": null}});
    if t.res.plural == "selfsubjectreviews" {
        out["status"] = json!({"userInfo": {"username": r.user.name, "groups": r.user.groups}});
        return Ok(errors::reply(201, out));
    }
    let spec = body["spec"].clone();
    let who = if t.res.plural == "selfsubjectaccessreviews" {
        r.user.clone()
    } else {
        User {
            name: spec["user"].as_str().unwrap_or_default().into(),
            groups: strs(&spec, "groups"),
        }
    };
    let mut errs = Vec::new();
    let (ra, nra) = (
        spec["resourceAttributes"].is_object(),
        spec["nonResourceAttributes"].is_object(),
    );
    if ra && nra {
        errs.push(FieldError::new(
            "spec.nonResourceAttributes",
            FieldKind::Invalid,
            "&authorization.NonResourceAttributes{…}".into(),
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if !ra && !nra {
        errs.push(FieldError::new(
            "spec.resourceAttributes",
            FieldKind::Invalid,
            "null".into(),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if t.res.plural != "selfsubjectaccessreviews" && who.name.is_empty() && who.groups.is_empty() {
        errs.push(FieldError::invalid(
            "spec.user",
            "",
            "at least one of user or group must be specified",
        ));
    }
    if t.res.plural == "localsubjectaccessreviews"
        && ra
        && spec["resourceAttributes"]["namespace"] != t.ns.as_str()
    {
        errs.push(FieldError::invalid(
            "spec.resourceAttributes.namespace",
            spec["resourceAttributes"]["namespace"]
                .as_str()
                .unwrap_or_default(),
            "must match metadata.namespace",
        ));
    }
    errors::check_fields(&t.res.group, &t.res.kind, "", &errs)?;
    let decision = decide(st, &who, &review_attrs(&spec));
    out["spec"] = spec;
    out["status"] = json!({"allowed": decision.is_some()});
    if let Some(reason) = decision.filter(|r| !r.is_empty()) {
        out["status"]["reason"] = json!(reason);
    }
    Ok(errors::reply(201, out))
}
