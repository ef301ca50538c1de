//! Deletion of exactly what carries the cluster's tag or metadata, in a safe order: servers
//! (and wait), floating IPs, ports, volumes (once detached), server groups, security groups,
//! the keypair. A second run finds nothing and does nothing.

use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use openstack_sdk::AsyncOpenStack;
use openstack_sdk::api::{Ignore, QueryAsync, ignore};

use super::client::{Build, Cloud, Retry, is_not_found};
use super::ensure::{delete_server, wait_volume};
use super::error::OpenStackError;
use super::listing::{Found, machine_of};

/// What to delete: everything of the cluster, or only these machines' servers, ports, floating
/// IPs and volumes.
pub enum Scope<'a> {
    /// The whole cluster.
    All,
    /// Some machines.
    Machines(&'a [String]),
}

/// Deletes what `found` lists within `scope`; returns how many resources went.
pub async fn destroy(
    cloud: &Cloud,
    found: &Found,
    scope: Scope<'_>,
    concurrency: usize,
    timeout: Duration,
) -> Result<usize, OpenStackError> {
    let keep = |machine: Option<&str>| match &scope {
        Scope::All => true,
        Scope::Machines(names) => machine.is_some_and(|m| names.iter().any(|n| n == m)),
    };
    let n = concurrency.max(1);
    let mut gone = 0;

    let servers: Vec<&str> = found
        .servers
        .iter()
        .filter(|s| keep(s.machine()))
        .map(|s| s.id.as_str())
        .collect();
    gone += servers.len();
    stream::iter(servers)
        .map(|id| delete_server(cloud, id, timeout))
        .buffer_unordered(n)
        .try_collect::<Vec<()>>()
        .await?;

    let fips: Vec<&str> = found
        .floating_ips
        .iter()
        .filter(|f| keep(machine_of(&f.tags, f.description.as_deref()).as_deref()))
        .map(|f| f.id.as_str())
        .collect();
    gone += fips.len();
    stream::iter(fips)
        .map(|id| delete_floating_ip(cloud, id))
        .buffer_unordered(n)
        .try_collect::<Vec<()>>()
        .await?;

    let ports: Vec<&str> = found
        .ports
        .iter()
        .filter(|p| keep(p.machine().as_deref()))
        .map(|p| p.id.as_str())
        .collect();
    gone += ports.len();
    stream::iter(ports)
        .map(|id| delete_port(cloud, id))
        .buffer_unordered(n)
        .try_collect::<Vec<()>>()
        .await?;

    let volumes: Vec<&str> = found
        .volumes
        .iter()
        .filter(|v| {
            keep(
                v.metadata
                    .get(super::spec::META_MACHINE)
                    .map(String::as_str),
            )
        })
        .map(|v| v.id.as_str())
        .collect();
    gone += volumes.len();
    stream::iter(volumes)
        .map(|id| delete_volume(cloud, id, timeout))
        .buffer_unordered(n)
        .try_collect::<Vec<()>>()
        .await?;

    if matches!(scope, Scope::All) {
        for g in &found.server_groups {
            delete_server_group(cloud, &g.id).await?;
            gone += 1;
        }
        for g in &found.security_groups {
            delete_security_group(cloud, &g.id).await?;
            gone += 1;
        }
        if let Some(k) = &found.keypair {
            delete_keypair(cloud, k).await?;
            gone += 1;
        }
    }
    Ok(gone)
}

fn gone_ok(r: Result<(), OpenStackError>) -> Result<(), OpenStackError> {
    match r {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}

/// Sends the DELETE that `make` builds; a resource that is gone already counts as deleted.
async fn delete<E>(
    cloud: &Cloud,
    what: &str,
    make: impl Fn() -> Result<E, Build>,
) -> Result<(), OpenStackError>
where
    Ignore<E>: QueryAsync<(), AsyncOpenStack>,
{
    gone_ok(
        cloud
            .query(what, Retry::Idempotent, || Ok(ignore(make()?)))
            .await,
    )
}

async fn delete_floating_ip(cloud: &Cloud, id: &str) -> Result<(), OpenStackError> {
    use openstack_sdk::api::network::v2::floatingip::delete as d;
    delete(cloud, "delete floating IP", || {
        Ok(d::Request::builder().id(id).build()?)
    })
    .await
}

async fn delete_port(cloud: &Cloud, id: &str) -> Result<(), OpenStackError> {
    use openstack_sdk::api::network::v2::port::delete as d;
    delete(cloud, "delete port", || {
        Ok(d::Request::builder().id(id).build()?)
    })
    .await
}

async fn delete_server_group(cloud: &Cloud, id: &str) -> Result<(), OpenStackError> {
    use openstack_sdk::api::compute::v2::server_group::delete as d;
    delete(cloud, "delete server group", || {
        Ok(d::Request::builder().id(id).build()?)
    })
    .await
}

async fn delete_security_group(cloud: &Cloud, id: &str) -> Result<(), OpenStackError> {
    use openstack_sdk::api::network::v2::security_group::delete as d;
    delete(cloud, "delete security group", || {
        Ok(d::Request::builder().id(id).build()?)
    })
    .await
}

async fn delete_keypair(cloud: &Cloud, name: &str) -> Result<(), OpenStackError> {
    use openstack_sdk::api::compute::v2::keypair::delete_20 as d;
    delete(cloud, "delete keypair", || {
        Ok(d::Request::builder().id(name).build()?)
    })
    .await
}

async fn delete_volume(cloud: &Cloud, id: &str, timeout: Duration) -> Result<(), OpenStackError> {
    use openstack_sdk::api::block_storage::v3::volume::delete as d;
    // A volume of a deleted server is detached by Nova shortly after; Cinder refuses to delete
    // it while it is in use or detaching.
    let start = std::time::Instant::now();
    loop {
        match super::ensure::volume_status(cloud, id).await? {
            None => return Ok(()),
            Some(s)
                if matches!(
                    s.as_str(),
                    "available" | "error" | "error_restoring" | "error_extending"
                ) =>
            {
                break;
            }
            Some(s) if s == "deleting" => break,
            Some(s) if start.elapsed() > timeout => {
                return Err(OpenStackError::Timeout {
                    what: format!("volume {id}"),
                    wanted: "detached".into(),
                    secs: timeout.as_secs(),
                    last: s,
                });
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(700)).await,
        }
    }
    delete(cloud, "delete volume", || {
        Ok(d::Request::builder().id(id).build()?)
    })
    .await?;
    wait_volume(cloud, id, "gone", timeout).await
}
