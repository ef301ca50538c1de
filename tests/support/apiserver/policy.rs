//! ValidatingAdmissionPolicy admission, as the real API server does it after its other
//! admission steps: every binding whose policy's resource rules match the request (group,
//! version, resource or `resource/subresource`, operation) and whose namespace selectors match
//! the object's namespace is evaluated (CEL, by the `vap` double); a `Deny` binding's failed
//! validation refuses the write with the real server's message and the validation's reason.

use serde_json::Value;

use super::errors::{self, Fail};
use super::select::selector_matches;
use super::{Store, Target};

const GROUP: &str = "admissionregistration.k8s.io";

fn listed(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
}

fn rule_matches(policy: &Value, t: &Target, resource: &str, operation: &str) -> bool {
    policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            listed(&r["apiGroups"], &t.res.group)
                && listed(&r["apiVersions"], &t.res.version)
                && listed(&r["resources"], resource)
                && listed(&r["operations"], operation)
        })
}

/// The HTTP code of a validation's `reason` (Invalid when it names none).
fn code(reason: &str) -> u16 {
    match reason {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// Refuses `new` (at `t`, `old` for an update, `sub` its subresource) when a bound policy
/// denies it.
pub fn admit(
    st: &Store,
    t: &Target,
    old: Option<&Value>,
    new: &Value,
    sub: Option<&str>,
) -> Result<(), Fail> {
    let operation = if old.is_none() { "CREATE" } else { "UPDATE" };
    let resource = match sub {
        Some(s) => format!("{}/{s}", t.res.plural),
        None => t.res.plural.clone(),
    };
    let namespace = if t.res.namespaced {
        st.objects
            .get(&(
                String::new(),
                "namespaces".into(),
                String::new(),
                t.ns.clone(),
            ))
            .cloned()
    } else {
        None
    };
    let labels = namespace
        .as_ref()
        .map(|n| n["metadata"]["labels"].clone())
        .unwrap_or(Value::Null);
    for (_, binding) in st.of(GROUP, "validatingadmissionpolicybindings") {
        let spec = &binding["spec"];
        if !listed(&spec["validationActions"], "Deny") {
            continue;
        }
        let name = spec["policyName"].as_str().unwrap_or_default();
        let Some(policy) = st.objects.get(&(
            GROUP.into(),
            "validatingadmissionpolicies".into(),
            String::new(),
            name.into(),
        )) else {
            continue;
        };
        // As the real server: a namespace is matched on its own labels, other cluster-scoped
        // objects are never skipped by a namespace selector.
        let selected = |sel: &Value| {
            if sel.is_null() {
                true
            } else if t.res.plural == "namespaces" {
                selector_matches(sel, &new["metadata"]["labels"])
            } else {
                !t.res.namespaced || selector_matches(sel, &labels)
            }
        };
        if !rule_matches(policy, t, &resource, operation)
            || !selected(&policy["spec"]["matchConstraints"]["namespaceSelector"])
            || !selected(&spec["matchResources"]["namespaceSelector"])
        {
            continue;
        }
        let ns = namespace.clone().unwrap_or(Value::Null);
        if let Err(denial) = crate::support::vap::evaluate(policy, new, &ns) {
            let reason = denial.reason.as_deref().unwrap_or("Invalid");
            let why = denial.message;
            let binding_name = binding["metadata"]["name"].as_str().unwrap_or_default();
            return errors::fail(
                code(reason),
                reason,
                format!(
                    "{} {} is forbidden: ValidatingAdmissionPolicy '{name}' with binding '{binding_name}' denied request: {why}",
                    errors::group_resource(&t.res.group, &t.res.plural),
                    errors::quote(new["metadata"]["name"].as_str().unwrap_or_default()),
                ),
                serde_json::json!({}),
            );
        }
    }
    Ok(())
}
