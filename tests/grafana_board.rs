//! The Grafana board in dashboards/forgectl.json: valid JSON in the shape Grafana imports
//! (a dashboard with its datasource input, panels on the 24-column grid), and every query
//! names only metrics that `forgectl dashboard` or the accounts controller export.

use std::collections::BTreeSet;

use serde_json::Value;

fn board() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/forgectl.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The metric names an expression uses (identifiers starting with `forgectl_`).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("forgectl_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.push(name);
    }
    out
}

#[test]
fn the_board_imports_and_queries_only_exported_metrics() {
    let b = board();
    assert_eq!(b["uid"], "forgectl-cluster");
    assert!(b["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(b["__inputs"][0]["pluginId"], "prometheus");
    let mut exported: BTreeSet<String> = forgectl::dashboard::metrics::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    exported.extend(forgectl::accounts::controller::metric_names());
    assert!(
        exported.contains("forgectl_accounts_passes_total"),
        "{exported:?}"
    );
    let panels = b["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: id repeated"
        );
        assert!(
            ["stat", "timeseries", "table", "bargauge"].contains(&p["type"].as_str().unwrap()),
            "{title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "{title}: off the grid"
        );
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names = metrics_in(expr);
            assert!(
                !names.is_empty(),
                "{title}: {expr} names no forgectl metric"
            );
            for n in names {
                assert!(exported.contains(&n), "{title}: {n} is not exported");
                used.insert(n);
            }
        }
    }
    // The seed's board: tools, pods, nodes, RAM, vCPU, requests/s.
    for m in [
        "forgectl_tools",
        "forgectl_pods",
        "forgectl_nodes",
        "forgectl_memory_requested_bytes",
        "forgectl_cpu_requested_cores",
        "forgectl_ingress_requests_per_second",
    ] {
        assert!(used.contains(m), "the board shows no {m}");
    }
}
