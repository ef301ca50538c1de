//! Replies, and the Status errors of the real API server with its messages: `NotFound`,
//! `AlreadyExists`, `Conflict`, `Invalid` (with field errors printed as apimachinery prints
//! them), `Forbidden`, `BadRequest`, `MethodNotAllowed`, `Expired`.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::Resource;

/// A reply to send.
pub type Reply = Response<Full<Bytes>>;
/// A refused request: the Status reply (boxed: replies are large).
pub type Fail = Box<Reply>;

/// A JSON reply.
pub fn reply(code: u16, body: Value) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A text/plain reply.
pub fn text(body: String) -> Reply {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A failure Status.
pub fn status(code: u16, reason: &str, message: String, details: Value) -> Reply {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if details.as_object().is_some_and(|d| !d.is_empty()) {
        s["details"] = details;
    }
    reply(code, s)
}

/// `Err` of a failure Status.
pub fn fail<T>(code: u16, reason: &str, message: String, details: Value) -> Result<T, Fail> {
    Err(Box::new(status(code, reason, message, details)))
}

/// `plural` or `plural.group`: how the real server names a group-resource.
pub fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// `Kind` or `Kind.group`: how the real server names a group-kind.
pub fn group_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = json!({"kind": kind});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    d
}

/// 404 `pods "x" not found`.
pub fn not_found(res: &Resource, name: &str) -> Fail {
    Box::new(status(
        404,
        "NotFound",
        format!(
            "{} \"{name}\" not found",
            group_resource(&res.group, &res.plural)
        ),
        details(&res.group, &res.plural, name),
    ))
}

/// 404 `namespaces "x" not found`.
pub fn namespace_not_found(ns: &str) -> Fail {
    Box::new(status(
        404,
        "NotFound",
        format!("namespaces \"{ns}\" not found"),
        details("", "namespaces", ns),
    ))
}

/// 404 for a path nothing serves.
pub fn no_route() -> Fail {
    Box::new(status(
        404,
        "NotFound",
        "the server could not find the requested resource".into(),
        json!({}),
    ))
}

/// 405 for a verb the resource does not answer.
pub fn method_not_allowed() -> Fail {
    Box::new(status(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource".into(),
        json!({}),
    ))
}

/// 409 `configmaps "x" already exists`.
pub fn already_exists(res: &Resource, name: &str) -> Fail {
    Box::new(status(
        409,
        "AlreadyExists",
        format!(
            "{} \"{name}\" already exists",
            group_resource(&res.group, &res.plural)
        ),
        details(&res.group, &res.plural, name),
    ))
}

/// 409 for a stale resourceVersion.
pub fn conflict(res: &Resource, name: &str) -> Fail {
    Box::new(status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            group_resource(&res.group, &res.plural)
        ),
        details(&res.group, &res.plural, name),
    ))
}

/// 400 BadRequest.
pub fn bad_request(message: impl Into<String>) -> Fail {
    Box::new(status(400, "BadRequest", message.into(), json!({})))
}

/// 403 `<group-resource> ["name" ]is forbidden: <why>`.
pub fn forbidden(group: &str, plural: &str, name: &str, why: &str) -> Fail {
    let gr = group_resource(group, plural);
    let message = match (plural.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {why}"),
        (false, true) => format!("{gr} is forbidden: {why}"),
        (false, false) => format!("{gr} \"{name}\" is forbidden: {why}"),
    };
    let d = if plural.is_empty() {
        json!({})
    } else {
        details(group, plural, name)
    };
    Box::new(status(403, "Forbidden", message, d))
}

/// The kinds of field error apimachinery knows (those the double uses).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldKind {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
}

/// One field error, printed as apimachinery's `field.Error`.
#[derive(Clone, Debug)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldKind,
    /// The bad value as Go prints it (`"x"`, `599`, `[]byte{…}`); unused by Required/Forbidden.
    pub value: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: &str, kind: FieldKind, value: String, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// `field.Invalid` with a string value.
    pub fn invalid(field: &str, value: &str, detail: impl Into<String>) -> Self {
        Self::new(field, FieldKind::Invalid, quote(value), detail)
    }

    /// `field.Required`.
    pub fn required(field: &str, detail: impl Into<String>) -> Self {
        Self::new(field, FieldKind::Required, String::new(), detail)
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            FieldKind::Required => "Required value",
            FieldKind::Invalid => "Invalid value",
            FieldKind::NotSupported => "Unsupported value",
            FieldKind::Duplicate => "Duplicate value",
            FieldKind::Forbidden => "Forbidden",
        }
    }

    fn reason(&self) -> &'static str {
        match self.kind {
            FieldKind::Required => "FieldValueRequired",
            FieldKind::Invalid => "FieldValueInvalid",
            FieldKind::NotSupported => "FieldValueNotSupported",
            FieldKind::Duplicate => "FieldValueDuplicate",
            FieldKind::Forbidden => "FieldValueForbidden",
        }
    }

    /// `ErrorBody()`: the message without the field path.
    pub fn body(&self) -> String {
        let mut s = match self.kind {
            FieldKind::Required | FieldKind::Forbidden => self.type_name().to_string(),
            _ => format!("{}: {}", self.type_name(), self.value),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Go's `%q` of a string.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Go's `%q` of a list of strings: `["a" "b"]`.
pub fn quote_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", parts.join(" "))
}

/// Go's `%#v` of a byte slice: `[]byte{0x2d, 0x2d}`.
pub fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| format!("0x{x:x}")).collect();
    format!("[]byte{{{}}}", parts.join(", "))
}

/// 422 `Kind.group "name" is invalid: <errors>` (one error as is, several as `[e1, e2]`).
pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Fail {
    let mut seen = Vec::new();
    for e in errs {
        let s = e.to_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    let all = match seen.len() {
        1 => seen[0].clone(),
        _ => format!("[{}]", seen.join(", ")),
    };
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field}))
        .collect();
    let mut d = details(group, kind, name);
    d["causes"] = json!(causes);
    Box::new(status(
        422,
        "Invalid",
        format!("{} \"{name}\" is invalid: {all}", group_kind(group, kind)),
        d,
    ))
}

/// `Err(invalid(…))` unless `errs` is empty.
pub fn check_fields(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Result<(), Fail> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid(group, kind, name, errs))
    }
}
