//! Checks a YAML tree against the inventory's JSON Schema and turns it into JSON for serde.
//!
//! serde stops at the first problem; this walk reports every unknown key (with a "did you mean"),
//! missing field, wrong type, bad enum value and malformed CIDR / address / version at once, each
//! with its position. The schema is the one `forgectl schema` prints, so the two cannot drift apart.

use serde_json::{Map, Value};
use std::net::IpAddr;

use super::diagnostics::Diagnostic;
use super::types::{Cidr, Version};
use super::yaml_tree::{Node, NodeKind, PathSeg, path_to_string};

/// Walks `node` against `schema` (a schemars root with `$defs`), collecting problems in `out`.
pub fn check(node: &Node, schema: &Value, out: &mut Vec<Diagnostic>) -> Value {
    let mut w = Walker { root: schema, out };
    let mut path = Vec::new();
    w.walk(node, schema, &mut path)
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word.to_lowercase(), c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

struct Walker<'a, 'o> {
    root: &'a Value,
    out: &'o mut Vec<Diagnostic>,
}

fn types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn expected(types: &[&str]) -> String {
    let words: Vec<&str> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "object" => "a mapping (`key: value` lines)",
            "array" => "a list (`- item` lines or `[a, b]`)",
            "string" => "a string",
            "integer" => "a whole number",
            "number" => "a number",
            "boolean" => "true or false",
            other => other,
        })
        .collect();
    if words.is_empty() {
        "a value".into()
    } else {
        words.join(" or ")
    }
}

impl<'a> Walker<'a, '_> {
    fn resolve(&self, mut s: &'a Value) -> &'a Value {
        for _ in 0..32 {
            if let Some(r) = s.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches("#/$defs/");
                match self.root.get("$defs").and_then(|d| d.get(name)) {
                    Some(target) => s = target,
                    None => return s,
                }
            } else if let Some([only]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice)
            {
                s = only;
            } else {
                return s;
            }
        }
        s
    }

    fn err(
        &mut self,
        node_pos: super::diagnostics::Pos,
        path: &[PathSeg],
        msg: String,
    ) -> &mut Diagnostic {
        self.out
            .push(Diagnostic::error(node_pos, msg).with_field(path_to_string(path)));
        // Invariant: just pushed.
        let last = self.out.len() - 1;
        &mut self.out[last]
    }

    fn walk(&mut self, node: &Node, schema: &'a Value, path: &mut Vec<PathSeg>) -> Value {
        let s = self.resolve(schema);
        if let Some(alts) = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array)
        {
            let alts: Vec<&'a Value> = alts.iter().map(|a| self.resolve(a)).collect();
            let consts: Vec<&str> = alts
                .iter()
                .filter_map(|a| a.get("const").and_then(Value::as_str))
                .collect();
            if !consts.is_empty() && consts.len() == alts.len() {
                return self.enum_value(node, &consts, path);
            }
            if node.is_null() && alts.iter().any(|a| types(a).contains(&"null")) {
                return Value::Null;
            }
            let pick = alts
                .iter()
                .find(|a| shape_matches(node, a))
                .or_else(|| alts.iter().find(|a| !types(a).contains(&"null")));
            return match pick {
                Some(p) => self.walk(node, p, path),
                None => Value::Null,
            };
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            let consts: Vec<&str> = e.iter().filter_map(Value::as_str).collect();
            if node.is_null() && types(s).contains(&"null") {
                return Value::Null;
            }
            return self.enum_value(node, &consts, path);
        }
        let ts = types(s);
        if ts.is_empty() {
            return to_json_untyped(node);
        }
        if node.is_null() && ts.contains(&"null") {
            return Value::Null;
        }
        match &node.kind {
            NodeKind::Map(entries) if ts.contains(&"object") => self.object(node, entries, s, path),
            NodeKind::Seq(items) if ts.contains(&"array") => {
                let item_schema = s.get("items");
                let mut arr = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    arr.push(match item_schema {
                        Some(is) => self.walk(item, is, path),
                        None => to_json_untyped(item),
                    });
                    path.pop();
                }
                Value::Array(arr)
            }
            NodeKind::Scalar { .. } if node.is_null() && ts.contains(&"object") => {
                self.object(node, &[], s, path)
            }
            NodeKind::Scalar { .. } if node.is_null() && ts.contains(&"array") => {
                Value::Array(vec![])
            }
            NodeKind::Scalar { text, plain } => self.scalar(node, text, *plain, s, &ts, path),
            _ => {
                let what = expected(&ts);
                let found = node.describe();
                self.err(
                    node.pos,
                    path,
                    format!("wrong type: expected {what}, found {found}"),
                )
                .hint = describe_field(s);
                Value::Null
            }
        }
    }

    fn enum_value(&mut self, node: &Node, consts: &[&str], path: &[PathSeg]) -> Value {
        let text = match &node.kind {
            NodeKind::Scalar { text, .. } if !node.is_null() => text.as_str(),
            _ => {
                let found = node.describe();
                self.err(
                    node.pos,
                    path,
                    format!("expected one of {}, found {found}", consts.join(", ")),
                );
                return Value::Null;
            }
        };
        if consts.contains(&text) {
            return Value::String(text.to_string());
        }
        let hint = match did_you_mean(text, consts.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("write one of: {}", consts.join(", ")),
        };
        self.err(
            node.pos,
            path,
            format!("`{text}` is not one of {}", consts.join(", ")),
        )
        .hint = Some(hint);
        Value::Null
    }

    fn object(
        &mut self,
        node: &Node,
        entries: &[(Node, Node)],
        s: &'a Value,
        path: &mut Vec<PathSeg>,
    ) -> Value {
        let props = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties");
        let mut out = Map::new();
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default().to_string();
            path.push(PathSeg::Key(key.clone()));
            if let Some(ps) = props.and_then(|p| p.get(&key)) {
                let val = self.walk(v, ps, path);
                out.insert(key, val);
            } else {
                match additional {
                    Some(Value::Bool(false)) => {
                        let names: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let hint = if key == "<<" {
                            "YAML merge keys (`<<`) are not supported; repeat the settings or use an alias for the whole value".to_string()
                        } else {
                            match did_you_mean(&key, names.iter().copied()) {
                                Some(c) => format!(
                                    "did you mean `{c}`? Keys allowed here: {}",
                                    names.join(", ")
                                ),
                                None => format!("keys allowed here: {}", names.join(", ")),
                            }
                        };
                        self.err(k.pos, path, format!("unknown key `{key}`")).hint = Some(hint);
                    }
                    Some(extra @ Value::Object(_)) => {
                        let val = self.walk(v, extra, path);
                        out.insert(key, val);
                    }
                    _ => {
                        out.insert(key, to_json_untyped(v));
                    }
                }
            }
            path.pop();
        }
        if let Some(required) = s.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !entries.iter().any(|(k, _)| k.as_str() == Some(r)) {
                    path.push(PathSeg::Key(r.to_string()));
                    let desc = props.and_then(|p| p.get(r)).and_then(|ps| {
                        describe_field(ps).or_else(|| describe_field(self.resolve(ps)))
                    });
                    let where_ = if path.len() > 1 {
                        format!(" in `{}`", path_to_string(&path[..path.len() - 1]))
                    } else {
                        String::new()
                    };
                    let hint = match desc {
                        Some(d) => format!("add `{r}:` — {}", lower_first(&d)),
                        None => format!("add `{r}:`"),
                    };
                    self.err(
                        node.pos,
                        path,
                        format!("missing required field `{r}`{where_}"),
                    )
                    .hint = Some(hint);
                    path.pop();
                }
            }
        }
        Value::Object(out)
    }

    fn scalar(
        &mut self,
        node: &Node,
        text: &str,
        plain: bool,
        s: &Value,
        ts: &[&str],
        path: &[PathSeg],
    ) -> Value {
        if plain && !node.is_null() {
            if ts.contains(&"boolean") {
                match text {
                    "true" | "True" | "TRUE" => return Value::Bool(true),
                    "false" | "False" | "FALSE" => return Value::Bool(false),
                    _ => {}
                }
            }
            if ts.contains(&"integer")
                && let Ok(n) = text.replace('_', "").parse::<i64>()
            {
                return self.bounded(node, n, s, path);
            }
            if ts.contains(&"number")
                && let Ok(f) = text.parse::<f64>()
                && let Some(n) = serde_json::Number::from_f64(f)
            {
                return Value::Number(n);
            }
        }
        if ts.contains(&"string") && !node.is_null() {
            if let Some(problem) = check_format(s, text) {
                self.err(node.pos, path, problem).hint = describe_field(s);
                return Value::Null;
            }
            return Value::String(text.to_string());
        }
        let what = expected(ts);
        let found = node.describe();
        let found = if !plain && !node.is_null() {
            format!("the quoted string {found}")
        } else {
            found
        };
        let d = self.err(
            node.pos,
            path,
            format!("wrong type: expected {what}, found {found}"),
        );
        if !plain && (ts.contains(&"integer") || ts.contains(&"boolean")) {
            d.hint = Some("remove the quotes".into());
        } else {
            d.hint = describe_field(s);
        }
        Value::Null
    }

    fn bounded(&mut self, node: &Node, n: i64, s: &Value, path: &[PathSeg]) -> Value {
        let min = s.get("minimum").and_then(Value::as_i64);
        let max = s.get("maximum").and_then(Value::as_i64);
        let max = max.or(match s.get("format").and_then(Value::as_str) {
            Some("uint16") => Some(i64::from(u16::MAX)),
            Some("uint32") => Some(i64::from(u32::MAX)),
            Some("uint8") => Some(i64::from(u8::MAX)),
            _ => None,
        });
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            let range = format!("{}..={}", min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX));
            self.err(node.pos, path, format!("{n} is out of range ({range})"));
            return Value::Null;
        }
        Value::from(n)
    }
}

fn describe_field(s: &Value) -> Option<String> {
    s.get("description")
        .and_then(Value::as_str)
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn check_format(s: &Value, text: &str) -> Option<String> {
    match s.get("format").and_then(Value::as_str)? {
        "cidr" => text.parse::<Cidr>().err(),
        "version" => text.parse::<Version>().err(),
        "absolute-path" => crate::inventory::validate::plain_absolute_path_problem(text)
            .map(|why| format!("`{text}` is not an absolute path of plain characters: {why}")),
        "relative-path" => (text.starts_with('/').then_some("it is absolute"))
            .or_else(|| {
                crate::inventory::validate::plain_absolute_path_problem(&format!("/{text}"))
            })
            .map(|why| format!("`{text}` is not a relative path of plain characters: {why}")),
        "ip" | "ipv4" | "ipv6" => text
            .parse::<IpAddr>()
            .err()
            .map(|_| format!("`{text}` is not an IP address (like 10.77.0.10)")),
        _ => None,
    }
}

fn shape_matches(node: &Node, s: &Value) -> bool {
    let ts = types(s);
    match &node.kind {
        NodeKind::Map(_) => ts.contains(&"object"),
        NodeKind::Seq(_) => ts.contains(&"array"),
        NodeKind::Scalar { .. } => ts
            .iter()
            .any(|t| matches!(*t, "string" | "integer" | "number" | "boolean")),
    }
}

/// Converts a node with no schema guidance (free-form values), using YAML 1.2 core rules.
fn to_json_untyped(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap_or_default().to_string(),
                        to_json_untyped(v),
                    )
                })
                .collect(),
        ),
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json_untyped).collect()),
        NodeKind::Scalar { .. } if node.is_null() => Value::Null,
        NodeKind::Scalar { text, plain: true } => match text.as_str() {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            t => t
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(t.to_string())),
        },
        NodeKind::Scalar { text, .. } => Value::String(text.clone()),
    }
}
