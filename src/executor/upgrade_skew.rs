//! Kubernetes' version skew policy, as the rolling upgrade's preflight applies it: the control
//! plane moves one minor version at a time and never backwards, kubelets never run newer than
//! the API server nor more than three minor versions older, nothing is downgraded.

use semver::Version;

/// A version from an API answer (`v1.36.2`), or None when it is not one.
pub fn parse(v: &str) -> Option<Version> {
    Version::parse(v.trim().trim_start_matches('v')).ok()
}

/// What the skew policy forbids in going from what runs (`apiservers`, `kubelets`: node and
/// version) to `kubernetes` (the control plane) and `kubelet`; empty when the upgrade may go.
pub fn problems(
    kubernetes: &Version,
    kubelet: &Version,
    apiservers: &[(String, Version)],
    kubelets: &[(String, Version)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (node, v) in apiservers {
        if v > kubernetes {
            out.push(format!(
                "the API server on {node} runs v{v}, newer than v{kubernetes}: forgectl does not downgrade (restore the pre-upgrade etcd snapshot instead, see the upgrade runbook)"
            ));
        }
    }
    if let Some(oldest) = apiservers.iter().map(|(_, v)| v).min()
        && (kubernetes.major != oldest.major || kubernetes.minor > oldest.minor + 1)
    {
        let holder = apiservers
            .iter()
            .find(|(_, v)| v == oldest)
            .map(|(n, _)| n.as_str())
            .unwrap_or_default();
        out.push(format!(
            "the API server on {holder} runs v{oldest}: the control plane moves one minor version at a time, so set versions.kubernetes to a 1.{}.x release first, upgrade, then go on to v{kubernetes}",
            oldest.minor + 1
        ));
    }
    for (node, v) in kubelets {
        if v > kubelet {
            out.push(format!(
                "the kubelet on {node} runs v{v}, newer than v{kubelet}: forgectl does not downgrade kubelets"
            ));
        } else if kubernetes.minor > v.minor + 3 {
            out.push(format!(
                "the kubelet on {node} runs v{v}, more than three minor versions older than v{kubernetes}: upgrade it to 1.{} or newer first (or remove the node)",
                kubernetes.minor - 3
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        parse(s).unwrap()
    }
    fn on(list: &[(&str, &str)]) -> Vec<(String, Version)> {
        list.iter().map(|(n, s)| (n.to_string(), v(s))).collect()
    }

    #[test]
    fn one_minor_forward_is_allowed() {
        let cps = on(&[("control-1", "v1.35.3"), ("control-2", "v1.35.3")]);
        let kubelets = on(&[("worker-1", "v1.35.3"), ("worker-2", "v1.34.1")]);
        assert!(problems(&v("1.36.2"), &v("1.36.2"), &cps, &kubelets).is_empty());
        // Resuming: one control plane done already.
        let cps = on(&[("control-1", "v1.36.2"), ("control-2", "v1.35.3")]);
        assert!(problems(&v("1.36.2"), &v("1.36.2"), &cps, &kubelets).is_empty());
        // A patch release, and nothing to do.
        assert!(problems(&v("1.36.3"), &v("1.36.3"), &on(&[("c", "v1.36.2")]), &[]).is_empty());
        assert!(problems(&v("1.36.2"), &v("1.36.2"), &on(&[("c", "v1.36.2")]), &[]).is_empty());
    }

    #[test]
    fn skipping_a_minor_or_going_back_is_refused() {
        let p = problems(
            &v("1.36.2"),
            &v("1.36.2"),
            &on(&[("control-1", "v1.34.4")]),
            &[],
        );
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("control-1 runs v1.34.4"), "{p:?}");
        assert!(p[0].contains("a 1.35.x release first"), "{p:?}");
        let p = problems(
            &v("1.35.3"),
            &v("1.35.3"),
            &on(&[("control-1", "v1.36.2")]),
            &on(&[("worker-1", "v1.36.2")]),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("does not downgrade"));
        assert!(p[1].contains("does not downgrade kubelets"));
    }

    #[test]
    fn kubelets_too_far_behind_are_named() {
        let p = problems(
            &v("1.36.2"),
            &v("1.36.2"),
            &on(&[("control-1", "v1.35.3")]),
            &on(&[("worker-1", "v1.32.0"), ("worker-2", "v1.33.0")]),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("the kubelet on worker-1 runs v1.32.0"));
    }
}
