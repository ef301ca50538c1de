//! A real OpenLDAP server (Debian's `slapd`, started by the test as a child process) holding a
//! Toolforge-shaped directory, reachable over ldaps:// (a test CA made here), ldap:// and ldapi://.
//!
//! Layout of [`LdapDirectory::toolforge`] (suffix `base`, e.g. `dc=toolforge,dc=test`):
//! - `ou=people,BASE`: humans `uid=user0000`… and `uid=admin1`, `uid=admin2`
//!   (inetOrgPerson + posixAccount; uid, cn, sn, uidNumber, gidNumber 500, homeDirectory
//!   `/home/USER`, loginShell /bin/bash).
//! - `ou=people,ou=servicegroups,BASE`: tool accounts `uid=tools.NAME` (account + posixAccount;
//!   uid, cn, uidNumber = gidNumber = 50000+i, homeDirectory `HOME_ROOT/NAME`, loginShell
//!   /bin/bash, or `/bin/disabledtoolshell` plus `pwdAccountLockedTime: 000001010000Z` when
//!   disabled: every 50th tool).
//! - `ou=servicegroups,BASE` (one level): `cn=tools.NAME` groups, either groupOfNames with
//!   `member: uid=USER,ou=people,BASE` or (every 10th tool, i % 10 == 3) posixGroup with
//!   `gidNumber` and `memberUid: USER`; plus `cn=tools.admin` (groupOfNames: admin1, admin2).
//! - `cn=forgectl,ou=services,BASE`: the read-only service account the fixture adds itself.
//!
//! Server side: `sizelimit 500` for everyone; the service account may page past it (page size
//! ≤ 500, unlimited total); anonymous may bind and read the root DSE and subschema, nothing else.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tool numbered `i` (1-based) in the generated directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// `tool0001`…; the account is `uid=tools.NAME`, the group `cn=tools.NAME`.
    pub name: String,
    /// uidNumber and gidNumber (50000 + i).
    pub id: u32,
    pub home: PathBuf,
    /// Human uids (1–3), in the order written.
    pub maintainers: Vec<String>,
    /// `loginShell: /bin/disabledtoolshell` (+ pwdAccountLockedTime).
    pub disabled: bool,
    /// The group is a posixGroup with memberUid rather than groupOfNames with member DNs.
    pub posix_group: bool,
}

/// The generated Toolforge-shaped data, so tests can compare what a client reads with it.
#[derive(Debug, Clone)]
pub struct LdapDirectory {
    pub base: String,
    /// Human uids: `user0000`…, then `admin1`, `admin2`.
    pub users: Vec<String>,
    /// Members of `cn=tools.admin`.
    pub admins: Vec<String>,
    pub tools: Vec<Tool>,
}

pub const HUMANS: usize = 200;
pub const DISABLED_EVERY: usize = 50;
pub const SIZE_LIMIT: usize = 500;

impl LdapDirectory {
    pub fn toolforge(base: &str, tools: usize, home_root: &Path) -> LdapDirectory {
        let mut users: Vec<String> = (0..HUMANS).map(|i| format!("user{i:04}")).collect();
        let admins = vec!["admin1".to_string(), "admin2".to_string()];
        users.extend(admins.iter().cloned());
        let tools = (1..=tools)
            .map(|i| {
                let name = format!("tool{i:04}");
                let maintainers = (0..(i % 3) + 1)
                    .map(|k| format!("user{:04}", (i * 7 + k * 13) % HUMANS))
                    .collect();
                Tool {
                    home: home_root.join(&name),
                    name,
                    id: 50000 + i as u32,
                    maintainers,
                    disabled: i % DISABLED_EVERY == 0,
                    posix_group: i % 10 == 3,
                }
            })
            .collect();
        LdapDirectory {
            base: base.to_string(),
            users,
            admins,
            tools,
        }
    }

    pub fn people_dn(&self) -> String {
        format!("ou=people,{}", self.base)
    }
    pub fn servicegroups_dn(&self) -> String {
        format!("ou=servicegroups,{}", self.base)
    }
    pub fn tool_accounts_dn(&self) -> String {
        format!("ou=people,ou=servicegroups,{}", self.base)
    }
    pub fn user_dn(&self, uid: &str) -> String {
        format!("uid={uid},{}", self.people_dn())
    }
    pub fn tool_account_dn(&self, name: &str) -> String {
        format!("uid=tools.{name},{}", self.tool_accounts_dn())
    }
    pub fn tool_group_dn(&self, name: &str) -> String {
        format!("cn=tools.{name},{}", self.servicegroups_dn())
    }

    /// The directory as LDIF for slapadd: the suffix entry first, then containers, then leaves.
    pub fn ldif(&self) -> String {
        let base = &self.base;
        let first_rdn = base.split(',').next().unwrap_or(base);
        let (attr, value) = first_rdn.split_once('=').expect("base must be a DN");
        assert!(
            attr.eq_ignore_ascii_case("dc"),
            "base must start with dc=: {base}"
        );
        let mut out = String::with_capacity(600 * (self.tools.len() * 2 + self.users.len()));
        out.push_str(&format!(
            "dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: {value}\no: {value}\n\n"
        ));
        for ou in [
            self.people_dn(),
            self.servicegroups_dn(),
            self.tool_accounts_dn(),
            format!("ou=services,{base}"),
        ] {
            let name = ou.split(',').next().unwrap().trim_start_matches("ou=");
            out.push_str(&format!(
                "dn: {ou}\nobjectClass: organizationalUnit\nou: {name}\n\n"
            ));
        }
        for (i, uid) in self.users.iter().enumerate() {
            let number = if i < HUMANS {
                10000 + i
            } else {
                20001 + i - HUMANS
            };
            out.push_str(&format!(
                "dn: {dn}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {uid}\n\
                 cn: {uid}\nsn: {uid}\nuidNumber: {number}\ngidNumber: 500\n\
                 homeDirectory: /home/{uid}\nloginShell: /bin/bash\n\n",
                dn = self.user_dn(uid)
            ));
        }
        for t in &self.tools {
            out.push_str(&format!(
                "dn: {dn}\nobjectClass: account\nobjectClass: posixAccount\nuid: tools.{n}\n\
                 cn: tools.{n}\nuidNumber: {id}\ngidNumber: {id}\nhomeDirectory: {home}\n",
                dn = self.tool_account_dn(&t.name),
                n = t.name,
                id = t.id,
                home = t.home.display(),
            ));
            if t.disabled {
                out.push_str(
                    "loginShell: /bin/disabledtoolshell\npwdAccountLockedTime: 000001010000Z\n\n",
                );
            } else {
                out.push_str("loginShell: /bin/bash\n\n");
            }
            out.push_str(&format!(
                "dn: {}\ncn: tools.{}\n",
                self.tool_group_dn(&t.name),
                t.name
            ));
            if t.posix_group {
                out.push_str(&format!("objectClass: posixGroup\ngidNumber: {}\n", t.id));
                for m in &t.maintainers {
                    out.push_str(&format!("memberUid: {m}\n"));
                }
            } else {
                out.push_str("objectClass: groupOfNames\n");
                for m in &t.maintainers {
                    out.push_str(&format!("member: {}\n", self.user_dn(m)));
                }
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "dn: {}\nobjectClass: groupOfNames\ncn: tools.admin\n",
            self.tool_group_dn("admin")
        ));
        for a in &self.admins {
            out.push_str(&format!("member: {}\n", self.user_dn(a)));
        }
        out.push('\n');
        out
    }
}

/// Generates the Toolforge-shaped directory used by the tests as LDIF (see the module docs).
pub fn toolforge_ldif(base: &str, tools: usize, home_root: &Path) -> String {
    LdapDirectory::toolforge(base, tools, home_root).ldif()
}

/// A running slapd, killed (by PID) and waited for on drop. Everything it writes is under `dir`.
pub struct Slapd {
    /// `ldaps://127.0.0.1:PORT`
    pub url: String,
    /// `ldap://127.0.0.1:PORT2` (no TLS; same ACLs)
    pub plain_url: String,
    /// `ldapi://…` (a socket in `dir`)
    pub ldapi_url: String,
    /// The suffix: the DN of the LDIF's first entry.
    pub base: String,
    /// The test CA that signed the server certificate (SANs 127.0.0.1, localhost).
    pub ca_pem: String,
    /// `dir/ca.pem`
    pub ca_file: PathBuf,
    /// `cn=forgectl,ou=services,BASE`: read access to everything but passwords, may page.
    pub bind_dn: String,
    pub bind_password: String,
    /// `cn=admin,BASE`: the rootdn, used by [`Slapd::modify`].
    pub root_dn: String,
    pub root_password: String,
    pub dir: PathBuf,
    /// slapd's stderr (`-d stats`).
    pub log: PathBuf,
    pub pid: u32,
    child: Child,
}

fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn random_secret() -> String {
    let mut buf = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn slappasswd(secret: &str) -> String {
    let out = Command::new("slappasswd")
        .args(["-h", "{SSHA}", "-s", secret])
        .output()
        .expect("slappasswd (Debian package slapd) must be installed");
    assert!(out.status.success(), "slappasswd failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn percent_encode(path: &Path) -> String {
    path.display()
        .to_string()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A test CA and a server certificate for 127.0.0.1 and localhost, ECDSA P-256 (PKCS#8 PEM).
fn issue_certs(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fgtest slapd CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    ca_cert.pem()
}

fn run_with_stdin(mut cmd: Command, input: &str, what: &str) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Slapd {
    /// Starts slapd with `dir` as its data/config dir, loaded with `ldif` (slapadd before start).
    /// The suffix is the DN of the LDIF's first entry; `ou=services,BASE` is added if absent, and
    /// the service account `cn=forgectl,ou=services,BASE` (random password) is always added.
    pub fn start(dir: &Path, ldif: &str) -> Slapd {
        let dir = dir.to_path_buf();
        let base = ldif
            .lines()
            .find_map(|l| l.strip_prefix("dn:"))
            .expect("the LDIF needs at least one entry (the suffix first)")
            .trim()
            .to_string();
        let db = dir.join("db");
        std::fs::create_dir_all(&db).unwrap();
        let ca_pem = issue_certs(&dir);

        let bind_dn = format!("cn=forgectl,ou=services,{base}");
        let bind_password = random_secret();
        let root_dn = format!("cn=admin,{base}");
        let root_password = random_secret();

        let conf = format!(
            r#"# generated by tests/support/slapd.rs
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key
sizelimit {SIZE_LIMIT}

access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read
access to attrs=userPassword
    by self =xw
    by anonymous auth
    by * none
access to *
    by dn.exact="{bind_dn}" read
    by self read
    by anonymous auth
    by * none

database mdb
suffix "{base}"
rootdn "{root_dn}"
rootpw {root_hash}
directory {db}
maxsize 1073741824
index objectClass eq
index uid,cn,memberUid eq
index member eq
limits dn.exact="{bind_dn}" size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.pr={SIZE_LIMIT} size.prtotal=unlimited
overlay ppolicy
"#,
            dir = dir.display(),
            db = db.display(),
            root_hash = slappasswd(&root_password),
        );
        let conf_path = dir.join("slapd.conf");
        std::fs::write(&conf_path, conf).unwrap();

        let mut data = ldif.trim_end().to_string();
        data.push_str("\n\n");
        if !ldif.contains(&format!("dn: ou=services,{base}\n")) {
            data.push_str(&format!(
                "dn: ou=services,{base}\nobjectClass: organizationalUnit\nou: services\n\n"
            ));
        }
        data.push_str(&format!(
            "dn: {bind_dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: forgectl\nuserPassword: {}\n\n",
            slappasswd(&bind_password)
        ));
        let data_path = dir.join("data.ldif");
        std::fs::write(&data_path, data).unwrap();
        let out = Command::new("slapadd")
            .arg("-q")
            .arg("-f")
            .arg(&conf_path)
            .arg("-l")
            .arg(&data_path)
            .output()
            .expect("slapadd (Debian package slapd) must be installed");
        assert!(
            out.status.success(),
            "slapadd failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );

        let (tls_port, plain_port) = free_ports();
        let url = format!("ldaps://127.0.0.1:{tls_port}");
        let plain_url = format!("ldap://127.0.0.1:{plain_port}");
        let ldapi_url = format!("ldapi://{}", percent_encode(&dir.join("ldapi")));
        let log = dir.join("slapd.log");
        let child = Command::new("slapd")
            .arg("-d")
            .arg("stats")
            .arg("-f")
            .arg(&conf_path)
            .arg("-h")
            .arg(format!("{url}/ {plain_url}/ {ldapi_url}/"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("slapd (Debian package slapd) must be installed");
        let mut slapd = Slapd {
            url,
            plain_url,
            ldapi_url,
            base,
            ca_pem,
            ca_file: dir.join("ca.pem"),
            bind_dn,
            bind_password,
            root_dn,
            root_password,
            log,
            pid: child.id(),
            child,
            dir,
        };
        slapd.wait_ready();
        slapd
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until a bound search of the root DSE over ldaps:// (with the CA) answers, ~10 s.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "slapd exited before answering ({status}); its log {}:\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            let out = self
                .ldapsearch(&self.url)
                .args(["-b", "", "-s", "base", "1.1"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "slapd did not answer on {} within 10 s; last ldapsearch: {}\n\
                     its log {}:\n{}",
                    self.url,
                    String::from_utf8_lossy(&out.stderr),
                    self.log.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ldapsearch -x -LLL -o ldif-wrap=no -H URL -D bind_dn -w bind_password`, trusting the test
    /// CA only; add `-b`, filter, attributes, `-E pr=…` yourself.
    pub fn ldapsearch(&self, url: &str) -> Command {
        let mut cmd = self.ldapsearch_anonymous(url);
        cmd.args(["-D", &self.bind_dn, "-w", &self.bind_password]);
        cmd
    }

    /// As [`Slapd::ldapsearch`] with no bind (anonymous).
    pub fn ldapsearch_anonymous(&self, url: &str) -> Command {
        let mut cmd = Command::new("ldapsearch");
        cmd.env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand")
            .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=5"])
            .args(["-H", url]);
        cmd
    }

    /// Applies an LDIF change (ldapmodify as the rootdn over ldapi) while running.
    pub fn modify(&self, ldif: &str) {
        let mut cmd = Command::new("ldapmodify");
        cmd.args(["-x", "-H", &self.ldapi_url]).args([
            "-D",
            &self.root_dn,
            "-w",
            &self.root_password,
        ]);
        run_with_stdin(cmd, ldif, "ldapmodify");
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on the PID of our own, not yet reaped child.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
