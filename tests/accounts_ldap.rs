//! The LDAP source against a real slapd (Debian's, started by tests/support/slapd.rs) holding a
//! Toolforge-shaped directory of 3,000 tools: ldaps and StartTLS with the site's CA, a bound
//! service DN, paged searches past the server's 500-entry size limit, maintainers from
//! groupOfNames and posixGroup groups, the disabled marker, admins from the admin group; wrong
//! password and unknown CA refused with the reason; then `forgectl accounts sync` from LDAP
//! against a REAL control plane (tests/support/kube.rs), and a tool disabled in LDAP while it runs.

mod support;

use std::time::Instant;

use forgectl::accounts::{LdapSource, Source};
use forgectl::inventory::accounts::Ldap;
use support::slapd::{DISABLED_EVERY, LdapDirectory, Slapd};

const BASE: &str = "dc=toolforge,dc=test";

fn settings(slapd: &Slapd, dirs: &LdapDirectory, url: &str) -> Ldap {
    Ldap {
        url: url.into(),
        ca_file: Some(slapd.ca_file.clone()),
        bind_dn: slapd.bind_dn.clone(),
        bind_password_file: None,
        tools_base: dirs.tool_accounts_dn(),
        groups_base: dirs.servicegroups_dn(),
        users_base: Some(dirs.people_dn()),
        tool_prefix: "tools.".into(),
        admin_group: Some(format!("cn=tools.admin,{}", dirs.servicegroups_dn())),
        disabled_attribute: "loginShell".into(),
        disabled_value: Some("/bin/disabledtoolshell".into()),
        page_size: 500,
        timeout_seconds: 10,
    }
}

fn source(slapd: &Slapd, s: &Ldap, password: &str) -> LdapSource {
    let pw = slapd.dir.join(format!("pw-{}", password.len()));
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let s = Ldap {
        bind_password_file: Some(pw),
        ..s.clone()
    };
    LdapSource::new(&s, &slapd.dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_tools_read_paged_over_tls() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = LdapDirectory::toolforge(BASE, 3000, &tmp.path().join("homes"));
    let slapd = Slapd::start(&tmp.path().join("slapd"), &dirs.ldif());

    for url in [&slapd.url, &slapd.plain_url] {
        let s = settings(&slapd, &dirs, url);
        let start = Instant::now();
        let got = source(&slapd, &s, &slapd.bind_password)
            .load()
            .await
            .unwrap();
        println!("{url}: {} tools in {:?}", got.tools.len(), start.elapsed());
        assert_eq!(
            got.tools.len(),
            3000,
            "paged past the 500-entry limit ({url})"
        );
        for want in &dirs.tools {
            let t = got.tools.iter().find(|t| t.name == want.name).unwrap();
            assert_eq!((t.uid, t.gid), (want.id, want.id), "{}", want.name);
            assert_eq!(t.home, want.home);
            assert_eq!(t.disabled, want.disabled, "{}", want.name);
            let mut m = want.maintainers.clone();
            m.sort();
            m.dedup();
            assert_eq!(
                t.maintainers, m,
                "{} (posixGroup: {})",
                want.name, want.posix_group
            );
        }
        assert_eq!(
            got.tools.iter().filter(|t| t.disabled).count(),
            3000 / DISABLED_EVERY
        );
        let admins: Vec<&str> = got.admins.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(admins, vec!["admin1", "admin2"]);
        assert_eq!(got.admins[0].home, std::path::Path::new("/home/admin1"));
    }

    // A wrong password and an unknown CA are refused, saying why.
    let s = settings(&slapd, &dirs, &slapd.url);
    let e = source(&slapd, &s, "not-the-password")
        .load()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bind as cn=forgectl") && e.contains("invalidCredentials")
            || e.contains("rc=49"),
        "{e}"
    );
    let other_ca = tmp.path().join("other-ca.pem");
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    std::fs::write(
        &other_ca,
        ca.self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem(),
    )
    .unwrap();
    let s = Ldap {
        ca_file: Some(other_ca),
        ..settings(&slapd, &dirs, &slapd.url)
    };
    let e = source(&slapd, &s, &slapd.bind_password)
        .load()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot connect") && e.to_lowercase().contains("certificate"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sync_from_ldap() {
    let bed = support::accounts_bed::bed();
    let homes = bed.path("homes");
    let dirs = LdapDirectory::toolforge(BASE, 120, &homes);
    for t in &dirs.tools {
        std::fs::create_dir_all(&t.home).unwrap();
    }
    let slapd = Slapd::start(&bed.path("slapd"), &dirs.ldif());
    std::fs::write(bed.path("ldap-password"), &slapd.bind_password).unwrap();
    let base_inv = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories/local/cluster.yaml"),
    )
    .unwrap();
    let inv = bed.path("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "{base_inv}\naccounts:\n  source: ldap\n  ldap:\n    url: {}\n    ca_file: {}\n    bind_dn: {}\n    bind_password_file: ldap-password\n    tools_base: {}\n    groups_base: {}\n",
            slapd.url,
            slapd.ca_file.display(),
            slapd.bind_dn,
            dirs.tool_accounts_dn(),
            dirs.servicegroups_dn()
        ),
    )
    .unwrap();
    let (code, s, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{err}\n{s:#}");
    assert_eq!(s["created"].as_array().unwrap().len(), 120, "{s:#}");
    let ns = bed.object("", "namespaces", "", "tool-tool0050").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["forgectl.io/disabled"], "true",
        "disabled in LDAP"
    );
    assert!(!bed.home("tool0050").join(".kube/config").exists());
    assert!(bed.home("tool0051").join(".kube/config").exists());
    let ns3 = bed.object("", "namespaces", "", "tool-tool0003").unwrap();
    let want: Vec<String> = {
        let mut m = dirs.tools[2].maintainers.clone();
        m.sort();
        m.dedup();
        m
    };
    assert_eq!(
        ns3["metadata"]["annotations"]["forgectl.io/maintainers"],
        want.join(",")
    );

    // Disabled in LDAP while running: the next pass disables it, and only it.
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: loginShell\nloginShell: /bin/disabledtoolshell\n",
        dirs.tool_account_dn("tool0007")
    ));
    let (code, s, _) = bed.sync(&inv, &[]);
    assert_eq!(code, 0);
    assert_eq!(s["disabled"], serde_json::json!(["tool0007"]), "{s:#}");
    assert_eq!(s["unchanged"], 119);
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(s["writes"], 0);
}
