//! No input makes loading an inventory panic, hang or use memory without bound: property tests
//! over arbitrary bytes and over random edits of every example inventory (the inputs a person
//! really makes: a deleted character, a pasted fragment, a line repeated).

use forgectl::inventory::load_str;
use proptest::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

const EXAMPLES: &[&str] = &[
    include_str!("../inventories/local/cluster.yaml"),
    include_str!("../inventories/openstack/cluster.yaml"),
    include_str!("../inventories/static/cluster.yaml"),
    include_str!("../inventories/toolforge-like/cluster.yaml"),
    include_str!("../inventories/vagrant/cluster.yaml"),
];

/// Fragments people paste or YAML makes special.
const FRAGMENTS: &[&str] = &[
    "\t",
    "\n",
    ": ",
    "- ",
    "&a ",
    "*a",
    "<<: *a\n",
    "---\n",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "#",
    "!!binary ",
    "? ",
    "|\n",
    ">-\n",
    "\0",
    "\u{feff}",
    "count: 4294967296\n",
    "count: 1000\n",
    "  - name: x\n    roles: [worker]\n    count: 1000\n",
    "~",
    "null",
    "1e999",
    "-",
    "%YAML 1.2\n",
];

/// One edit of a text.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    RepeatLine(usize, u8),
    Bytes(usize, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 0..FRAGMENTS.len()).prop_map(|(a, f)| Edit::Insert(a, f)),
        (any::<usize>(), 2u8..50).prop_map(|(a, n)| Edit::RepeatLine(a, n)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(a, b)| Edit::Bytes(a, b)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut b = text.as_bytes().to_vec();
    for e in edits {
        let at = |a: usize, len: usize| if len == 0 { 0 } else { a % (len + 1) };
        match e {
            Edit::Delete(a, n) => {
                let s = at(*a, b.len());
                let end = (s + n).min(b.len());
                b.drain(s..end);
            }
            Edit::Insert(a, f) => {
                let s = at(*a, b.len());
                b.splice(s..s, FRAGMENTS[*f].bytes());
            }
            Edit::RepeatLine(a, n) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let i = a % lines.len();
                let mut out: Vec<&str> = lines[..=i].to_vec();
                out.extend(std::iter::repeat_n(lines[i], *n as usize));
                out.extend(&lines[i + 1..]);
                b = out.join("\n").into_bytes();
            }
            Edit::Bytes(a, bytes) => {
                let s = at(*a, b.len());
                b.splice(s..s, bytes.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Loads `text`, which must end (Ok or Err) without a panic and in bounded time.
fn loads_safely(text: &str) {
    let started = Instant::now();
    let _ = load_str("fuzz.yaml", text, Path::new("/nonexistent-forgectl-fuzz"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "loading took {:?}",
        started.elapsed()
    );
}

/// The process's peak resident memory in KiB (Linux).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        loads_safely(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn edited_examples(which in 0..EXAMPLES.len(), edits in proptest::collection::vec(edit(), 1..8)) {
        loads_safely(&apply(EXAMPLES[which], &edits));
    }
}

/// After the property tests (and the worst inputs: alias bombs and the biggest counts), memory
/// stays bounded.
#[test]
fn memory_stays_bounded() {
    let mut worst = String::from("name: x\nprovider: local\ngroups:\n");
    for i in 0..200 {
        worst.push_str(&format!(
            "  - name: g{i}\n    roles: [worker]\n    count: 1000\n"
        ));
    }
    loads_safely(&worst);
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    loads_safely(&bomb);
    let peak = peak_rss_kib();
    assert!(peak < 1024 * 1024, "peak resident memory {peak} KiB");
}
