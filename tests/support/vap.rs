//! The API server's ValidatingAdmissionPolicy admission, as a TEST DOUBLE (there is no real
//! kube-apiserver here): a policy's variables, then its validations, evaluated in order with
//! the cel crate over `object`, `oldObject` and `namespaceObject`, integers as CEL ints (int64
//! in the API). A validation that is false denies with its `messageExpression` (else `message`,
//! else the expression); one that cannot be evaluated denies too (`failurePolicy: Fail`).
//! Matching (resource rules, the binding's selector) is left to the caller.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Program, Value as Cel};
use serde_json::Value;

/// JSON as the API server hands it to CEL.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let m: HashMap<String, Cel> = o.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            Cel::from(m)
        }
    }
}

fn eval(expr: &str, ctx: &Context) -> Result<Cel, String> {
    let p = Program::compile(expr).map_err(|e| format!("{expr}: does not compile: {e}"))?;
    p.execute(ctx).map_err(|e| format!("{expr}: {e}"))
}

/// Whether `policy` admits `object` (a CREATE: no old object) in `namespace`; the denial's
/// message when it does not.
pub fn admit(policy: &Value, object: &Value, namespace: &Value) -> Result<(), String> {
    evaluate(policy, object, namespace).map_err(|d| d.message)
}

/// Why a policy refused an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The message the API server returns.
    pub message: String,
    /// The failing validation's `reason` (none for an evaluation error).
    pub reason: Option<String>,
}

/// [`admit`], with the failing validation's reason.
pub fn evaluate(policy: &Value, object: &Value, namespace: &Value) -> Result<(), Denial> {
    let error = |message: String| Denial {
        message,
        reason: None,
    };
    let spec = &policy["spec"];
    let mut vars: HashMap<String, Cel> = HashMap::new();
    let context = |vars: &HashMap<String, Cel>| {
        let mut ctx = Context::default();
        ctx.add_variable_from_value("object", to_cel(object));
        ctx.add_variable_from_value("oldObject", Cel::Null);
        ctx.add_variable_from_value("namespaceObject", to_cel(namespace));
        ctx.add_variable_from_value("variables", Cel::from(vars.clone()));
        ctx
    };
    for v in spec["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let value = eval(
            v["expression"].as_str().unwrap_or_default(),
            &context(&vars),
        )
        .map_err(|e| error(format!("policy error (variable {name}): {e}")))?;
        vars.insert(name, value);
    }
    let ctx = context(&vars);
    for v in spec["validations"].as_array().into_iter().flatten() {
        let expr = v["expression"].as_str().unwrap_or_default();
        match eval(expr, &ctx) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => {
                let message = match v["messageExpression"].as_str() {
                    Some(m) => match eval(m, &ctx).map_err(error)? {
                        Cel::String(s) => s.to_string(),
                        other => format!("messageExpression gave {other:?}"),
                    },
                    None => v["message"].as_str().unwrap_or(expr).to_string(),
                };
                return Err(Denial {
                    message,
                    reason: v["reason"].as_str().map(str::to_string),
                });
            }
            Ok(other) => return Err(error(format!("policy error: {expr} gave {other:?}"))),
            Err(e) => return Err(error(format!("policy error: {e}"))),
        }
    }
    Ok(())
}

/// The objects named `name` of `kind` in the manifests `up` applies for the example inventory
/// `inventory` (as rendered: the platform phase's policy and binding, for instance).
pub fn rendered(inventory: &str, kind: &str, name: &str) -> Value {
    use forgectl::engine::{self, Selection};
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let inv = forgectl::inventory::load(Some(
        &root
            .join("inventories")
            .join(inventory)
            .join("cluster.yaml"),
    ))
    .unwrap();
    let templates = forgectl::render::Templates::load(None).unwrap();
    let pb = forgectl::playbook::load("cluster").unwrap();
    let plan = engine::plan(
        &inv,
        &pb,
        &templates,
        &forgectl::phases::Presence::default(),
        &Selection::default(),
    )
    .unwrap();
    plan.phases
        .iter()
        .flat_map(|p| &p.actions)
        .filter_map(|a| match &a.op {
            forgectl::plan::Op::ApplyManifests {
                template, content, ..
            } => Some(forgectl::kube::documents(template, content).unwrap()),
            _ => None,
        })
        .flatten()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered for {inventory}"))
}
