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
