//! docs/inventory.md is generated from the schema; this keeps it in step with the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[test]
fn inventory_reference_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/inventory.md");
    let fresh = forgectl::inventory::reference::markdown(&forgectl::inventory::json_schema());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        on_disk, fresh,
        "docs/inventory.md is stale: run UPDATE_GOLDEN=1 cargo test --test docs"
    );
    for key in [
        "`groups[].roles`",
        "`network.pod_cidr`",
        "`ssh.bastion.address`",
        "`versions.kubernetes`",
    ] {
        assert!(fresh.contains(key), "{key} missing from the reference");
    }
}

/// Every template under `templates/` has its row in the audit of inventory values (issue #24),
/// so a new template cannot land without saying what reaches it and what keeps it safe.
#[test]
fn every_template_has_its_row_in_the_values_audit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let audit = std::fs::read_to_string(root.join("docs/inventory-values-audit.md")).unwrap();
    let mut templates = Vec::new();
    let mut dirs = vec![root.join("templates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(root.join("templates")).unwrap();
                templates.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let table: Vec<&str> = audit
        .lines()
        .skip_while(|l| !l.starts_with("| File / builder"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("| **"))
        .collect();
    assert!(templates.len() >= 30, "templates found: {templates:?}");
    let missing: Vec<&String> = templates
        .iter()
        .filter(|t| !table.iter().any(|r| r.contains(&format!("`{t}`"))))
        .collect();
    assert!(
        missing.is_empty(),
        "templates without a row in docs/inventory-values-audit.md: {missing:?}"
    );
    let claimed = format!(
        "The table has {} rows: {} templates",
        table.len(),
        templates.len()
    );
    assert!(
        audit.contains(&claimed),
        "docs/inventory-values-audit.md should say: {claimed}"
    );
}

/// The Markdown files of the documentation: the README and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces made `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// Every `](target)` of a page's prose.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

/// Every relative link of the README and the docs names a file of the repository, and every
/// `#anchor` a heading of its page (links that leave the checkout, as to ../shared, and web
/// addresses are not followed).
#[test]
fn every_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let Ok(target) = target.canonicalize() else {
                broken.push(format!("{}: {link}: no such file", page.display()));
                continue;
            };
            if !target.starts_with(root) {
                continue;
            }
            checked += 1;
            if let Some(anchor) = anchor {
                let heads = anchors(&std::fs::read_to_string(&target).unwrap_or_default());
                if !heads.contains(anchor) {
                    broken.push(format!("{}: {link}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} links checked");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The README is a front door: under 15 KB, the two quick-start commands first, and a link to
/// every page of docs/.
#[test]
fn readme_is_a_short_front_door_to_every_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.len() <= 15 * 1024,
        "README.md is {} bytes; move detail to docs/",
        readme.len()
    );
    let first_block: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(first_block[0].starts_with("cargo run --release -- up --yes"));
    assert!(first_block[1].starts_with("bash .ci/run"));
    let linked = links(&readme);
    for page in pages().iter().skip(1) {
        let name = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        assert!(
            linked
                .iter()
                .any(|l| l.split('#').next() == Some(name.as_str())),
            "README.md does not link {name}"
        );
    }
}

/// Every `forgectl COMMAND` the docs name is a command of the binary.
#[test]
fn every_command_the_docs_name_exists() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_forgectl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let commands: BTreeSet<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("Options:"))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        commands.contains("upgrade") && commands.len() > 15,
        "{commands:?}"
    );
    let mut unknown = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (at, _) in text.match_indices("`forgectl ") {
            let word: String = text[at + 10..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if !word.is_empty() && !commands.contains(word.as_str()) {
                unknown.push(format!("{}: forgectl {word}", page.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "commands the binary does not have:\n{}",
        unknown.join("\n")
    );
}
