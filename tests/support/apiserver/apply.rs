//! Field ownership and patches. Server-side apply (`application/apply-patch+yaml`): the fields
//! an apply sets are owned by its manager; a field another manager owns with another value is a
//! conflict (409, the real message) unless `force`, which takes it over; a field owned by
//! several with the same value is shared; fields a manager applied before and no longer applies
//! are removed unless someone else owns them. Other writes (create, update, patch) make their
//! manager (`fieldManager`, else the user agent's first part) owner of what they changed, with
//! operation `Update`. Maps are walked; anything else (lists too) is one atomic field.
//! `managedFields` lists every (manager, operation) with its `fieldsV1`. Patches: JSON merge
//! patch (RFC 7386; also used for strategic merge patch), JSON patch (RFC 6902).

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

use super::errors::{self, Fail};
use super::{Owners, Req, Store, Target};

/// Separates the keys of a field path (keys may contain dots).
pub const SEP: char = '\u{1f}';

/// Leaf paths of an object: maps are walked, anything else (lists included, atomic here) is a
/// leaf. Identity and server-set metadata, and status, are left out.
pub fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}{SEP}{k}")
                };
                if matches!(
                    p.replace(SEP, ".").as_str(),
                    "apiVersion"
                        | "kind"
                        | "metadata.name"
                        | "metadata.namespace"
                        | "metadata.managedFields"
                        | "metadata.resourceVersion"
                        | "metadata.uid"
                        | "metadata.creationTimestamp"
                        | "metadata.generation"
                        | "metadata.deletionTimestamp"
                        | "status"
                ) {
                    continue;
                }
                leaves(x, &p, out);
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
}

fn leaves_of(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    leaves(v, "", &mut out);
    out
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split(SEP).try_fold(v, |cur, k| cur.get(k))
}

fn set_path(v: &mut Value, path: &str, x: Value) {
    let parts: Vec<&str> = path.split(SEP).collect();
    let mut cur = v;
    for k in &parts[..parts.len() - 1] {
        if !cur.get(*k).is_some_and(Value::is_object) {
            cur[*k] = Value::Object(Map::new());
        }
        cur = &mut cur[*k];
    }
    cur[parts[parts.len() - 1]] = x;
}

fn remove_path(v: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split(SEP).collect();
    let mut cur = v;
    for k in &parts[..parts.len() - 1] {
        match cur.get_mut(*k) {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(parts[parts.len() - 1]);
    }
}

/// How a conflicting manager is named in the message (the real `printManager`).
fn print_manager((manager, operation): &(String, String), api_version: &str) -> String {
    if operation == "Update" {
        format!("{} using {api_version}", errors::quote(manager))
    } else {
        errors::quote(manager)
    }
}

fn conflict_error(conflicts: &[((String, String), String)], api_version: &str) -> Fail {
    let path = |p: &str| format!(".{}", p.replace(SEP, "."));
    let message = if let [(m, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            print_manager(m, api_version),
            path(p)
        )
    } else {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (m, p) in conflicts {
            by.entry(print_manager(m, api_version))
                .or_default()
                .push(format!("- {}", path(p)));
        }
        let lines: Vec<String> = by
            .into_iter()
            .flat_map(|(m, ps)| std::iter::once(format!("conflicts with {m}:")).chain(ps))
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| json!({"reason": "FieldManagerConflict",
            "message": format!("conflict with {}", print_manager(m, api_version)), "field": path(p)}))
        .collect();
    Box::new(errors::status(
        409,
        "Conflict",
        message,
        json!({"causes": causes}),
    ))
}

/// A server-side apply of `obj` by `manager`.
pub fn apply(
    st: &mut Store,
    r: &Req,
    t: &Target,
    manager: &str,
    obj: Value,
    force: bool,
) -> Result<errors::Reply, Fail> {
    super::objects::check_kind(t, &obj, true)?;
    let name = super::objects::check_name(t, &obj)?;
    let t = t.named(&name);
    let k = t.key();
    let applied = leaves_of(&obj);
    let old = st.objects.get(&k).cloned();
    if old.is_none() {
        super::objects::validate_name(&t, &name)?;
    }
    let mut owners = st.owners.get(&k).cloned().unwrap_or_default();
    let me = (manager.to_string(), "Apply".to_string());
    let mut conflicts = Vec::new();
    if let Some(o) = &old {
        for (path, value) in &applied {
            for (m, fields) in &owners {
                if *m != me && fields.contains(path) && get_path(o, path) != Some(value) {
                    conflicts.push((m.clone(), path.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts, &t.api_version()));
    }
    let mut next = old.clone().unwrap_or_else(|| {
        json!({"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": obj["metadata"]["name"]}})
    });
    // Fields this manager applied before and no longer applies go, unless others own them.
    let before = owners.get(&me).cloned().unwrap_or_default();
    for p in before.iter().filter(|p| !applied.contains_key(*p)) {
        if !owners.iter().any(|(m, f)| *m != me && f.contains(p)) {
            remove_path(&mut next, p);
        }
    }
    for (p, v) in &applied {
        set_path(&mut next, p, v.clone());
    }
    // Forced conflicts change hands; equal values stay shared.
    for (m, p) in &conflicts {
        if let Some(f) = owners.get_mut(m) {
            f.remove(p);
        }
    }
    owners.insert(me, applied.keys().cloned().collect());
    owners.retain(|_, f| !f.is_empty());
    let saved = super::objects::commit(
        st,
        r,
        &t,
        old.as_ref(),
        next,
        None,
        super::objects::Manage::Owners(owners),
    )?;
    Ok(errors::reply(if old.is_none() { 201 } else { 200 }, saved))
}

/// The ownership after a non-apply write by `manager` from `old` to `new`: it owns what it
/// changed, which nobody else owns any longer; removed fields are owned by nobody.
pub fn update_owners(owners: &Owners, manager: &str, old: Option<&Value>, new: &Value) -> Owners {
    let before = old.map(leaves_of).unwrap_or_default();
    let after = leaves_of(new);
    let changed: BTreeSet<String> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, _)| p.clone())
        .collect();
    let mut out = owners.clone();
    for f in out.values_mut() {
        f.retain(|p| after.contains_key(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        out.entry((manager.to_string(), "Update".to_string()))
            .or_default()
            .extend(changed);
    }
    out.retain(|_, f| !f.is_empty());
    out
}

/// `fieldsV1` of a set of leaf paths.
fn fields_v1(paths: &BTreeSet<String>) -> Value {
    let mut root = json!({});
    for p in paths {
        let mut cur = &mut root;
        for k in p.split(SEP) {
            cur = cur
                .as_object_mut()
                .unwrap()
                .entry(format!("f:{k}"))
                .or_insert_with(|| json!({}));
        }
    }
    root
}

/// `metadata.managedFields` for `owners`, an entry keeping its time while its fields stay.
pub fn managed_fields(
    old: Option<&Value>,
    old_owners: Option<&Owners>,
    owners: &Owners,
    api_version: &str,
) -> Value {
    let entries: Vec<Value> = owners
        .iter()
        .map(|(key @ (manager, operation), fields)| {
            let prev = old
                .and_then(|o| o["metadata"]["managedFields"].as_array())
                .into_iter()
                .flatten()
                .find(|e| e["manager"] == *manager && e["operation"] == *operation);
            let time = match prev {
                Some(p) if old_owners.and_then(|o| o.get(key)) == Some(fields) => p["time"].clone(),
                _ => json!(super::now()),
            };
            json!({"manager": manager, "operation": operation, "apiVersion": api_version,
                "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(fields)})
        })
        .collect();
    Value::Array(entries)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn pointer_parts(p: &str) -> Vec<String> {
    p.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Adds (or, with `replace`, replaces) `x` at JSON pointer `path`.
fn pointer_put(doc: &mut Value, path: &str, x: Value, replace: bool) -> Result<(), String> {
    let parts = pointer_parts(path);
    let Some((last, parents)) = parts.split_last() else {
        *doc = x;
        return Ok(());
    };
    let mut cur = doc;
    for k in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(k),
            Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: {path}"))?;
    }
    match cur {
        Value::Object(m) => {
            if replace && !m.contains_key(last) {
                return Err(format!("doc is missing key: {path}"));
            }
            m.insert(last.clone(), x);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse().map_err(|_| format!("invalid index: {path}"))?
            };
            match (replace, i < a.len(), i == a.len()) {
                (true, true, _) => a[i] = x,
                (false, _, true) | (false, true, _) => a.insert(i, x),
                _ => return Err(format!("index out of range: {path}")),
            }
        }
        _ => return Err(format!("doc is missing path: {path}")),
    }
    Ok(())
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let parts = pointer_parts(path);
    let (last, parents) = parts.split_last().ok_or("cannot remove the root")?;
    let mut cur = doc;
    for k in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(k),
            Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: {path}"))?;
    }
    match cur {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < a.len())
            .map(|i| a.remove(i)),
        _ => None,
    }
    .ok_or_else(|| format!("unable to remove nonexistent key: {path}"))
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops
        .as_array()
        .ok_or("a JSON patch is a list of operations")?
    {
        let path = op["path"].as_str().unwrap_or_default();
        let from = op["from"].as_str().unwrap_or_default();
        match op["op"].as_str().unwrap_or_default() {
            "add" => pointer_put(doc, path, op["value"].clone(), false)?,
            "replace" => pointer_put(doc, path, op["value"].clone(), true)?,
            "remove" => {
                pointer_remove(doc, path)?;
            }
            "move" => {
                let v = pointer_remove(doc, from)?;
                pointer_put(doc, path, v, false)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("doc is missing from path: {from}"))?;
                pointer_put(doc, path, v, false)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            o => return Err(format!("Unexpected kind: {o}")),
        }
    }
    Ok(())
}
