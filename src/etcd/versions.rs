//! etcd's upgrade rule: one minor release at a time, never back across a minor release (etcd
//! refuses to start on data a newer minor release wrote).

use semver::Version;

/// The members that answered with a version they run: (name, version).
pub fn running(health: &[super::MemberHealth]) -> Vec<(String, Version)> {
    health
        .iter()
        .filter_map(|h| Some((h.name.clone(), Version::parse(h.version.as_deref()?).ok()?)))
        .collect()
}

/// What forbids running `target` on members that run `running` (name, version); empty when the
/// step is allowed. Patch releases move freely within a minor release.
pub fn problems(target: &Version, running: &[(String, Version)]) -> Vec<String> {
    running
        .iter()
        .filter_map(|(name, v)| {
            if v.major != target.major || target.minor > v.minor + 1 {
                Some(format!(
                    "{name} runs etcd {v}: etcd is upgraded one minor release at a time, so set versions.etcd to a {}.{}.x release first, run, then go on to {target}",
                    v.major,
                    v.minor + 1
                ))
            } else if target.minor < v.minor {
                Some(format!(
                    "{name} runs etcd {v}, a newer minor release than {target}: etcd is not downgraded across minor releases (restore a snapshot instead)"
                ))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn one_minor_at_a_time_and_never_back() {
        let on = |list: &[(&str, &str)]| -> Vec<(String, Version)> {
            list.iter().map(|(n, s)| (n.to_string(), v(s))).collect()
        };
        assert!(
            problems(
                &v("3.6.13"),
                &on(&[("etcd-1", "3.5.24"), ("etcd-2", "3.6.13")])
            )
            .is_empty()
        );
        assert!(problems(&v("3.6.13"), &on(&[("etcd-1", "3.6.1")])).is_empty());
        assert!(problems(&v("3.6.1"), &on(&[("etcd-1", "3.6.13")])).is_empty());
        let p = problems(
            &v("3.6.13"),
            &on(&[("etcd-1", "3.4.23"), ("etcd-2", "3.5.24")]),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("etcd-1 runs etcd 3.4.23"), "{p:?}");
        assert!(p[0].contains("a 3.5.x release first"), "{p:?}");
        let p = problems(&v("3.5.24"), &on(&[("etcd-1", "3.6.13")]));
        assert!(p[0].contains("not downgraded"), "{p:?}");
    }
}
