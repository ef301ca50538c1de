//! Creation, probe first: only what is missing is made; servers in ERROR are replaced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use openstack_sdk::api::ignore;
use serde::Deserialize;
use serde_json::Value;

use super::client::{Cloud, Retry, is_not_found};
use super::error::OpenStackError;
use super::listing::{Found, Port};
use super::resolve::Resolved;
use super::secgroups::{self, Rule, Source};
use super::spec::{self, META_CLUSTER, META_MACHINE, MachineSpec, ServerGroupSpec};
use crate::interrupt::Interrupt;

/// How often a server or volume state is read while waiting.
const POLL: Duration = Duration::from_millis(700);

/// What was made for one machine, and where it is.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MachineRecord {
    /// Machine name.
    pub machine: String,
    /// Nova server id.
    pub server_id: String,
    /// Nova server name.
    pub server_name: String,
    /// Fixed IP on the machine network.
    pub address: Option<String>,
    /// Floating IP, if any.
    pub floating_address: Option<String>,
    /// Data volume id and device, if any.
    pub volume: Option<VolumeRecord>,
    /// Resources created for it by this run.
    #[serde(skip)]
    pub created: usize,
}

/// A data volume and where it is attached.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct VolumeRecord {
    /// Cinder id.
    pub id: String,
    /// Device on the server, as Nova reports it.
    pub device: Option<String>,
    /// Size in GiB.
    pub size_gb: u32,
}

/// Makes the keypair unless it exists; returns 1 when made.
pub async fn keypair(
    cloud: &Cloud,
    name: &str,
    public_key: &str,
    found: &Found,
) -> Result<usize, OpenStackError> {
    use openstack_sdk::api::compute::v2::keypair::create_22 as kp;
    if found.keypair.is_some() {
        return Ok(0);
    }
    let key = public_key.trim();
    let _: Value = cloud
        .query(&format!("create keypair {name}"), Retry::Create, || {
            Ok(kp::Request::builder()
                .keypair(
                    kp::KeypairBuilder::default()
                        .name(name)
                        .public_key(key)
                        .build()?,
                )
                .build()?)
        })
        .await?;
    Ok(1)
}

/// The cluster's security groups: makes missing groups and rules; returns ids by suffix and
/// how many things were made.
pub async fn security_groups(
    cloud: &Cloud,
    cluster: &str,
    suffixes: &[&'static str],
    rules: &[Rule],
    found: &Found,
) -> Result<(BTreeMap<&'static str, String>, usize), OpenStackError> {
    use openstack_sdk::api::network::v2::security_group::create as sg;
    use openstack_sdk::api::network::v2::security_group::tag::replace as sg_tags;
    let mut ids = BTreeMap::new();
    let mut made = 0;
    for &suffix in suffixes {
        let name = secgroups::group_name(cluster, suffix);
        if let Some(g) = found.security_groups.iter().find(|g| g.name == name) {
            ids.insert(suffix, g.id.clone());
            continue;
        }
        let description = format!(
            "{} forgectl: {suffix} machines of cluster {cluster}",
            spec::marker(cluster, None)
        );
        let created: IdOnly = cloud
            .query(
                &format!("create security group {name}"),
                Retry::Create,
                || {
                    Ok(sg::Request::builder()
                        .security_group(
                            sg::SecurityGroupBuilder::default()
                                .name(name.as_str())
                                .description(description.as_str())
                                .build()?,
                        )
                        .build()?)
                },
            )
            .await?;
        let tag = spec::cluster_tag(cluster);
        cloud
            .query(
                &format!("tag security group {name}"),
                Retry::Idempotent,
                || {
                    Ok(ignore(
                        sg_tags::Request::builder()
                            .security_group_id(created.id.as_str())
                            .tags(vec![tag.as_str().into()])
                            .build()?,
                    ))
                },
            )
            .await?;
        ids.insert(suffix, created.id);
        made += 1;
    }
    for rule in rules {
        let Some(group_id) = ids.get(rule.group) else {
            continue;
        };
        let remote_group = match &rule.from {
            Source::Group(s) => match ids.get(s) {
                Some(id) => Some(id.clone()),
                None => continue,
            },
            Source::Cidr(_) => None,
        };
        let existing = found.security_groups.iter().find(|g| &g.id == group_id);
        let present = existing.is_some_and(|g| {
            g.security_group_rules.iter().any(|r| {
                r.direction == "ingress"
                    && r.protocol.as_deref() == Some(rule.protocol)
                    && r.port_range_min == rule.ports.map(|p| p.0)
                    && r.port_range_max == rule.ports.map(|p| p.1)
                    && match &rule.from {
                        Source::Cidr(c) => r.remote_ip_prefix.as_deref() == Some(c.as_str()),
                        Source::Group(_) => r.remote_group_id == remote_group,
                    }
            })
        });
        if present {
            continue;
        }
        create_rule(cloud, group_id, rule, remote_group.as_deref()).await?;
        made += 1;
    }
    Ok((ids, made))
}

async fn create_rule(
    cloud: &Cloud,
    group_id: &str,
    rule: &Rule,
    remote_group: Option<&str>,
) -> Result<(), OpenStackError> {
    use openstack_sdk::api::network::v2::security_group_rule::create as r;
    let v6 = matches!(&rule.from, Source::Cidr(c) if c.contains(':'));
    let what = format!(
        "create rule {} {:?} in {}",
        rule.protocol, rule.ports, rule.group
    );
    let result: Result<Value, _> = cloud
        .query(&what, Retry::Create, || {
            let mut b = r::SecurityGroupRuleBuilder::default();
            b.security_group_id(group_id)
                .direction(r::Direction::Ingress)
                .ethertype(if v6 {
                    r::Ethertype::Ipv6
                } else {
                    r::Ethertype::Ipv4
                })
                .protocol(rule.protocol)
                .description(rule.why);
            if let Some((lo, hi)) = rule.ports {
                b.port_range_min(Some(i32::from(lo)))
                    .port_range_max(Some(i32::from(hi)));
            }
            match (&rule.from, remote_group) {
                (Source::Cidr(c), _) => {
                    b.remote_ip_prefix(c.as_str());
                }
                (Source::Group(_), Some(id)) => {
                    b.remote_group_id(id);
                }
                (Source::Group(_), None) => {}
            }
            Ok(r::Request::builder()
                .security_group_rule(b.build()?)
                .build()?)
        })
        .await;
    match result {
        Ok(_) => Ok(()),
        // Made by an earlier, interrupted attempt.
        Err(e) if e.status() == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: String,
}

/// The cluster's server groups: makes the missing ones; returns ids by name and how many made.
pub async fn server_groups(
    cloud: &Cloud,
    wanted: &[ServerGroupSpec],
    found: &Found,
) -> Result<(BTreeMap<String, String>, usize), OpenStackError> {
    use openstack_sdk::api::compute::v2::server_group::create_215 as sg;
    let mut ids = BTreeMap::new();
    let mut made = 0;
    for g in wanted {
        if let Some(f) = found.server_groups.iter().find(|f| f.name == g.name) {
            ids.insert(g.name.clone(), f.id.clone());
            continue;
        }
        let policy = match g.policy {
            "anti-affinity" => sg::Policies::AntiAffinity,
            _ => sg::Policies::SoftAntiAffinity,
        };
        let created: IdOnly = cloud
            .query(
                &format!("create server group {}", g.name),
                Retry::Create,
                || {
                    Ok(sg::Request::builder()
                        .server_group(
                            sg::ServerGroupBuilder::default()
                                .name(g.name.as_str())
                                .policies(vec![policy.clone()])
                                .build()?,
                        )
                        .build()?)
                },
            )
            .await?;
        ids.insert(g.name.clone(), created.id);
        made += 1;
    }
    Ok((ids, made))
}

/// Ids every machine needs.
pub struct Shared<'a> {
    /// The cluster.
    pub cluster: &'a str,
    /// Flavors, images, networks.
    pub resolved: &'a Resolved,
    /// Security group ids by suffix.
    pub security_groups: &'a BTreeMap<&'static str, String>,
    /// Server group ids by name.
    pub server_groups: &'a BTreeMap<String, String>,
    /// Keypair name.
    pub keypair: &'a str,
    /// cloud-init user data, by machine.
    pub user_data: &'a BTreeMap<String, String>,
    /// Wait limit.
    pub timeout: Duration,
    /// Ctrl-C.
    pub interrupt: &'a Interrupt,
}

/// Makes what `spec`'s machine lacks: ports, data volume, server, floating IP; waits for ACTIVE.
pub async fn machine(
    cloud: &Cloud,
    spec: &MachineSpec,
    found: &Found,
    shared: &Shared<'_>,
) -> Result<MachineRecord, OpenStackError> {
    let mut rec = MachineRecord {
        machine: spec.machine.clone(),
        server_name: spec.server_name.clone(),
        ..MachineRecord::default()
    };
    let existing_ports = found.ports_of(&spec.machine);
    let mut ports: Vec<Port> = Vec::new();
    for (i, net) in spec.networks.iter().enumerate() {
        let name = spec.port_name(i);
        if let Some(p) = existing_ports.iter().find(|p| p.name == name) {
            ports.push((*p).clone());
            continue;
        }
        check(shared.interrupt)?;
        let net_id = shared
            .resolved
            .networks
            .get(net)
            .cloned()
            .unwrap_or_default();
        let mut groups: Vec<String> = spec
            .security_groups
            .iter()
            .filter_map(|n| {
                shared
                    .security_groups
                    .iter()
                    .find(|(s, _)| secgroups::group_name(shared.cluster, s) == *n)
                    .map(|(_, id)| id.clone())
            })
            .collect();
        groups.extend(shared.resolved.security_groups.iter().cloned());
        ports
            .push(create_port(cloud, shared.cluster, spec, &name, &net_id, &groups, i == 0).await?);
        rec.created += 1;
    }
    rec.address = ports
        .first()
        .and_then(|p| p.fixed_ips.first())
        .map(|f| f.ip_address.clone());

    let mut volume = found.volume_of(&spec.machine).cloned();
    if let (Some(size), None) = (spec.volume_gb, &volume) {
        check(shared.interrupt)?;
        volume = Some(create_volume(cloud, shared.cluster, spec, size).await?);
        rec.created += 1;
    }

    let mut server = found.server(&spec.machine).cloned();
    if let Some(s) = &server
        && s.status == "ERROR"
    {
        tracing::warn!(machine = %spec.machine, fault = ?s.fault, "replacing server in ERROR");
        delete_server(cloud, &s.id, shared.timeout).await?;
        server = None;
    }
    let server_id = match server {
        Some(s) => s.id,
        None => {
            check(shared.interrupt)?;
            let id = create_server(cloud, spec, &ports, shared).await?;
            rec.created += 1;
            id
        }
    };
    wait_active(cloud, spec, &server_id, shared).await?;
    rec.server_id = server_id.clone();

    if let Some(v) = volume {
        let attached = v.attachments.iter().find(|a| a.server_id == server_id);
        let device = match attached {
            Some(a) => a.device.clone(),
            None => {
                check(shared.interrupt)?;
                wait_volume(cloud, &v.id, "available", shared.timeout).await?;
                let d = attach(cloud, &server_id, &v.id).await?;
                wait_volume(cloud, &v.id, "in-use", shared.timeout).await?;
                rec.created += 1;
                d
            }
        };
        rec.volume = Some(VolumeRecord {
            id: v.id.clone(),
            device,
            size_gb: spec.volume_gb.unwrap_or(v.size),
        });
    }

    if spec.floating_ip {
        let port_id = ports.first().map(|p| p.id.clone()).unwrap_or_default();
        rec.floating_address = Some(match found.floating_ip_of(&spec.machine) {
            Some(f) if f.port_id.as_deref() == Some(port_id.as_str()) => {
                f.floating_ip_address.clone()
            }
            Some(f) => {
                associate(cloud, &f.id, &port_id).await?;
                rec.created += 1;
                f.floating_ip_address.clone()
            }
            None => {
                check(shared.interrupt)?;
                rec.created += 1;
                create_floating_ip(cloud, shared, spec, &port_id).await?
            }
        });
    }
    Ok(rec)
}

fn check(interrupt: &Interrupt) -> Result<(), OpenStackError> {
    if interrupt.is_set() {
        Err(OpenStackError::Interrupted)
    } else {
        Ok(())
    }
}

async fn create_port(
    cloud: &Cloud,
    cluster: &str,
    spec: &MachineSpec,
    name: &str,
    network_id: &str,
    groups: &[String],
    first: bool,
) -> Result<Port, OpenStackError> {
    // The inventory's address and the allowed ones go to the machine-network port (the first).
    let fixed_ip = if first {
        spec.fixed_ip.map(|a| a.to_string())
    } else {
        None
    };
    let allowed: Vec<String> = spec
        .allowed_addresses
        .iter()
        .map(|a| a.to_string())
        .collect();
    use openstack_sdk::api::network::v2::port::create as p;
    use openstack_sdk::api::network::v2::port::tag::replace as p_tags;
    let tags = [spec::cluster_tag(cluster), spec::machine_tag(&spec.machine)];
    let port: Port = cloud
        .query(&format!("create port {name}"), Retry::Create, || {
            let mut b = p::PortBuilder::default();
            b.name(name)
                .network_id(network_id)
                .security_groups(groups.iter().map(|g| g.as_str().into()).collect::<Vec<_>>())
                .tags(tags.iter().map(|t| t.as_str().into()).collect::<Vec<_>>())
                .description(spec::marker(cluster, Some(&spec.machine)));
            if let Some(ip) = &fixed_ip {
                b.fixed_ips(vec![
                    p::FixedIpsBuilder::default()
                        .ip_address(ip.as_str())
                        .build()?,
                ]);
            }
            if first && !allowed.is_empty() {
                b.allowed_address_pairs(
                    allowed
                        .iter()
                        .map(|a| {
                            p::AllowedAddressPairsBuilder::default()
                                .ip_address(a.as_str())
                                .build()
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            Ok(p::Request::builder().port(b.build()?).build()?)
        })
        .await?;
    if !tags.iter().all(|t| port.tags.contains(t)) {
        cloud
            .query(&format!("tag port {name}"), Retry::Idempotent, || {
                Ok(ignore(
                    p_tags::Request::builder()
                        .port_id(port.id.as_str())
                        .tags(tags.iter().map(|t| t.as_str().into()).collect::<Vec<_>>())
                        .build()?,
                ))
            })
            .await?;
    }
    Ok(port)
}

async fn create_volume(
    cloud: &Cloud,
    cluster: &str,
    spec: &MachineSpec,
    size: u32,
) -> Result<super::listing::Volume, OpenStackError> {
    use openstack_sdk::api::block_storage::v3::volume::create_30 as v;
    let name = spec.volume_name();
    let meta = [
        (META_CLUSTER, cluster.to_string()),
        (META_MACHINE, spec.machine.clone()),
    ];
    cloud
        .query(&format!("create volume {name}"), Retry::Create, || {
            let mut b = v::VolumeBuilder::default();
            b.name(Some(name.as_str().into()))
                .size(Some(size as i32))
                .description(Some(
                    format!(
                        "forgectl: data volume of {} in cluster {cluster}",
                        spec.machine
                    )
                    .into(),
                ))
                .metadata(meta.iter().map(|(k, v)| (*k, v.as_str())));
            if let Some(az) = &spec.availability_zone {
                b.availability_zone(Some(az.as_str().into()));
            }
            Ok(v::Request::builder().volume(b.build()?).build()?)
        })
        .await
}

async fn create_server(
    cloud: &Cloud,
    spec: &MachineSpec,
    ports: &[Port],
    shared: &Shared<'_>,
) -> Result<String, OpenStackError> {
    use openstack_sdk::api::compute::v2::server::create_274 as s;
    let flavor = shared
        .resolved
        .flavors
        .get(&spec.flavor)
        .map(|f| f.id.clone())
        .unwrap_or_default();
    let image = shared
        .resolved
        .images
        .get(&spec.image)
        .cloned()
        .unwrap_or_default();
    let user_data = shared
        .user_data
        .get(&spec.machine)
        .map(|u| base64::engine::general_purpose::STANDARD.encode(u));
    let group = spec
        .server_group
        .as_ref()
        .and_then(|n| shared.server_groups.get(n))
        .cloned();
    let tag = spec::cluster_tag(shared.cluster);
    let created: IdOnly = cloud
        .query(
            &format!("create server {}", spec.server_name),
            Retry::Create,
            || {
                let mut b = s::ServerBuilder::default();
                b.name(spec.server_name.as_str())
                    .flavor_ref(flavor.as_str())
                    .networks(s::ServerNetworks::F1(
                        ports
                            .iter()
                            .map(|p| {
                                s::NetworksBuilder::default()
                                    .port(Some(p.id.as_str().into()))
                                    .build()
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ))
                    .key_name(shared.keypair)
                    .metadata(
                        [
                            (META_CLUSTER, shared.cluster),
                            (META_MACHINE, spec.machine.as_str()),
                        ]
                        .into_iter(),
                    )
                    .tags(vec![tag.as_str().into()]);
                match spec.boot_volume_gb {
                    Some(gb) => {
                        b.image_ref("").block_device_mapping_v2(vec![
                            s::BlockDeviceMappingV2Builder::default()
                                .boot_index(Some("0".into()))
                                .uuid(image.as_str())
                                .source_type(s::SourceType::Image)
                                .destination_type(s::DestinationType::Volume)
                                .volume_size(gb as i32)
                                .delete_on_termination(true)
                                .build()?,
                        ]);
                    }
                    None => {
                        b.image_ref(image.as_str());
                    }
                }
                if let Some(u) = &user_data {
                    b.user_data(u.as_str());
                }
                if let Some(az) = &spec.availability_zone {
                    b.availability_zone(az.as_str());
                }
                let mut r = s::Request::builder();
                r.server(b.build()?);
                if let Some(g) = &group {
                    r.os_scheduler_hints(
                        s::OsSchedulerHintsBuilder::default()
                            .group(vec![g.as_str().into()])
                            .build()?,
                    );
                }
                Ok(r.build()?)
            },
        )
        .await?;
    Ok(created.id)
}

#[derive(Debug, Deserialize)]
struct ServerState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    fault: Option<super::listing::Fault>,
}

async fn server_state(cloud: &Cloud, id: &str) -> Result<ServerState, OpenStackError> {
    use openstack_sdk::api::compute::v2::server::get_20 as get;
    cloud
        .query("read server", Retry::Idempotent, || {
            Ok(get::Request::builder().id(id).build()?)
        })
        .await
}

async fn wait_active(
    cloud: &Cloud,
    spec: &MachineSpec,
    id: &str,
    shared: &Shared<'_>,
) -> Result<(), OpenStackError> {
    let start = Instant::now();
    loop {
        let st = server_state(cloud, id).await?;
        match st.status.as_str() {
            "ACTIVE" => return Ok(()),
            "ERROR" => {
                return Err(OpenStackError::ServerFailed {
                    machine: spec.machine.clone(),
                    server: spec.server_name.clone(),
                    fault: st
                        .fault
                        .map(|f| f.message)
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "no fault message".into()),
                });
            }
            _ => {}
        }
        if start.elapsed() > shared.timeout {
            return Err(OpenStackError::Timeout {
                what: format!("server {}", spec.server_name),
                wanted: "ACTIVE".into(),
                secs: shared.timeout.as_secs(),
                last: st.status,
            });
        }
        check(shared.interrupt)?;
        tokio::time::sleep(POLL).await;
    }
}

/// Deletes a server and waits until Nova no longer knows it.
pub async fn delete_server(
    cloud: &Cloud,
    id: &str,
    timeout: Duration,
) -> Result<(), OpenStackError> {
    use openstack_sdk::api::compute::v2::server::delete;
    let r = cloud
        .query("delete server", Retry::Idempotent, || {
            Ok(ignore(delete::Request::builder().id(id).build()?))
        })
        .await;
    match r {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    let start = Instant::now();
    loop {
        match server_state(cloud, id).await {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
            Ok(st) if start.elapsed() > timeout => {
                return Err(OpenStackError::Timeout {
                    what: format!("server {id}"),
                    wanted: "deleted".into(),
                    secs: timeout.as_secs(),
                    last: st.status,
                });
            }
            Ok(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Reads a volume's status, None when it is gone.
pub async fn volume_status(cloud: &Cloud, id: &str) -> Result<Option<String>, OpenStackError> {
    use openstack_sdk::api::block_storage::v3::volume::get;
    #[derive(Deserialize)]
    struct St {
        #[serde(default)]
        status: String,
    }
    let r: Result<St, _> = cloud
        .query("read volume", Retry::Idempotent, || {
            Ok(get::Request::builder().id(id).build()?)
        })
        .await;
    match r {
        Ok(s) => Ok(Some(s.status)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until volume `id` has `wanted` status ("gone" waits for it to disappear).
pub async fn wait_volume(
    cloud: &Cloud,
    id: &str,
    wanted: &str,
    timeout: Duration,
) -> Result<(), OpenStackError> {
    let start = Instant::now();
    loop {
        let st = volume_status(cloud, id).await?;
        match st.as_deref() {
            None if wanted == "gone" => return Ok(()),
            Some(s) if s == wanted => return Ok(()),
            Some(s) if s.starts_with("error") => {
                return Err(OpenStackError::Api {
                    what: format!("volume {id}"),
                    status: None,
                    msg: format!("went to {s}"),
                });
            }
            _ => {}
        }
        if start.elapsed() > timeout {
            return Err(OpenStackError::Timeout {
                what: format!("volume {id}"),
                wanted: wanted.into(),
                secs: timeout.as_secs(),
                last: st.unwrap_or_else(|| "gone".into()),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn attach(
    cloud: &Cloud,
    server: &str,
    volume: &str,
) -> Result<Option<String>, OpenStackError> {
    use openstack_sdk::api::compute::v2::server::volume_attachment::create_20 as va;
    let v: Value = cloud
        .query("attach volume", Retry::Create, || {
            Ok(va::Request::builder()
                .server_id(server)
                .volume_attachment(
                    va::VolumeAttachmentBuilder::default()
                        .volume_id(volume)
                        .build()?,
                )
                .build()?)
        })
        .await?;
    Ok(v.get("device").and_then(Value::as_str).map(str::to_string))
}

async fn create_floating_ip(
    cloud: &Cloud,
    shared: &Shared<'_>,
    spec: &MachineSpec,
    port_id: &str,
) -> Result<String, OpenStackError> {
    use openstack_sdk::api::network::v2::floatingip::create as f;
    use openstack_sdk::api::network::v2::floatingip::tag::replace as f_tags;
    #[derive(Deserialize)]
    struct Made {
        id: String,
        floating_ip_address: String,
    }
    let net = shared.resolved.floating_network.clone().unwrap_or_default();
    let description = spec::marker(shared.cluster, Some(&spec.machine));
    let made: Made = cloud
        .query(
            &format!("create floating IP for {}", spec.machine),
            Retry::Create,
            || {
                Ok(f::Request::builder()
                    .floatingip(
                        f::FloatingipBuilder::default()
                            .floating_network_id(net.as_str())
                            .port_id(Some(port_id.into()))
                            .description(description.as_str())
                            .build()?,
                    )
                    .build()?)
            },
        )
        .await?;
    let tags = [
        spec::cluster_tag(shared.cluster),
        spec::machine_tag(&spec.machine),
    ];
    cloud
        .query("tag floating IP", Retry::Idempotent, || {
            Ok(ignore(
                f_tags::Request::builder()
                    .floatingip_id(made.id.as_str())
                    .tags(tags.iter().map(|t| t.as_str().into()).collect::<Vec<_>>())
                    .build()?,
            ))
        })
        .await?;
    Ok(made.floating_ip_address)
}

async fn associate(cloud: &Cloud, fip: &str, port: &str) -> Result<(), OpenStackError> {
    use openstack_sdk::api::network::v2::floatingip::set as f;
    cloud
        .query("associate floating IP", Retry::Idempotent, || {
            Ok(ignore(
                f::Request::builder()
                    .id(fip)
                    .floatingip(
                        f::FloatingipBuilder::default()
                            .port_id(Some(port.into()))
                            .build()?,
                    )
                    .build()?,
            ))
        })
        .await
}
