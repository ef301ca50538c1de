//! What a source of accounts yields: tool accounts (with their maintainers and whether they are
//! disabled) and admin accounts, whatever the source (LDAP or a YAML file).

use std::future::Future;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::AccountsError;

/// A tool account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolAccount {
    /// The tool's name (a DNS label): namespace `<prefix>NAME`, host `NAME.<tool domain>`.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its home directory, where its kubeconfig is written.
    pub home: PathBuf,
    /// The people who maintain it.
    #[serde(default)]
    pub maintainers: Vec<String>,
    /// Disabled: workloads scaled to zero, credentials revoked.
    #[serde(default)]
    pub disabled: bool,
}

/// A person with a kubeconfig of their own (an admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Login name (the certificate's CN).
    pub name: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Everything a source knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// Tool accounts.
    #[serde(default)]
    pub tools: Vec<ToolAccount>,
    /// Admin accounts.
    #[serde(default)]
    pub admins: Vec<Person>,
}

/// A source of accounts (LDAP, a YAML file).
pub trait Source {
    /// Reads every account.
    fn load(&self) -> impl Future<Output = Result<Directory, AccountsError>> + Send;
}

/// Whether `name` can be a tool name: a DNS label that leaves room for the namespace prefix.
pub fn valid_tool_name(name: &str) -> bool {
    crate::inventory::validate::is_dns_label(name, 52)
}

impl Directory {
    /// Drops accounts with invalid or duplicate names, saying why for each.
    pub fn checked(mut self) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        self.tools.retain(|t| {
            if !valid_tool_name(&t.name) {
                problems.push(format!(
                    "tool {:?} skipped: not a DNS label of at most 52 characters",
                    t.name
                ));
                false
            } else if !seen.insert(t.name.clone()) {
                problems.push(format!("tool {:?} skipped: listed twice", t.name));
                false
            } else if !t.home.is_absolute() {
                problems.push(format!(
                    "tool {:?} skipped: home {} is not an absolute path",
                    t.name,
                    t.home.display()
                ));
                false
            } else {
                true
            }
        });
        let mut seen = std::collections::BTreeSet::new();
        self.admins.retain(|a| {
            let ok = crate::inventory::validate::is_dns_label(&a.name, 63)
                && a.home.is_absolute()
                && seen.insert(a.name.clone());
            if !ok {
                problems.push(format!(
                    "admin {:?} skipped: invalid or duplicate name, or a relative home",
                    a.name
                ));
            }
            ok
        });
        self.tools.sort_by(|a, b| a.name.cmp(&b.name));
        (self, problems)
    }
}
