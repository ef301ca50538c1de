//! List options as the real API takes them: `labelSelector` (the `labels.Parse` grammar: `k=v`,
//! `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, `k>1`, `k<1`, comma-separated and
//! ANDed), `fieldSelector` (`metadata.name`, `metadata.namespace` and the fields each built-in
//! kind supports, `=` `==` `!=`), and chunking: `limit` + `continue`, every page read from the
//! snapshot of the first page's revision (as etcd does), the token the real one
//! (base64url of `{"v":"meta.k8s.io/v1","rv":R,"start":"ns/name\u0000"}`),
//! `remainingItemCount` only without selectors, 400 for a malformed token, 410 Expired once the
//! history is compacted. Items come in etcd key order (`namespace/name`); those of built-in
//! kinds carry no apiVersion and kind, as in the real lists.

use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::errors::{self, Fail, Reply};
use super::{Key, Req, Store, Target};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Exists,
    NotExists,
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
struct LabelReq {
    key: String,
    op: Op,
}

impl LabelReq {
    fn matches(&self, labels: &Value) -> bool {
        let v = labels.get(&self.key).and_then(Value::as_str);
        match (&self.op, v) {
            (Op::Exists, v) => v.is_some(),
            (Op::NotExists, v) => v.is_none(),
            (Op::In(vals), Some(v)) => vals.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(vals), Some(v)) => !vals.iter().any(|x| x == v),
            (Op::NotIn(_), None) => true,
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }
}

fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => flush(&mut cur, &mut out),
            ',' | '(' | ')' | '<' | '>' => {
                flush(&mut cur, &mut out);
                out.push(c.to_string());
            }
            '!' | '=' => {
                flush(&mut cur, &mut out);
                if chars.peek() == Some(&'=') {
                    chars.next();
                    out.push(format!("{c}="));
                } else {
                    out.push(c.to_string());
                }
            }
            _ => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn is_op(t: &str) -> bool {
    matches!(t, "," | "(" | ")" | "<" | ">" | "!" | "=" | "==" | "!=")
}

/// A label name or value: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn valid_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|l| {
                    valid_name(l)
                        && l.bytes()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                })
                && valid_name(name)
        }
        None => valid_name(k),
    }
}

fn valid_value(v: &str) -> bool {
    v.is_empty() || valid_name(v)
}

/// Parses a label selector (an empty one selects everything).
fn parse_labels(s: &str) -> Result<Vec<LabelReq>, String> {
    let toks = tokens(s);
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| toks.get(i).map(String::as_str).unwrap_or("");
    let expected = |found: &str, what: &str| {
        format!("unable to parse requirement: found '{found}', expected: {what}")
    };
    while i < toks.len() {
        let negated = at(i) == "!";
        if negated {
            i += 1;
        }
        let key = at(i).to_string();
        if key.is_empty() || is_op(&key) {
            return Err(expected(&key, "identifier"));
        }
        if !valid_key(&key) {
            return Err(format!(
                "unable to parse requirement: key: Invalid value: {}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                errors::quote(&key)
            ));
        }
        i += 1;
        let op = if negated {
            Op::NotExists
        } else {
            match at(i) {
                "" | "," => Op::Exists,
                "=" | "==" | "!=" => {
                    let neg = at(i) == "!=";
                    i += 1;
                    let v = if at(i) == "," || at(i).is_empty() {
                        String::new()
                    } else {
                        i += 1;
                        at(i - 1).to_string()
                    };
                    if is_op(&v) {
                        return Err(expected(&v, "identifier"));
                    }
                    if neg {
                        Op::NotIn(vec![v])
                    } else {
                        Op::In(vec![v])
                    }
                }
                "in" | "notin" => {
                    let neg = at(i) == "notin";
                    i += 1;
                    if at(i) != "(" {
                        return Err(expected(at(i), "'('"));
                    }
                    i += 1;
                    let mut vals = Vec::new();
                    loop {
                        match at(i) {
                            ")" => break,
                            "," => i += 1,
                            "" => return Err(expected("", "')'")),
                            v if is_op(v) => return Err(expected(v, "identifier")),
                            v => {
                                vals.push(v.to_string());
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                    if neg { Op::NotIn(vals) } else { Op::In(vals) }
                }
                ">" | "<" => {
                    let gt = at(i) == ">";
                    i += 1;
                    let n: i64 = at(i).parse().map_err(|_| {
                        format!(
                            "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {}",
                            at(i)
                        )
                    })?;
                    i += 1;
                    if gt { Op::Gt(n) } else { Op::Lt(n) }
                }
                t => {
                    return Err(expected(t, "',', '!=', '==', '=', 'in', 'notin'"));
                }
            }
        };
        if let Op::In(vs) | Op::NotIn(vs) = &op
            && let Some(bad) = vs.iter().find(|v| !valid_value(v))
        {
            return Err(format!(
                "unable to parse requirement: values[0][{key}]: Invalid value: {}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                errors::quote(bad)
            ));
        }
        out.push(LabelReq { key, op });
        match at(i) {
            "" => {}
            "," => i += 1,
            t => return Err(expected(t, "','")),
        }
    }
    Ok(out)
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq)]
struct FieldReq {
    field: String,
    value: String,
    negated: bool,
}

/// Splits on the unescaped `sep`, unescaping `\,` `\=` `\\` in the parts.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.last_mut().unwrap().push('\\');
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            c if c == sep => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_fields(s: &str) -> Result<Vec<FieldReq>, String> {
    let mut out = Vec::new();
    for term in split_escaped(s, ',') {
        if term.is_empty() {
            continue;
        }
        let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, v, false)
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            ));
        };
        out.push(FieldReq {
            field: field.trim().to_string(),
            value: unescape(value),
            negated,
        });
    }
    Ok(out)
}

/// The name a field selector requires exactly (`metadata.name=X`), as RequestInfo takes it.
pub fn exact_name(selector: &str) -> Option<String> {
    parse_fields(selector)
        .ok()?
        .into_iter()
        .find(|f| f.field == "metadata.name" && !f.negated)
        .map(|f| f.value)
}

/// The fields a built-in kind can be selected by, beyond metadata.name and metadata.namespace.
fn kind_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "secrets" => &["type"],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "nodes" => &["spec.unschedulable"],
        "namespaces" => &["status.phase"],
        "certificatesigningrequests" => &["spec.signerName"],
        "jobs" => &["status.successful"],
        "replicasets" => &["status.replicas"],
        _ => &[],
    }
}

/// The value of a selectable field, as a string ("" when unset; booleans default to false).
fn field_value(obj: &Value, field: &str) -> String {
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let v = path.split('.').try_fold(obj, |cur, k| cur.get(k));
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => {
            if matches!(field, "spec.hostNetwork" | "spec.unschedulable") {
                "false".into()
            } else {
                String::new()
            }
        }
        Some(other) => other.to_string(),
    }
}

fn check_fields(t: &Target, fields: &[FieldReq]) -> Result<(), Fail> {
    for f in fields {
        let known = matches!(f.field.as_str(), "metadata.name" | "metadata.namespace")
            || kind_fields(&t.res.plural).contains(&f.field.as_str());
        if known {
            continue;
        }
        return Err(if t.res.builtin {
            errors::bad_request(format!("field label not supported: {}", f.field))
        } else {
            errors::bad_request(format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                errors::quote(&f.field)
            ))
        });
    }
    Ok(())
}

/// A list's selectors.
pub struct Selectors {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Selectors {
    pub fn parse(r: &Req, t: &Target) -> Result<Self, Fail> {
        let labels = parse_labels(r.query.get("labelSelector").map_or("", String::as_str))
            .map_err(errors::bad_request)?;
        let fields = parse_fields(r.query.get("fieldSelector").map_or("", String::as_str))
            .map_err(errors::bad_request)?;
        check_fields(t, &fields)?;
        Ok(Self { labels, fields })
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.labels.iter().all(|l| l.matches(labels))
            && self
                .fields
                .iter()
                .all(|f| (field_value(obj, &f.field) == f.value) != f.negated)
    }
}

/// The etcd key of an object, relative to its resource: `ns/name` or `name`.
fn etcd_key(k: &Key) -> String {
    if k.2.is_empty() {
        k.3.clone()
    } else {
        format!("{}/{}", k.2, k.3)
    }
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

/// The real `DecodeContinue`: (start key, revision; negative for the latest).
fn decode_continue(token: &str) -> Result<(String, i64), String> {
    let generic = "continue key is not valid";
    let data = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| format!("{generic}: {e}"))?;
    let v: Value = serde_json::from_slice(&data).map_err(|e| format!("{generic}: {e}"))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(format!(
            "{generic}: server does not recognize this encoded version"
        ));
    }
    let rv = v["rv"].as_i64().unwrap_or(0);
    if rv == 0 {
        return Err(format!(
            "{generic}: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        ));
    }
    let start = v["start"].as_str().unwrap_or_default();
    if start.is_empty() {
        return Err(format!(
            "{generic}: encoded start key empty (version meta.k8s.io/v1)"
        ));
    }
    Ok((start.to_string(), rv))
}

/// The objects of the target's resource (in its namespace, if any) as they were at `rev`, by
/// etcd key: the current ones, with what changed since `rev` undone from the history.
fn snapshot<'a>(st: &'a Store, t: &'a Target, rev: u64) -> Vec<(String, &'a Value)> {
    let (group, plural) = (t.res.group.as_str(), t.res.plural.as_str());
    let mut undone: BTreeMap<&Key, Option<&Value>> = BTreeMap::new();
    for (r, k, before) in st.history.iter().rev() {
        if *r <= rev {
            break;
        }
        if k.0 == group && k.1 == plural && (t.ns.is_empty() || k.2 == t.ns) {
            undone.insert(k, before.as_ref());
        }
    }
    let now: Box<dyn Iterator<Item = (&Key, &Value)>> = if t.ns.is_empty() {
        Box::new(st.of(group, plural))
    } else {
        Box::new(st.of_ns(group, plural, &t.ns))
    };
    let mut out: Vec<(String, &Value)> = now
        .filter(|(k, _)| !undone.contains_key(k))
        .map(|(k, v)| (etcd_key(k), v))
        .chain(
            undone
                .iter()
                .filter_map(|(k, v)| v.map(|v| (etcd_key(k), v))),
        )
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The objects of the target's resource (in its namespace, if any) its selectors match, now.
pub fn matching(st: &Store, r: &Req, t: &Target) -> Result<Vec<(Key, Value)>, Fail> {
    let sel = Selectors::parse(r, t)?;
    Ok(st
        .of(&t.res.group, &t.res.plural)
        .filter(|(k, v)| (t.ns.is_empty() || k.2 == t.ns) && sel.matches(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

const EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// A list, or one page of it.
pub fn list(st: &Store, r: &Req, t: &Target) -> Result<Reply, Fail> {
    let sel = Selectors::parse(r, t)?;
    let limit: usize = match r.query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l
            .parse::<i64>()
            .map_err(|e| errors::bad_request(format!("limit: {e}")))?
            .max(0) as usize,
        None => 0,
    };
    let (start, rev) = match r.query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (start, rv) = decode_continue(c)
                .map_err(|e| errors::bad_request(format!("invalid continue token: {e}")))?;
            if r.query
                .get("resourceVersion")
                .is_some_and(|v| !v.is_empty() && v != "0")
            {
                return Err(errors::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let rev = if rv < 0 { st.revision } else { rv as u64 };
            if rev < st.compacted {
                let mut s = json!({"kind": "Status", "apiVersion": "v1",
                    "metadata": {"continue": encode_continue(-1, &start)},
                    "status": "Failure", "message": EXPIRED, "reason": "Expired", "code": 410});
                s["details"] = json!({});
                return Err(Box::new(errors::reply(410, s)));
            }
            (Some(start), rev)
        }
        None => (None, st.revision),
    };
    let items = snapshot(st, t, rev)
        .into_iter()
        .filter(|(ek, _)| start.as_ref().is_none_or(|s| ek.as_str() >= s.as_str()));
    // The page, then what remains after it: any match means another page.
    let (mut page, mut rest, mut more) = (Vec::new(), 0, false);
    for (ek, v) in items {
        if limit > 0 && page.len() == limit {
            rest += 1;
            more = more || sel.matches(v);
        } else if sel.matches(v) {
            page.push((ek, v));
        }
    }
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if more && let Some((last, _)) = page.last() {
        meta["continue"] = json!(encode_continue(rev as i64, &format!("{last}\u{0}")));
        if sel.is_empty() {
            meta["remainingItemCount"] = json!(rest);
        }
    }
    let items: Vec<Value> = page
        .into_iter()
        .map(|(_, v)| {
            let mut v = v.clone();
            if t.res.builtin
                && let Some(m) = v.as_object_mut()
            {
                m.remove("apiVersion");
                m.remove("kind");
            }
            v
        })
        .collect();
    Ok(errors::reply(
        200,
        json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.api_version(),
            "metadata": meta, "items": items}),
    ))
}

/// A label selector (`spec.selector` of a workload) as the string a Scale reports.
pub fn selector_string(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let k = e["key"].as_str().unwrap_or_default().to_string();
        let mut vals: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        vals.sort();
        let s = match e["operator"].as_str() {
            Some("In") => format!("{k} in ({})", vals.join(",")),
            Some("NotIn") => format!("{k} notin ({})", vals.join(",")),
            Some("Exists") => k.clone(),
            Some("DoesNotExist") => format!("!{k}"),
            _ => continue,
        };
        reqs.push((k, s));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a LabelSelector object (`matchLabels`, `matchExpressions`) selects `labels`; an
/// absent or empty selector selects everything.
pub fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let s = selector_string(sel);
    if s.is_empty() {
        return true;
    }
    parse_labels(&s).is_ok_and(|reqs| reqs.iter().all(|r| r.matches(labels)))
}
