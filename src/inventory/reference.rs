//! The inventory reference (docs/inventory.md), generated from the JSON Schema so it cannot drift.

use serde_json::Value;
use std::fmt::Write as _;

/// Markdown table of every inventory key: type, default and description.
pub fn markdown(schema: &Value) -> String {
    let mut out = String::from(
        "# Inventory reference\n\n\
         Generated from the inventory's JSON Schema (`forgectl schema`); do not edit by hand \
         (regenerate with `UPDATE_GOLDEN=1 cargo test --test docs`).\n\n\
         | key | type | default | description |\n|---|---|---|---|\n",
    );
    rows(schema, schema, "", None, &mut out);
    out
}

fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let next = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| root.get("$defs")?.get(r.trim_start_matches("#/$defs/")))
            .or_else(|| {
                s.get("anyOf")?
                    .as_array()?
                    .iter()
                    .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            });
        match next {
            Some(n) => s = n,
            None => break,
        }
    }
    s
}

fn type_label(root: &Value, s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        match r.trim_start_matches("#/$defs/") {
            "Cidr" => return "CIDR".into(),
            "Version" => return "version".into(),
            _ => {}
        }
    }
    let r = resolve(root, s);
    let consts: Vec<String> = r
        .get("oneOf")
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .filter_map(|a| a.get("const").and_then(Value::as_str))
                .map(|c| format!("`{c}`"))
                .collect()
        })
        .or_else(|| {
            r.get("enum").and_then(Value::as_array).map(|e| {
                e.iter()
                    .filter_map(Value::as_str)
                    .map(|c| format!("`{c}`"))
                    .collect()
            })
        })
        .unwrap_or_default();
    if !consts.is_empty() {
        return format!("one of {}", consts.join(", "));
    }
    let types: Vec<&str> = match r.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    match types.first().copied() {
        Some("array") => format!(
            "list of {}",
            r.get("items")
                .map(|i| type_label(root, i))
                .unwrap_or_default()
        ),
        Some("object") if r.get("properties").is_some() => "mapping".into(),
        Some("object") => "map of string to string".into(),
        Some("integer") => {
            // schemars gives every unsigned field `minimum: 0`: only a chosen bound is shown.
            let min = r
                .get("minimum")
                .and_then(Value::as_i64)
                .filter(|m| *m != 0 || r.get("maximum").is_some());
            let max = r.get("maximum").and_then(Value::as_i64).or(
                match r.get("format").and_then(Value::as_str) {
                    Some("uint16") if min.is_some() => Some(i64::from(u16::MAX)),
                    Some("uint8") if min.is_some() => Some(i64::from(u8::MAX)),
                    _ => None,
                },
            );
            match (min, max) {
                (Some(a), Some(b)) => format!("integer {a}–{b}"),
                (None, Some(b)) => format!("integer ≤ {b}"),
                (Some(a), None) => format!("integer ≥ {a}"),
                (None, None) => "integer".into(),
            }
        }
        Some("string") => match r.get("format").and_then(Value::as_str) {
            Some("ip") => "IP address".into(),
            Some("absolute-path") => "absolute path".into(),
            Some("relative-path") => "relative path".into(),
            _ => "string".into(),
        },
        Some(t) => t.into(),
        None => "mapping".into(),
    }
}

fn rows(
    root: &Value,
    schema: &Value,
    prefix: &str,
    parent_default: Option<&Value>,
    out: &mut String,
) {
    let s = resolve(root, schema);
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (key, p) in props {
        let path = format!("{prefix}{key}");
        let default = p
            .get("default")
            .or_else(|| parent_default.and_then(|d| d.get(key)));
        let r = resolve(root, p);
        let nested = r.get("properties").is_some();
        let default_text = if required.contains(&key.as_str()) {
            "**required**".to_string()
        } else {
            match default {
                Some(d) if !nested && !d.is_null() => {
                    format!("`{}`", d.to_string().trim_matches('"'))
                }
                _ => "—".into(),
            }
        };
        let desc = p
            .get("description")
            .or_else(|| r.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|");
        let _ = writeln!(
            out,
            "| `{path}` | {} | {default_text} | {desc} |",
            type_label(root, p)
        );
        if nested {
            rows(root, p, &format!("{path}."), default, out);
        } else if let Some(items) = r
            .get("items")
            .filter(|i| resolve(root, i).get("properties").is_some())
        {
            rows(root, items, &format!("{path}[]."), None, out);
        }
    }
}
