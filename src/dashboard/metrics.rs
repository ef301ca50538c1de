//! The dashboard's numbers for Prometheus (and so for Grafana: `dashboards/forgectl.json`),
//! written from the same [`ClusterView`] the cluster page shows, at each scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::view::{ClusterView, PodCounts};

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric name the endpoint exports (the Grafana board's queries are checked against it).
pub const NAMES: &[&str] = &[
    "forgectl_tools",
    "forgectl_pods",
    "forgectl_tool_pods",
    "forgectl_nodes",
    "forgectl_kubelet_version_nodes",
    "forgectl_cpu_allocatable_cores",
    "forgectl_cpu_requested_cores",
    "forgectl_memory_allocatable_bytes",
    "forgectl_memory_requested_bytes",
    "forgectl_node_ready",
    "forgectl_node_cpu_allocatable_cores",
    "forgectl_node_cpu_requested_cores",
    "forgectl_node_memory_allocatable_bytes",
    "forgectl_node_memory_requested_bytes",
    "forgectl_node_pods",
    "forgectl_etcd_member_healthy",
    "forgectl_etcd_db_size_bytes",
    "forgectl_certificate_expiry_days",
    "forgectl_ingress_requests_per_second",
];

fn family(r: &mut Registry, name: &str, help: &str) -> Family<Labels, FloatGauge> {
    let f = Family::<Labels, FloatGauge>::default();
    r.register(name, help, f.clone());
    f
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

fn phases(f: &Family<Labels, FloatGauge>, p: &PodCounts) {
    for (phase, n) in [
        ("running", p.running),
        ("pending", p.pending),
        ("failed", p.failed),
        ("succeeded", p.succeeded),
        ("unknown", p.unknown),
    ] {
        f.get_or_create(&label("phase", phase)).set(n as f64);
    }
}

/// The Prometheus text exposition of `v`.
pub fn exposition(v: &ClusterView) -> String {
    // Names are registered without the `forgectl_` prefix, which the registry adds.
    let mut r = Registry::with_prefix("forgectl");
    let tools = family(&mut r, "tools", "Tools (tool namespaces), by state");
    tools
        .get_or_create(&label("state", "enabled"))
        .set((v.tools - v.tools_disabled) as f64);
    tools
        .get_or_create(&label("state", "disabled"))
        .set(v.tools_disabled as f64);
    phases(&family(&mut r, "pods", "Pods, by phase"), &v.pods);
    phases(
        &family(&mut r, "tool_pods", "Pods in tool namespaces, by phase"),
        &v.tool_pods,
    );
    let nodes = family(&mut r, "nodes", "Nodes, by readiness");
    nodes
        .get_or_create(&label("ready", "true"))
        .set(v.nodes_ready as f64);
    nodes
        .get_or_create(&label("ready", "false"))
        .set((v.nodes.len() - v.nodes_ready) as f64);
    let versions = family(&mut r, "kubelet_version_nodes", "Nodes by kubelet version");
    for (version, n) in &v.kubelet_versions {
        versions
            .get_or_create(&label("version", version))
            .set(*n as f64);
    }
    for (name, help, value) in [
        (
            "cpu_allocatable_cores",
            "Allocatable CPU of every node, cores",
            v.cpu.allocatable,
        ),
        (
            "cpu_requested_cores",
            "CPU requested by pods not finished, cores",
            v.cpu.requested,
        ),
        (
            "memory_allocatable_bytes",
            "Allocatable memory of every node, bytes",
            v.memory.allocatable,
        ),
        (
            "memory_requested_bytes",
            "Memory requested by pods not finished, bytes",
            v.memory.requested,
        ),
    ] {
        let g = FloatGauge::default();
        g.set(value);
        r.register(name, help, g);
    }
    let ready = family(&mut r, "node_ready", "1 when the node is Ready");
    let cpu_a = family(
        &mut r,
        "node_cpu_allocatable_cores",
        "Allocatable CPU, cores",
    );
    let cpu_r = family(
        &mut r,
        "node_cpu_requested_cores",
        "CPU requested on the node, cores",
    );
    let mem_a = family(
        &mut r,
        "node_memory_allocatable_bytes",
        "Allocatable memory, bytes",
    );
    let mem_r = family(
        &mut r,
        "node_memory_requested_bytes",
        "Memory requested on the node, bytes",
    );
    let pods = family(&mut r, "node_pods", "Pods on the node, not finished");
    for n in &v.nodes {
        let l = label("node", &n.name);
        ready.get_or_create(&l).set(if n.ready { 1.0 } else { 0.0 });
        cpu_a.get_or_create(&l).set(n.cpu_allocatable);
        cpu_r.get_or_create(&l).set(n.cpu_requested);
        mem_a.get_or_create(&l).set(n.memory_allocatable);
        mem_r.get_or_create(&l).set(n.memory_requested);
        pods.get_or_create(&l).set(n.pods as f64);
    }
    let healthy = family(
        &mut r,
        "etcd_member_healthy",
        "1 when the etcd member answers",
    );
    let db = family(&mut r, "etcd_db_size_bytes", "etcd database size, bytes");
    for m in v.extras.etcd.iter().flatten() {
        let l = label("member", &m.name);
        healthy
            .get_or_create(&l)
            .set(if m.healthy { 1.0 } else { 0.0 });
        if let Some(size) = m.db_size {
            db.get_or_create(&l).set(size as f64);
        }
    }
    let certs = family(
        &mut r,
        "certificate_expiry_days",
        "Days until the certificate expires",
    );
    for c in v.extras.certificates.iter().flatten() {
        certs
            .get_or_create(&label("certificate", &c.name))
            .set(c.days_left as f64);
    }
    let rps = FloatGauge::default();
    if let Some(x) = v.extras.ingress_requests_per_second {
        rps.set(x);
        r.register(
            "ingress_requests_per_second",
            "Requests per second through the ingress controllers",
            rps,
        );
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}
