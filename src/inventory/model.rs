//! The inventory (`cluster.yaml`) as Rust types. Doc comments become the JSON Schema's
//! descriptions, which `forgectl schema`, editors and validation hints show.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::types::{Cidr, Version};

/// A forgectl inventory: one cluster, its machines and how to build it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Cluster name: lowercase letters, digits and `-`, at most 40 characters. Names the state dir,
    /// the local bridge and every cloud resource forgectl creates.
    pub name: String,
    /// Which infrastructure creates the machines: `local`, `openstack`, `vagrant` or `static`.
    pub provider: ProviderKind,
    /// Settings of the `local` provider (throwaway machines on this Linux box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalProvider>,
    /// Settings of the `openstack` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack: Option<OpenStackProvider>,
    /// Settings of the `vagrant` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vagrant: Option<VagrantProvider>,
    /// Software versions.
    #[serde(default)]
    pub versions: Versions,
    /// Machine, pod and service networks.
    #[serde(default)]
    pub network: Network,
    /// How forgectl reaches the machines over SSH.
    #[serde(default)]
    pub ssh: Ssh,
    /// Where binaries and packages come from.
    #[serde(default)]
    pub artifacts: Artifacts,
    /// The Kubernetes API endpoint.
    #[serde(default)]
    pub api: Api,
    /// The external etcd cluster.
    #[serde(default)]
    pub etcd: Etcd,
    /// The container runtime (containerd) on control planes and workers.
    #[serde(default)]
    pub runtime: Runtime,
    /// How kubeadm sets up the control plane.
    #[serde(default)]
    pub kubeadm: Kubeadm,
    /// How `forgectl upgrade` rolls the nodes.
    #[serde(default)]
    pub upgrade: Upgrade,
    /// Calico, the pod network.
    #[serde(default)]
    pub calico: Calico,
    /// The pod network plugin.
    #[serde(default)]
    pub cni: Cni,
    /// The nginx-ingress controller and its front.
    #[serde(default)]
    pub ingress: Ingress,
    /// NFS and Cinder storage.
    #[serde(default)]
    pub storage: Storage,
    /// Tool accounts: where they come from and what each gets in the cluster.
    #[serde(default)]
    pub accounts: super::accounts::Accounts,
    /// The tenant platform: admission webhooks, the accounts controller, tool images.
    #[serde(default)]
    pub platform: super::platform::Platform,
    /// Machine groups. Each group has roles and either `count` machines or explicit `hosts`.
    pub groups: Vec<Group>,
}

/// Which infrastructure creates the machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Throwaway machines (systemd + sshd in namespaces) on this Linux box.
    Local,
    /// Servers, volumes and networks on an OpenStack cloud.
    Openstack,
    /// Vagrant VMs (libvirt or virtualbox).
    Vagrant,
    /// Existing hosts, given by address; never created or destroyed.
    Static,
}

impl ProviderKind {
    /// The inventory key of this provider's settings block.
    pub fn key(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Openstack => "openstack",
            Self::Vagrant => "vagrant",
            Self::Static => "static",
        }
    }
}

/// What a machine does in the cluster.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A member of the external etcd cluster (dedicated host, local disk).
    Etcd,
    /// A Kubernetes control plane (kubeadm init / join --control-plane).
    ControlPlane,
    /// A Kubernetes worker node.
    Worker,
    /// An haproxy load balancer in front of the API servers and ingress.
    Lb,
    /// The NFS server for tool homes and project data.
    Nfs,
    /// A node that runs the nginx-ingress controller.
    Ingress,
    /// A login host for tool owners: `toolctl` (and `webservice`) installed, the NFS exports
    /// (tool homes) mounted. Not a Kubernetes node.
    Bastion,
}

impl Role {
    /// Every role, in the order they are built.
    pub const ALL: [Role; 7] = [
        Role::Etcd,
        Role::Lb,
        Role::ControlPlane,
        Role::Worker,
        Role::Ingress,
        Role::Nfs,
        Role::Bastion,
    ];

    /// The role's name as written in inventories.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::ControlPlane => "control-plane",
            Self::Worker => "worker",
            Self::Lb => "lb",
            Self::Nfs => "nfs",
            Self::Ingress => "ingress",
            Self::Bastion => "bastion",
        }
    }
}

/// Settings of the `local` provider.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalProvider {
    /// Name of the host bridge (at most 15 characters). Default: `fg-` + the cluster name, cut to fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Debian suite of the machines' root filesystem. Default: bookworm.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Extra Debian packages baked into the cached root filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_packages: Vec<String>,
}

fn default_suite() -> String {
    "bookworm".into()
}

/// A missing `local:` block is the documented defaults, exactly as an empty one.
impl Default for LocalProvider {
    fn default() -> Self {
        Self {
            bridge: None,
            suite: default_suite(),
            extra_packages: Vec::new(),
        }
    }
}

/// Settings of the `openstack` provider. Credentials come from clouds.yaml + `cloud` (or
/// `OS_CLOUD`), or from `OS_*` environment variables (password or application credential).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenStackProvider {
    /// Cloud name in clouds.yaml. Default: the `OS_CLOUD` environment variable; without either,
    /// the `OS_*` variables (`OS_AUTH_URL`, `OS_USERNAME`, … or `OS_APPLICATION_CREDENTIAL_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Region name. Default: the cloud's (`region_name` / `OS_REGION_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint interface from the catalog: `public`, `internal` or `admin`. Default: the cloud's, else `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Network (name or id) the machines are attached to; forgectl makes one port per machine on it.
    pub network: String,
    /// Default image (name or id); groups may override it.
    pub image: String,
    /// Default flavor (name or id); groups may override it.
    pub flavor: String,
    /// External network for floating IPs (lb, bastion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating_network: Option<String>,
    /// Existing keypair to use; default: `forgectl-CLUSTER`, created from the SSH public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypair: Option<String>,
    /// Default availability zone; groups may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Boot from a new volume of this many GiB (deleted with the server) instead of the image on
    /// the hypervisor's disk; groups may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume_gb: Option<u32>,
    /// Where SSH (22/tcp) may come from. Default: `network.machine_cidr` (a bastion in the network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_cidrs: Vec<Cidr>,
    /// Where the lb's API (6443) and web (80, 443) ports may be reached from. Default: `0.0.0.0/0`.
    #[serde(default = "default_public_cidrs")]
    pub public_cidrs: Vec<Cidr>,
    /// Existing security groups (names or ids) added to every machine's port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// API requests in flight at the same time.
    #[serde(default = "default_os_concurrency")]
    pub concurrency: u32,
    /// Seconds a server (or volume) may take to become ACTIVE (available) or to go away.
    #[serde(default = "default_server_timeout")]
    pub server_timeout: u32,
}

fn default_public_cidrs() -> Vec<Cidr> {
    vec![Cidr::parse_const("0.0.0.0/0")]
}
fn default_os_concurrency() -> u32 {
    8
}
fn default_server_timeout() -> u32 {
    600
}

/// Settings of the `vagrant` provider.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VagrantProvider {
    /// Vagrant provider plugin.
    #[serde(default)]
    pub provider: VagrantBackend,
    /// Box name.
    #[serde(default = "default_box", rename = "box")]
    pub box_name: String,
    /// CPUs per VM.
    #[serde(default = "default_vagrant_cpus")]
    pub cpus: u32,
    /// Memory per VM, MiB.
    #[serde(default = "default_vagrant_memory")]
    pub memory_mb: u32,
}

impl Default for VagrantProvider {
    fn default() -> Self {
        Self {
            provider: VagrantBackend::default(),
            box_name: default_box(),
            cpus: default_vagrant_cpus(),
            memory_mb: default_vagrant_memory(),
        }
    }
}

fn default_vagrant_cpus() -> u32 {
    2
}
fn default_vagrant_memory() -> u32 {
    2048
}

fn default_box() -> String {
    "debian/bookworm64".into()
}

/// Vagrant provider plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VagrantBackend {
    /// vagrant-libvirt (KVM).
    #[default]
    Libvirt,
    /// VirtualBox.
    Virtualbox,
}

/// Software versions. Kubernetes 1.33–1.36 are supported.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// Kubernetes version of the control plane (kubeadm, API server).
    #[serde(default = "default_kubernetes")]
    pub kubernetes: Version,
    /// kubelet version; default: the same as `kubernetes`. Never newer than the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<Version>,
    /// kubectl version; default: the same as `kubernetes`. Within one minor version of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl: Option<Version>,
    /// etcd version. kubeadm needs at least 3.5.24 for an external etcd.
    #[serde(default = "default_etcd")]
    pub etcd: Version,
    /// containerd version.
    #[serde(default = "default_containerd")]
    pub containerd: Version,
    /// Calico version.
    #[serde(default = "default_calico")]
    pub calico: Version,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            kubernetes: default_kubernetes(),
            kubelet: None,
            kubectl: None,
            etcd: default_etcd(),
            containerd: default_containerd(),
            calico: default_calico(),
        }
    }
}

fn default_kubernetes() -> Version {
    Version::new(1, 36, 2)
}
fn default_etcd() -> Version {
    Version::new(3, 6, 13)
}
fn default_containerd() -> Version {
    Version::new(2, 1, 4)
}
fn default_calico() -> Version {
    Version::new(3, 30, 3)
}

/// Machine, pod and service networks; they must not overlap.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The machines' network. For `local`, addresses are given out from it (host side: the first).
    #[serde(default = "default_machine_cidr")]
    pub machine_cidr: Cidr,
    /// Pod network (Calico IP pool).
    #[serde(default = "default_pod_cidr")]
    pub pod_cidr: Cidr,
    /// Service network.
    #[serde(default = "default_service_cidr")]
    pub service_cidr: Cidr,
    /// Cluster DNS domain.
    #[serde(default = "default_dns_domain")]
    pub dns_domain: String,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            machine_cidr: default_machine_cidr(),
            pod_cidr: default_pod_cidr(),
            service_cidr: default_service_cidr(),
            dns_domain: default_dns_domain(),
        }
    }
}

fn default_machine_cidr() -> Cidr {
    Cidr::parse_const("10.77.0.0/24")
}
fn default_pod_cidr() -> Cidr {
    Cidr::parse_const("10.244.0.0/16")
}
fn default_service_cidr() -> Cidr {
    Cidr::parse_const("10.96.0.0/12")
}
fn default_dns_domain() -> String {
    "cluster.local".into()
}

/// How forgectl reaches the machines.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// Login user; `sudo` is used when it is not root.
    #[serde(default = "default_user")]
    pub user: String,
    /// SSH port.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Private key file. Default: for `local`, a key forgectl makes in the state dir; otherwise ssh-agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Jump host to reach the machines through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion: Option<Bastion>,
    /// Host key checking: `strict` (known_hosts only) or `accept-new` (trust on first use).
    #[serde(default)]
    pub host_key_policy: HostKeyPolicy,
    /// Hosts worked on at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u32,
    /// Seconds a single remote command may run.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: u32,
}

impl Default for Ssh {
    fn default() -> Self {
        Self {
            user: default_user(),
            port: default_port(),
            key: None,
            bastion: None,
            host_key_policy: HostKeyPolicy::default(),
            concurrency: default_concurrency(),
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
        }
    }
}

fn default_user() -> String {
    "root".into()
}
fn default_port() -> u16 {
    22
}
fn default_concurrency() -> u32 {
    30
}
fn default_connect_timeout() -> u32 {
    10
}
fn default_command_timeout() -> u32 {
    600
}

/// A jump host.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bastion {
    /// Address or host name of the jump host.
    pub address: String,
    /// Login user on the jump host. Default: `ssh.user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH port of the jump host.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Private key for the jump host. Default: `ssh.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// Host key checking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Only keys already in known_hosts (or recorded by forgectl when it made the machine).
    #[default]
    Strict,
    /// Trust a key seen for the first time and record it in the state dir; refuse a changed key.
    AcceptNew,
}

/// Where binaries and packages come from. Checksums are always verified.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifacts {
    /// `upstream` (release URLs), `mirror` (a base URL with the same layout), `local` (a directory
    /// forgectl serves to the machines) or `debian` (Debian's containerd, runc and CNI plugins, for
    /// local machines through forgectl's package mirror; etcd and the Kubernetes binaries from
    /// `dir` or `mirror_url` when one is set, else etcd is Debian's 3.4 — fine for exercising etcd,
    /// too old for kubeadm — and the Kubernetes binaries come from upstream).
    #[serde(default)]
    pub source: ArtifactSource,
    /// Base URL of the mirror (for `source: mirror`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_url: Option<String>,
    /// Directory with the artifacts, laid out as `forgectl artifacts fetch --to DIR` writes it
    /// (for `source: local`, and `debian`; relative to the inventory file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Directory of container image archives (docker-archive or OCI `.tar`, as `docker save`,
    /// `ctr images export` or `forgectl artifacts fetch --images` write them), loaded into
    /// containerd on every node by the runtime phase, for sites whose nodes cannot pull
    /// (air-gapped). An image already present (same digest) is not loaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
}

/// Where artifacts come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactSource {
    /// Upstream release URLs.
    #[default]
    Upstream,
    /// A mirror with the upstream layout.
    Mirror,
    /// A local directory served to the machines by forgectl.
    Local,
    /// Debian's packages (the distribution's versions).
    Debian,
}

/// The container runtime (containerd) on control planes and workers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// The pause image of pod sandboxes (containerd and kubelet must agree on it). Default: the
    /// one the cluster's kubeadm version uses (`registry.k8s.io/pause:3.10.2` for 1.36).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_image: Option<String>,
    /// Registry mirrors: a registry host (`docker.io`, `registry.k8s.io`, …) → mirror URLs, tried
    /// in order before the registry itself. Written as containerd `hosts.toml` files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
}

impl Runtime {
    /// The pause image: `sandbox_image`, else the one kubeadm of Kubernetes `kubernetes` lists.
    pub fn pause_image(&self, kubernetes: &Version) -> String {
        if let Some(i) = &self.sandbox_image {
            return i.clone();
        }
        let tag = match kubernetes.0.minor {
            0..=33 => "3.10",
            34 | 35 => "3.10.1",
            _ => "3.10.2",
        };
        format!("registry.k8s.io/pause:{tag}")
    }
}

/// How kubeadm sets up the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kubeadm {
    /// Admission plugins of the API server (`--enable-admission-plugins`).
    #[serde(default = "default_admission_plugins")]
    pub admission_plugins: Vec<String>,
    /// kubeadm preflight checks whose failure is ignored (`ignorePreflightErrors`), e.g.
    /// `ExternalEtcdVersion` to try a cluster on Debian's etcd 3.4. Not for production.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_preflight_errors: Vec<String>,
}

impl Default for Kubeadm {
    fn default() -> Self {
        Self {
            admission_plugins: default_admission_plugins(),
            ignore_preflight_errors: Vec::new(),
        }
    }
}

fn default_admission_plugins() -> Vec<String> {
    ["NodeRestriction", "PodSecurity"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// How `forgectl upgrade` rolls the nodes: control planes one at a time, then workers in batches.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    /// Workers upgraded at once (each batch drained, upgraded, Ready and uncordoned before the
    /// next). At least 1.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: u32,
    /// Seconds a node's drain may take before the upgrade stops, naming the pods left and the
    /// PodDisruptionBudgets that hold them.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: u32,
}

impl Default for Upgrade {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_max_unavailable() -> u32 {
    1
}
fn default_drain_timeout() -> u32 {
    300
}

/// The Kubernetes API endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// An external load balancer (host name or address), e.g. an Octavia one. Default: the `lb`
    /// machines, or the only control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// API port on the load balancer.
    #[serde(default = "default_api_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Extra names and addresses in the API server certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,
    /// A virtual IP the `lb` machines share with keepalived (VRRP, unicast between them): the
    /// API endpoint and the tool front stay up when an lb machine fails. In
    /// `network.machine_cidr`; on OpenStack each lb port gets it as an allowed address pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<IpAddr>,
    /// The lb machines' interface that carries the VIP.
    #[serde(default = "default_vip_interface")]
    pub vip_interface: String,
    /// VRRP router id (1–255), unique among the VRRP routers of the machine network.
    #[serde(default = "default_vrrp_router_id")]
    #[schemars(range(min = 1))]
    pub vrrp_router_id: u8,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            endpoint: None,
            port: default_api_port(),
            extra_sans: Vec::new(),
            vip: None,
            vip_interface: default_vip_interface(),
            vrrp_router_id: default_vrrp_router_id(),
        }
    }
}

fn default_vip_interface() -> String {
    "eth0".into()
}
fn default_vrrp_router_id() -> u8 {
    51
}

fn default_api_port() -> u16 {
    6443
}

/// The external etcd cluster.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Etcd {
    /// Data directory on the etcd machines' local disk.
    #[serde(default = "default_etcd_dir")]
    #[schemars(extend("format" = "absolute-path"))]
    pub data_dir: String,
    /// Client port.
    #[serde(default = "default_etcd_client_port")]
    #[schemars(range(min = 1))]
    pub client_port: u16,
    /// Peer port.
    #[serde(default = "default_etcd_peer_port")]
    #[schemars(range(min = 1))]
    pub peer_port: u16,
}

impl Default for Etcd {
    fn default() -> Self {
        Self {
            data_dir: default_etcd_dir(),
            client_port: default_etcd_client_port(),
            peer_port: default_etcd_peer_port(),
        }
    }
}

fn default_etcd_dir() -> String {
    "/var/lib/etcd".into()
}
fn default_etcd_client_port() -> u16 {
    2379
}
fn default_etcd_peer_port() -> u16 {
    2380
}

/// The pod network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cni {
    /// `calico` (the default: network policy, BGP or overlay; its images must be pullable or in
    /// `artifacts.images`) or `bridge` (the standard CNI bridge and host-local plugins from the
    /// nodes' CNI plugins, each node's podCIDR on a local bridge, routes between nodes set by
    /// forgectl: no images, no network policy; for CI and small air-gapped sites whose nodes
    /// share one network).
    #[serde(default)]
    pub plugin: CniPlugin,
}

/// A pod network plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CniPlugin {
    /// Calico (`calico:` settings).
    #[default]
    Calico,
    /// The CNI bridge plugin with routes between nodes.
    Bridge,
}

/// Calico, the pod network (Kubernetes datastore, netfilter dataplane).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Calico {
    /// Encapsulation of pod traffic between nodes: `ipip` (routes by BGP), `vxlan` (no BGP) or
    /// `none` (plain routing by BGP: the machines' network must carry pod addresses).
    #[serde(default)]
    pub encapsulation: Encapsulation,
    /// Encapsulate only between nodes in different subnets (Calico's `CrossSubnet` mode).
    #[serde(default)]
    pub cross_subnet: bool,
    /// MTU of the pods' interfaces. Default: 1500 less the encapsulation's overhead (1480 for
    /// IPIP, 1450 for VXLAN); lower it when the machines' network has a smaller MTU (OpenStack
    /// tenant networks often have 1450).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Which netfilter interface Felix programs: `auto` (what the node uses), `nft` or `legacy`.
    #[serde(default)]
    pub iptables_backend: IptablesBackend,
    /// Prefix length of the address blocks each node takes from the pod network: 20–32 for IPv4
    /// (and not shorter than the pod network's own prefix), 116–128 for IPv6.
    #[serde(default = "default_block_size")]
    #[schemars(range(min = 20, max = 128))]
    pub block_size: u8,
    /// Registry (and path) of Calico's images `node`, `cni` and `kube-controllers`, tagged with
    /// `versions.calico`.
    #[serde(default = "default_calico_registry")]
    pub registry: String,
}

impl Default for Calico {
    fn default() -> Self {
        Self {
            encapsulation: Encapsulation::default(),
            cross_subnet: false,
            mtu: None,
            iptables_backend: IptablesBackend::default(),
            block_size: default_block_size(),
            registry: default_calico_registry(),
        }
    }
}

impl Calico {
    /// The pods' MTU: the inventory's, else 1500 less the encapsulation's overhead.
    pub fn effective_mtu(&self) -> u32 {
        self.mtu.unwrap_or(match self.encapsulation {
            Encapsulation::Ipip => 1480,
            Encapsulation::Vxlan => 1450,
            Encapsulation::None => 1500,
        })
    }
}

/// Calico's encapsulation between nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    /// IP in IP, routes exchanged by BGP.
    #[default]
    Ipip,
    /// VXLAN, no BGP.
    Vxlan,
    /// No encapsulation, routes exchanged by BGP.
    None,
}

/// Felix's netfilter interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IptablesBackend {
    /// Whatever the node's iptables uses.
    #[default]
    Auto,
    /// nftables.
    Nft,
    /// Legacy iptables.
    Legacy,
}

fn default_block_size() -> u8 {
    26
}
fn default_calico_registry() -> String {
    "docker.io/calico".into()
}

/// The nginx-ingress controller.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    /// Deploy nginx-ingress on the `ingress` machines.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Domain under which tools get `NAME.<domain>` hosts.
    #[serde(default = "default_tool_domain")]
    pub tool_domain: String,
    /// The controller image (nginx-ingress), from an allowed registry or its mirror.
    #[serde(default = "default_ingress_image")]
    pub image: String,
    /// The default backend's image (answers 404 for hosts no tool claims).
    #[serde(default = "default_backend_image")]
    pub default_backend_image: String,
    /// Listen on the ingress nodes' own ports 80/443 (`true`, what the haproxy front expects) or
    /// through a NodePort Service (`false`: ports 30080/30443).
    #[serde(default = "default_true")]
    pub host_network: bool,
    /// nginx on the lb machines terminating TLS for `NAME.<tool_domain>` in front of haproxy.
    #[serde(default)]
    pub tls_front: TlsFront,
}

impl Default for Ingress {
    fn default() -> Self {
        Self {
            enabled: true,
            tool_domain: default_tool_domain(),
            image: default_ingress_image(),
            default_backend_image: default_backend_image(),
            host_network: true,
            tls_front: TlsFront::default(),
        }
    }
}

/// The TLS front: nginx on the lb machines, on :443, with the wildcard certificate of the tool
/// domain, passing plain HTTP to haproxy's ingress frontend (haproxy then no longer listens on
/// :443 itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFront {
    /// Run it.
    #[serde(default)]
    pub enabled: bool,
    /// PEM certificate (chain) for `<tool_domain>` and `*.<tool_domain>`. Without it (and
    /// `key_file`) forgectl issues one from a CA of its own in the state dir (`pki/tls-front-ca`):
    /// for trying things out; browsers do not trust it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}
fn default_tool_domain() -> String {
    "toolforge.test".into()
}
fn default_ingress_image() -> String {
    "registry.k8s.io/ingress-nginx/controller:v1.13.3".into()
}
fn default_backend_image() -> String {
    "registry.k8s.io/defaultbackend-amd64:1.5".into()
}

/// Storage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// NFS server on the `nfs` machine for tool homes and project data.
    #[serde(default)]
    pub nfs: Nfs,
    /// Cinder volumes through the CSI driver (OpenStack only).
    #[serde(default)]
    pub cinder: Cinder,
}

/// NFS storage: one server (the `nfs` machine) exporting tool homes and project data, mounted
/// on every worker by systemd mount units, where tools' pods get them as hostPath volumes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nfs {
    /// Run an NFS server on the `nfs` machine and mount it on workers.
    #[serde(default)]
    pub enabled: bool,
    /// What the server exports and where workers mount it.
    #[serde(default = "default_nfs_exports")]
    pub exports: Vec<NfsExport>,
    /// Export options (exports(5)) for every export. `root_squash`: root in a pod is nobody on
    /// the share.
    #[serde(default = "default_nfs_export_options")]
    pub export_options: String,
    /// Mount options (nfs(5)) on the workers.
    #[serde(default = "default_nfs_mount_options")]
    pub mount_options: String,
    /// Who may mount; default: `network.machine_cidr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Cidr>,
}

impl Default for Nfs {
    fn default() -> Self {
        Self {
            enabled: false,
            exports: default_nfs_exports(),
            export_options: default_nfs_export_options(),
            mount_options: default_nfs_mount_options(),
            clients: None,
        }
    }
}

/// One NFS export.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NfsExport {
    /// A short name (a DNS label): names the systemd mount unit's description.
    pub name: String,
    /// The directory on the server.
    #[schemars(extend("format" = "absolute-path"))]
    pub path: String,
    /// Where workers mount it.
    #[schemars(extend("format" = "absolute-path"))]
    pub mount: String,
}

fn default_nfs_exports() -> Vec<NfsExport> {
    vec![
        NfsExport {
            name: "home".into(),
            path: "/srv/tools/home".into(),
            mount: "/data/home".into(),
        },
        NfsExport {
            name: "project".into(),
            path: "/srv/tools/project".into(),
            mount: "/data/project".into(),
        },
    ]
}
fn default_nfs_export_options() -> String {
    "rw,sync,no_subtree_check,root_squash".into()
}
fn default_nfs_mount_options() -> String {
    "vers=4.2,hard,timeo=600,retrans=2,noatime".into()
}

/// Cinder CSI.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cinder {
    /// Install the Cinder CSI driver and a StorageClass. Its credentials are those forgectl uses
    /// (the cloud of `openstack.cloud` / `OS_*`), put in the Secret `kube-system/cloud-config`;
    /// give the cluster an application credential of its own there.
    #[serde(default)]
    pub enabled: bool,
    /// Name of the StorageClass.
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
    /// Make it the cluster's default StorageClass.
    #[serde(default = "default_true")]
    pub default_class: bool,
    /// Cinder availability zone of new volumes; default: the cloud's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Cinder volume type of new volumes; default: the cloud's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// Keep (`Retain`) or delete (`Delete`) a volume when its claim goes.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
    /// The cinder-csi-plugin image.
    #[serde(default = "default_cinder_image")]
    pub plugin_image: String,
    /// Registry (and path) of the CSI sidecars (csi-attacher, csi-provisioner, …).
    #[serde(default = "default_csi_sidecar_registry")]
    pub sidecar_registry: String,
}

impl Default for Cinder {
    fn default() -> Self {
        Self {
            enabled: false,
            storage_class: default_storage_class(),
            default_class: true,
            availability_zone: None,
            volume_type: None,
            reclaim_policy: ReclaimPolicy::default(),
            plugin_image: default_cinder_image(),
            sidecar_registry: default_csi_sidecar_registry(),
        }
    }
}

/// What happens to a volume when its claim is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    /// Delete the volume.
    #[default]
    Delete,
    /// Keep the volume (an admin deletes it).
    Retain,
}

fn default_storage_class() -> String {
    "cinder".into()
}
fn default_cinder_image() -> String {
    "registry.k8s.io/provider-os/cinder-csi-plugin:v1.34.1".into()
}
fn default_csi_sidecar_registry() -> String {
    "registry.k8s.io/sig-storage".into()
}

/// A group of machines with the same roles and settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group name (a DNS label). Machines made from `count` are named `NAME-1`, `NAME-2`, …
    pub name: String,
    /// What the group's machines do.
    pub roles: Vec<Role>,
    /// Number of machines to create (use this or `hosts`), at most 1000 per group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub count: Option<u32>,
    /// Explicit machines (use this or `count`); required for `static`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    /// Node labels for Kubernetes nodes of this group, given by kubelet when the node registers
    /// (at join): Kubernetes label keys and values, outside the kubernetes.io / k8s.io prefixes
    /// that kubelet may not set (NodeRestriction). A label changed later is not applied to nodes
    /// already joined (`kubectl label node`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// OpenStack settings for this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack: Option<GroupOpenStack>,
}

/// One explicit machine.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Machine name (a DNS label), unique in the cluster.
    pub name: String,
    /// IP address; required for `static`, assigned from `network.machine_cidr` for `local` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

/// Per-group OpenStack settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupOpenStack {
    /// Flavor for this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    /// Image for this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Size in GiB of an extra data volume per machine (e.g. etcd's local disk), made, attached
    /// and reported with its device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_gb: Option<u32>,
    /// Attach a floating IP to each machine of the group.
    #[serde(default)]
    pub floating_ip: bool,
    /// Availability zone for this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Boot volume size in GiB for this group (see `openstack.boot_volume_gb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume_gb: Option<u32>,
    /// More networks (names or ids), one port on each, after `openstack.network`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_networks: Vec<String>,
    /// Server group policy for the group's machines. Default: `anti-affinity` for groups with
    /// the etcd or control-plane role (never two on one hypervisor), `soft-anti-affinity` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_group: Option<ServerGroupPolicy>,
}

/// How Nova places a group's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServerGroupPolicy {
    /// Never two on one hypervisor; creation fails when there are not enough hypervisors.
    AntiAffinity,
    /// Spread over hypervisors where possible.
    SoftAntiAffinity,
    /// No server group.
    None,
}

impl ServerGroupPolicy {
    /// The policy name Nova uses (None for no group).
    pub fn nova_name(self) -> Option<&'static str> {
        match self {
            Self::AntiAffinity => Some("anti-affinity"),
            Self::SoftAntiAffinity => Some("soft-anti-affinity"),
            Self::None => None,
        }
    }
}

#[cfg(test)]
mod defaults_from_one_place {
    use super::*;
    use serde::de::DeserializeOwned;

    /// A block left out (`T::default()`) and a block written empty (`{}` through serde's
    /// defaults) are the same settings.
    fn same<T: Default + Serialize + DeserializeOwned>(name: &str) {
        let empty: T = serde_json::from_value(serde_json::json!({}))
            .unwrap_or_else(|e| panic!("{name}: an empty block does not load: {e}"));
        assert_eq!(
            serde_json::to_value(T::default()).unwrap(),
            serde_json::to_value(empty).unwrap(),
            "{name}: Default and serde's defaults differ"
        );
    }

    #[test]
    fn every_optional_block() {
        same::<LocalProvider>("local");
        same::<VagrantProvider>("vagrant");
        same::<Versions>("versions");
        same::<Network>("network");
        same::<Ssh>("ssh");
        same::<Artifacts>("artifacts");
        same::<Runtime>("runtime");
        same::<Kubeadm>("kubeadm");
        same::<Api>("api");
        same::<Etcd>("etcd");
        same::<Cni>("cni");
        same::<Calico>("calico");
        same::<Ingress>("ingress");
        same::<TlsFront>("ingress.tls_front");
        same::<Storage>("storage");
        same::<Nfs>("storage.nfs");
        same::<Cinder>("storage.cinder");
        same::<super::super::platform::Platform>("platform");
        same::<super::super::platform::Webhook>("platform.webhook");
        same::<super::super::accounts::Accounts>("accounts");
        same::<super::super::accounts::HomeVolume>("accounts.home_volume");
        same::<super::super::accounts::ContainerLimits>("accounts.limits");
    }
}
