//! Names in the inventory turned into the cloud's ids, all checked before anything is created:
//! a flavor, image or network that does not exist stops the run with every such name listed.

use std::collections::{BTreeMap, BTreeSet};

use openstack_sdk::AsyncOpenStack;
use openstack_sdk::api::{QueryAsync, find};
use serde::Deserialize;

use super::client::{Build, Cloud, Retry, is_not_found};
use super::error::OpenStackError;
use super::spec::MachineSpec;
use crate::inventory::OpenStackProvider;

/// A flavor's size.
#[derive(Debug, Clone, Deserialize)]
pub struct Flavor {
    /// Id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// vCPUs.
    #[serde(default)]
    pub vcpus: i64,
    /// RAM, MiB.
    #[serde(default)]
    pub ram: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct Named {
    id: String,
}

/// The ids of everything the inventory names.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Flavors by the inventory's name.
    pub flavors: BTreeMap<String, Flavor>,
    /// Image ids by the inventory's name.
    pub images: BTreeMap<String, String>,
    /// Network ids by the inventory's name.
    pub networks: BTreeMap<String, String>,
    /// The external network's id.
    pub floating_network: Option<String>,
    /// Ids of the extra security groups.
    pub security_groups: Vec<String>,
}

/// Looks up every flavor, image, network and extra security group of `specs`; reports all the
/// missing ones at once.
pub async fn resolve(
    cloud: &Cloud,
    os: &OpenStackProvider,
    specs: &[MachineSpec],
) -> Result<Resolved, OpenStackError> {
    let flavors: BTreeSet<&str> = specs.iter().map(|s| s.flavor.as_str()).collect();
    let images: BTreeSet<&str> = specs.iter().map(|s| s.image.as_str()).collect();
    let networks: BTreeSet<&str> = specs
        .iter()
        .flat_map(|s| s.networks.iter().map(String::as_str))
        .collect();
    let mut out = Resolved::default();
    let mut missing = Vec::new();
    for name in flavors {
        match find_flavor(cloud, name).await? {
            Some(f) => {
                out.flavors.insert(name.to_string(), f);
            }
            None => missing.push(format!("flavor `{name}`")),
        }
    }
    for name in images {
        match image_id(cloud, name).await? {
            Some(id) => {
                out.images.insert(name.to_string(), id);
            }
            None => missing.push(format!("image `{name}`")),
        }
    }
    for name in networks {
        match network_id(cloud, name).await? {
            Some(id) => {
                out.networks.insert(name.to_string(), id);
            }
            None => missing.push(format!("network `{name}`")),
        }
    }
    if specs.iter().any(|s| s.floating_ip) {
        match &os.floating_network {
            None => missing.push(
                "openstack.floating_network (a group asks for floating IPs but no external network is named)".into(),
            ),
            Some(name) => match network_id(cloud, name).await? {
                Some(id) => out.floating_network = Some(id),
                None => missing.push(format!("floating network `{name}`")),
            },
        }
    }
    for name in &os.security_groups {
        match security_group_id(cloud, name).await? {
            Some(id) => out.security_groups.push(id),
            None => missing.push(format!("security group `{name}`")),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(OpenStackError::Missing(missing))
    }
}

fn absent<T>(r: Result<T, OpenStackError>) -> Result<Option<T>, OpenStackError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Looks a resource up by name or id with the `find(…)` request `make` builds; None when absent.
async fn find_by<T, E>(
    cloud: &Cloud,
    what: String,
    make: impl Fn() -> Result<E, Build>,
) -> Result<Option<T>, OpenStackError>
where
    E: QueryAsync<T, AsyncOpenStack>,
{
    absent(cloud.query(&what, Retry::Idempotent, make).await)
}

async fn find_flavor(cloud: &Cloud, name: &str) -> Result<Option<Flavor>, OpenStackError> {
    use openstack_sdk::api::compute::v2::flavor::find as f;
    find_by(cloud, format!("find flavor {name}"), || {
        Ok(find(f::Request::builder().id(name).build()?))
    })
    .await
}

async fn image_id(cloud: &Cloud, name: &str) -> Result<Option<String>, OpenStackError> {
    use openstack_sdk::api::image::v2::image::find as f;
    let found: Option<Named> = find_by(cloud, format!("find image {name}"), || {
        Ok(find(f::Request::builder().id(name).build()?))
    })
    .await?;
    Ok(found.map(|n| n.id))
}

async fn network_id(cloud: &Cloud, name: &str) -> Result<Option<String>, OpenStackError> {
    use openstack_sdk::api::network::v2::network::find as f;
    let found: Option<Named> = find_by(cloud, format!("find network {name}"), || {
        Ok(find(f::Request::builder().id(name).build()?))
    })
    .await?;
    Ok(found.map(|n| n.id))
}

async fn security_group_id(cloud: &Cloud, name: &str) -> Result<Option<String>, OpenStackError> {
    use openstack_sdk::api::network::v2::security_group::find as f;
    let found: Option<Named> = find_by(cloud, format!("find security group {name}"), || {
        Ok(find(f::Request::builder().id(name).build()?))
    })
    .await?;
    Ok(found.map(|n| n.id))
}
