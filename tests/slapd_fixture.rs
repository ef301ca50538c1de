//! The real-slapd fixture (tests/support/slapd.rs) checked with Debian's `ldapsearch`: ldaps with
//! the test CA and the service account, nothing for anonymous, the server's size limit, paged
//! results past it, and a change made while running.

mod support;

use std::process::Output;
use std::time::Instant;
use support::slapd::{LdapDirectory, SIZE_LIMIT, Slapd, toolforge_ldif};

const BASE: &str = "dc=toolforge,dc=test";
const TOOLS: usize = 3000;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn count(out: &Output, prefix: &str) -> usize {
    text(out).lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn slapd_fixture_serves_the_toolforge_directory() {
    support::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let home_root = std::path::Path::new("/srv/tools/home");
    let expected = LdapDirectory::toolforge(BASE, TOOLS, home_root);

    let t0 = Instant::now();
    let ldif = toolforge_ldif(BASE, TOOLS, home_root);
    let slapd = Slapd::start(tmp.path(), &ldif);
    let started = t0.elapsed();
    println!(
        "slapd with {TOOLS} tools ({} bytes of LDIF) started in {started:?}",
        ldif.len()
    );
    assert_eq!(slapd.base, BASE);
    assert!(slapd.url.starts_with("ldaps://127.0.0.1:"), "{}", slapd.url);
    let accounts = expected.tool_accounts_dn();

    // ldaps with the CA and the service account.
    let one = slapd
        .ldapsearch(&slapd.url)
        .args(["-b", &expected.tool_account_dn("tool0001"), "-s", "base"])
        .output()
        .unwrap();
    assert!(one.status.success(), "{one:?}");
    let t = &expected.tools[0];
    for line in [
        "uid: tools.tool0001".to_string(),
        format!("uidNumber: {}", t.id),
        format!("gidNumber: {}", t.id),
        "homeDirectory: /srv/tools/home/tool0001".to_string(),
        "loginShell: /bin/bash".to_string(),
    ] {
        assert!(
            text(&one).contains(&line),
            "{line} missing:\n{}",
            text(&one)
        );
    }

    // Both group styles, and the admin group.
    let groups = slapd
        .ldapsearch(&slapd.url)
        .args(["-b", &expected.servicegroups_dn(), "-s", "one"])
        .args(["(|(cn=tools.tool0001)(cn=tools.tool0003)(cn=tools.admin))"])
        .args(["member", "memberUid", "gidNumber"])
        .output()
        .unwrap();
    assert!(groups.status.success(), "{groups:?}");
    let g = text(&groups);
    for m in &expected.tools[0].maintainers {
        assert!(
            g.contains(&format!("member: {}", expected.user_dn(m))),
            "{g}"
        );
    }
    assert!(expected.tools[2].posix_group);
    for m in &expected.tools[2].maintainers {
        assert!(g.contains(&format!("memberUid: {m}")), "{g}");
    }
    assert!(g.contains("gidNumber: 50003"), "{g}");
    assert!(
        g.contains(&format!("member: {}", expected.user_dn("admin2"))),
        "{g}"
    );

    // A disabled tool, the Toolforge way (ppolicy loaded: pwdAccountLockedTime is operational).
    let disabled = slapd
        .ldapsearch(&slapd.url)
        .args(["-b", &expected.tool_account_dn("tool0050"), "-s", "base"])
        .args(["loginShell", "pwdAccountLockedTime"])
        .output()
        .unwrap();
    assert!(
        text(&disabled).contains("loginShell: /bin/disabledtoolshell"),
        "{disabled:?}"
    );
    assert!(
        text(&disabled).contains("pwdAccountLockedTime: 000001010000Z"),
        "{disabled:?}"
    );

    // A wrong CA is refused.
    let wrong_ca = tmp.path().join("wrong-ca.pem");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&wrong_ca, other.cert.pem()).unwrap();
    let refused = slapd
        .ldapsearch(&slapd.url)
        .env("LDAPTLS_CACERT", &wrong_ca)
        .args(["-b", "", "-s", "base", "1.1"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a wrong CA was accepted");

    // Anonymous: no entries (over ldaps and ldap).
    for url in [&slapd.url, &slapd.plain_url] {
        let anon = slapd
            .ldapsearch_anonymous(url)
            .args(["-b", BASE, "(objectClass=*)", "dn"])
            .output()
            .unwrap();
        assert_eq!(count(&anon, "dn:"), 0, "anonymous saw entries: {anon:?}");
    }

    // A plain search of all tools hits the size limit: 500 entries and result 4.
    let plain = slapd
        .ldapsearch(&slapd.plain_url)
        .args([
            "-b",
            &accounts,
            "-s",
            "one",
            "(objectClass=posixAccount)",
            "uid",
        ])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(4), "{}", text(&plain));
    assert_eq!(count(&plain, "dn:"), SIZE_LIMIT);
    assert!(String::from_utf8_lossy(&plain.stderr).contains("Size limit exceeded"));

    // A paged search returns them all.
    let t1 = Instant::now();
    let paged = slapd
        .ldapsearch(&slapd.url)
        .args(["-E", "pr=200/noprompt"])
        .args([
            "-b",
            &accounts,
            "-s",
            "one",
            "(objectClass=posixAccount)",
            "uid",
        ])
        .output()
        .unwrap();
    println!("paged search of {TOOLS} tools: {:?}", t1.elapsed());
    assert!(
        paged.status.success(),
        "{}",
        String::from_utf8_lossy(&paged.stderr)
    );
    assert_eq!(count(&paged, "dn:"), TOOLS);
    assert_eq!(count(&paged, "uid: tools.tool"), TOOLS);

    // A change while running: disable tool0001.
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: loginShell\nloginShell: /bin/disabledtoolshell\n\
         -\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n",
        expected.tool_account_dn("tool0001")
    ));
    let after = slapd
        .ldapsearch(&slapd.url)
        .args([
            "-b",
            &accounts,
            "-s",
            "one",
            "(loginShell=/bin/disabledtoolshell)",
            "uid",
        ])
        .args(["-E", "pr=500/noprompt"])
        .output()
        .unwrap();
    assert!(after.status.success(), "{after:?}");
    let disabled_count = expected.tools.iter().filter(|t| t.disabled).count();
    assert_eq!(count(&after, "dn:"), disabled_count + 1);
    assert!(text(&after).contains("uid: tools.tool0001"));

    let pid = slapd.pid;
    drop(slapd);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "slapd {pid} still there after drop"
    );
}
