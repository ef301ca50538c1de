//! One test per validation check: each asserts the message, the field and the line.

use forgectl::inventory::{Diagnostic, LoadError, Loaded, Severity, load_str};
use std::path::Path;

/// A valid inventory; line numbers matter to the tests below.
const BASE: &str = "\
name: demo
provider: local
network:
  machine_cidr: 10.77.0.0/24
  pod_cidr: 10.244.0.0/16
  service_cidr: 10.96.0.0/12
groups:
  - name: etcd
    roles: [etcd]
    count: 3
  - name: control
    roles: [control-plane]
    count: 1
  - name: worker
    roles: [worker, ingress]
    count: 2
";

fn load(text: &str) -> Result<Loaded, LoadError> {
    load_str("cluster.yaml", text, Path::new("."))
}

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(l) => l.warnings,
        Err(LoadError::Invalid { diagnostics, .. }) => diagnostics,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The one diagnostic whose message contains `needle`; fails listing all of them otherwise.
fn find(text: &str, needle: &str) -> Diagnostic {
    let all = diagnostics(text);
    let hits: Vec<&Diagnostic> = all.iter().filter(|d| d.message.contains(needle)).collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one finding with {needle:?}, got: {all:#?}"
    );
    hits[0].clone()
}

/// The one finding with `needle` is an error on the first line that contains `line_of`.
fn error_on_line_with(text: &str, needle: &str, line_of: &str) {
    let d = find(text, needle);
    assert_eq!(d.severity, Severity::Error, "{text}\n{d:#?}");
    let expected = text
        .lines()
        .position(|l| l.contains(line_of))
        .map(|i| i + 1);
    assert_eq!(Some(d.pos.line), expected, "{text}\n{d:#?}");
}

fn assert_at(d: &Diagnostic, severity: Severity, line: usize, field: &str) {
    assert_eq!(d.severity, severity, "{d:#?}");
    assert_eq!(d.pos.line, line, "{d:#?}");
    assert_eq!(d.field, field, "{d:#?}");
}

#[test]
fn base_is_valid_and_expands_machines_with_addresses() {
    let l = load(BASE).unwrap();
    let names: Vec<&str> = l.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "etcd-1",
            "etcd-2",
            "etcd-3",
            "control-1",
            "worker-1",
            "worker-2"
        ]
    );
    assert_eq!(l.machines[0].address.unwrap().to_string(), "10.77.0.10");
    assert_eq!(l.machines[5].address.unwrap().to_string(), "10.77.0.15");
    assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
}

#[test]
fn unknown_key_suggests_the_closest_one() {
    let d = find(
        &BASE.replace("provider: local", "provider: local\nprovder: x"),
        "unknown key `provder`",
    );
    assert_at(&d, Severity::Error, 3, "provder");
    assert!(d.hint.unwrap().contains("did you mean `provider`?"));
    let d = find(
        &BASE.replace("    count: 1", "    cuont: 1"),
        "unknown key `cuont`",
    );
    assert_at(&d, Severity::Error, 13, "groups[1].cuont");
    assert_eq!(d.pos.col, 5);
    assert!(d.hint.unwrap().contains("did you mean `count`?"));
}

#[test]
fn missing_required_field_names_it() {
    let d = find(
        &BASE.replace("provider: local\n", ""),
        "missing required field `provider`",
    );
    assert_at(&d, Severity::Error, 1, "provider");
    assert!(
        d.hint
            .unwrap()
            .contains("which infrastructure creates the machines")
    );
    let d = find(
        &BASE.replace("    roles: [control-plane]\n", ""),
        "missing required field `roles` in `groups[1]`",
    );
    assert_at(&d, Severity::Error, 11, "groups[1].roles");
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = BASE
        .replace("provider: local", "provider: locl")
        .replace("    count: 2", "    count: two")
        .replace("pod_cidr: 10.244.0.0/16", "pod_cidr: 10.244.0/16");
    let all = diagnostics(&text);
    let lines: Vec<usize> = all.iter().map(|d| d.pos.line).collect();
    assert_eq!(lines, [2, 5, 16], "{all:#?}");
    assert!(
        all[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("did you mean `local`?")
    );
    assert!(all[1].message.contains("not a network in CIDR notation"));
    assert!(
        all[2]
            .message
            .contains("expected a whole number, found `two`")
    );
}

#[test]
fn duplicate_machine_names() {
    let text = BASE.replace(
        "  - name: worker\n    roles: [worker, ingress]\n    count: 2\n",
        "  - name: worker\n    roles: [worker, ingress]\n    hosts:\n      - name: etcd-2\n      - name: w2\n",
    );
    let d = find(&text, "duplicate machine name `etcd-2`");
    assert_at(&d, Severity::Error, 17, "groups[2].hosts[0].name");
    assert!(d.hint.unwrap().contains("line 10"));
}

#[test]
fn duplicate_addresses() {
    let text = BASE.replace(
        "    count: 2\n",
        "    hosts:\n      - name: w1\n        address: 10.77.0.20\n      - name: w2\n        address: 10.77.0.20\n",
    );
    let d = find(&text, "duplicate address 10.77.0.20");
    assert_at(&d, Severity::Error, 20, "groups[2].hosts[1].address");
    assert!(d.hint.unwrap().contains("line 18"));
}

#[test]
fn bad_cidr_and_host_bits() {
    let d = find(
        &BASE.replace("10.96.0.0/12", "10.96.0.1/12"),
        "has host bits set",
    );
    assert_at(&d, Severity::Error, 6, "network.service_cidr");
    let d = find(
        &BASE.replace("10.96.0.0/12", "banana"),
        "not a network in CIDR notation",
    );
    assert_at(&d, Severity::Error, 6, "network.service_cidr");
}

#[test]
fn overlapping_networks() {
    let d = find(&BASE.replace("10.244.0.0/16", "10.77.0.0/16"), "overlaps");
    assert_at(&d, Severity::Error, 5, "network.pod_cidr");
    assert!(
        d.message.contains("network.machine_cidr 10.77.0.0/24"),
        "{d:#?}"
    );
    let d = find(&BASE.replace("10.96.0.0/12", "10.244.128.0/20"), "overlaps");
    assert_at(&d, Severity::Error, 6, "network.service_cidr");
}

#[test]
fn even_etcd_count_is_an_error() {
    let d = find(
        &BASE.replace("    count: 3", "    count: 4"),
        "4 etcd members",
    );
    assert_at(&d, Severity::Error, 9, "groups[0].roles");
    assert!(d.hint.unwrap().contains("3 or 5"));
    let d = find(
        &BASE.replace("    count: 3", "    count: 2"),
        "2 etcd members",
    );
    assert_at(&d, Severity::Error, 9, "groups[0].roles");
}

#[test]
fn single_etcd_member_is_only_a_warning() {
    let l = load(&BASE.replace("    count: 3", "    count: 1")).unwrap();
    assert_eq!(l.warnings.len(), 1, "{:#?}", l.warnings);
    assert_at(&l.warnings[0], Severity::Warning, 9, "groups[0].roles");
    assert!(l.warnings[0].message.contains("no etcd redundancy"));
}

#[test]
fn no_etcd_at_all_is_an_error() {
    let d = find(
        &BASE.replace("roles: [etcd]", "roles: [worker]"),
        "no machine has the role `etcd`",
    );
    assert_at(&d, Severity::Error, 7, "groups");
}

#[test]
fn zero_control_planes() {
    let d = find(
        &BASE.replace("    count: 1", "    count: 0"),
        "no machine has the role `control-plane`",
    );
    assert_at(&d, Severity::Error, 7, "groups");
}

#[test]
fn unsupported_kubernetes_version() {
    let d = find(
        &format!("{BASE}versions:\n  kubernetes: 1.20.4\n"),
        "Kubernetes 1.20.4 is not supported",
    );
    assert_at(&d, Severity::Error, 18, "versions.kubernetes");
}

#[test]
fn kubelet_newer_than_api_server() {
    let d = find(
        &format!("{BASE}versions:\n  kubernetes: 1.34.2\n  kubelet: 1.35.0\n"),
        "kubelet 1.35.0 is newer than the API server (1.34.2)",
    );
    assert_at(&d, Severity::Error, 19, "versions.kubelet");
}

#[test]
fn malformed_version() {
    let d = find(
        &format!("{BASE}versions:\n  kubernetes: 1.35\n"),
        "not a version",
    );
    assert_at(&d, Severity::Error, 18, "versions.kubernetes");
}

#[test]
fn old_etcd_is_a_warning() {
    let l = load(&format!("{BASE}versions:\n  etcd: 3.4.23\n")).unwrap();
    assert_eq!(l.warnings.len(), 1, "{:#?}", l.warnings);
    assert_at(&l.warnings[0], Severity::Warning, 18, "versions.etcd");
    assert!(l.warnings[0].message.contains("3.5.24"));
}

#[test]
fn role_that_no_machine_has() {
    let d = find(
        &BASE.replace("roles: [worker, ingress]", "roles: [worker]"),
        "ingress is enabled but no machine has the role `ingress`",
    );
    assert_at(&d, Severity::Error, 1, "ingress.enabled");
    let d = find(
        &format!("{BASE}storage:\n  nfs:\n    enabled: true\n"),
        "no machine has the role `nfs`",
    );
    assert_at(&d, Severity::Error, 19, "storage.nfs.enabled");
    let d = find(
        &BASE.replace("    count: 1", "    count: 3"),
        "no machine has the role `lb`",
    );
    assert_at(&d, Severity::Error, 7, "groups");
}

#[test]
fn unreadable_key_file() {
    let d = find(
        &format!("{BASE}ssh:\n  key: /nonexistent/forgectl-test-key\n"),
        "cannot read the SSH key",
    );
    assert_at(&d, Severity::Error, 18, "ssh.key");
    assert!(d.message.contains("/nonexistent/forgectl-test-key"));
}

#[test]
fn provider_block_that_does_not_match() {
    let d = find(
        &format!("{BASE}openstack:\n  network: n\n  image: i\n  flavor: f\n"),
        "`openstack:` settings are given but the provider is `local`",
    );
    assert_at(&d, Severity::Error, 17, "openstack");
    assert!(d.hint.unwrap().contains("provider: openstack"));
    let d = find(
        &BASE.replace("provider: local", "provider: openstack"),
        "the openstack provider needs an `openstack:` block",
    );
    assert_at(&d, Severity::Error, 2, "provider");
}

#[test]
fn static_hosts_need_addresses() {
    let text = BASE
        .replace("provider: local", "provider: static")
        .replace("    count: 1\n", "    hosts:\n      - name: cp1\n");
    let all = diagnostics(&text);
    let d = find(&text, "machine `cp1` has no address");
    assert_at(&d, Severity::Error, 14, "groups[1].hosts[0].name");
    assert!(
        all.iter()
            .any(|d| d.message.contains("machine `etcd-1` has no address"))
    );
}

#[test]
fn local_address_outside_machine_network() {
    let text = BASE.replace(
        "    count: 1\n",
        "    hosts:\n      - name: cp1\n        address: 192.168.5.5\n",
    );
    let d = find(&text, "outside network.machine_cidr");
    assert_at(&d, Severity::Error, 15, "groups[1].hosts[0].address");
}

#[test]
fn wrong_types_are_named() {
    let d = find(&BASE.replace("roles: [etcd]", "roles: etcd"), "wrong type");
    assert_at(&d, Severity::Error, 9, "groups[0].roles");
    assert!(d.message.contains("expected a list"), "{d:#?}");
    let d = find(
        &BASE.replace("    count: 3", "    count: \"3\""),
        "wrong type",
    );
    assert!(d.message.contains("the quoted string `3`"), "{d:#?}");
    assert_eq!(d.hint.as_deref(), Some("remove the quotes"));
    let d = find(
        &BASE.replace("roles: [etcd]", "roles: [etc]"),
        "`etc` is not one of",
    );
    assert_at(&d, Severity::Error, 9, "groups[0].roles[0]");
    assert!(d.hint.unwrap().contains("did you mean `etcd`?"));
}

#[test]
fn duplicate_keys() {
    let d = find(
        &BASE.replace("name: demo\n", "name: demo\nname: other\n"),
        "duplicate key `name`",
    );
    assert_at(&d, Severity::Error, 2, "name");
    assert!(d.hint.unwrap().contains("line 1"));
}

#[test]
fn tabs_in_indentation() {
    let d = find(&BASE.replace("    count: 2", "\tcount: 2"), "tab character");
    assert_eq!(d.pos.line, 16, "{d:#?}");
    assert!(d.hint.unwrap().contains("spaces"));
    // A tab in a block the scanner reads as the line before's continuation: still its own line.
    let text = BASE.replace("    roles: [etcd]", "	roles: [etcd]");
    let d = find(&text, "tab character");
    let line = text.lines().position(|l| l.starts_with('\t')).unwrap() + 1;
    assert_eq!((d.pos.line, d.pos.col), (line, 1), "{d:#?}");
    let text = "name: demo\nprovider: local\n\tgroups: []\n";
    assert_eq!(find(text, "tab character").pos.line, 3);
}

#[test]
fn empty_and_non_yaml_files() {
    let d = find("", "the inventory is empty");
    assert_eq!(d.pos.line, 1);
    let d = find("# only a comment\n", "the inventory is empty");
    assert_eq!(d.pos.line, 1);
    let d = find(
        "hello world, this is not an inventory\n",
        "expected a mapping of settings",
    );
    assert_eq!(d.pos.line, 1);
    let d = find("- a\n- b\n", "found a list");
    assert_eq!(d.pos.line, 1);
    let d = find("key: [unclosed\nother: 1\n", "not valid YAML");
    assert!(d.pos.line >= 1);
    let d = find("a: 1\n---\nb: 2\n", "second YAML document");
    assert_eq!(d.pos.line, 2);
    let d = find("name: x\0\n", "NUL bytes");
    assert_eq!(d.pos.line, 1);
    // NUL bytes at the start of a line (at the end of the file, say) are on that line.
    let d = find("name: x\nprovider: local\n\0\0", "NUL bytes");
    assert_eq!(d.pos.line, 3);
}

#[test]
fn huge_and_explosive_files_are_refused_without_panic() {
    let huge = format!("name: demo\nfiller: \"{}\"\n", "x".repeat(5 * 1024 * 1024));
    find(&huge, "an inventory may be at most 4 MiB");
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    find(&bomb, "expands to more than");
}

#[test]
fn group_with_count_and_hosts() {
    let text = BASE.replace(
        "    count: 1\n",
        "    count: 1\n    hosts:\n      - name: cp1\n",
    );
    let d = find(&text, "has both `count` and `hosts`");
    assert_at(&d, Severity::Error, 13, "groups[1].count");
}

#[test]
fn invalid_names() {
    let d = find(
        &BASE.replace("name: demo", "name: Demo_Cluster"),
        "cluster name `Demo_Cluster`",
    );
    assert_at(&d, Severity::Error, 1, "name");
}

#[test]
fn local_bridge_name_must_fit_the_kernel_limit() {
    let d = find(
        &format!("{BASE}local:\n  bridge: a-very-long-bridge-name\n"),
        "not a usable bridge name",
    );
    assert_at(&d, Severity::Error, 18, "local.bridge");
}

/// Mangled versions of every example inventory never panic and always load or explain why.
#[test]
fn mangled_inventories_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventories");
    let mut texts = vec![BASE.to_string()];
    for name in ["local", "static", "openstack", "vagrant", "toolforge-like"] {
        texts.push(std::fs::read_to_string(root.join(name).join("cluster.yaml")).unwrap());
    }
    let mut variants = Vec::new();
    for text in &texts {
        let lines: Vec<&str> = text.lines().collect();
        for i in 0..lines.len() {
            let mut without = lines.clone();
            without.remove(i);
            variants.push(without.join("\n"));
            let mut tabbed = lines.clone();
            let t = format!("\t{}", lines[i]);
            tabbed[i] = &t;
            variants.push(tabbed.join("\n"));
            let mut doubled = lines.clone();
            doubled.insert(i, lines[i]);
            variants.push(doubled.join("\n"));
            if i + 1 < lines.len() {
                let mut swapped = lines.clone();
                swapped.swap(i, i + 1);
                variants.push(swapped.join("\n"));
            }
        }
        for (cut, _) in text.char_indices().step_by(7) {
            variants.push(text[..cut].to_string());
        }
        for junk in [
            ": : :",
            "- - -",
            "{",
            "[",
            "&a *a",
            "!!binary x",
            "? complex\n: key",
            "\"unterminated",
        ] {
            variants.push(format!("{text}\n{junk}\n"));
        }
    }
    for v in &variants {
        let result = std::panic::catch_unwind(|| load(v));
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(LoadError::Invalid { diagnostics, .. })) => {
                assert!(
                    diagnostics.iter().any(|d| d.is_error()),
                    "invalid without an error: {v}"
                );
                for d in &diagnostics {
                    assert!(
                        d.pos.line >= 1 && d.pos.line <= v.lines().count().max(1) + 1,
                        "{d:?} in\n{v}"
                    );
                }
            }
            Ok(Err(e)) => panic!("unexpected error kind {e} for\n{v}"),
            Err(_) => panic!("panicked on:\n{v}"),
        }
    }
    assert!(variants.len() > 1000, "{}", variants.len());
}

#[test]
fn api_vip_needs_lb_machines_the_machine_network_and_a_provider_that_can_hold_it() {
    let text = BASE.replace("groups:\n", "api:\n  vip: 10.78.0.4\ngroups:\n");
    let d = find(&text, "no machine has the role `lb` to hold it");
    assert_at(&d, Severity::Error, 8, "api.vip");
    let d = find(&text, "is outside network.machine_cidr 10.77.0.0/24");
    assert_at(&d, Severity::Error, 8, "api.vip");
    let d = find(&text, "local machines cannot hold a virtual IP");
    assert_at(&d, Severity::Error, 8, "api.vip");
    let both = BASE.replace(
        "groups:\n",
        "api:\n  vip: 10.77.0.4\n  endpoint: lb.example.org\ngroups:\n",
    );
    find(&both, "api.vip and api.endpoint are both set");
}

#[test]
fn accounts_settings_are_checked() {
    let text = BASE.replace(
        "groups:\n",
        "accounts:\n  source: ldap\n  renew_before_days: 400\n  concurrency: 0\n  overrides:\n    Bad_Name: {}\ngroups:\n",
    );
    let d = find(
        &text,
        "accounts.source is ldap but there is no accounts.ldap section",
    );
    assert_eq!(d.field, "accounts.source");
    let d = find(&text, "every pass would renew every certificate");
    assert_eq!(d.field, "accounts.renew_before_days");
    find(&text, "concurrency 0 is out of range");
    find(&text, "\"Bad_Name\" is not a tool name");
    let url = BASE.replace(
        "groups:\n",
        "accounts:\n  source: ldap\n  ldap:\n    url: https://ldap.example.org\n    bind_dn: cn=x\n    tools_base: ou=a\n    groups_base: ou=b\ngroups:\n",
    );
    find(&url, "is not an ldaps:// or ldap:// URL");
    // The platform phase would refuse it later: the controller needs its password in a file.
    let d = find(
        &url,
        "needs the LDAP bind password in a file, and accounts.ldap.bind_password_file is not set",
    );
    assert_eq!(d.field, "accounts.ldap");
    assert!(
        load(
            &url.replace(
                "    groups_base: ou=b\n",
                "    groups_base: ou=b\nplatform:\n  accounts_controller: false\n"
            )
            .replace("url: https://", "url: ldaps://")
        )
        .is_ok()
    );
    let home = BASE.replace(
        "groups:\n",
        "accounts:\n  home_volume:\n    kind: nfs\n    mount_root: /data/project\ngroups:\n",
    );
    let d = find(&home, "home_volume.kind is nfs but no server is given");
    assert_eq!(d.field, "accounts.home_volume.server");
    find(&home, "mount_root and export_root go together");
}

#[test]
fn platform_settings_are_checked() {
    let text = BASE.replace(
        "groups:\n",
        "platform:\n  allowed_registries: [registry.example.org/toolforge]\n  images:\n    python: registry.example.org/toolforgeevil/py:1\n    bad type: registry.example.org/toolforge/x:1\n  webhook:\n    port: 9105\n    timeout_seconds: 60\ngroups:\n",
    );
    let d = find(
        &text,
        "registry.example.org/toolforgeevil/py:1 is not from an allowed registry (registry.example.org/toolforge)",
    );
    assert_eq!(d.field, "platform.images.python");
    find(&text, "\"bad type\" is not an image type name");
    let d = find(&text, "timeout_seconds 60 is out of range");
    assert_eq!(d.field, "platform.webhook.timeout_seconds");
    find(
        &text,
        "webhook.port and metrics_port are both 9105 on the control planes",
    );
    // The dashboard: a DNS label under the tool domain, on a port of its own.
    let dash = BASE.replace(
        "groups:\n",
        "platform:\n  dashboard:\n    port: 9105\n    name: Status.Page\ngroups:\n",
    );
    find(
        &dash,
        "metrics_port and dashboard.port are both 9105 on the control planes",
    );
    error_on_line_with(
        &dash,
        "\"Status.Page\" is not a DNS label",
        "name: Status.Page",
    );
    let d = find(&dash, "\"Status.Page\" is not a DNS label");
    assert_eq!(d.field, "platform.dashboard.name");
    // Switched off, the platform is not checked.
    let off = text.replace("platform:\n", "platform:\n  enabled: false\n");
    let d = diagnostics(&off);
    assert!(d.iter().all(|d| !d.field.starts_with("platform.")), "{d:?}");
}

#[test]
fn a_quota_the_container_defaults_cannot_fill_is_a_warning() {
    // The defaults fit: 16 pods at 125m / 256Mi requests and 500m / 512Mi limits.
    assert!(diagnostics(BASE).is_empty());
    // A site that raises the default request without the quota: only 13 of 16 pods fit.
    let text = format!(
        "{BASE}accounts:\n  limits:\n    default_request: {{cpu: 150m}}\n  overrides:\n    big:\n      quota: {{pods: \"40\"}}\n"
    );
    let d = find(
        &text,
        "every tool can run only 13 of its `pods: 16` with the default_request of 150m cpu",
    );
    assert_at(
        &d,
        Severity::Warning,
        19,
        "accounts.limits.default_request.cpu",
    );
    assert!(
        d.message.contains("`requests.cpu: 2` runs out first"),
        "{d:#?}"
    );
    assert!(
        d.hint
            .as_deref()
            .unwrap_or_default()
            .contains("raise `requests.cpu` to 2400m")
    );
    // A tool whose override raises its pods without the rest.
    let d = find(&text, "tool big can run only 13 of its `pods: 40`");
    assert_at(&d, Severity::Warning, 21, "accounts.overrides.big");
}

#[test]
fn limits_come_before_any_machine_is_made() {
    // A billion machines would be built (and the allocation abort) before this check.
    let text = BASE.replacen("count: 2", "count: 1000000000", 1);
    let d = find(&text, "out of range (0..=1000)");
    assert_eq!(d.field, "groups[2].count", "{d:#?}");
    // Many groups of the most each may have: refused before expansion, at `groups`.
    let mut many = String::from("name: big\nprovider: local\ngroups:\n");
    for i in 0..6 {
        many.push_str(&format!(
            "  - name: g{i}\n    roles: [worker]\n    count: 1000\n"
        ));
    }
    let d = find(&many, "more than forgectl manages in one inventory (5000)");
    assert_eq!(d.pos.line, 3, "{d:#?}");
}

#[test]
fn ports_ids_names_and_families_are_checked() {
    let add = |edit: &str| format!("{BASE}{edit}");
    for (text, needle, line_of) in [
        (
            add("ssh:\n  port: 0\n"),
            "0 is out of range (1..=65535)",
            "port: 0",
        ),
        (
            add("api:\n  port: 0\n"),
            "0 is out of range (1..=65535)",
            "port: 0",
        ),
        (
            add("api:\n  vrrp_router_id: 0\n"),
            "0 is out of range (1..=255)",
            "vrrp_router_id",
        ),
        (
            add("etcd:\n  client_port: 2380\n"),
            "etcd.client_port 2380 is etcd.peer_port too",
            "client_port",
        ),
        (
            add("ssh:\n  user: \"\"\n"),
            "ssh.user \"\" is not a login name",
            "user:",
        ),
        (
            add("api:\n  endpoint: https://api.example.org:6443\n"),
            "is not a host name or address",
            "endpoint",
        ),
        (
            BASE.replace(
                "  service_cidr: 10.96.0.0/12\n",
                "  service_cidr: 10.96.0.0/12\n  dns_domain: cluster.local.\n",
            ),
            "network.dns_domain \"cluster.local.\" is not a DNS name",
            "dns_domain",
        ),
        (
            BASE.replace("pod_cidr: 10.244.0.0/16", "pod_cidr: 10.244.0.0/24")
                + "calico:\n  block_size: 22\n",
            "calico.block_size 22 does not fit network.pod_cidr 10.244.0.0/24",
            "block_size",
        ),
        (
            BASE.replace("service_cidr: 10.96.0.0/12", "service_cidr: fd00:77::/108"),
            "is IPv6 but network.pod_cidr",
            "service_cidr",
        ),
    ] {
        error_on_line_with(&text, needle, line_of);
    }
}

#[test]
fn node_labels_follow_kubernetes_rules() {
    let with = |labels: &str| {
        BASE.replacen(
            "    roles: [worker, ingress]\n",
            &format!("    roles: [worker, ingress]\n    labels:\n{labels}"),
            1,
        )
    };
    assert!(
        load(&with(
            "      toolforge.org/role: ingress\n      tier: web\n"
        ))
        .is_ok()
    );
    for (labels, needle) in [
        (
            "      \"bad key!\": x\n",
            "node label key \"bad key!\" is not a Kubernetes label key",
        ),
        (
            "      Example.org/x: y\n",
            "its prefix \"Example.org\" is not a DNS subdomain",
        ),
        (
            "      tier: \"-web\"\n",
            "must start and end with a letter or digit",
        ),
        ("      tier: \"a,b=c\"\n", "only letters, digits"),
        (
            "      node-role.kubernetes.io/worker: \"\"\n",
            "kubelet may not set kubernetes.io / k8s.io labels",
        ),
        (
            "      node.forgectl.io/ingress: \"false\"\n",
            "forgectl sets node.forgectl.io labels itself",
        ),
    ] {
        let text = with(labels);
        let d = find(&text, needle);
        assert_eq!(d.severity, Severity::Error, "{d:#?}");
        let line = text.lines().position(|l| l == labels.trim_end()).unwrap() + 1;
        assert_eq!(d.pos.line, line, "{labels}: {d:#?}");
    }
}

/// Values that land in other grammars (exports(5), nfs(5), DNS) or that the cloud or a later
/// phase would refuse: each refused by `validate`, at its line.
#[test]
fn values_for_other_grammars_are_refused_at_their_line() {
    let nfs = |block: &str| {
        BASE.replacen(
            "    roles: [worker, ingress]\n",
            "    roles: [worker, ingress, nfs]\n",
            1,
        ) + "storage:\n  nfs:\n    enabled: true\n"
            + block
    };
    let cases: Vec<(String, &str, &str)> = vec![
        // The case: one string closed the parenthesis and opened an export to everyone.
        (
            nfs("    export_options: \"rw,sync,no_subtree_check) *(rw,no_root_squash\"\n"),
            "`no_subtree_check) *(rw` is not an exports(5) option",
            "export_options",
        ),
        (
            nfs("    exports:\n      - {name: home, path: srv/home, mount: /data/home}\n"),
            "`srv/home` is not an absolute path of plain characters: it is not absolute",
            "path: srv/home",
        ),
        (
            nfs("    exports:\n      - {name: home, path: /srv/home, mount: /data/../etc}\n"),
            "`/data/../etc` is not an absolute path of plain characters: it has `.` or `..` components",
            "mount: /data/../etc",
        ),
        (
            nfs("    mount_options: \"hard,x-systemd.requires=a b\"\n"),
            "is not a mount option",
            "mount_options",
        ),
        (
            format!("{BASE}local:\n  suite: \"bookworm --foreign\"\n"),
            "local.suite \"bookworm --foreign\" is not a suite debootstrap knows",
            "suite",
        ),
        (
            format!("{BASE}ingress:\n  tool_domain: https://toolforge.org\n"),
            "ingress.tool_domain \"https://toolforge.org\" is not a DNS domain",
            "tool_domain",
        ),
        (
            format!("{BASE}ingress:\n  tool_domain: \"*.toolforge.org\"\n"),
            "is not a DNS domain",
            "tool_domain",
        ),
        (
            format!("{BASE}ingress:\n  tls_front:\n    enabled: true\n"),
            "ingress.tls_front is enabled but no machine has the role `lb`",
            "enabled: true",
        ),
        (
            format!(
                "{BASE}ingress:\n  tls_front:\n    enabled: true\n    cert_file: no-such.pem\n    key_file: no-such.key\n"
            )
            .replacen("roles: [control-plane]", "roles: [control-plane, lb]", 1),
            "cannot read the TLS front certificate ./no-such.pem",
            "cert_file",
        ),
    ];
    for (text, needle, line_of) in cases {
        error_on_line_with(&text, needle, line_of);
    }
    // no_root_squash alone is allowed, with a warning.
    let d = find(
        &nfs("    export_options: rw,sync,no_root_squash\n"),
        "no_root_squash: root in any tool's pod is root",
    );
    assert_eq!(d.severity, Severity::Warning);
}

#[test]
fn openstack_settings_the_cloud_would_refuse() {
    let os = "\
name: demo
provider: openstack
openstack:
  network: net
  image: debian-12
  flavor: m1.small
  interface: pubic
groups:
  - name: etcd
    roles: [etcd]
    count: 3
  - name: control
    roles: [control-plane]
    count: 1
  - name: bastion
    roles: [bastion]
    count: 1
    openstack:
      floating_ip: true
";
    let d = find(
        os,
        "openstack.interface \"pubic\" is not an endpoint interface",
    );
    assert_eq!(d.pos.line, 7, "{d:#?}");
    let d = find(
        os,
        "group `bastion` asks for floating IPs but openstack.floating_network is not set",
    );
    assert_eq!(d.pos.line, 19, "{d:#?}");
}

/// Map keys and list shapes the schema walk of tests/inventory_breakout.rs does not reach.
#[test]
fn keys_and_lists_that_land_in_files_are_checked() {
    for (edit, needle) in [
        (
            "runtime:\n  registry_mirrors:\n    \"../../etc\": [\"https://m.example.org\"]\n",
            "\"../../etc\" is not a registry host",
        ),
        (
            "runtime:\n  registry_mirrors:\n    docker.io: [\"https://m.example.org\\\"\\n[host.x]\"]\n",
            "is not a plain http(s) URL",
        ),
        (
            "kubeadm:\n  admission_plugins: []\n",
            "kubeadm.admission_plugins is empty",
        ),
        (
            "kubeadm:\n  admission_plugins: [\"true\"]\n",
            "kubeadm.admission_plugins: \"true\" is not a name kubeadm takes",
        ),
        (
            "accounts:\n  quota:\n    \"requests.cpu\": \"2 cores\"\n",
            "accounts.quota.requests.cpu \"2 cores\" is not a quantity",
        ),
        (
            "accounts:\n  namespace_prefix: toolforge-tool-\n",
            "is longer than 11 characters",
        ),
        (
            "api:\n  endpoint: \"fd00::10\"\n",
            "api.endpoint \"fd00::10\" is not a host name or address",
        ),
    ] {
        let d = find(&format!("{BASE}{edit}"), needle);
        assert_eq!(d.severity, Severity::Error, "{edit}: {d:#?}");
    }
}

#[test]
fn kubectl_within_one_minor_and_upgrade_settings_at_least_one() {
    let text = format!("{BASE}versions:\n  kubernetes: 1.36.2\n  kubectl: 1.34.0\n");
    let d = find(&text, "kubectl 1.34.0 is more than one minor version away");
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.field, "versions.kubectl");
    assert!(
        d.hint
            .as_deref()
            .unwrap_or_default()
            .contains("1.35, 1.36 or 1.37"),
        "{d:#?}"
    );
    assert!(
        load(&format!(
            "{BASE}versions:\n  kubernetes: 1.35.3\n  kubectl: 1.36.2\n"
        ))
        .is_ok()
    );
    let text = format!("{BASE}upgrade:\n  max_unavailable: 0\n  drain_timeout: 0\n");
    error_on_line_with(
        &text,
        "upgrade.max_unavailable must be at least 1",
        "max_unavailable",
    );
    error_on_line_with(
        &text,
        "upgrade.drain_timeout must be at least 1",
        "drain_timeout",
    );
}
