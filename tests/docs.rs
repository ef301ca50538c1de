//! docs/inventory.md is generated from the schema; this keeps it in step with the code.

use std::path::Path;

#[test]
fn inventory_reference_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/inventory.md");
    let fresh = forgectl::inventory::reference::markdown(&forgectl::inventory::json_schema());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        on_disk, fresh,
        "docs/inventory.md is stale: run UPDATE_GOLDEN=1 cargo test --test docs"
    );
    for key in [
        "`groups[].roles`",
        "`network.pod_cidr`",
        "`ssh.bastion.address`",
        "`versions.kubernetes`",
    ] {
        assert!(fresh.contains(key), "{key} missing from the reference");
    }
}

/// Every template under `templates/` has its row in the audit of inventory values (issue #24),
/// so a new template cannot land without saying what reaches it and what keeps it safe.
#[test]
fn every_template_has_its_row_in_the_values_audit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let audit = std::fs::read_to_string(root.join("docs/inventory-values-audit.md")).unwrap();
    let mut templates = Vec::new();
    let mut dirs = vec![root.join("templates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(root.join("templates")).unwrap();
                templates.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let table: Vec<&str> = audit
        .lines()
        .skip_while(|l| !l.starts_with("| File / builder"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("| **"))
        .collect();
    assert!(templates.len() >= 30, "templates found: {templates:?}");
    let missing: Vec<&String> = templates
        .iter()
        .filter(|t| !table.iter().any(|r| r.contains(&format!("`{t}`"))))
        .collect();
    assert!(
        missing.is_empty(),
        "templates without a row in docs/inventory-values-audit.md: {missing:?}"
    );
    let claimed = format!(
        "The table has {} rows: {} templates",
        table.len(),
        templates.len()
    );
    assert!(
        audit.contains(&claimed),
        "docs/inventory-values-audit.md should say: {claimed}"
    );
}
