//! A REAL Kubernetes control plane for tests, started the way controller-runtime's envtest starts
//! one: etcd, kube-apiserver, kube-controller-manager and kube-scheduler from a directory of
//! upstream binaries, on free ports, with a PKI of their own (or the cluster CA a test gives).
//!
//! The binaries' directory is `$FORGECTL_TEST_KUBE_ASSETS` (like envtest's `KUBEBUILDER_ASSETS`;
//! it must hold etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl), else
//! what `../shared/kube/kube bin` prints. [`shared`] is the one control plane of a test binary,
//! shared by its tests (each in namespaces of its own, each with its own admin user, so its
//! requests can be told apart in the audit log); [`ControlPlane::start`] makes another one (a
//! test that needs the cluster's own CA or another address). Every process is stopped by PID:
//! by `Drop`, and, for the shared one (statics are never dropped), by a reaper process that
//! waits for the test binary's end (its stdin closes) and then stops the recorded PIDs and
//! removes the run directory, also when the binary failed or was killed.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The environment variable naming the binaries' directory.
pub const ASSETS_ENV: &str = "FORGECTL_TEST_KUBE_ASSETS";

/// The directory of the Kubernetes binaries.
pub fn assets() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os(ASSETS_ENV).filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        kube_bin(&[])
    })
    .clone()
}

/// The environment variable naming the directory of the previous minor release's node binaries
/// (kubeadm, kubelet, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy), for
/// upgrade tests.
pub const PREVIOUS_ASSETS_ENV: &str = "FORGECTL_TEST_KUBE_ASSETS_PREVIOUS";

/// The previous release's binaries: `$FORGECTL_TEST_KUBE_ASSETS_PREVIOUS`, else what
/// `../shared/kube/kube bin --version 1.35.3` prints.
pub fn previous_assets() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os(PREVIOUS_ASSETS_ENV).filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        kube_bin(&["--version", "1.35.3"])
    })
    .clone()
}

/// What `../shared/kube/kube bin ARGS` prints.
fn kube_bin(args: &[&str]) -> PathBuf {
    let kube = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kube/kube");
    let out = Command::new(&kube)
        .arg("bin")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{ASSETS_ENV} is not set and {} fails: {e}", kube.display()));
    assert!(
        out.status.success(),
        "{} bin {args:?}: {}",
        kube.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    PathBuf::from(dir)
}

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cluster CA (certificate, key PEM): it signs the serving certificate, the client
    /// certificates and what the controller-manager's CSR signers issue. None: a new one.
    pub ca: Option<(String, String)>,
    /// The address kube-apiserver listens on (etcd and the controllers stay on 127.0.0.1).
    pub bind: IpAddr,
    /// Also run kube-scheduler (where pods matter).
    pub scheduler: bool,
    /// Write an audit log of every request that is not a controller's (for [`ControlPlane::requests`]).
    pub audit: bool,
    /// More names and addresses the serving certificate holds (a load balancer in front).
    pub sans: Vec<String>,
    /// The Service network (the first address is the `kubernetes` Service's).
    pub service_cidr: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ca: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            scheduler: true,
            audit: true,
            sans: Vec::new(),
            service_cidr: "10.96.0.0/12".into(),
        }
    }
}

/// One request as the audit log has it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Who made it.
    pub user: String,
    /// The API verb (`create`, `patch`, `get`, `list`, …).
    pub verb: String,
    /// The request URI.
    pub uri: String,
}

impl Request {
    /// Whether it asked for a change (create, update, patch, delete).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// A running control plane.
pub struct ControlPlane {
    /// Its run directory (PKI, kubeconfigs, logs, etcd's data).
    pub dir: PathBuf,
    /// The API server's URL.
    pub url: String,
    /// The address kube-apiserver listens on.
    pub addr: SocketAddr,
    /// An admin kubeconfig (user `kubernetes-admin`, group `system:masters`).
    pub admin: PathBuf,
    /// The cluster CA (certificate, key PEM).
    pub ca: (String, String),
    audit_log: Option<PathBuf>,
    children: Mutex<Vec<(String, Child)>>,
    /// The reaper's stdin: closing it (at the binary's end) makes it stop the processes.
    reaper: Mutex<Option<ChildStdin>>,
    /// The reaper itself, waited for on drop.
    reaper_process: Mutex<Option<Child>>,
    barrier: std::sync::atomic::AtomicU64,
}

/// The control plane of this test binary, started on first use.
pub fn shared() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| ControlPlane::start(Options::default()))
}

/// A free TCP port on `ip`.
pub fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A new cluster CA (certificate, key PEM).
pub fn new_ca() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "fgtest-kubernetes-ca");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A serving certificate from `ca` for the names and addresses (certificate, key PEM).
pub fn serving(ca: &(String, String), dns: &[&str], ips: &[IpAddr]) -> (String, String) {
    let ca_key = rcgen::KeyPair::from_pem(&ca.1).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.0, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p =
        rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.subject_alt_names
        .extend(ips.iter().map(|i| rcgen::SanType::IpAddress(*i)));
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let cert = p.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n\
rules:\n\
- level: None\n  userGroups: [\"system:nodes\", \"system:serviceaccounts\"]\n\
- level: None\n  users: [\"system:kube-controller-manager\", \"system:kube-scheduler\", \"system:apiserver\", \"system:kube-proxy\"]\n\
- level: None\n  nonResourceURLs: [\"/readyz*\", \"/livez*\", \"/healthz*\", \"/openapi*\", \"/version\"]\n\
- level: Metadata\n";

/// The reaper: reads PIDs from stdin until it closes (the test binary ended), then stops those
/// still running this control plane, the last started first (TERM, up to 10 s each, KILL), and
/// removes the run directory.
const REAPER: &str = r#"trap '' INT HUP TERM
dir=$1; pids=
while read -r pid; do pids="$pids $pid"; done
ours() { grep -qaF -- "$dir" "/proc/$1/cmdline" 2>/dev/null; }
rev=; for p in $pids; do rev="$p $rev"; done
for p in $rev; do
  ours "$p" || continue
  kill -TERM "$p" 2>/dev/null
  i=0
  while ours "$p" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  ours "$p" && kill -KILL "$p" 2>/dev/null
done
rm -rf -- "$dir"
"#;

impl ControlPlane {
    /// Starts one and waits until it serves (readyz, and the controller-manager made the
    /// `default` ServiceAccount).
    pub fn start(opts: Options) -> Self {
        let t0 = Instant::now();
        let bin = assets();
        for b in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kubectl",
        ] {
            assert!(
                bin.join(b).is_file(),
                "{} has no {b}: set {ASSETS_ENV} to a directory of Kubernetes binaries",
                bin.display()
            );
        }
        let dir = std::env::temp_dir().join(format!(
            "fgtest-kube-{}-{}",
            std::process::id(),
            free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))
        ));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let reaper = Command::new("sh")
            .args(["-c", REAPER, "fgtest-kube-reaper"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut reaper = reaper;
        let reaper_in = reaper.stdin.take().unwrap();

        let ca = opts.ca.clone().unwrap_or_else(new_ca);
        let p = |f: &str| dir.join(f);
        write(&p("ca.crt"), &ca.0);
        write(&p("ca.key"), &ca.1);
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let services: ipnet::IpNet = opts.service_cidr.parse().unwrap();
        let first_service = services.hosts().next().unwrap();
        let mut ips = vec![localhost, first_service];
        if opts.bind != localhost {
            ips.push(opts.bind);
        }
        let mut dns = vec![
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        for san in &opts.sans {
            match san.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(san),
            }
        }
        let (crt, key) = serving(&ca, &dns, &ips);
        write(&p("apiserver.crt"), &crt);
        write(&p("apiserver.key"), &key);
        let sa = rcgen::KeyPair::generate().unwrap();
        write(&p("sa.key"), &sa.serialize_pem());
        write(&p("sa.pub"), &sa.public_key_pem());
        // The API server's own client certificate to kubelets (pod logs from a node stand-in).
        let kubelet_client = super::x509::client_cert(
            &ca.0,
            &ca.1,
            "kube-apiserver-kubelet-client",
            &["kubeadm:cluster-admins"],
        );
        write(&p("kubelet-client.crt"), &kubelet_client.0);
        write(&p("kubelet-client.key"), &kubelet_client.1);

        let api_port = free_port(opts.bind);
        let addr = SocketAddr::new(opts.bind, api_port);
        let url = format!("https://{addr}");
        let kubeconfig = |name: &str, user: &str, groups: &[&str]| {
            let path = p(name);
            write(
                &path,
                &super::x509::kubeconfig_for(&url, &ca.0, &ca.1, user, groups),
            );
            path
        };
        let admin = kubeconfig("admin.conf", "kubernetes-admin", &["system:masters"]);
        let kcm = kubeconfig("kcm.conf", "system:kube-controller-manager", &[]);
        let sched = kubeconfig("scheduler.conf", "system:kube-scheduler", &[]);

        let mut cp = Self {
            dir: dir.clone(),
            url: url.clone(),
            addr,
            admin,
            ca: ca.clone(),
            audit_log: opts.audit.then(|| p("audit.log")),
            children: Mutex::new(Vec::new()),
            reaper: Mutex::new(Some(reaper_in)),
            reaper_process: Mutex::new(Some(reaper)),
            barrier: std::sync::atomic::AtomicU64::new(0),
        };
        let s = |p: PathBuf| p.display().to_string();

        // A port `free_port` picked can be taken before etcd binds it (by another test's
        // listener, or as the source port of an outgoing connection): etcd then ends with
        // "address already in use", and is started again on other ports.
        let etcd_c = cp.launch_on_free_ports("etcd", |attempt| {
            let (client, peer) = (free_port(localhost), free_port(localhost));
            let data = p(&format!("etcd-{attempt}"));
            let args = vec![
                "--name=fgtest".into(),
                format!("--data-dir={}", s(data)),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=fgtest=http://127.0.0.1:{peer}"),
                "--initial-cluster-state=new".into(),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ];
            (bin.join("etcd"), args, SocketAddr::new(localhost, client))
        });
        let mut api_args = vec![
            format!("--bind-address={}", opts.bind),
            format!("--secure-port={api_port}"),
            format!("--advertise-address={}", opts.bind),
            format!("--etcd-servers=http://{etcd_c}"),
            format!("--service-cluster-ip-range={}", opts.service_cidr),
            format!("--tls-cert-file={}", s(p("apiserver.crt"))),
            format!("--tls-private-key-file={}", s(p("apiserver.key"))),
            format!("--client-ca-file={}", s(p("ca.crt"))),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", s(p("sa.pub"))),
            format!("--service-account-signing-key-file={}", s(p("sa.key"))),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota,PodSecurity,NodeRestriction".into(),
            "--allow-privileged=true".into(),
            "--enable-bootstrap-token-auth=true".into(),
            format!("--kubelet-client-certificate={}", s(p("kubelet-client.crt"))),
            format!("--kubelet-client-key={}", s(p("kubelet-client.key"))),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--profiling=false".into(),
        ];
        if opts.bind == localhost {
            api_args.push("--endpoint-reconciler-type=none".into());
        }
        if let Some(log) = &cp.audit_log {
            std::fs::write(p("audit-policy.yaml"), AUDIT_POLICY).unwrap();
            api_args.push(format!("--audit-policy-file={}", s(p("audit-policy.yaml"))));
            api_args.push(format!("--audit-log-path={}", s(log.clone())));
            api_args.push("--audit-log-format=json".into());
            api_args.push("--audit-log-mode=blocking".into());
        }
        cp.launch("kube-apiserver", &bin.join("kube-apiserver"), &api_args);
        cp.wait("the API server's /readyz", Duration::from_secs(120), || {
            cp.kubectl(&["get", "--raw", "/readyz"]).0
        });
        cp.launch(
            "kube-controller-manager",
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", s(kcm.clone())),
                format!("--authentication-kubeconfig={}", s(kcm.clone())),
                format!("--authorization-kubeconfig={}", s(kcm)),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port(localhost)),
                format!("--client-ca-file={}", s(p("ca.crt"))),
                format!("--cluster-signing-cert-file={}", s(p("ca.crt"))),
                format!("--cluster-signing-key-file={}", s(p("ca.key"))),
                format!("--service-account-private-key-file={}", s(p("sa.key"))),
                format!("--root-ca-file={}", s(p("ca.crt"))),
                "--use-service-account-credentials=true".into(),
                "--leader-elect=false".into(),
                "--controllers=*,bootstrapsigner,tokencleaner,-service-ca-certificate-publisher-controller".into(),
                // As forgectl configures it (templates/kube/kubeadm-init.yaml.tera): each
                // controller's client may make this many requests per second (the CSR signer
                // signs at most that many certificates a second).
                format!("--kube-api-qps={}", forgectl::phases::kubeadm_init::CONTROLLER_MANAGER_API_QPS),
                format!("--kube-api-burst={}", forgectl::phases::kubeadm_init::CONTROLLER_MANAGER_API_BURST),
                "--profiling=false".into(),
            ],
        );
        if opts.scheduler && bin.join("kube-scheduler").is_file() {
            cp.launch(
                "kube-scheduler",
                &bin.join("kube-scheduler"),
                &[
                    format!("--kubeconfig={}", s(sched.clone())),
                    format!("--authentication-kubeconfig={}", s(sched.clone())),
                    format!("--authorization-kubeconfig={}", s(sched)),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={}", free_port(localhost)),
                    "--leader-elect=false".into(),
                    "--profiling=false".into(),
                ],
            );
        }
        cp.wait(
            "the controller-manager (the default ServiceAccount)",
            Duration::from_secs(120),
            || {
                cp.kubectl(&["-n", "default", "get", "serviceaccount", "default"])
                    .0
            },
        );
        eprintln!(
            "real control plane at {url} ready in {:.1} s ({})",
            t0.elapsed().as_secs_f64(),
            cp.dir.display()
        );
        cp
    }

    /// Launches `name` with what `make(attempt)` gives (binary, arguments, the address it
    /// listens on) and waits until that address accepts connections. When the process ends
    /// because a port was taken meanwhile, it is started again with new ports, up to 5 times.
    fn launch_on_free_ports(
        &mut self,
        name: &str,
        make: impl Fn(u32) -> (PathBuf, Vec<String>, SocketAddr),
    ) -> SocketAddr {
        for attempt in 0..5 {
            let (bin, args, addr) = make(attempt);
            self.launch(name, &bin, &args);
            let t = Instant::now();
            loop {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return addr;
                }
                let ended = {
                    let mut children = self.children.lock().unwrap();
                    let (_, child) = children.last_mut().unwrap();
                    child.try_wait().unwrap()
                };
                if let Some(status) = ended {
                    let log = self.log_tail(name);
                    assert!(
                        log.contains("address already in use"),
                        "{name} ended ({status}):\n{log}"
                    );
                    eprintln!("{name}: a port was taken before it bound it; new ports");
                    self.children.lock().unwrap().pop();
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "{name} does not listen on {addr} after 60 s:\n{}",
                    self.log_tail(name)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("{name}: its ports were taken 5 times in a row")
    }

    fn launch(&mut self, name: &str, bin: &Path, args: &[String]) {
        let log = std::fs::File::create(self.dir.join("logs").join(format!("{name}.log"))).unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        if let Some(r) = self.reaper.lock().unwrap().as_mut() {
            writeln!(r, "{}", child.id()).unwrap();
        }
        self.children
            .lock()
            .unwrap()
            .push((name.to_string(), child));
    }

    /// Waits until `ok`, failing with the logs of a process that ended.
    fn wait(&self, what: &str, limit: Duration, ok: impl Fn() -> bool) {
        let t = Instant::now();
        while !ok() {
            for (name, child) in self.children.lock().unwrap().iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{name} ended ({status}) while waiting for {what}:\n{}",
                        self.log_tail(name)
                    );
                }
            }
            assert!(
                t.elapsed() < limit,
                "{what}: not ready after {limit:?}\n{}",
                self.log_tail("kube-apiserver")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// CPU seconds (user + system) each component has used so far, by name (from /proc; the
    /// benchmarks print what the server spent beside the client's own).
    #[allow(dead_code)]
    pub fn cpu_seconds(&self) -> Vec<(String, f64)> {
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.children
            .lock()
            .unwrap()
            .iter()
            .map(|(name, child)| {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                    .unwrap_or_default();
                // Fields after the command's closing parenthesis: utime and stime are 12th and 13th.
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
                let f: Vec<f64> = rest
                    .split_whitespace()
                    .map(|v| v.parse().unwrap_or(0.0))
                    .collect();
                let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
                (name.clone(), ticks / tick)
            })
            .collect()
    }

    /// The last lines of a component's log.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs kubectl as the admin: (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        self.kubectl_with_input(args, "")
    }

    /// Runs kubectl as the admin with `input` on its stdin: (success, stdout, stderr).
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> (bool, String, String) {
        let mut child = Command::new(assets().join("kubectl"))
            .arg(format!("--kubeconfig={}", self.admin.display()))
            .arg("--request-timeout=10s")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A kubeconfig (text) for `user` in `groups`, signed by the cluster CA.
    pub fn kubeconfig(&self, user: &str, groups: &[&str]) -> String {
        super::x509::kubeconfig_for(&self.url, &self.ca.0, &self.ca.1, user, groups)
    }

    /// Writes an admin kubeconfig for `user` (in `system:masters`) to `path`: a test's own
    /// admin, whose requests the audit log tells apart from other tests'.
    pub fn admin_kubeconfig(&self, user: &str, path: &Path) -> PathBuf {
        write(path, &self.kubeconfig(user, &["system:masters"]));
        path.to_path_buf()
    }

    /// A client for `user` in `groups`.
    pub async fn client(&self, user: &str, groups: &[&str]) -> kube::Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cfg: kube::config::Kubeconfig =
            serde_saphyr::from_str(&self.kubeconfig(user, groups)).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(cfg, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// An object as the admin reads it (None if it does not exist).
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let mut args = vec!["get", resource, name, "-o", "json", "--show-managed-fields"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let (ok, out, err) = self.kubectl(&args);
        if !ok {
            assert!(
                err.contains("NotFound"),
                "kubectl get {resource} {name}: {err}"
            );
            return None;
        }
        Some(serde_json::from_str(&out).unwrap())
    }

    /// Every object of `resource` (kubectl's name for it) matching `selector` ("" for all), in
    /// every namespace.
    pub fn list(&self, resource: &str, selector: &str) -> Vec<Value> {
        let mut args = vec!["get", resource, "-A", "-o", "json", "--show-managed-fields"];
        if !selector.is_empty() {
            args.extend(["-l", selector]);
        }
        let (ok, out, err) = self.kubectl(&args);
        assert!(ok, "kubectl get {resource}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Applies YAML (or JSON) as the admin, server-side with its own field manager, as a person
    /// or another controller would.
    pub fn apply(&self, yaml: &str) {
        let (ok, _, err) = self.kubectl_with_input(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=fgtest-hand",
                "-f",
                "-",
            ],
            yaml,
        );
        assert!(ok, "kubectl apply: {err}\n{yaml}");
    }

    /// Every object that field manager `manager` applied, by `kind namespace/name`, with the
    /// time and fields of its entry: equal before and after a run when the run changed none of
    /// them (a no-op apply leaves an object, its managedFields included, as it was).
    pub fn applied_by(&self, manager: &str) -> std::collections::BTreeMap<String, String> {
        let (ok, names, err) = self.kubectl(&["api-resources", "--verbs=list", "-o", "name"]);
        assert!(ok, "kubectl api-resources: {err}");
        let kinds: Vec<&str> = names.lines().filter(|n| !n.starts_with("events")).collect();
        let (ok, out, err) = self.kubectl(&[
            "get",
            &kinds.join(","),
            "-A",
            "-o",
            "json",
            "--show-managed-fields",
        ]);
        assert!(ok, "kubectl get: {err}");
        let list: Value = serde_json::from_str(&out).unwrap();
        let mut found = std::collections::BTreeMap::new();
        for o in list["items"].as_array().into_iter().flatten() {
            for entry in o["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if entry["manager"] == manager {
                    found.insert(
                        format!(
                            "{} {}/{}",
                            o["kind"].as_str().unwrap_or_default(),
                            o["metadata"]["namespace"].as_str().unwrap_or_default(),
                            o["metadata"]["name"].as_str().unwrap_or_default()
                        ),
                        format!("{} {}", entry["time"], entry["fieldsV1"]),
                    );
                }
            }
        }
        found
    }

    /// Every request in the audit log so far (the control plane must have been started with
    /// `audit`), after a barrier request made sure those already answered are in it.
    pub fn requests(&self) -> Vec<Request> {
        let log = self
            .audit_log
            .as_ref()
            .expect("the control plane was started without an audit log");
        let n = self
            .barrier
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("fgtest-audit-barrier-{n}");
        let _ = self.kubectl(&["-n", "default", "get", "configmap", &marker]);
        let t = Instant::now();
        loop {
            let text = std::fs::read(log).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains(&marker) {
                return parse_audit(&text)
                    .into_iter()
                    .filter(|r| !r.uri.contains("fgtest-audit-barrier-"))
                    .collect();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the audit log never showed {marker}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The writes `user` made so far.
    pub fn writes_by(&self, user: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.user == user && r.is_write())
            .count()
    }
}

fn parse_audit(text: &[u8]) -> Vec<Request> {
    text.lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .map(|e| Request {
            user: e["user"]["username"].as_str().unwrap_or_default().into(),
            verb: e["verb"].as_str().unwrap_or_default().into(),
            uri: e["requestURI"].as_str().unwrap_or_default().into(),
        })
        .collect()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap();
        // In reverse: the controllers before the API server, the API server before etcd.
        for (_, child) in children.iter_mut().rev() {
            // SAFETY: kill(2) on the PID of a child this value spawned and has not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Closing the reaper's stdin lets it remove the directory.
        self.reaper.lock().unwrap().take();
        if let Some(mut r) = self.reaper_process.lock().unwrap().take() {
            let _ = r.wait();
        }
    }
}
