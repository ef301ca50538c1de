//! What the pages show, computed from the watch caches: the cluster's numbers and one tool's.
//! Plain data (serialized as the JSON of the same paths), built without touching the API.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use serde::Serialize;

use super::extras::Extras;
use super::watch::Stores;
use crate::accounts::desired::{DISABLED_LABEL, TOOL_LABEL};

/// A quantity's value in its base unit (cores for CPU, bytes for memory); 0 when unreadable.
pub fn amount(q: Option<&Quantity>) -> f64 {
    q.and_then(|q| kube_quantity::ParsedQuantity::try_from(q.clone()).ok())
        .and_then(|p| p.to_bytes_f64())
        .unwrap_or(0.0)
}

/// Pods by phase.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct PodCounts {
    /// Running.
    pub running: usize,
    /// Pending (not scheduled, or containers not started).
    pub pending: usize,
    /// Failed.
    pub failed: usize,
    /// Succeeded (finished Job pods).
    pub succeeded: usize,
    /// Any other phase.
    pub unknown: usize,
}

impl PodCounts {
    fn add(&mut self, phase: &str) {
        match phase {
            "Running" => self.running += 1,
            "Pending" => self.pending += 1,
            "Failed" => self.failed += 1,
            "Succeeded" => self.succeeded += 1,
            _ => self.unknown += 1,
        }
    }
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Whether its Ready condition is True.
    pub ready: bool,
    /// Its kubelet's version.
    pub kubelet: String,
    /// Roles from its `node-role.kubernetes.io/*` labels.
    pub roles: Vec<String>,
    /// Allocatable CPU, cores.
    pub cpu_allocatable: f64,
    /// CPU its pods request, cores.
    pub cpu_requested: f64,
    /// Allocatable memory, bytes.
    pub memory_allocatable: f64,
    /// Memory its pods request, bytes.
    pub memory_requested: f64,
    /// Pods on it (not finished).
    pub pods: usize,
    /// Whether it is cordoned.
    pub unschedulable: bool,
}

/// Allocatable against requested, for the whole cluster.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Capacity {
    /// Sum over nodes, base unit.
    pub allocatable: f64,
    /// Sum of the requests of pods not finished, base unit.
    pub requested: f64,
}

/// The cluster page.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// The cluster's name.
    pub cluster: String,
    /// Tools (tool namespaces).
    pub tools: usize,
    /// Of them disabled.
    pub tools_disabled: usize,
    /// Every pod by phase.
    pub pods: PodCounts,
    /// Pods of the tools by phase.
    pub tool_pods: PodCounts,
    /// Nodes Ready.
    pub nodes_ready: usize,
    /// Every node.
    pub nodes: Vec<NodeView>,
    /// Kubelet versions and how many nodes run each.
    pub kubelet_versions: BTreeMap<String, usize>,
    /// CPU, cores.
    pub cpu: Capacity,
    /// Memory, bytes.
    pub memory: Capacity,
    /// etcd, certificates and ingress traffic, where the dashboard can see them.
    #[serde(flatten)]
    pub extras: Extras,
}

/// A quota line: a resource, used and hard.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaLine {
    /// Resource name (`pods`, `requests.cpu`, …).
    pub resource: String,
    /// Used, as the quota controller reports it.
    pub used: String,
    /// The limit.
    pub hard: String,
    /// used / hard in percent, 0–100 (0 when either is unreadable).
    pub percent: u8,
}

/// A Deployment of a tool.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadView {
    /// Name.
    pub name: String,
    /// Ready replicas.
    pub ready: i32,
    /// Wanted replicas.
    pub wanted: i32,
}

/// A pod of a tool.
#[derive(Debug, Clone, Serialize)]
pub struct PodView {
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: String,
    /// Whether every container is ready.
    pub ready: bool,
    /// Container restarts, summed.
    pub restarts: i32,
    /// Seconds since it was created.
    pub age_seconds: i64,
    /// The same for people: `42s`, `5m`, `3h12m`, `2d4h`.
    pub age: String,
    /// Its node, once scheduled.
    pub node: Option<String>,
}

/// A Job or CronJob of a tool.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Name.
    pub name: String,
    /// `Job` or `CronJob`.
    pub kind: String,
    /// A CronJob's schedule.
    pub schedule: Option<String>,
    /// When it last ran (a Job's start, a CronJob's last schedule), RFC 3339.
    pub last_run: Option<String>,
    /// `complete`, `failed`, `running`, `suspended` or `scheduled`.
    pub state: String,
}

/// A tool's page.
#[derive(Debug, Clone, Serialize)]
pub struct ToolView {
    /// The tool.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Its quota, used against hard.
    pub quota: Vec<QuotaLine>,
    /// Its Deployments.
    pub workloads: Vec<WorkloadView>,
    /// Its pods.
    pub pods: Vec<PodView>,
    /// Its pods by phase.
    pub pod_counts: PodCounts,
    /// Its web services (`https://HOST/` of its Ingresses).
    pub urls: Vec<String>,
    /// Its Jobs and CronJobs.
    pub jobs: Vec<JobView>,
}

/// A line of the tools' index.
#[derive(Debug, Clone, Serialize)]
pub struct ToolLine {
    /// The tool.
    pub name: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Pods running.
    pub running: usize,
    /// Pods in all.
    pub pods: usize,
}

/// One page of the tools' index.
#[derive(Debug, Clone, Serialize)]
pub struct ToolIndex {
    /// Tools matching the filter.
    pub total: usize,
    /// The page (1-based).
    pub page: usize,
    /// Pages in all.
    pub pages: usize,
    /// The filter (a substring of the name).
    pub filter: String,
    /// This page's tools.
    pub tools: Vec<ToolLine>,
}

/// Tools per index page (keeps a page small with thousands of tools).
pub const TOOLS_PER_PAGE: usize = 200;

fn finished(p: &Pod) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A pod's requests (cores, bytes): the sum over its containers, or its largest init
/// container's when that is more (as the scheduler counts them).
fn requests(p: &Pod) -> (f64, f64) {
    let Some(spec) = &p.spec else {
        return (0.0, 0.0);
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        (
            amount(r.and_then(|r| r.get("cpu"))),
            amount(r.and_then(|r| r.get("memory"))),
        )
    };
    let (mut cpu, mut mem) = spec
        .containers
        .iter()
        .map(of)
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    for init in spec.init_containers.iter().flatten() {
        let (c, m) = of(init);
        cpu = cpu.max(c);
        mem = mem.max(m);
    }
    (cpu, mem)
}

fn tool_of(ns: &k8s_openapi::api::core::v1::Namespace) -> Option<(String, bool)> {
    let labels = ns.metadata.labels.as_ref()?;
    let tool = labels.get(TOOL_LABEL)?.clone();
    let disabled = labels.get(DISABLED_LABEL).is_some_and(|v| v == "true");
    Some((tool, disabled))
}

/// The cluster page from the caches and the extras.
pub fn cluster(cluster: &str, stores: &Stores, extras: Extras) -> ClusterView {
    let namespaces = stores.namespaces.state();
    let tool_namespaces: HashMap<String, bool> = namespaces
        .iter()
        .filter_map(|ns| tool_of(ns).map(|(_, d)| (ns.name_any(), d)))
        .collect();
    let mut pods = PodCounts::default();
    let mut tool_pods = PodCounts::default();
    let mut per_node: HashMap<String, (f64, f64, usize)> = HashMap::new();
    for p in stores.pods.state() {
        pods.add(phase(&p));
        if p.namespace()
            .is_some_and(|ns| tool_namespaces.contains_key(&ns))
        {
            tool_pods.add(phase(&p));
        }
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        if let (Some(node), false) = (node, finished(&p)) {
            let (c, m) = requests(&p);
            let e = per_node.entry(node).or_default();
            e.0 += c;
            e.1 += m;
            e.2 += 1;
        }
    }
    let mut nodes: Vec<NodeView> = stores
        .nodes
        .state()
        .iter()
        .map(|n| {
            let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
            let (cpu_requested, memory_requested, pods) =
                per_node.get(&n.name_any()).copied().unwrap_or_default();
            NodeView {
                name: n.name_any(),
                ready: crate::kube::node_is_ready(n),
                kubelet: n
                    .status
                    .as_ref()
                    .and_then(|s| s.node_info.as_ref())
                    .map(|i| i.kubelet_version.clone())
                    .unwrap_or_default(),
                roles: n
                    .labels()
                    .keys()
                    .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                    .map(str::to_string)
                    .collect(),
                cpu_allocatable: amount(alloc.and_then(|a| a.get("cpu"))),
                cpu_requested,
                memory_allocatable: amount(alloc.and_then(|a| a.get("memory"))),
                memory_requested,
                pods,
                unschedulable: n
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut kubelet_versions = BTreeMap::new();
    for n in &nodes {
        *kubelet_versions.entry(n.kubelet.clone()).or_insert(0) += 1;
    }
    // Folded from 0.0: `sum` of no floats is -0.0, which pages would show as "-0.0".
    let sum = |f: fn(&NodeView) -> f64| nodes.iter().map(f).fold(0.0, |a, b| a + b);
    ClusterView {
        cluster: cluster.to_string(),
        tools: tool_namespaces.len(),
        tools_disabled: tool_namespaces.values().filter(|d| **d).count(),
        pods,
        tool_pods,
        nodes_ready: nodes.iter().filter(|n| n.ready).count(),
        kubelet_versions,
        cpu: Capacity {
            allocatable: sum(|n| n.cpu_allocatable),
            requested: sum(|n| n.cpu_requested),
        },
        memory: Capacity {
            allocatable: sum(|n| n.memory_allocatable),
            requested: sum(|n| n.memory_requested),
        },
        nodes,
        extras,
    }
}

/// The tools' index: those whose name holds `filter`, page `page` (1-based).
pub fn tool_index(stores: &Stores, filter: &str, page: usize) -> ToolIndex {
    let mut tools: Vec<(String, String, bool)> = stores
        .namespaces
        .state()
        .iter()
        .filter_map(|ns| tool_of(ns).map(|(t, d)| (t, ns.name_any(), d)))
        .filter(|(t, _, _)| t.contains(filter))
        .collect();
    tools.sort();
    let total = tools.len();
    let pages = total.div_ceil(TOOLS_PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    let shown =
        &tools[((page - 1) * TOOLS_PER_PAGE).min(total)..(page * TOOLS_PER_PAGE).min(total)];
    let mut counts: HashMap<&str, (usize, usize)> = shown
        .iter()
        .map(|(_, ns, _)| (ns.as_str(), (0, 0)))
        .collect();
    for p in stores.pods.state() {
        if let Some(c) = p
            .metadata
            .namespace
            .as_deref()
            .and_then(|ns| counts.get_mut(ns))
        {
            c.1 += 1;
            if phase(&p) == "Running" {
                c.0 += 1;
            }
        }
    }
    ToolIndex {
        total,
        page,
        pages,
        filter: filter.to_string(),
        tools: shown
            .iter()
            .map(|(t, ns, d)| {
                let (running, pods) = counts.get(ns.as_str()).copied().unwrap_or_default();
                ToolLine {
                    name: t.clone(),
                    disabled: *d,
                    running,
                    pods,
                }
            })
            .collect(),
    }
}

/// An age for people: `42s`, `5m`, `3h12m`, `2d4h`.
pub fn age_text(s: i64) -> String {
    match s {
        ..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

fn rfc3339(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    t.0.to_string()
}

/// Tool `name`'s page (ages as of `now_s`, UNIX seconds), or None when there is no such tool.
pub fn tool(stores: &Stores, name: &str, now_s: i64) -> Option<ToolView> {
    let (namespace, disabled) = stores.namespaces.state().into_iter().find_map(|ns| {
        tool_of(&ns)
            .filter(|(t, _)| t == name)
            .map(|(_, d)| (ns.name_any(), d))
    })?;
    let in_ns = |o: &Option<String>| o.as_deref() == Some(namespace.as_str());

    let mut quota = Vec::new();
    for q in stores.quotas.state() {
        if !in_ns(&q.metadata.namespace) {
            continue;
        }
        let status = q.status.clone().unwrap_or_default();
        let hard = q
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        for (resource, h) in &hard {
            let used = status.used.as_ref().and_then(|u| u.get(resource));
            let (u, hv) = (amount(used), amount(Some(h)));
            quota.push(QuotaLine {
                resource: resource.clone(),
                used: used.map(|u| u.0.clone()).unwrap_or_else(|| "0".into()),
                hard: h.0.clone(),
                percent: if hv > 0.0 {
                    ((u / hv).min(1.0) * 100.0).round() as u8
                } else {
                    0
                },
            });
        }
    }
    quota.sort_by(|a, b| a.resource.cmp(&b.resource));

    let mut workloads: Vec<WorkloadView> = stores
        .deployments
        .state()
        .iter()
        .filter(|d| in_ns(&d.metadata.namespace))
        .map(|d| WorkloadView {
            name: d.name_any(),
            ready: d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            wanted: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        })
        .collect();
    workloads.sort_by(|a, b| a.name.cmp(&b.name));

    let mut pod_counts = PodCounts::default();
    let mut pods: Vec<PodView> = stores
        .pods
        .state()
        .iter()
        .filter(|p| in_ns(&p.metadata.namespace))
        .map(|p| {
            pod_counts.add(phase(p));
            let statuses = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            let age_seconds = p
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| (now_s - t.0.as_second()).max(0))
                .unwrap_or(0);
            PodView {
                name: p.name_any(),
                phase: phase(p).to_string(),
                ready: !statuses.is_empty() && statuses.iter().all(|c| c.ready),
                restarts: statuses.iter().map(|c| c.restart_count).sum(),
                age_seconds,
                age: age_text(age_seconds),
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            }
        })
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));

    let mut urls: Vec<String> = stores
        .ingresses
        .state()
        .iter()
        .filter(|i| in_ns(&i.metadata.namespace))
        .flat_map(|i| {
            i.spec
                .as_ref()
                .and_then(|s| s.rules.clone())
                .unwrap_or_default()
        })
        .filter_map(|r| r.host.map(|h| format!("https://{h}/")))
        .collect();
    urls.sort();
    urls.dedup();

    let mut jobs: Vec<JobView> = Vec::new();
    for c in stores.cronjobs.state() {
        if !in_ns(&c.metadata.namespace) {
            continue;
        }
        let spec = c.spec.clone().unwrap_or_default();
        let last = c
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref());
        jobs.push(JobView {
            name: c.name_any(),
            kind: "CronJob".into(),
            schedule: Some(spec.schedule.clone()),
            last_run: last.map(rfc3339),
            state: if spec.suspend == Some(true) {
                "suspended".into()
            } else {
                "scheduled".into()
            },
        });
    }
    for j in stores.jobs.state() {
        if !in_ns(&j.metadata.namespace) {
            continue;
        }
        let status = j.status.clone().unwrap_or_default();
        let state = if status.succeeded.unwrap_or(0) > 0 && status.active.unwrap_or(0) == 0 {
            "complete"
        } else if status.failed.unwrap_or(0) > 0 && status.active.unwrap_or(0) == 0 {
            "failed"
        } else {
            "running"
        };
        jobs.push(JobView {
            name: j.name_any(),
            kind: "Job".into(),
            schedule: None,
            last_run: status.start_time.as_ref().map(rfc3339),
            state: state.into(),
        });
    }
    jobs.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));

    Some(ToolView {
        name: name.to_string(),
        namespace,
        disabled,
        quota,
        workloads,
        pods,
        pod_counts,
        urls,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_without_nodes_has_zero_capacity_not_minus_zero() {
        fn empty<K>() -> kube::runtime::reflector::Store<K>
        where
            K: kube::Resource + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone + Default,
        {
            kube::runtime::reflector::store().0
        }
        let stores = Stores {
            namespaces: empty(),
            pods: empty(),
            nodes: empty(),
            quotas: empty(),
            deployments: empty(),
            jobs: empty(),
            cronjobs: empty(),
            ingresses: empty(),
        };
        let v = cluster("c", &stores, Extras::default());
        let text = serde_json::to_string(&(&v.cpu, &v.memory)).unwrap();
        assert!(!text.contains("-0"), "{text}");
        assert_eq!(v.nodes_ready, 0);
    }

    #[test]
    fn amounts_in_base_units() {
        let q = |s: &str| Quantity(s.to_string());
        assert_eq!(amount(Some(&q("150m"))), 0.15);
        assert_eq!(amount(Some(&q("2"))), 2.0);
        assert_eq!(amount(Some(&q("1Gi"))), 1073741824.0);
        assert_eq!(amount(Some(&q("512M"))), 512e6);
        assert_eq!(amount(Some(&q("nonsense"))), 0.0);
        assert_eq!(amount(None), 0.0);
    }

    #[test]
    fn ages_for_people() {
        assert_eq!(age_text(42), "42s");
        assert_eq!(age_text(300), "5m");
        assert_eq!(age_text(3 * 3600 + 12 * 60), "3h12m");
        assert_eq!(age_text(2 * 86400 + 4 * 3600 + 5), "2d4h");
    }
}
