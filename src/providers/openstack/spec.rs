//! What the cluster's machines need from the cloud, derived from the inventory alone (no API
//! calls): names, flavors, images, networks, volumes, server groups, security groups.

use std::net::IpAddr;

use super::secgroups;
use crate::inventory::{Loaded, OpenStackProvider, Role, ServerGroupPolicy};

/// Metadata key (Nova, Cinder) naming the cluster a resource belongs to.
pub const META_CLUSTER: &str = "forgectl_cluster";
/// Metadata key (Nova, Cinder) naming the machine a resource belongs to.
pub const META_MACHINE: &str = "forgectl_machine";

/// The tag (Nova, Neutron) every resource of `cluster` carries.
pub fn cluster_tag(cluster: &str) -> String {
    format!("forgectl-cluster={cluster}")
}

/// The tag (Neutron) naming the machine a port or floating IP belongs to.
pub fn machine_tag(machine: &str) -> String {
    format!("forgectl-machine={machine}")
}

/// The description marker of resources that get their tags only after creation (floating IPs,
/// security groups): `forgectl-cluster=NAME;` and, for a machine's, ` forgectl-machine=M;`.
pub fn marker(cluster: &str, machine: Option<&str>) -> String {
    match machine {
        Some(m) => format!("{}; {};", cluster_tag(cluster), machine_tag(m)),
        None => format!("{};", cluster_tag(cluster)),
    }
}

/// True when a Neutron resource with `tags` and `description` belongs to `cluster`.
pub fn carries(cluster: &str, tags: &[String], description: Option<&str>) -> bool {
    tags.contains(&cluster_tag(cluster))
        || description.is_some_and(|d| d.starts_with(&marker(cluster, None)))
}

/// The keypair forgectl makes when the inventory names none.
pub fn keypair_name(cluster: &str) -> String {
    format!("forgectl-{cluster}")
}

/// One machine's server and what hangs off it.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    /// Machine name (also the host name).
    pub machine: String,
    /// Inventory group.
    pub group: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Server name in Nova: `CLUSTER-MACHINE`.
    pub server_name: String,
    /// Flavor name or id.
    pub flavor: String,
    /// Image name or id.
    pub image: String,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Boot volume size (boot from volume), if any.
    pub boot_volume_gb: Option<u32>,
    /// Networks (names or ids), the machine network first; one port on each.
    pub networks: Vec<String>,
    /// Fixed IP on the machine network, when the inventory gives one.
    pub fixed_ip: Option<IpAddr>,
    /// Addresses its machine-network port may also use (the API's VIP on lb machines).
    pub allowed_addresses: Vec<IpAddr>,
    /// Whether it gets a floating IP.
    pub floating_ip: bool,
    /// Extra data volume size, if any.
    pub volume_gb: Option<u32>,
    /// Server group name, if any.
    pub server_group: Option<String>,
    /// forgectl's security groups for its port(s) (names).
    pub security_groups: Vec<String>,
}

impl MachineSpec {
    /// Name of the port on network number `i`.
    pub fn port_name(&self, i: usize) -> String {
        format!("{}-port{i}", self.server_name)
    }

    /// Name of the data volume.
    pub fn volume_name(&self) -> String {
        format!("{}-data", self.server_name)
    }
}

/// A server group and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGroupSpec {
    /// `forgectl-CLUSTER-GROUP`.
    pub name: String,
    /// Nova policy name.
    pub policy: &'static str,
}

/// The `openstack:` settings; validation guarantees them for the openstack provider.
pub fn settings(inv: &Loaded) -> Option<&OpenStackProvider> {
    inv.inventory.openstack.as_ref()
}

/// The server group policy of inventory group `gi`.
fn policy(inv: &Loaded, gi: usize) -> ServerGroupPolicy {
    let g = &inv.inventory.groups[gi];
    g.openstack.as_ref().and_then(|o| o.server_group).unwrap_or(
        if g.roles.contains(&Role::Etcd) || g.roles.contains(&Role::ControlPlane) {
            ServerGroupPolicy::AntiAffinity
        } else {
            ServerGroupPolicy::SoftAntiAffinity
        },
    )
}

/// Name of the server group for inventory group `group`.
pub fn server_group_name(cluster: &str, group: &str) -> String {
    format!("forgectl-{cluster}-{group}")
}

/// Server groups for the inventory's groups (groups with policy `none` have none).
pub fn server_groups(inv: &Loaded) -> Vec<ServerGroupSpec> {
    let cluster = &inv.inventory.name;
    inv.inventory
        .groups
        .iter()
        .enumerate()
        .filter_map(|(gi, g)| {
            policy(inv, gi).nova_name().map(|p| ServerGroupSpec {
                name: server_group_name(cluster, &g.name),
                policy: p,
            })
        })
        .collect()
}

/// Every machine's spec, in inventory order.
pub fn machines(inv: &Loaded) -> Vec<MachineSpec> {
    let Some(os) = settings(inv) else {
        return Vec::new();
    };
    let cluster = &inv.inventory.name;
    inv.machines
        .iter()
        .filter_map(|m| {
            let gi = inv
                .inventory
                .groups
                .iter()
                .position(|g| g.name == m.group)?;
            let g = &inv.inventory.groups[gi];
            let go = g.openstack.clone().unwrap_or_default();
            let mut networks = vec![os.network.clone()];
            networks.extend(go.extra_networks.iter().cloned());
            Some(MachineSpec {
                machine: m.name.clone(),
                group: g.name.clone(),
                roles: m.roles.clone(),
                server_name: format!("{cluster}-{}", m.name),
                flavor: go.flavor.clone().unwrap_or_else(|| os.flavor.clone()),
                image: go.image.clone().unwrap_or_else(|| os.image.clone()),
                availability_zone: go
                    .availability_zone
                    .clone()
                    .or_else(|| os.availability_zone.clone()),
                boot_volume_gb: go.boot_volume_gb.or(os.boot_volume_gb),
                networks,
                // Only an address the inventory gives is asked for; others are Neutron's choice
                // (and come back through the state dir's record).
                fixed_ip: g
                    .hosts
                    .iter()
                    .find(|h| h.name == m.name)
                    .and_then(|h| h.address),
                allowed_addresses: match inv.inventory.api.vip {
                    Some(vip) if m.roles.contains(&Role::Lb) => vec![vip],
                    _ => Vec::new(),
                },
                floating_ip: go.floating_ip,
                volume_gb: go.volume_gb,
                server_group: policy(inv, gi)
                    .nova_name()
                    .map(|_| server_group_name(cluster, &g.name)),
                security_groups: secgroups::for_roles(&m.roles)
                    .into_iter()
                    .map(|s| secgroups::group_name(cluster, s))
                    .collect(),
            })
        })
        .collect()
}
