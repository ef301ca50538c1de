//! The `openstack` provider: servers, ports, volumes, floating IPs, server groups, security
//! groups and a keypair on an OpenStack cloud, through openstack_sdk. Everything it makes
//! carries the cluster's tag (or metadata), so `down` deletes exactly that and nothing else.

pub mod client;
pub mod cloud_conf;
pub mod destroy;
pub mod ensure;
pub mod error;
pub mod listing;
pub mod quota;
pub mod resolve;
pub mod secgroups;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};

pub use client::Cloud;
pub use ensure::MachineRecord;
pub use error::OpenStackError;
pub use listing::Found;

use crate::interrupt::Interrupt;
use crate::inventory::{Loaded, OpenStackProvider};
use spec::MachineSpec;

/// File in the state dir with what the provider made for each machine (ids, addresses).
pub const RECORD: &str = "openstack-machines.json";

/// What `ensure` did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Resources created (servers, ports, volumes, floating IPs, groups, rules, keypair).
    pub created: usize,
    /// Every machine's record afterwards.
    pub machines: Vec<MachineRecord>,
}

/// A connected provider for one cluster.
pub struct OpenStack<'a> {
    inv: &'a Loaded,
    os: &'a OpenStackProvider,
    cloud: Cloud,
}

impl<'a> OpenStack<'a> {
    /// Connects with the inventory's settings.
    pub async fn connect(inv: &'a Loaded) -> Result<Self, OpenStackError> {
        let os = spec::settings(inv).ok_or(OpenStackError::NoCloud)?;
        let cloud = Cloud::connect(os).await?;
        Ok(Self { inv, os, cloud })
    }

    fn own_keypair(&self) -> Option<String> {
        match &self.os.keypair {
            Some(_) => None,
            None => Some(spec::keypair_name(&self.inv.inventory.name)),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.os.server_timeout.max(1)))
    }

    /// Everything of the cluster that exists in the project.
    pub async fn find(&self) -> Result<Found, OpenStackError> {
        let groups: Vec<String> = spec::server_groups(self.inv)
            .into_iter()
            .map(|g| g.name)
            .chain(
                // Groups of every inventory group, whatever their policy now: `down` finds
                // those made under an earlier policy too.
                self.inv
                    .inventory
                    .groups
                    .iter()
                    .map(|g| spec::server_group_name(&self.inv.inventory.name, &g.name)),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        listing::find(
            &self.cloud,
            &self.inv.inventory.name,
            &groups,
            self.own_keypair().as_deref(),
        )
        .await
    }

    /// Makes whatever the cluster's machines lack (probe first), waits for ACTIVE, and
    /// returns every machine's record. `user_data` is cloud-init text by machine.
    pub async fn ensure(
        &self,
        public_key: &str,
        user_data: &BTreeMap<String, String>,
        interrupt: &Interrupt,
    ) -> Result<Report, OpenStackError> {
        let cluster = self.inv.inventory.name.as_str();
        let specs = spec::machines(self.inv);
        let found = self.find().await?;
        let resolved = resolve::resolve(&self.cloud, self.os, &specs).await?;
        let mut missing_keypair = Vec::new();
        if let Some(k) = &self.os.keypair
            && listing::keypair_exists(&self.cloud, Some(k))
                .await?
                .is_none()
        {
            missing_keypair.push(format!("keypair `{k}`"));
        }
        if !missing_keypair.is_empty() {
            return Err(OpenStackError::Missing(missing_keypair));
        }
        let suffixes: Vec<&'static str> = secgroups::groups(self.inv).into_iter().collect();
        let rules = secgroups::rules(self.inv);
        let groups = spec::server_groups(self.inv);
        quota::check(
            &self.cloud,
            &needs(
                &specs, &found, &resolved, &suffixes, &rules, &groups, cluster,
            ),
        )
        .await?;

        let mut created = 0;
        let keypair = match &self.os.keypair {
            Some(k) => k.clone(),
            None => {
                let k = spec::keypair_name(cluster);
                created += ensure::keypair(&self.cloud, &k, public_key, &found).await?;
                k
            }
        };
        let (sg_ids, n) =
            ensure::security_groups(&self.cloud, cluster, &suffixes, &rules, &found).await?;
        created += n;
        let (group_ids, n) = ensure::server_groups(&self.cloud, &groups, &found).await?;
        created += n;
        let shared = ensure::Shared {
            cluster,
            resolved: &resolved,
            security_groups: &sg_ids,
            server_groups: &group_ids,
            keypair: &keypair,
            user_data,
            timeout: self.timeout(),
            interrupt,
        };
        let lanes: Vec<Vec<(String, Result<MachineRecord, OpenStackError>)>> =
            stream::iter(lanes(&specs, &groups))
                .map(|lane| {
                    let shared = &shared;
                    let found = &found;
                    async move {
                        let mut out = Vec::new();
                        for s in lane {
                            let r = ensure::machine(&self.cloud, s, found, shared).await;
                            out.push((s.machine.clone(), r));
                        }
                        out
                    }
                })
                .buffer_unordered(self.os.concurrency.max(1) as usize)
                .collect()
                .await;
        let results = lanes.into_iter().flatten();
        let mut machines = Vec::new();
        let mut failed = Vec::new();
        for (m, r) in results {
            match r {
                Ok(rec) => {
                    created += rec.created;
                    machines.push(rec);
                }
                Err(e) => failed.push((m, e)),
            }
        }
        if !failed.is_empty() {
            failed.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(if failed.len() == 1 {
                failed.remove(0).1
            } else {
                OpenStackError::Machines(failed)
            });
        }
        let order: Vec<&str> = specs.iter().map(|s| s.machine.as_str()).collect();
        machines.sort_by_key(|r| order.iter().position(|m| *m == r.machine));
        Ok(Report { created, machines })
    }

    /// Deletes what `found` (from [`OpenStack::find`]) lists of the cluster, or of some
    /// machines only; returns how many resources went.
    pub async fn destroy(
        &self,
        found: &Found,
        machines: Option<&[String]>,
    ) -> Result<usize, OpenStackError> {
        let scope = match machines {
            Some(m) => destroy::Scope::Machines(m),
            None => destroy::Scope::All,
        };
        destroy::destroy(
            &self.cloud,
            found,
            scope,
            self.os.concurrency as usize,
            self.timeout(),
        )
        .await
    }
}

/// cloud-init user data for every machine (host name and the SSH key), from
/// `openstack/user-data.tera`.
pub fn user_data(
    inv: &Loaded,
    templates: &crate::render::Templates,
    public_key: &str,
) -> Result<BTreeMap<String, String>, crate::render::RenderError> {
    inv.machines
        .iter()
        .map(|m| {
            let vars = serde_json::json!({
                "hostname": m.name,
                "cluster": inv.inventory.name,
                "user": inv.inventory.ssh.user,
                "public_key": public_key.trim(),
            });
            Ok((
                m.name.clone(),
                templates.render("openstack/user-data.tera", &vars)?,
            ))
        })
        .collect()
}

/// The order machines are made in: the members of a hard anti-affinity group one after the
/// other (Nova's late check fails parallel boots into one group after three reschedules), every
/// other machine on its own; lanes run side by side, the group lanes started first.
fn lanes<'s>(
    specs: &'s [MachineSpec],
    groups: &[spec::ServerGroupSpec],
) -> Vec<Vec<&'s MachineSpec>> {
    let hard: BTreeSet<&str> = groups
        .iter()
        .filter(|g| g.policy == "anti-affinity")
        .map(|g| g.name.as_str())
        .collect();
    let mut by_group: BTreeMap<&str, Vec<&MachineSpec>> = BTreeMap::new();
    let mut out = Vec::new();
    for s in specs {
        match s.server_group.as_deref().filter(|g| hard.contains(g)) {
            Some(g) => by_group.entry(g).or_default().push(s),
            None => out.push(vec![s]),
        }
    }
    // The long lanes first, so they do not become the tail.
    by_group.into_values().chain(out).collect()
}

/// Machines whose server is ACTIVE with everything it should have (ports, volume, floating IP).
pub fn complete(inv: &Loaded, found: &Found) -> BTreeSet<String> {
    spec::machines(inv)
        .iter()
        .filter(|s| machine_complete(s, found))
        .map(|s| s.machine.clone())
        .collect()
}

fn machine_complete(s: &MachineSpec, found: &Found) -> bool {
    let Some(server) = found.server(&s.machine) else {
        return false;
    };
    let ports = found.ports_of(&s.machine);
    server.status == "ACTIVE"
        && ports.len() >= s.networks.len()
        && (s.volume_gb.is_none()
            || found
                .volume_of(&s.machine)
                .is_some_and(|v| v.attachments.iter().any(|a| a.server_id == server.id)))
        && (!s.floating_ip || found.floating_ip_of(&s.machine).is_some())
}

/// What the missing parts would take from the quotas.
fn needs(
    specs: &[MachineSpec],
    found: &Found,
    resolved: &resolve::Resolved,
    suffixes: &[&'static str],
    rules: &[secgroups::Rule],
    groups: &[spec::ServerGroupSpec],
    cluster: &str,
) -> quota::Needs {
    let mut n = quota::Needs::default();
    for s in specs {
        if found.server(&s.machine).is_none() {
            n.instances += 1;
            if let Some(f) = resolved.flavors.get(&s.flavor) {
                n.cores += f.vcpus;
                n.ram += f.ram;
            }
            if let Some(gb) = s.boot_volume_gb {
                n.volumes += 1;
                n.gigabytes += i64::from(gb);
            }
        }
        n.ports += (s.networks.len() as i64 - found.ports_of(&s.machine).len() as i64).max(0);
        if let (Some(gb), None) = (s.volume_gb, found.volume_of(&s.machine)) {
            n.volumes += 1;
            n.gigabytes += i64::from(gb);
        }
        if s.floating_ip && found.floating_ip_of(&s.machine).is_none() {
            n.floating_ips += 1;
        }
    }
    let missing_groups: Vec<&&str> = suffixes
        .iter()
        .filter(|s| {
            let name = secgroups::group_name(cluster, s);
            !found.security_groups.iter().any(|g| g.name == name)
        })
        .collect();
    n.security_groups = missing_groups.len() as i64;
    n.security_group_rules = rules
        .iter()
        .filter(|r| missing_groups.contains(&&r.group))
        .count() as i64;
    n.server_groups = groups
        .iter()
        .filter(|g| !found.server_groups.iter().any(|f| f.name == g.name))
        .count() as i64;
    n
}

/// Reads the record of the state dir `dir`, by machine.
pub fn read_record(dir: &std::path::Path) -> BTreeMap<String, MachineRecord> {
    std::fs::read(dir.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<MachineRecord>>(&b).ok())
        .map(|v| v.into_iter().map(|r| (r.machine.clone(), r)).collect())
        .unwrap_or_default()
}

/// The addresses the record of state dir `dir` holds: (fixed, floating) by machine.
pub fn assigned(
    dir: &std::path::Path,
) -> BTreeMap<String, (std::net::IpAddr, Option<std::net::IpAddr>)> {
    read_record(dir)
        .into_iter()
        .filter_map(|(m, r)| {
            let fixed = r.address.as_deref()?.parse().ok()?;
            let floating = r.floating_address.as_deref().and_then(|a| a.parse().ok());
            Some((m, (fixed, floating)))
        })
        .collect()
}
