//! The inventory: reading `cluster.yaml`, its defaults, validation with positions, JSON Schema.

pub mod accounts;
pub mod diagnostics;
pub mod machines;
pub mod model;
pub mod platform;
pub mod quantity;
pub mod reference;
pub mod schema_check;
pub mod types;
pub mod validate;
pub mod yaml_tree;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use diagnostics::{Diagnostic, Pos, Severity};
pub use machines::Machine;
pub use model::{Inventory, OpenStackProvider, ProviderKind, Role, ServerGroupPolicy};

/// The most machines one inventory may make (its groups' counts and hosts together).
pub const MAX_MACHINES: u64 = 5000;

/// The inventory used when no `-f` is given: a small cluster of local throwaway machines.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../inventories/local/cluster.yaml");
/// The name shown for the embedded default in messages.
pub const EMBEDDED_NAME: &str = "<embedded>/inventories/local/cluster.yaml";

/// Where an inventory's text came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name shown in messages (the path as given, or the embedded name).
    pub name: String,
    /// The text.
    pub text: String,
    /// Directory against which relative paths in the inventory are resolved.
    pub base_dir: PathBuf,
}

/// A parsed, defaulted and validated inventory.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed inventory with defaults filled in.
    pub inventory: Inventory,
    /// Every machine, expanded from the groups.
    pub machines: Vec<Machine>,
    /// The text it came from.
    pub source: Source,
    /// Warnings (never errors) found on the way.
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    /// Fills in addresses the provider assigned (cloud providers learn them on creation), by
    /// machine name: (fixed, floating). Addresses given in the inventory are kept.
    pub fn with_assigned_addresses(
        mut self,
        assigned: &std::collections::BTreeMap<String, (IpAddr, Option<IpAddr>)>,
    ) -> Self {
        for m in &mut self.machines {
            if let Some((fixed, floating)) = assigned.get(&m.name) {
                m.address.get_or_insert(*fixed);
                m.floating_address = *floating;
            }
        }
        self
    }

    /// For local machines: those that exist keep the address they were made with (`recorded`),
    /// new ones take addresses nobody holds (see [`machines::keep_recorded_local_addresses`]).
    pub fn with_recorded_local_addresses(
        mut self,
        recorded: &std::collections::BTreeMap<String, IpAddr>,
    ) -> Self {
        if !recorded.is_empty() && self.inventory.provider == ProviderKind::Local {
            machines::keep_recorded_local_addresses(&self.inventory, &mut self.machines, recorded);
        }
        self
    }

    /// Machines that have `role`.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Machine> {
        self.machines.iter().filter(move |m| m.has(role))
    }
}

/// Why an inventory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the inventory {path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but has problems; every one is listed.
    #[error("{} has {} error(s)", .input.name, .diagnostics.iter().filter(|d| d.is_error()).count())]
    Invalid {
        /// The text, for showing snippets.
        input: Source,
        /// All findings, errors and warnings, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

/// The inventory's JSON Schema (what `forgectl schema` prints and validation walks).
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Inventory);
    schema.to_value()
}

/// Reads and validates the inventory at `path`, or the embedded default when `path` is None.
pub fn load(path: Option<&Path>) -> Result<Loaded, LoadError> {
    let source = match path {
        None => Source {
            name: EMBEDDED_NAME.into(),
            text: EMBEDDED_DEFAULT.into(),
            base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        },
        Some(p) => read_source(p)?,
    };
    load_source(source)
}

fn read_source(p: &Path) -> Result<Source, LoadError> {
    let name = p.display().to_string();
    let meta = std::fs::metadata(p).map_err(|e| LoadError::Read {
        path: name.clone(),
        source: e,
    })?;
    let invalid = |d: Diagnostic| LoadError::Invalid {
        input: Source {
            name: name.clone(),
            text: String::new(),
            base_dir: PathBuf::new(),
        },
        diagnostics: vec![d],
    };
    if meta.is_dir() {
        let hint = format!(
            "pass the file, e.g. -f {}",
            p.join("cluster.yaml").display()
        );
        return Err(invalid(
            Diagnostic::error(Pos::new(1, 1), "this is a directory, not an inventory file")
                .with_hint(hint),
        ));
    }
    if meta.len() > yaml_tree::MAX_BYTES as u64 {
        return Err(invalid(
            Diagnostic::error(
                Pos::new(1, 1),
                format!(
                    "the file is {:.1} MiB; an inventory may be at most {} MiB",
                    meta.len() as f64 / 1_048_576.0,
                    yaml_tree::MAX_BYTES / 1_048_576
                ),
            )
            .with_hint(
                "is this the right file? Inventories describe machine groups, not each object",
            ),
        ));
    }
    let bytes = std::fs::read(p).map_err(|e| LoadError::Read {
        path: name.clone(),
        source: e,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let before = &e.as_bytes()[..at];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            return Err(invalid(
                Diagnostic::error(
                    Pos::new(line, 1),
                    format!("this is not a text file: invalid UTF-8 at byte {at}"),
                )
                .with_hint("an inventory is a YAML text file (UTF-8); is this the right file?"),
            ));
        }
    };
    let base_dir = p
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok(Source {
        name,
        text,
        base_dir,
    })
}

/// Parses, defaults and validates an inventory's text.
pub fn load_source(source: Source) -> Result<Loaded, LoadError> {
    let fail = |source: Source, mut diagnostics: Vec<Diagnostic>| {
        diagnostics.sort_by_key(|d| d.pos);
        Err(LoadError::Invalid {
            input: source,
            diagnostics,
        })
    };
    if source.text.contains('\0') {
        // The line the first NUL is on: one more than the newlines before it.
        let before = &source.text[..source.text.find('\0').unwrap_or(0)];
        let line = before.matches('\n').count() + 1;
        let d = Diagnostic::error(
            Pos::new(line, 1),
            "this is not a text file: it contains NUL bytes",
        )
        .with_hint("an inventory is a YAML text file; is this the right file?");
        return fail(source, vec![d]);
    }
    let parsed = match yaml_tree::parse(&source.text) {
        Ok(p) => p,
        Err(d) => return fail(source, vec![d]),
    };
    let mut diags = parsed.diagnostics;
    let Some(root) = parsed.root.filter(|r| !r.is_null()) else {
        let d = Diagnostic::error(Pos::new(1, 1), "the inventory is empty")
            .with_hint("start from `forgectl init DIR`, which writes a commented inventory");
        return fail(source, vec![d]);
    };
    if !matches!(root.kind, yaml_tree::NodeKind::Map(_)) {
        let d = Diagnostic::error(
            root.pos,
            format!(
                "expected a mapping of settings at the top of the file, found {}",
                root.describe()
            ),
        )
        .with_hint(
            "an inventory starts with `name:`, `provider:` and `groups:`; see `forgectl init`",
        );
        return fail(source, vec![d]);
    }
    let schema = json_schema();
    let value = schema_check::check(&root, &schema, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return fail(source, diags);
    }
    let mut inventory: Inventory = match serde_json::from_value(value) {
        Ok(i) => i,
        Err(e) => {
            let d = Diagnostic::error(
                root.pos,
                format!("the inventory does not match its schema: {e}"),
            )
            .with_hint("this is a bug in forgectl's schema check; please report it with the file");
            diags.push(d);
            return fail(source, diags);
        }
    };
    // Limits before work: the machines are counted before any is made.
    let total: u64 = inventory
        .groups
        .iter()
        .map(|g| u64::from(g.count.unwrap_or(0)) + g.hosts.len() as u64)
        .sum();
    if total > MAX_MACHINES {
        let pos = root.key_pos("groups").unwrap_or(root.pos);
        let d = Diagnostic::error(
            pos,
            format!("the groups make {total} machines, more than forgectl manages in one inventory ({MAX_MACHINES})"),
        )
        .with_hint("split the site into several clusters, each with an inventory of its own");
        diags.push(d);
        return fail(source, diags);
    }
    let machines = machines::expand(&inventory);
    diags.extend(validate::validate(
        &inventory,
        &machines,
        &root,
        &source.base_dir,
    ));
    if diags.iter().any(Diagnostic::is_error) {
        return fail(source, diags);
    }
    diags.sort_by_key(|d| d.pos);
    // Directories and files forgectl reads are relative to the inventory file, wherever it runs
    // from.
    for dir in [
        &mut inventory.artifacts.dir,
        &mut inventory.artifacts.images,
        &mut inventory.ingress.tls_front.cert_file,
        &mut inventory.ingress.tls_front.key_file,
    ] {
        if let Some(d) = dir.as_mut() {
            *d = validate::resolve_path(d, &source.base_dir);
        }
    }
    Ok(Loaded {
        inventory,
        machines,
        source,
        warnings: diags,
    })
}

/// Loads an inventory from a string (tests and `init`'s self-check).
pub fn load_str(name: &str, text: &str, base_dir: &Path) -> Result<Loaded, LoadError> {
    load_source(Source {
        name: name.into(),
        text: text.into(),
        base_dir: base_dir.to_path_buf(),
    })
}
