//! Quota check before anything is created: what the missing resources need against what the
//! project has left, per quota, so a run never stops half-way for a quota it could have foreseen.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::client::{Cloud, Retry};
use super::error::{OpenStackError, Shortfall};

/// What the run would add, by quota.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Servers.
    pub instances: i64,
    /// vCPUs.
    pub cores: i64,
    /// RAM in MiB.
    pub ram: i64,
    /// Volumes (data and boot).
    pub volumes: i64,
    /// Volume GiB.
    pub gigabytes: i64,
    /// Ports.
    pub ports: i64,
    /// Floating IPs.
    pub floating_ips: i64,
    /// Security groups.
    pub security_groups: i64,
    /// Security group rules.
    pub security_group_rules: i64,
    /// Server groups.
    pub server_groups: i64,
}

/// (limit, used); a negative limit is unlimited.
type Usage = (i64, i64);

/// Compares `needs` with the project's limits; Err lists every quota that is too small.
pub async fn check(cloud: &Cloud, needs: &Needs) -> Result<(), OpenStackError> {
    let mut have: BTreeMap<&'static str, Usage> = BTreeMap::new();
    if needs.instances + needs.cores + needs.ram + needs.server_groups > 0 {
        let a = compute_limits(cloud).await?;
        let get = |k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(-1);
        have.insert(
            "compute instances",
            (get("maxTotalInstances"), get("totalInstancesUsed")),
        );
        have.insert(
            "compute cores",
            (get("maxTotalCores"), get("totalCoresUsed")),
        );
        have.insert(
            "compute ram (MiB)",
            (get("maxTotalRAMSize"), get("totalRAMUsed")),
        );
        have.insert(
            "compute server_groups",
            (get("maxServerGroups"), get("totalServerGroupsUsed")),
        );
    }
    if needs.volumes + needs.gigabytes > 0 {
        let a = volume_limits(cloud).await?;
        let get = |k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(-1);
        have.insert(
            "volume volumes",
            (get("maxTotalVolumes"), get("totalVolumesUsed")),
        );
        have.insert(
            "volume gigabytes",
            (get("maxTotalVolumeGigabytes"), get("totalGigabytesUsed")),
        );
    }
    if needs.ports + needs.floating_ips + needs.security_groups + needs.security_group_rules > 0
        && let Some(q) = network_quota(cloud).await?
    {
        for (key, name) in [
            ("port", "network port"),
            ("floatingip", "network floatingip"),
            ("security_group", "network security_group"),
            ("security_group_rule", "network security_group_rule"),
        ] {
            if let Some(d) = q.get(key) {
                have.insert(name, (d.limit, d.used + d.reserved));
            }
        }
    }
    let wanted = [
        ("compute instances", needs.instances),
        ("compute cores", needs.cores),
        ("compute ram (MiB)", needs.ram),
        ("compute server_groups", needs.server_groups),
        ("volume volumes", needs.volumes),
        ("volume gigabytes", needs.gigabytes),
        ("network port", needs.ports),
        ("network floatingip", needs.floating_ips),
        ("network security_group", needs.security_groups),
        ("network security_group_rule", needs.security_group_rules),
    ];
    let short = shortfalls(&wanted, &have);
    if short.is_empty() {
        Ok(())
    } else {
        Err(OpenStackError::Quota(short))
    }
}

/// The quotas of `wanted` that `have` cannot cover.
pub fn shortfalls(wanted: &[(&str, i64)], have: &BTreeMap<&str, Usage>) -> Vec<Shortfall> {
    wanted
        .iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(q, n)| {
            let (limit, used) = *have.get(q)?;
            let left = (limit - used).max(0);
            (limit >= 0 && *n > left).then(|| Shortfall {
                quota: q.to_string(),
                needed: *n,
                left,
                limit,
            })
        })
        .collect()
}

async fn compute_limits(cloud: &Cloud) -> Result<serde_json::Map<String, Value>, OpenStackError> {
    use openstack_sdk::api::compute::v2::limit::list_21;
    let v: Value = cloud
        .query("read compute limits", Retry::Idempotent, || {
            Ok(list_21::Request::builder().build()?)
        })
        .await?;
    Ok(absolute(v))
}

async fn volume_limits(cloud: &Cloud) -> Result<serde_json::Map<String, Value>, OpenStackError> {
    use openstack_sdk::api::block_storage::v3::limit::list;
    let v: Value = cloud
        .query("read volume limits", Retry::Idempotent, || {
            Ok(list::Request::builder().build()?)
        })
        .await?;
    Ok(absolute(v))
}

fn absolute(v: Value) -> serde_json::Map<String, Value> {
    match v.get("absolute") {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    }
}

#[derive(Debug, Deserialize)]
struct Detail {
    limit: i64,
    #[serde(default)]
    used: i64,
    #[serde(default)]
    reserved: i64,
}

/// Neutron's quota details, when the cloud lets the project read them.
async fn network_quota(cloud: &Cloud) -> Result<Option<BTreeMap<String, Detail>>, OpenStackError> {
    use openstack_sdk::api::network::v2::quota::details;
    let Some(project) = &cloud.project_id else {
        return Ok(None);
    };
    let got: Result<BTreeMap<String, Detail>, _> = cloud
        .query("read network quota", Retry::Idempotent, || {
            Ok(details::Request::builder().id(project.as_str()).build()?)
        })
        .await;
    match got {
        Ok(q) => Ok(Some(q)),
        // Some clouds hide quota details from members: Neutron then says so itself on create.
        Err(e) if matches!(e.status(), Some(403 | 404)) => Ok(None),
        Err(e) => Err(e),
    }
}
