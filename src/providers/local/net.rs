//! The local machines' network: one bridge on the host (the host's side is the network's first
//! address) and, per machine, a network namespace joined to the bridge by a veth pair. Machines get
//! no default route: they reach the host and each other, nothing else.

use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

use super::LocalError;
use super::host::{run, run_quiet};
use crate::plan::sha256_hex;

const T: Duration = Duration::from_secs(30);

/// Names of a machine's network pieces.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct MachineNet {
    /// Network namespace (under /run/netns).
    pub netns: String,
    /// Host side of the veth pair (≤ 15 characters).
    pub veth: String,
    /// The machine's address.
    pub address: IpAddr,
}

impl MachineNet {
    /// Deterministic names for `machine` of `cluster`.
    pub fn new(cluster: &str, machine: &str, address: IpAddr) -> Self {
        let h = sha256_hex(format!("{cluster}/{machine}").as_bytes());
        Self {
            netns: format!("fg-{cluster}-{machine}"),
            veth: format!("fgv{}", &h[..10]),
            address,
        }
    }
}

/// The bridge name for a cluster: the inventory's, else `fg-` + the name cut to 15 characters.
pub fn bridge_name(cluster: &str, configured: Option<&str>) -> String {
    configured
        .map(str::to_string)
        .unwrap_or_else(|| format!("fg-{cluster}").chars().take(15).collect())
}

async fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name], T).await.is_ok()
}

/// Every IPv4 network configured on this host's interfaces: (interface, network).
pub fn host_networks() -> Vec<(String, IpNet)> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let iface = w.nth(1)?.trim_end_matches(':').to_string();
            let cidr = w.skip_while(|x| *x != "inet").nth(1)?;
            let net: IpNet = cidr.parse().ok()?;
            Some((iface, net.trunc()))
        })
        .collect()
}

/// The host's networks that overlap `machines`, other than on `bridge` (the cluster's own).
pub fn overlaps(machines: IpNet, bridge: &str) -> Vec<(String, IpNet)> {
    host_networks()
        .into_iter()
        .filter(|(iface, net)| {
            iface != bridge
                && (net.contains(&machines.network()) || machines.contains(&net.network()))
        })
        .collect()
}

/// The first `10.77.N.0/24` no interface of this host uses (a new local cluster's network).
pub fn free_machine_network() -> Option<IpNet> {
    let used = host_networks();
    (0..=255u8).find_map(|n| {
        let net: IpNet = format!("10.77.{n}.0/24").parse().ok()?;
        (!used
            .iter()
            .any(|(_, u)| u.contains(&net.network()) || net.contains(&u.network())))
        .then_some(net)
    })
}

/// Creates the bridge with the host address if missing, and brings it up. Returns true when
/// this call created it.
pub async fn ensure_bridge(bridge: &str, host: IpAddr, net: IpNet) -> Result<bool, LocalError> {
    let created = !link_exists(bridge).await;
    if created {
        run("ip", &["link", "add", bridge, "type", "bridge"], T).await?;
    }
    let cidr = format!("{host}/{}", net.prefix_len());
    let addrs = run("ip", &["-o", "addr", "show", "dev", bridge], T).await?;
    if !addrs.contains(&format!(" {cidr} ")) {
        run("ip", &["addr", "add", &cidr, "dev", bridge], T).await?;
    }
    run("ip", &["link", "set", bridge, "up"], T).await?;
    Ok(created)
}

/// True when a network namespace called `name` exists.
pub async fn netns_exists(name: &str) -> Result<bool, LocalError> {
    let namespaces = run("ip", &["netns", "list"], T).await?;
    Ok(namespaces
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name)))
}

/// Creates the machine's namespace and veth pair if missing, addresses it and brings it up.
pub async fn ensure_machine(bridge: &str, net: &MachineNet, prefix: u8) -> Result<(), LocalError> {
    if !netns_exists(&net.netns).await? {
        run("ip", &["netns", "add", &net.netns], T).await?;
    }
    let ns = net.netns.as_str();
    let inside = run("ip", &["-n", ns, "link", "show", "dev", "eth0"], T)
        .await
        .is_ok();
    if !inside {
        if link_exists(&net.veth).await {
            run("ip", &["link", "del", &net.veth], T).await?;
        }
        let peer = format!("{}p", &net.veth[..net.veth.len().min(14)]);
        run(
            "ip",
            &[
                "link", "add", &net.veth, "type", "veth", "peer", "name", &peer,
            ],
            T,
        )
        .await?;
        run("ip", &["link", "set", &peer, "netns", ns], T).await?;
        run("ip", &["-n", ns, "link", "set", &peer, "name", "eth0"], T).await?;
    }
    run("ip", &["link", "set", &net.veth, "master", bridge, "up"], T).await?;
    let cidr = format!("{}/{prefix}", net.address);
    let addrs = run("ip", &["-n", ns, "-o", "addr", "show", "dev", "eth0"], T).await?;
    if !addrs.contains(&format!(" {cidr} ")) {
        run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"], T).await?;
    }
    run("ip", &["-n", ns, "link", "set", "eth0", "up"], T).await?;
    run("ip", &["-n", ns, "link", "set", "lo", "up"], T).await?;
    // The network sysctls a node needs: the machine cannot set them itself (its /proc/sys is
    // read-only, as in a container), so they are set from the host as a container runtime's
    // `--sysctl` would; the host-prep phase checks that they hold.
    let writes = crate::phases::host_prep::NET_SYSCTLS
        .iter()
        .map(|(k, v)| format!("echo {v} > /proc/sys/{}", k.replace('.', "/")))
        .collect::<Vec<_>>()
        .join(" && ");
    run("ip", &["netns", "exec", ns, "sh", "-c", &writes], T).await?;
    Ok(())
}

/// Takes the machine off the network (`cut`) or puts it back (`heal`).
pub async fn set_link(net: &MachineNet, up: bool) -> Result<(), LocalError> {
    run(
        "ip",
        &["link", "set", &net.veth, if up { "up" } else { "down" }],
        T,
    )
    .await?;
    Ok(())
}

/// True when the host side of the machine's link is up.
pub async fn link_up(net: &MachineNet) -> bool {
    run("ip", &["-o", "link", "show", "dev", &net.veth], T)
        .await
        .map(|s| s.contains("state UP") || s.contains(",UP"))
        .unwrap_or(false)
}

/// Removes the machine's namespace and veth (no error if already gone).
pub async fn remove_machine(net: &MachineNet) {
    run_quiet("ip", &["netns", "del", &net.netns]).await;
    if link_exists(&net.veth).await {
        run_quiet("ip", &["link", "del", &net.veth]).await;
    }
}

/// Removes the bridge (no error if already gone).
pub async fn remove_bridge(bridge: &str) {
    if link_exists(bridge).await {
        run_quiet("ip", &["link", "del", bridge]).await;
    }
}
