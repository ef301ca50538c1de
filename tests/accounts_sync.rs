//! `forgectl accounts sync` (a YAML source) against a REAL control plane (tests/support/kube.rs:
//! kube-apiserver with RBAC and admission, the controller-manager's CSR signer, namespace and
//! volume controllers): namespaces, quotas, limits, RBAC and network policy per
//! tool; client certificates through the CSR API and kubeconfigs in the homes (0600, the
//! tool's uid/gid, relative paths); a tool's kubeconfig works in its own namespace and nowhere
//! else; a second pass writes nothing; overrides reconciled both ways; renewal; disabled and
//! removed tools; a broken source refused; leftover requests cleaned; homes that point
//! elsewhere refused.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};
use support::accounts_bed::bed;

const TOOLS: usize = 30;

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The certificate of a home's kubeconfig: (CN, O, serial, issuer verified).
fn cert_of(home: &Path, ca_pem: &str) -> (String, String, String, bool) {
    let pem = std::fs::read_to_string(home.join(".kube/client.crt")).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&p.contents).unwrap();
    let (_, cap) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&cap.contents).unwrap();
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let o = c
        .subject()
        .iter_organization()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    (
        cn,
        o,
        c.raw_serial_as_string(),
        c.verify_signature(Some(ca.public_key())).is_ok(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_get_namespaces_rbac_and_kubeconfigs_and_a_second_pass_writes_nothing() {
    let bed = bed();
    bed.tools(TOOLS, &[], &[]);
    let inv = bed.inventory(
        "  overrides:\n    tool03:\n      quota: { limits.memory: 16Gi, count/jobs.batch: \"40\" }\n      limits: { max: { memory: 8Gi } }\n",
    );

    // A crashed pass left a request behind.
    let stale = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "forgectl-accounts-tool-x-1", "labels": {
            "app.kubernetes.io/managed-by": "forgectl-accounts"}},
        "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"],
            "request": base64::engine::general_purpose::STANDARD.encode(
                support::x509::csr_pem("tool-x"))}});
    bed.api.apply(&stale.to_string());

    let (code, s, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "first pass: {err}\n{s:#}");
    assert_eq!(s["created"].as_array().unwrap().len(), TOOLS + 1, "{s:#}");
    assert!(
        names(&s["actions"])
            .iter()
            .any(|a| a.contains("delete 1 leftover certificate request")),
        "{s:#}"
    );
    assert!(
        bed.csrs().is_empty(),
        "no request is left behind (the stale one and every issued one deleted)"
    );
    // The signer's answers came through one watch of the requests, not by reading each one.
    let csr_requests: Vec<_> = bed
        .api
        .requests()
        .into_iter()
        .filter(|r| r.user == bed.admin_user && r.uri.contains("/certificatesigningrequests"))
        .collect();
    assert!(
        csr_requests.iter().any(|r| r.verb == "watch"),
        "{csr_requests:#?}"
    );
    assert!(
        !csr_requests.iter().any(|r| r.verb == "get"),
        "no request read one by one: {csr_requests:#?}"
    );

    // Objects of a tool.
    let ns = bed
        .object("", "namespaces", "", "tool-tool01")
        .expect("namespace tool-tool01");
    let labels = &ns["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");
    assert_eq!(labels["forgectl.io/tenant"], "true");
    assert_eq!(ns["metadata"]["annotations"]["forgectl.io/uid"], "50001");
    assert_eq!(
        ns["metadata"]["annotations"]["forgectl.io/maintainers"],
        "alice,bob"
    );
    let q = bed
        .object("", "resourcequotas", "tool-tool01", "tool-quota")
        .unwrap();
    assert_eq!(q["spec"]["hard"]["limits.memory"], "8Gi");
    assert_eq!(q["spec"]["hard"]["pods"], "16");
    let q3 = bed
        .object("", "resourcequotas", "tool-tool03", "tool-quota")
        .unwrap();
    assert_eq!(q3["spec"]["hard"]["limits.memory"], "16Gi", "override");
    assert_eq!(q3["spec"]["hard"]["count/jobs.batch"], "40");
    let lr3 = bed
        .object("", "limitranges", "tool-tool03", "tool-limits")
        .unwrap();
    assert_eq!(lr3["spec"]["limits"][0]["max"]["memory"], "8Gi");
    assert_eq!(lr3["spec"]["limits"][0]["max"]["cpu"], "1");
    let rb = bed.tool_binding("tool01").unwrap();
    assert_eq!(rb["subjects"][0]["name"], "tool-tool01");
    assert!(
        bed.object(
            "networking.k8s.io",
            "networkpolicies",
            "tool-tool01",
            "tool-isolate"
        )
        .is_some()
    );
    let crb = bed
        .object(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "",
            "forgectl-admin-alice-view",
        )
        .unwrap();
    assert_eq!(crb["roleRef"]["name"], "view");

    // Kubeconfigs in the homes.
    for i in [0usize, 7, TOOLS - 1] {
        let name = format!("tool{i:02}");
        let kdir = bed.home(&name).join(".kube");
        let dmeta = std::fs::symlink_metadata(&kdir).unwrap();
        assert!(dmeta.is_dir());
        assert_eq!(
            (dmeta.uid(), dmeta.gid(), dmeta.mode() & 0o777),
            (50000 + i as u32, 50000 + i as u32, 0o700)
        );
        for f in ["config", "client.crt", "client.key"] {
            let m = std::fs::metadata(kdir.join(f)).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o777),
                (50000 + i as u32, 50000 + i as u32, 0o600),
                "{name} {f}"
            );
        }
        let cfg = std::fs::read_to_string(kdir.join("config")).unwrap();
        assert!(
            cfg.contains("client-certificate: client.crt")
                && cfg.contains("client-key: client.key"),
            "{cfg}"
        );
        assert!(cfg.contains(&format!("namespace: tool-{name}")), "{cfg}");
        let (cn, o, _, signed) = cert_of(&bed.home(&name), &bed.ca.0);
        assert_eq!(
            (cn.as_str(), o.as_str(), signed),
            (format!("tool-{name}").as_str(), "forgectl:tools", true)
        );
        let leftovers: Vec<_> = std::fs::read_dir(&kdir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    assert!(bed.path("homes/alice/.kube/config").exists());

    // The tool's own kubeconfig: its namespace, nothing else.
    let kube = forgectl::kube::Kube::from_kubeconfig(&bed.home("tool01").join(".kube/config"))
        .await
        .unwrap();
    let own = kube.list(("", "v1", "Pod"), Some("tool-tool01")).await;
    assert!(own.is_ok(), "a tool lists pods in its namespace: {own:?}");
    assert!(
        kube.list(("", "v1", "Secret"), Some("tool-tool01"))
            .await
            .is_ok()
    );
    let other = kube
        .list(("", "v1", "Pod"), Some("tool-tool02"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        other.contains("forbidden") && other.contains("User \"tool-tool01\""),
        "{other}"
    );
    let rbac = kube
        .list(
            ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            Some("tool-tool01"),
        )
        .await;
    assert!(rbac.is_err(), "a tool cannot read or change its RBAC");
    assert!(kube.list(("", "v1", "Namespace"), None).await.is_err());

    // Second pass: nothing to do, no write at all.
    let before = bed.writes();
    let (code, s, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s["unchanged"], TOOLS + 1, "{s:#}");
    assert_eq!(s["writes"], 0);
    assert_eq!(bed.writes(), before, "a steady-state pass makes no write");

    // A tool provisioned by an earlier forgectl: its own Role `tool` and the binding to it. The
    // Role goes, the binding is made anew to the shared ClusterRole (a roleRef cannot change).
    let labels =
        json!({"app.kubernetes.io/managed-by": "forgectl-accounts", "forgectl.io/tool": "tool08"});
    let (ok, _, err) = bed
        .api
        .kubectl(&["-n", "tool-tool08", "delete", "rolebinding", "tool"]);
    assert!(ok, "{err}");
    bed.api.apply(
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "tool", "namespace": "tool-tool08", "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
        .to_string(),
    );
    bed.api.apply(
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "tool", "namespace": "tool-tool08", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tool"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "tool-tool08"}]})
        .to_string(),
    );
    let (code, s, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(names(&s["updated"]), vec!["tool08"], "{s:#}");
    assert!(
        bed.object("rbac.authorization.k8s.io", "roles", "tool-tool08", "tool")
            .is_none()
    );
    assert_eq!(
        bed.tool_binding("tool08").unwrap()["roleRef"]["kind"],
        "ClusterRole"
    );
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(s["writes"], 0, "{s:#}");

    // An override changed, then removed: the quota follows both ways.
    let inv = bed.inventory("  overrides:\n    tool03:\n      quota: { limits.memory: 12Gi }\n");
    let (code, s, _) = bed.sync(&inv, &[]);
    assert_eq!(code, 0);
    assert_eq!(names(&s["updated"]), vec!["tool03"], "{s:#}");
    let q3 = bed
        .object("", "resourcequotas", "tool-tool03", "tool-quota")
        .unwrap();
    assert_eq!(q3["spec"]["hard"]["limits.memory"], "12Gi");
    assert_eq!(
        q3["spec"]["hard"]["count/jobs.batch"], "15",
        "the removed key is back to the default"
    );
    assert_eq!(
        bed.object("", "limitranges", "tool-tool03", "tool-limits")
            .unwrap()["spec"]["limits"][0]["max"]["memory"],
        "4Gi"
    );
    let inv = bed.inventory("");
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(names(&s["updated"]), vec!["tool03"]);
    assert_eq!(
        bed.object("", "resourcequotas", "tool-tool03", "tool-quota")
            .unwrap()["spec"]["hard"]["limits.memory"],
        "8Gi"
    );

    // Drift made by hand is put back.
    let mut q = bed
        .object("", "resourcequotas", "tool-tool05", "tool-quota")
        .unwrap();
    q["spec"]["hard"]["pods"] = json!("999");
    bed.api.apply(
        &json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "tool-quota", "namespace": "tool-tool05"},
            "spec": {"hard": {"pods": "999"}}})
        .to_string(),
    );
    assert_eq!(
        bed.object("", "resourcequotas", "tool-tool05", "tool-quota")
            .unwrap()["spec"]["hard"]["pods"],
        "999"
    );
    // A quota entry someone added goes too: a tool's quota is exactly the inventory's.
    bed.api.apply(
        &json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "tool-quota", "namespace": "tool-tool05"},
            "spec": {"hard": {"pods": "999", "requests.storage": "1Ti"}}})
        .to_string(),
    );
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(names(&s["updated"]), vec!["tool05"]);
    assert!(
        names(&s["actions"]).contains(
            &"tool05: remove requests.storage from ResourceQuota tool-tool05/tool-quota (not in the inventory)"
                .to_string()
        ),
        "{s:#}"
    );
    let hard = bed
        .object("", "resourcequotas", "tool-tool05", "tool-quota")
        .unwrap()["spec"]["hard"]
        .clone();
    assert_eq!(hard["pods"], "16");
    assert!(hard.get("requests.storage").is_none(), "{hard}");
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(s["writes"], 0, "{s:#}");

    // The default quota and container defaults fit together: a tool runs all of its 16 pods
    // with the default requests (the ResourceQuota admission of the real API server counts
    // them as they are made, scheduled or not).
    bed.api.apply(
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "many", "namespace": "tool-tool06"},
            "spec": {"replicas": 16, "selector": {"matchLabels": {"app": "many"}},
                "template": {"metadata": {"labels": {"app": "many"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
        .to_string(),
    );
    let t = std::time::Instant::now();
    loop {
        let pods = bed.api.list("pods", "app=many").len();
        if pods == 16 {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{pods} of 16 pods made: {:#}",
            bed.object("", "resourcequotas", "tool-tool06", "tool-quota")
                .unwrap()["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }

    // A kubeconfig edited to something longer is rewritten exactly; a key made world-readable
    // is put back to 0600.
    let cfgp = bed.home("tool06").join(".kube/config");
    let good = std::fs::read_to_string(&cfgp).unwrap();
    std::fs::write(&cfgp, format!("{good}\n# {}\n", "junk ".repeat(200))).unwrap();
    let keyp = bed.home("tool07").join(".kube/client.key");
    std::fs::set_permissions(&keyp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(names(&s["updated"]), vec!["tool06", "tool07"], "{s:#}");
    assert_eq!(std::fs::read_to_string(&cfgp).unwrap(), good);
    assert_eq!(std::fs::metadata(&keyp).unwrap().mode() & 0o777, 0o600);
    assert_eq!(s["writes"], 0, "files only, no API write");

    // Renewal: every certificate is within the threshold → each account gets a new one.
    let (_, _, serial_before, _) = cert_of(&bed.home("tool01"), &bed.ca.0);
    let inv_renew = bed.inventory("  cert_days: 500\n  renew_before_days: 400\n");
    let (code, s, err) = bed.sync(&inv_renew, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s["renewed"].as_array().unwrap().len(), TOOLS + 1, "{s:#}");
    let (_, _, serial_after, signed) = cert_of(&bed.home("tool01"), &bed.ca.0);
    assert!(signed && serial_after != serial_before);
    assert!(bed.csrs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_removed_tools_and_what_is_refused() {
    let bed = bed();
    bed.tools(12, &[], &[]);
    let inv = bed.inventory("");
    let (code, _, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{err}");

    // A running workload and a cron job of tool02, then tool02 is disabled.
    bed.api.apply(&json!({"apiVersion": "apps/v1",
        "kind": "Deployment", "metadata": {"name": "web", "namespace": "tool-tool02"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "x"}]}}}}).to_string());
    bed.api.apply(&json!({"apiVersion": "batch/v1",
        "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "tool-tool02"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Never"}}}}}}).to_string());
    bed.tools(12, &[], &["tool02"]);
    let (code, s, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(names(&s["disabled"]), vec!["tool02"], "{s:#}");
    assert_eq!(
        bed.object("apps", "deployments", "tool-tool02", "web")
            .unwrap()["spec"]["replicas"],
        0
    );
    assert_eq!(
        bed.object("batch", "cronjobs", "tool-tool02", "nightly")
            .unwrap()["spec"]["suspend"],
        true
    );
    assert!(bed.tool_binding("tool02").is_none(), "credentials revoked");
    assert!(
        !bed.home("tool02").join(".kube/config").exists()
            && !bed.home("tool02").join(".kube/client.key").exists()
    );
    assert_eq!(
        bed.object("", "namespaces", "", "tool-tool02").unwrap()["metadata"]["labels"]["forgectl.io/disabled"],
        "true"
    );
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(s["writes"], 0, "a disabled tool stays put: {s:#}");

    // Enabled again: binding and kubeconfig come back (workloads stay at zero for the tool
    // to start).
    bed.tools(12, &[], &[]);
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(names(&s["updated"]), vec!["tool02"], "{s:#}");
    assert!(bed.tool_binding("tool02").is_some());
    assert!(bed.home("tool02").join(".kube/config").exists());
    assert!(
        bed.object("", "namespaces", "", "tool-tool02").unwrap()["metadata"]["labels"]
            .get("forgectl.io/disabled")
            .is_none()
    );

    // tool04 gone from the source: marked, revoked, stopped; deleted only after the grace
    // period, and a dry run says so first.
    bed.tools(12, &["tool04"], &[]);
    let (code, s, _) = bed.sync(&inv, &[]);
    assert_eq!(code, 0);
    let pending = names(&s["pending_removal"]);
    assert!(
        pending.len() == 1 && pending[0].starts_with("tool04 (namespace deleted after "),
        "{s:#}"
    );
    let ns = bed.object("", "namespaces", "", "tool-tool04").unwrap();
    assert!(ns["metadata"]["annotations"]["forgectl.io/removed-at"].is_string());
    assert!(bed.tool_binding("tool04").is_none());
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(
        s["writes"], 0,
        "waiting out the grace period writes nothing"
    );
    let inv0 = bed.inventory("  removal_grace_days: 0\n");
    let before = bed.writes();
    let (code, s, _) = bed.sync(&inv0, &["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(names(&s["removed"]), vec!["tool04"]);
    assert!(
        names(&s["actions"]).contains(&"tool04: would delete namespace tool-tool04".to_string()),
        "{s:#}"
    );
    assert_eq!(bed.writes(), before, "a dry run writes nothing");
    assert!(bed.object("", "namespaces", "", "tool-tool04").is_some());
    let (_, s, _) = bed.sync(&inv0, &[]);
    assert_eq!(names(&s["removed"]), vec!["tool04"]);
    assert!(bed.gone("", "namespaces", "", "tool-tool04"));

    // A tool that comes back before its namespace is deleted loses the mark.
    bed.tools(12, &["tool05"], &[]);
    bed.sync(&inv, &[]);
    bed.tools(12, &["tool04"], &[]);
    bed.sync(&inv, &[]);
    let ns5 = bed.object("", "namespaces", "", "tool-tool05").unwrap();
    assert!(
        ns5["metadata"]["annotations"]
            .get("forgectl.io/removed-at")
            .is_none(),
        "{ns5:#}"
    );
    assert!(bed.tool_binding("tool05").is_some());

    // A source that suddenly lists nothing is refused before anything changes.
    std::fs::write(bed.path("tools.yaml"), "tools: []\nadmins: []\n").unwrap();
    let before = bed.writes();
    let (code, s, _) = bed.sync(&inv, &[]);
    assert_ne!(code, 0);
    let (err, next) = (
        s["error"].as_str().unwrap(),
        s["next_step"].as_str().unwrap(),
    );
    assert!(
        err.contains("refusing to mark them all for removal")
            && next.contains("--allow-mass-removal"),
        "{s:#}"
    );
    assert_eq!(bed.writes(), before);

    // A home whose .kube points elsewhere is refused (forgectl runs as root).
    bed.tools(12, &["tool04"], &[]);
    let target = bed.path("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    let kdir = bed.home("tool08").join(".kube");
    std::fs::remove_dir_all(&kdir).unwrap();
    std::os::unix::fs::symlink(&target, &kdir).unwrap();
    let (code, s, _) = bed.sync(&inv, &[]);
    assert_eq!(code, 1, "{s:#}");
    let problems = names(&s["problems"]).join("\n");
    assert!(
        problems.contains("tool08") && problems.contains("symlink"),
        "{problems}"
    );
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written through the symlink"
    );
    // A missing home: the namespace is made, the kubeconfig is not, and it is said.
    std::fs::remove_dir_all(bed.home("tool09")).unwrap();
    let (code, s, _) = bed.sync(&inv, &[]);
    assert_eq!(code, 1);
    let problems = names(&s["problems"]).join("\n");
    assert!(
        problems.contains("tool09") && problems.contains("does not exist"),
        "{problems}"
    );
    assert!(bed.object("", "namespaces", "", "tool-tool09").is_some());
}

/// Home volumes: a PersistentVolume per tool of its home directory, pre-bound to the claim
/// `tool-home` in its namespace; reconciled like the rest (a second pass writes nothing), and
/// deleted with the namespace when a removed tool's grace period is over (its data stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_get_their_home_as_a_volume_bound_to_their_own_claim() {
    let bed = bed();
    bed.tools(6, &[], &[]);
    let inv = bed.inventory(
        "  removal_grace_days: 0\n  home_volume:\n    kind: nfs\n    server: nfs-1\n    mount_root: HOMES\n    export_root: /srv/tools/home\n    size: 5Gi\n"
            .replace("HOMES", bed.home("").to_str().unwrap().trim_end_matches('/'))
            .as_str(),
    );
    let (code, s, err) = bed.sync(&inv, &[]);
    assert_eq!(code, 0, "{err}{s:#}");
    for i in 0..6 {
        let tool = format!("tool{i:02}");
        let pv = bed
            .object("", "persistentvolumes", "", &format!("tool-{tool}-home"))
            .unwrap_or_else(|| panic!("no volume for {tool}"));
        assert_eq!(pv["spec"]["nfs"]["server"], "nfs-1");
        assert_eq!(pv["spec"]["nfs"]["path"], format!("/srv/tools/home/{tool}"));
        assert_eq!(pv["spec"]["claimRef"]["namespace"], format!("tool-{tool}"));
        assert_eq!(pv["spec"]["capacity"]["storage"], "5Gi");
        let pvc = bed
            .object(
                "",
                "persistentvolumeclaims",
                &format!("tool-{tool}"),
                "tool-home",
            )
            .unwrap();
        assert_eq!(pvc["spec"]["volumeName"], format!("tool-{tool}-home"));
    }
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(s["writes"], 0, "{s:#}");
    // tool00 deletes its claim: the volume is Released with the old claim's uid (as the
    // volume controller leaves it); the next pass frees it and makes the claim again.
    let admin = forgectl::kube::Kube::from_kubeconfig(&bed.admin)
        .await
        .unwrap()
        .client()
        .clone();
    let claims: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(admin, "tool-tool00");
    claims
        .delete("tool-home", &Default::default())
        .await
        .unwrap();
    let t = std::time::Instant::now();
    while bed
        .object("", "persistentvolumes", "", "tool-tool00-home")
        .unwrap()["status"]["phase"]
        != "Released"
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the volume controller never released the volume"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, s, _) = bed.sync(&inv, &[]);
    assert!(
        names(&s["actions"])
            .iter()
            .any(|a| a.contains("free PersistentVolume tool-tool00-home")),
        "{s:#}"
    );
    // The volume controller binds the freed volume to the new claim.
    let claim = bed
        .object("", "persistentvolumeclaims", "tool-tool00", "tool-home")
        .expect("the claim made again");
    let t = std::time::Instant::now();
    loop {
        let pv = bed
            .object("", "persistentvolumes", "", "tool-tool00-home")
            .unwrap();
        if pv["status"]["phase"] == "Bound" {
            assert_eq!(pv["spec"]["claimRef"]["name"], "tool-home");
            assert_eq!(pv["spec"]["claimRef"]["uid"], claim["metadata"]["uid"]);
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the freed volume is not bound again: {pv:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // tool05 leaves: marked, then (grace 0) its namespace and its volume go.
    bed.tools(6, &["tool05"], &[]);
    bed.sync(&inv, &[]);
    let (_, s, _) = bed.sync(&inv, &[]);
    assert_eq!(names(&s["removed"]), vec!["tool05"], "{s:#}");
    assert!(bed.gone("", "namespaces", "", "tool-tool05"));
    assert!(bed.gone("", "persistentvolumes", "", "tool-tool05-home"));
    assert!(
        bed.object("", "persistentvolumes", "", "tool-tool04-home")
            .is_some()
    );
}
