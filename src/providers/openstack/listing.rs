//! Probe: everything in the project that carries the cluster's tag or metadata.

use std::collections::BTreeMap;

use openstack_sdk::api::{Pagination, paged};
use serde::Deserialize;

use super::client::{Cloud, Retry, is_not_found};
use super::error::OpenStackError;
use super::spec::{META_CLUSTER, META_MACHINE, carries};

/// A Nova server of the cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// ACTIVE, BUILD, ERROR, SHUTOFF …
    #[serde(default)]
    pub status: String,
    /// Metadata (forgectl_cluster, forgectl_machine).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Nova's fault, for ERROR servers.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Attached volumes.
    #[serde(default, rename = "os-extended-volumes:volumes_attached")]
    pub volumes_attached: Vec<IdOnly>,
}

impl Server {
    /// The machine it is for.
    pub fn machine(&self) -> Option<&str> {
        self.metadata.get(META_MACHINE).map(String::as_str)
    }
}

/// Nova's fault record.
#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    /// The message.
    #[serde(default)]
    pub message: String,
}

/// `{ "id": … }`.
#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    /// Id.
    pub id: String,
}

/// A Neutron port of the cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct Port {
    /// Id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Network id.
    pub network_id: String,
    /// Addresses.
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    /// The server using it ("" when free).
    #[serde(default)]
    pub device_id: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Description (carries forgectl's marker, set at creation).
    #[serde(default)]
    pub description: Option<String>,
}

impl Port {
    /// The machine it belongs to (from its tags or its description marker).
    pub fn machine(&self) -> Option<String> {
        machine_of(&self.tags, self.description.as_deref())
    }
}

/// The machine named by `forgectl-machine=` in `tags` or in a description marker.
pub fn machine_of(tags: &[String], description: Option<&str>) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix("forgectl-machine="))
        .map(str::to_string)
        .or_else(|| {
            description?
                .split("forgectl-machine=")
                .nth(1)
                .and_then(|r| r.split(';').next())
                .map(str::to_string)
        })
}

/// One fixed IP of a port.
#[derive(Debug, Clone, Deserialize)]
pub struct FixedIp {
    /// The address.
    pub ip_address: String,
}

/// A floating IP of the cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct FloatingIp {
    /// Id.
    pub id: String,
    /// The public address.
    pub floating_ip_address: String,
    /// The port it points at.
    #[serde(default)]
    pub port_id: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Description (carries forgectl's marker, set at creation).
    #[serde(default)]
    pub description: Option<String>,
}

/// A Cinder volume of the cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct Volume {
    /// Id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// available, in-use, creating, error …
    #[serde(default)]
    pub status: String,
    /// Metadata (forgectl_cluster, forgectl_machine).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Attachments.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Size in GiB.
    #[serde(default)]
    pub size: u32,
}

/// Where a volume is attached.
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    /// The server.
    #[serde(default)]
    pub server_id: String,
    /// Device as Nova reports it (e.g. /dev/vdb).
    #[serde(default)]
    pub device: Option<String>,
}

/// A security group of the cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct SecurityGroup {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Rules.
    #[serde(default)]
    pub security_group_rules: Vec<SgRule>,
}

/// A rule as Neutron reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct SgRule {
    /// ingress / egress.
    pub direction: String,
    /// Protocol name or number, or null for any.
    #[serde(default)]
    pub protocol: Option<String>,
    /// First port.
    #[serde(default)]
    pub port_range_min: Option<u16>,
    /// Last port.
    #[serde(default)]
    pub port_range_max: Option<u16>,
    /// Source range.
    #[serde(default)]
    pub remote_ip_prefix: Option<String>,
    /// Source group.
    #[serde(default)]
    pub remote_group_id: Option<String>,
}

/// A Nova server group.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerGroup {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Policies (microversion 2.1 form).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Member server ids.
    #[serde(default)]
    pub members: Vec<String>,
}

/// Everything of one cluster that exists in the project.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Servers.
    pub servers: Vec<Server>,
    /// Ports.
    pub ports: Vec<Port>,
    /// Floating IPs.
    pub floating_ips: Vec<FloatingIp>,
    /// Volumes.
    pub volumes: Vec<Volume>,
    /// Security groups.
    pub security_groups: Vec<SecurityGroup>,
    /// Server groups (by the cluster's names).
    pub server_groups: Vec<ServerGroup>,
    /// The keypair forgectl made, if it exists.
    pub keypair: Option<String>,
}

impl Found {
    /// True when nothing of the cluster exists.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
            && self.ports.is_empty()
            && self.floating_ips.is_empty()
            && self.volumes.is_empty()
            && self.security_groups.is_empty()
            && self.server_groups.is_empty()
            && self.keypair.is_none()
    }

    /// How many resources, by kind, for messages.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |n: usize, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(self.servers.len(), "server(s)");
        add(self.ports.len(), "port(s)");
        add(self.floating_ips.len(), "floating IP(s)");
        add(self.volumes.len(), "volume(s)");
        add(self.security_groups.len(), "security group(s)");
        add(self.server_groups.len(), "server group(s)");
        add(usize::from(self.keypair.is_some()), "keypair");
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }

    /// The server of `machine`.
    pub fn server(&self, machine: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.machine() == Some(machine))
    }

    /// The ports of `machine`.
    pub fn ports_of(&self, machine: &str) -> Vec<&Port> {
        self.ports
            .iter()
            .filter(|p| p.machine().as_deref() == Some(machine))
            .collect()
    }

    /// The floating IP of `machine`.
    pub fn floating_ip_of(&self, machine: &str) -> Option<&FloatingIp> {
        self.floating_ips
            .iter()
            .find(|f| machine_of(&f.tags, f.description.as_deref()).as_deref() == Some(machine))
    }

    /// The data volume of `machine`.
    pub fn volume_of(&self, machine: &str) -> Option<&Volume> {
        self.volumes
            .iter()
            .find(|v| v.metadata.get(META_MACHINE).map(String::as_str) == Some(machine))
    }
}

/// Lists everything of `cluster`; `server_group_names` are the names its groups would have,
/// `keypair` the keypair forgectl makes (None when the inventory names its own).
pub async fn find(
    cloud: &Cloud,
    cluster: &str,
    server_group_names: &[String],
    keypair: Option<&str>,
) -> Result<Found, OpenStackError> {
    let (servers, ports, fips, volumes, sgs, groups, kp) = tokio::try_join!(
        list_servers(cloud, cluster),
        list_ports(cloud, cluster),
        list_floating_ips(cloud, cluster),
        list_volumes(cloud, cluster),
        list_security_groups(cloud, cluster),
        list_server_groups(cloud, server_group_names),
        keypair_exists(cloud, keypair),
    )?;
    Ok(Found {
        servers,
        ports,
        floating_ips: fips,
        volumes,
        security_groups: sgs,
        server_groups: groups,
        keypair: kp,
    })
}

async fn list_servers(cloud: &Cloud, cluster: &str) -> Result<Vec<Server>, OpenStackError> {
    use openstack_sdk::api::compute::v2::server::list_detailed_21 as l;
    let all: Vec<Server> = cloud
        .query("list servers", Retry::Idempotent, || {
            Ok(paged(l::Request::builder().build()?, Pagination::All))
        })
        .await?;
    // Metadata, not the name, says what is ours: other servers of the project are never touched.
    Ok(all
        .into_iter()
        .filter(|s| s.metadata.get(META_CLUSTER).map(String::as_str) == Some(cluster))
        .collect())
}

// Neutron lists are filtered by project (an admin's would span all projects), then by the
// cluster's tag or description marker (not every Neutron takes tags on creation; the marker is
// there from the start).

async fn list_ports(cloud: &Cloud, cluster: &str) -> Result<Vec<Port>, OpenStackError> {
    use openstack_sdk::api::network::v2::port::list as l;
    let found: Vec<Port> = cloud
        .query("list ports", Retry::Idempotent, || {
            let mut b = l::Request::builder();
            if let Some(p) = &cloud.project_id {
                b.tenant_id(p.as_str());
            }
            Ok(paged(b.build()?, Pagination::All))
        })
        .await?;
    Ok(found
        .into_iter()
        .filter(|p| carries(cluster, &p.tags, p.description.as_deref()))
        .collect())
}

async fn list_floating_ips(
    cloud: &Cloud,
    cluster: &str,
) -> Result<Vec<FloatingIp>, OpenStackError> {
    use openstack_sdk::api::network::v2::floatingip::list as l;
    let found: Vec<FloatingIp> = cloud
        .query("list floating IPs", Retry::Idempotent, || {
            let mut b = l::Request::builder();
            if let Some(p) = &cloud.project_id {
                b.tenant_id(p.as_str());
            }
            Ok(paged(b.build()?, Pagination::All))
        })
        .await?;
    Ok(found
        .into_iter()
        .filter(|f| carries(cluster, &f.tags, f.description.as_deref()))
        .collect())
}

async fn list_security_groups(
    cloud: &Cloud,
    cluster: &str,
) -> Result<Vec<SecurityGroup>, OpenStackError> {
    use openstack_sdk::api::network::v2::security_group::list as l;
    #[derive(Deserialize)]
    struct Tagged {
        #[serde(flatten)]
        group: SecurityGroup,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        description: Option<String>,
    }
    let found: Vec<Tagged> = cloud
        .query("list security groups", Retry::Idempotent, || {
            let mut b = l::Request::builder();
            if let Some(p) = &cloud.project_id {
                b.tenant_id(p.as_str());
            }
            Ok(paged(b.build()?, Pagination::All))
        })
        .await?;
    Ok(found
        .into_iter()
        .filter(|t| carries(cluster, &t.tags, t.description.as_deref()))
        .map(|t| t.group)
        .collect())
}

async fn list_volumes(cloud: &Cloud, cluster: &str) -> Result<Vec<Volume>, OpenStackError> {
    use openstack_sdk::api::block_storage::v3::volume::list_detailed as l;
    let all: Vec<Volume> = cloud
        .query("list volumes", Retry::Idempotent, || {
            Ok(paged(l::Request::builder().build()?, Pagination::All))
        })
        .await?;
    Ok(all
        .into_iter()
        .filter(|v| v.metadata.get(META_CLUSTER).map(String::as_str) == Some(cluster))
        .collect())
}

async fn list_server_groups(
    cloud: &Cloud,
    names: &[String],
) -> Result<Vec<ServerGroup>, OpenStackError> {
    use openstack_sdk::api::compute::v2::server_group::list_20 as l;
    let all: Vec<ServerGroup> = cloud
        .query("list server groups", Retry::Idempotent, || {
            Ok(l::Request::builder().build()?)
        })
        .await?;
    Ok(all
        .into_iter()
        .filter(|g| names.contains(&g.name))
        .collect())
}

/// The keypair `name`, if it exists.
pub async fn keypair_exists(
    cloud: &Cloud,
    name: Option<&str>,
) -> Result<Option<String>, OpenStackError> {
    use openstack_sdk::api::compute::v2::keypair::get_20 as g;
    let Some(name) = name else {
        return Ok(None);
    };
    let got: Result<serde_json::Value, _> = cloud
        .query("get keypair", Retry::Idempotent, || {
            Ok(g::Request::builder().id(name).build()?)
        })
        .await;
    match got {
        Ok(_) => Ok(Some(name.to_string())),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
