//! The phases that only talk to the API — Calico and nginx-ingress — with `up --only` against a
//! REAL control plane (tests/support/kube.rs), the workloads' pods run by the node stand-in
//! (tests/support/node_standin.rs: their images cannot be had here, so no real kubelet could run
//! them). What the manifests say reaches the server as the inventory says it, the rollouts are
//! waited for, and a second run changes nothing.

mod support;

use assert_cmd::Command;

const CLUSTER: &str = "fgtest-addons";

#[test]
fn calico_and_nginx_ingress_through_the_api() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("state");
    let state = forgectl::state::StateDir::open(&base, CLUSTER).unwrap();
    let api = support::kube::shared();
    let admin = api.admin_kubeconfig("fgtest-addons", &state.path().join("admin.conf"));
    drop(state);
    let ingress: &[(&str, &str)] = &[("node.forgectl.io/ingress", "true")];
    let _nodes = support::node_standin::Nodes::start_labelled(
        &admin,
        &[("fgtest-addons-cp", &[]), ("fgtest-addons-w", ingress)],
        std::net::Ipv4Addr::LOCALHOST.into(),
    );
    let inv = tmp.path().join("cluster.yaml");
    std::fs::write(
        &inv,
        format!(
            "name: {CLUSTER}\nprovider: static\n\
             network:\n  machine_cidr: 192.0.2.0/24\n  pod_cidr: 10.77.192.0/18\n  service_cidr: 10.77.128.0/20\n\
             ingress:\n  enabled: true\n\
             groups:\n  - name: etcd\n    roles: [etcd]\n    hosts: [{{name: fgtest-addons-etcd, address: 192.0.2.10}}]\n\
             \x20 - name: control\n    roles: [control-plane]\n    hosts: [{{name: fgtest-addons-cp, address: 192.0.2.11}}]\n\
             \x20 - name: worker\n    roles: [worker, ingress]\n    hosts: [{{name: fgtest-addons-w, address: 192.0.2.12}}]\n"
        ),
    )
    .unwrap();
    let run = || {
        let out = Command::cargo_bin("forgectl")
            .unwrap()
            .env("NO_COLOR", "1")
            .env_remove("FORGECTL_INVENTORY")
            .arg("--state-dir")
            .arg(&base)
            .args(["up", "--yes", "--only", "cni-calico,ingress", "-f"])
            .arg(&inv)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    let out = run();
    assert!(out.contains("up: done — 2 phase(s), "), "{out}");

    // Calico: its CRDs served, the pool and Felix configuration as the inventory says.
    let crds = api.list("customresourcedefinitions", "");
    assert_eq!(
        crds.len(),
        24,
        "Calico's CRDs (the only ones on this server)"
    );
    let pool = &api.list("ippools.crd.projectcalico.org", "")[0];
    assert_eq!(pool["spec"]["cidr"], "10.77.192.0/18");
    assert_eq!(pool["spec"]["ipipMode"], "Always");
    let calico = api
        .get("daemonsets", Some("kube-system"), "calico-node")
        .unwrap();
    let env = calico["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let var = |k: &str| {
        env.iter()
            .find(|e| e["name"] == k)
            .map(|e| e["value"].clone())
            .unwrap()
    };
    assert_eq!(var("CALICO_IPV4POOL_CIDR"), "10.77.192.0/18");
    assert_eq!(var("FELIX_IPTABLESBACKEND"), "Auto");
    let config = api
        .get("configmaps", Some("kube-system"), "calico-config")
        .unwrap();
    assert_eq!(config["data"]["veth_mtu"], "1480");
    // nginx-ingress: on the ingress nodes only, applied by forgectl, the default class.
    let ds = api
        .get(
            "daemonsets",
            Some("ingress-nginx"),
            "ingress-nginx-controller",
        )
        .unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"]["node.forgectl.io/ingress"],
        "true"
    );
    assert!(
        ds["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["manager"] == "forgectl" && f["operation"] == "Apply"),
        "{ds:#}"
    );
    let class = api.get("ingressclasses", None, "nginx").unwrap();
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    // A second run changes nothing: no object forgectl applied has changed.
    let applied = api.applied_by("forgectl");
    assert!(
        applied.contains_key("DaemonSet kube-system/calico-node")
            && applied.contains_key("IngressClass /nginx"),
        "{applied:?}"
    );
    let out = run();
    assert!(out.contains("up: done — 2 phase(s), 0 change(s)."), "{out}");
    assert_eq!(api.applied_by("forgectl"), applied);
}
