//! Walking the inventory's JSON Schema in tests: `$ref`s resolved, every field reached with its
//! path, and a JSON document built with a value at a path (JSON is YAML, one key per line).

use serde_json::{Value, json};

/// The schema at `s` with `$ref`s resolved (siblings kept) and `Option`'s null branch dropped.
pub fn resolve<'a>(root: &'a Value, s: &'a Value) -> Value {
    let mut out = s.clone();
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        let target = resolve(root, &root["$defs"][name]);
        if let (Some(o), Some(t)) = (out.as_object_mut(), target.as_object()) {
            o.remove("$ref");
            for (k, v) in t {
                o.entry(k.clone()).or_insert(v.clone());
            }
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = s.get(key).and_then(Value::as_array) {
            let non_null: Vec<&Value> = branches.iter().filter(|b| b["type"] != "null").collect();
            // `Option<T>`: the one non-null branch. (An enum's `oneOf` of consts is kept.)
            if non_null.len() == 1 && non_null[0].get("const").is_none() {
                let inner = resolve(root, non_null[0]);
                if let (Some(o), Some(t)) = (out.as_object_mut(), inner.as_object()) {
                    o.remove(key);
                    for (k, v) in t {
                        o.entry(k.clone()).or_insert(v.clone());
                    }
                }
            }
        }
    }
    out
}

/// One step of a field's path: a key, or the first item of a list.
#[derive(Debug, Clone)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// The first item of a list.
    Index,
}

/// Every field under `s` (at `path`) with its resolved schema, depth first.
pub fn walk(root: &Value, s: &Value, path: Vec<Seg>, out: &mut Vec<(Vec<Seg>, Value)>) {
    let s = resolve(root, s);
    out.push((path.clone(), s.clone()));
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            let mut p = path.clone();
            p.push(Seg::Key(k.clone()));
            walk(root, sub, p, out);
        }
    }
    if let Some(items) = s.get("items") {
        let mut p = path.clone();
        p.push(Seg::Index);
        walk(root, items, p, out);
    }
    if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
        let mut p = path;
        p.push(Seg::Key("x1".into()));
        walk(root, extra, p, out);
    }
}

/// `doc` with `value` at `path` (creating mappings and a first list item on the way).
pub fn set(doc: &mut Value, path: &[Seg], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *doc = value;
        return;
    };
    let next = match first {
        Seg::Key(k) => {
            if !doc.is_object() {
                *doc = json!({});
            }
            let o = doc.as_object_mut().unwrap();
            o.entry(k.clone()).or_insert(Value::Null)
        }
        Seg::Index => {
            if !doc.is_array() || doc.as_array().unwrap().is_empty() {
                *doc = json!([Value::Null]);
            }
            &mut doc.as_array_mut().unwrap()[0]
        }
    };
    set(next, rest, value);
}

/// The field as forgectl names it in messages (`groups[0].count`).
pub fn field_name(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => out.push_str(&format!(".{k}")),
            Seg::Index => out.push_str("[0]"),
        }
    }
    out
}

/// A valid inventory, as JSON (YAML's superset: one key per line once pretty-printed).
pub fn base() -> Value {
    json!({
        "name": "domains",
        "provider": "local",
        "ingress": {"enabled": false},
        "groups": [
            {"name": "etcd", "roles": ["etcd"], "count": 3},
            {"name": "control", "roles": ["control-plane"], "count": 1},
        ],
    })
}

/// The valid inventory a field at `path` is tried in: for a provider's block, with that provider
/// (and its required settings).
pub fn base_for(path: &[Seg]) -> Value {
    let mut doc = base();
    if path
        .iter()
        .any(|s| matches!(s, Seg::Key(k) if k == "openstack"))
    {
        doc["provider"] = json!("openstack");
        doc["openstack"] = json!({"network": "n", "image": "i", "flavor": "f"});
    }
    if matches!(path.first(), Some(Seg::Key(k)) if k == "vagrant") {
        doc["provider"] = json!("vagrant");
    }
    doc
}
