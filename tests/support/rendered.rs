//! Every file a run of a playbook (`cluster` unless named) would push for an inventory, as `forgectl render`
//! writes them: host/path → (template, content). Certificates and keys come from the state dir,
//! not from templates, and are left out.

use forgectl::engine::{self, Selection};
use forgectl::inventory::Loaded;
use forgectl::phases::Presence;
use forgectl::playbook;
use forgectl::render::Templates;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The rendered files of `inv` with `templates`, keyed by `HOST/PATH`.
pub fn files(inv: &Loaded, templates: &Templates) -> BTreeMap<PathBuf, (String, String)> {
    files_of(inv, templates, "cluster")
}

/// As [`files`], for the built-in playbook `name`.
pub fn files_of(
    inv: &Loaded,
    templates: &Templates,
    name: &str,
) -> BTreeMap<PathBuf, (String, String)> {
    let pb = playbook::load(name).unwrap();
    let plan = engine::plan(
        inv,
        &pb,
        templates,
        &Presence::default(),
        &Selection::default(),
    )
    .unwrap();
    let mut out = BTreeMap::new();
    for p in &plan.phases {
        for a in &p.actions {
            let Some(f) = a.rendered_file() else { continue };
            let Some(template) = f.template else { continue };
            let host = a.host.as_deref().unwrap_or(forgectl::plan::MANIFESTS_HOST);
            let key = Path::new(host).join(f.path.trim_start_matches('/'));
            let previous = out.insert(key.clone(), (template.to_string(), f.content.to_string()));
            assert!(previous.is_none(), "{} rendered twice", key.display());
        }
    }
    out
}
