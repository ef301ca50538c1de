//! Generated coverage of the inventory's documented domains: the test walks the JSON Schema
//! (`forgectl schema`) and, for every field with a domain — a set of values, a range, an unsigned
//! integer, a CIDR / IP / version format, an absolute or relative path —, writes a valid inventory with one value outside it and
//! checks that loading refuses it with an error at that value's line, naming the field. A field
//! added to the schema later is covered without touching this file.

use forgectl::inventory::{LoadError, Severity, json_schema, load_str};
use serde_json::{Value, json};
use std::path::Path;

mod support;
use support::schema_walk::{Seg, base_for, field_name, set, walk};

/// A value outside the field's documented domain, and what it breaks, or None.
fn outside(s: &Value) -> Option<(Value, &'static str)> {
    let consts: Vec<&Value> = s
        .get("oneOf")
        .and_then(Value::as_array)
        .map(|b| b.iter().filter_map(|x| x.get("const")).collect())
        .unwrap_or_default();
    if s.get("enum").is_some() || !consts.is_empty() {
        return Some((json!("not-a-listed-value"), "set of values"));
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.contains(&"integer") {
        if let Some(max) = s.get("maximum").and_then(Value::as_i64)
            && max < i64::from(u16::MAX)
            && max != i64::from(u8::MAX)
        {
            return Some((json!(max + 1), "maximum"));
        }
        if let Some(min) = s.get("minimum").and_then(Value::as_i64) {
            return Some((json!(min - 1), "minimum"));
        }
        return None;
    }
    match s.get("format").and_then(Value::as_str) {
        Some("cidr") => Some((json!("10.0.0.0/99"), "CIDR")),
        Some("ip") => Some((json!("300.1.2.3"), "IP address")),
        Some("version") => Some((json!("one.two"), "version")),
        Some("absolute-path") => Some((json!("relative/dir"), "absolute path")),
        Some("relative-path") => Some((json!("../escape"), "relative path")),
        _ => None,
    }
}

/// Every field of the schema with a domain, and a value outside it.
fn fields(root: &Value) -> Vec<(Vec<Seg>, Value, &'static str)> {
    let mut all = Vec::new();
    walk(root, root, Vec::new(), &mut all);
    all.into_iter()
        .filter_map(|(path, s)| outside(&s).map(|(v, what)| (path, v, what)))
        .collect()
}

#[test]
fn every_documented_domain_is_enforced_at_its_line() {
    let schema = json_schema();
    let found = fields(&schema);
    assert!(
        found.len() > 40,
        "the walk found only {} fields",
        found.len()
    );
    let mut failures = Vec::new();
    for (path, value, what) in &found {
        let mut doc = base_for(path);
        set(&mut doc, path, value.clone());
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let last = match path.last() {
            Some(Seg::Key(k)) => format!("\"{k}\": {value}"),
            _ => value.to_string(),
        };
        let lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with(&last))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(lines.len(), 1, "{last} in\n{text}");
        let name = field_name(path);
        let diags = match load_str("domains.yaml", &text, Path::new(".")) {
            Ok(_) => {
                failures.push(format!("{name} = {value} ({what}): accepted"));
                continue;
            }
            Err(LoadError::Invalid { diagnostics, .. }) => diagnostics,
            Err(e) => panic!("{name}: {e}"),
        };
        let hit = diags
            .iter()
            .any(|d| d.severity == Severity::Error && d.pos.line == lines[0] && d.field == name);
        if !hit {
            failures.push(format!(
                "{name} = {value} ({what}): no error at line {} naming it; got {:?}",
                lines[0],
                diags
                    .iter()
                    .map(|d| format!("{}:{} {} {}", d.pos.line, d.pos.col, d.field, d.message))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fields:\n{}",
        failures.len(),
        found.len(),
        failures.join("\n")
    );
}
