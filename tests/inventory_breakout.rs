//! No inventory string can carry another grammar's syntax into a rendered file or a remote
//! command (issue #24): for every free string field of the schema (walked, so a new field is
//! covered too), a value with a newline, quotes, `)`, `;`, `$(`, `#` and `{{` is refused by
//! loading, with an error naming that field — unless the field is listed below with the reason it
//! reaches no such grammar. See docs/inventory-values-audit.md.

mod support;

use forgectl::inventory::{LoadError, Severity, json_schema, load_str};
use serde_json::{Value, json};
use std::path::Path;
use support::schema_walk::{Seg, base_for, field_name, set, walk};

/// What an admin might paste by mistake, and what an attacker would try.
const HOSTILE: &str = "x\") *(rw\n; $(id) `id` # {{ evil }}\n[section]\nkey=value";

/// Free strings that reach no rendered file or shell line, with why.
const NO_GRAMMAR: &[(&str, &str)] = &[
    (
        "accounts.file",
        "read by forgectl itself, relative to the inventory",
    ),
    (
        "accounts.ldap.admin_group",
        "an LDAP value, sent through the LDAP client",
    ),
    (
        "accounts.ldap.bind_dn",
        "an LDAP DN, sent through the LDAP client",
    ),
    (
        "accounts.ldap.bind_password_file",
        "read by forgectl itself",
    ),
    ("accounts.ldap.ca_file", "read by forgectl itself"),
    (
        "accounts.ldap.disabled_attribute",
        "an LDAP attribute name, through the LDAP client",
    ),
    (
        "accounts.ldap.disabled_value",
        "an LDAP value, through the LDAP client",
    ),
    (
        "accounts.ldap.groups_base",
        "an LDAP DN, through the LDAP client",
    ),
    (
        "accounts.ldap.tools_base",
        "an LDAP DN, through the LDAP client",
    ),
    (
        "accounts.ldap.users_base",
        "an LDAP DN, through the LDAP client",
    ),
    ("artifacts.dir", "a directory forgectl reads itself"),
    ("artifacts.images", "a directory forgectl reads itself"),
    ("ingress.tls_front.cert_file", "read by forgectl itself"),
    ("ingress.tls_front.key_file", "read by forgectl itself"),
    ("ssh.key", "read by forgectl itself"),
    ("ssh.bastion.key", "read by forgectl itself"),
    (
        "openstack.cloud",
        "a clouds.yaml entry name, looked up by forgectl",
    ),
    ("openstack.region", "sent through the OpenStack SDK (JSON)"),
    ("openstack.network", "sent through the OpenStack SDK (JSON)"),
    ("openstack.image", "sent through the OpenStack SDK (JSON)"),
    ("openstack.flavor", "sent through the OpenStack SDK (JSON)"),
    (
        "openstack.floating_network",
        "sent through the OpenStack SDK (JSON)",
    ),
    ("openstack.keypair", "sent through the OpenStack SDK (JSON)"),
    (
        "openstack.availability_zone",
        "sent through the OpenStack SDK (JSON)",
    ),
    (
        "openstack.security_groups[0]",
        "sent through the OpenStack SDK (JSON)",
    ),
    (
        "groups[0].openstack.availability_zone",
        "sent through the OpenStack SDK (JSON)",
    ),
    (
        "groups[0].openstack.extra_networks[0]",
        "sent through the OpenStack SDK (JSON)",
    ),
    (
        "groups[0].openstack.flavor",
        "sent through the OpenStack SDK (JSON)",
    ),
    (
        "groups[0].openstack.image",
        "sent through the OpenStack SDK (JSON)",
    ),
    (
        "ssh.bastion.address",
        "an address forgectl connects to itself",
    ),
];

#[test]
fn no_free_string_carries_syntax() {
    let schema = json_schema();
    let mut all = Vec::new();
    walk(&schema, &schema, Vec::new(), &mut all);
    let strings: Vec<Vec<Seg>> = all
        .into_iter()
        .filter(|(_, s)| {
            let string = s["type"] == "string"
                || s["type"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("string")));
            string && s.get("enum").is_none() && s.get("oneOf").is_none()
        })
        .map(|(p, _)| p)
        .collect();
    assert!(
        strings.len() > 50,
        "the walk found {} string fields",
        strings.len()
    );
    let mut accepted = Vec::new();
    let names: Vec<String> = strings.iter().map(|p| field_name(p)).collect();
    for (listed, _) in NO_GRAMMAR {
        assert!(
            names.iter().any(|n| n == listed),
            "{listed} is listed but not in the schema"
        );
    }
    for path in &strings {
        let name = field_name(path);
        let mut doc = base_for(path);
        // Blocks with required settings are written whole first, so the schema's checks of
        // those do not hide the one under test.
        if name.starts_with("accounts.ldap.") {
            doc["accounts"]["source"] = json!("ldap");
            doc["accounts"]["ldap"] = json!({"url": "ldaps://ldap.example.org", "bind_dn": "cn=x",
                "tools_base": "ou=tools", "groups_base": "ou=groups", "bind_password_file": "pw"});
            doc["platform"] = json!({"accounts_controller": false});
        }
        if name.starts_with("ssh.bastion.") {
            doc["ssh"]["bastion"] = json!({"address": "192.0.2.9"});
        }
        if name.starts_with("storage.nfs.exports") {
            doc["storage"]["nfs"]["exports"] =
                json!([{"name": "home", "path": "/srv/home", "mount": "/data/home"}]);
        }
        set(&mut doc, path, Value::String(HOSTILE.into()));
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let refused = match load_str("breakout.yaml", &text, Path::new(".")) {
            Ok(_) => false,
            Err(LoadError::Invalid { diagnostics, .. }) => diagnostics.iter().any(|d| {
                d.severity == Severity::Error
                    && (d.field == name || d.field.starts_with(&format!("{name}.")))
            }),
            Err(e) => panic!("{name}: {e}"),
        };
        let listed = NO_GRAMMAR.iter().any(|(f, _)| *f == name);
        if !refused && !listed {
            accepted.push(name);
        }
    }
    assert!(
        accepted.is_empty(),
        "free strings accepted with syntax in them (validate them, or list them with the reason they reach no grammar):\n{}",
        accepted.join("\n")
    );
}
