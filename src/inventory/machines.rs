//! Machine groups expanded into the machines the rest of forgectl works with.

use serde::Serialize;
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::model::{Inventory, ProviderKind, Role};
use super::yaml_tree::PathSeg;

/// One machine of the cluster, as declared (addresses may still be unknown for cloud providers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// Unique machine name (also the host name).
    pub name: String,
    /// The group it comes from.
    pub group: String,
    /// What it does.
    pub roles: Vec<Role>,
    /// Its address: given, assigned from the machine network (`local`), or unknown until created.
    pub address: Option<IpAddr>,
    /// Its public (floating) address, when the provider gave it one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floating_address: Option<IpAddr>,
    /// Where in the inventory the machine is declared (for messages).
    #[serde(skip)]
    pub origin: Vec<PathSeg>,
}

impl Machine {
    /// True when the machine has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// First host number given to machines in the `local` network; .1 is the host's side of the bridge.
pub const FIRST_LOCAL_HOST: u32 = 10;

/// Expands every group into machines, in inventory order.
///
/// For `local`, machines without an address get the next free one from `network.machine_cidr`,
/// starting at host number 10; explicit addresses are never handed out twice. Returns `None` for
/// an address when the network is full (validation reports it).
pub fn expand(inv: &Inventory) -> Vec<Machine> {
    let mut machines = Vec::new();
    for (gi, g) in inv.groups.iter().enumerate() {
        let base = vec![PathSeg::Key("groups".into()), PathSeg::Index(gi)];
        if !g.hosts.is_empty() {
            for (hi, h) in g.hosts.iter().enumerate() {
                let mut origin = base.clone();
                origin.extend([
                    PathSeg::Key("hosts".into()),
                    PathSeg::Index(hi),
                    PathSeg::Key("name".into()),
                ]);
                machines.push(Machine {
                    name: h.name.clone(),
                    group: g.name.clone(),
                    roles: g.roles.clone(),
                    address: h.address,
                    floating_address: None,
                    origin,
                });
            }
        } else {
            for i in 1..=g.count.unwrap_or(0) {
                let mut origin = base.clone();
                origin.push(PathSeg::Key("count".into()));
                machines.push(Machine {
                    name: format!("{}-{i}", g.name),
                    group: g.name.clone(),
                    roles: g.roles.clone(),
                    address: None,
                    floating_address: None,
                    origin,
                });
            }
        }
    }
    if inv.provider == ProviderKind::Local {
        assign_local_addresses(inv, &mut machines);
    }
    machines
}

fn assign_local_addresses(inv: &Inventory, machines: &mut [Machine]) {
    fill_free_local_addresses(inv, machines, BTreeSet::new());
}

/// Gives machines without an address the next free one of the machine network, from host number
/// [`FIRST_LOCAL_HOST`], never one a machine holds or one of `also_taken`.
fn fill_free_local_addresses(
    inv: &Inventory,
    machines: &mut [Machine],
    mut also_taken: BTreeSet<IpAddr>,
) {
    also_taken.extend(machines.iter().filter_map(|m| m.address));
    let mut free = inv
        .network
        .machine_cidr
        .0
        .hosts()
        .skip(FIRST_LOCAL_HOST as usize - 1)
        .filter(|a| !also_taken.contains(a));
    for m in machines.iter_mut().filter(|m| m.address.is_none()) {
        m.address = free.next();
    }
}

/// Local machines that exist keep the address they were made with (`recorded`, by name), so a
/// group that grows or shrinks never moves the machines after it; machines not made yet take
/// addresses no machine holds. Addresses written in the inventory stay as written.
pub fn keep_recorded_local_addresses(
    inv: &Inventory,
    machines: &mut [Machine],
    recorded: &std::collections::BTreeMap<String, IpAddr>,
) {
    let written: BTreeSet<&str> = inv
        .groups
        .iter()
        .flat_map(|g| &g.hosts)
        .filter(|h| h.address.is_some())
        .map(|h| h.name.as_str())
        .collect();
    for m in machines
        .iter_mut()
        .filter(|m| !written.contains(m.name.as_str()))
    {
        m.address = recorded.get(&m.name).copied();
    }
    fill_free_local_addresses(inv, machines, recorded.values().copied().collect());
}

/// The host's own address on the `local` bridge: the first host of the machine network.
pub fn local_host_address(inv: &Inventory) -> Option<IpAddr> {
    inv.network.machine_cidr.0.hosts().next()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    fn load(workers: u32) -> crate::inventory::Loaded {
        let text = format!(
            "name: grow\nprovider: local\nnetwork:\n  machine_cidr: 10.77.90.0/24\ningress:\n  enabled: false\n\
             groups:\n  - name: etcd\n    roles: [etcd]\n    count: 1\n\
             \x20 - name: worker\n    roles: [control-plane, worker]\n    count: {workers}\n\
             \x20 - name: lb\n    roles: [lb]\n    count: 1\n"
        );
        crate::inventory::load_str("grow.yaml", &text, std::path::Path::new("/")).unwrap()
    }

    fn addresses(l: &crate::inventory::Loaded) -> Vec<(String, String)> {
        l.machines
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    m.address.map(|a| a.to_string()).unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn machines_that_exist_keep_their_address_when_a_group_before_them_grows() {
        let before = load(2);
        let made: BTreeMap<String, IpAddr> = before
            .machines
            .iter()
            .map(|m| (m.name.clone(), m.address.unwrap()))
            .collect();
        assert_eq!(made["lb-1"].to_string(), "10.77.90.13");
        let grown = load(3).with_recorded_local_addresses(&made);
        let want: Vec<(String, String)> = [
            ("etcd-1", "10.77.90.10"),
            ("worker-1", "10.77.90.11"),
            ("worker-2", "10.77.90.12"),
            ("worker-3", "10.77.90.14"),
            ("lb-1", "10.77.90.13"),
        ]
        .iter()
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect();
        assert_eq!(addresses(&grown), want);
        // Without records (nothing made yet) the layout is the plain one.
        assert_eq!(
            addresses(&load(3).with_recorded_local_addresses(&BTreeMap::new()))[3].1,
            "10.77.90.13"
        );
    }
}
