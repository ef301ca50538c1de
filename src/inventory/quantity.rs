//! Kubernetes resource quantities (`125m`, `2`, `0.5`, `512Mi`, `6Gi`, `1e3`) read as numbers,
//! for checks that compare quotas with per-container defaults.

/// The value of a quantity in its base unit (cores, bytes, or a count), or None when it is not
/// a quantity.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Pi", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Ei", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(s, f)| q.strip_suffix(s).map(|n| (n, *f)))
        .unwrap_or((q, 1.0));
    if number.is_empty()
        || !number.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '+' || c == '-')
    {
        return None;
    }
    let v: f64 = number.parse().ok()?;
    v.is_finite().then_some(v * factor)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn quantities_as_kubernetes_reads_them() {
        assert_eq!(parse("125m"), Some(0.125));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("0.5"), Some(0.5));
        assert_eq!(parse("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse("6Gi"), Some(6.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1k"), Some(1000.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("Gi"), None);
        assert_eq!(parse("lots"), None);
    }
}
