//! Accounts from LDAP (Toolforge's layout): tool accounts are posixAccount entries
//! `uid=<prefix>NAME` under `tools_base`, maintainers the members of the group
//! `cn=<prefix>NAME` under `groups_base` (groupOfNames `member` DNs or posixGroup `memberUid`),
//! admins the members of `admin_group`. Over TLS (ldaps:// or StartTLS), bound as a service DN,
//! every search paged so that thousands of entries pass the server's size limit.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use secrecy::{ExposeSecret, SecretString};

use super::AccountsError;
use super::directory::{Directory, Person, Source, ToolAccount};
use crate::inventory::accounts::Ldap as LdapSettings;

/// An LDAP directory of accounts.
pub struct LdapSource {
    settings: LdapSettings,
    ca_file: Option<PathBuf>,
    password: SecretString,
}

impl LdapSource {
    /// A source from the inventory's settings; `base_dir` resolves relative file paths. The
    /// password comes from `bind_password_file` or FORGECTL_LDAP_PASSWORD.
    pub fn new(settings: &LdapSettings, base_dir: &std::path::Path) -> Result<Self, AccountsError> {
        let resolve = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base_dir.join(p)
            }
        };
        let password = match &settings.bind_password_file {
            Some(f) => {
                let path = resolve(f);
                let text = std::fs::read_to_string(&path).map_err(|e| AccountsError::Source {
                    source_name: path.display().to_string(),
                    cause: format!("cannot read the LDAP bind password: {e}"),
                })?;
                text.trim_end_matches(['\n', '\r']).to_string()
            }
            None => std::env::var("FORGECTL_LDAP_PASSWORD").map_err(|_| AccountsError::Source {
                source_name: settings.url.clone(),
                cause: "no bind password: set accounts.ldap.bind_password_file or FORGECTL_LDAP_PASSWORD".into(),
            })?,
        };
        Ok(Self {
            settings: settings.clone(),
            ca_file: settings.ca_file.as_ref().map(resolve),
            password: SecretString::from(password),
        })
    }

    fn err(&self, cause: impl std::fmt::Display) -> AccountsError {
        AccountsError::Source {
            source_name: self.settings.url.clone(),
            cause: cause.to_string(),
        }
    }

    fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, AccountsError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let Some(ca) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(ca).map_err(|e| self.err(format!("{}: {e}", ca.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| self.err(format!("{}: {e}", ca.display())))?;
            roots
                .add(c)
                .map_err(|e| self.err(format!("{}: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(self.err(format!("{}: no certificate in it", ca.display())));
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(Arc::new(config)))
    }

    async fn connect(&self) -> Result<Ldap, AccountsError> {
        let timeout = Duration::from_secs(self.settings.timeout_seconds);
        let mut settings = LdapConnSettings::new().set_conn_timeout(timeout);
        if let Some(c) = self.tls_config()? {
            settings = settings.set_config(c);
        }
        if self.settings.url.starts_with("ldap://") {
            settings = settings.set_starttls(true);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.settings.url)
            .await
            .map_err(|e| self.err(format!("cannot connect: {e}")))?;
        ldap3::drive!(conn);
        ldap.with_timeout(timeout)
            .simple_bind(&self.settings.bind_dn, self.password.expose_secret())
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.err(format!("bind as {}: {e}", self.settings.bind_dn)))?;
        Ok(ldap)
    }

    /// Every entry under `base` matching `filter`, fetched page by page.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, AccountsError> {
        let what = |e: &dyn std::fmt::Display| self.err(format!("search {base} {filter}: {e}"));
        let timeout = Duration::from_secs(self.settings.timeout_seconds);
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.settings.page_size)),
        ];
        let run = async {
            let mut stream = ldap
                .streaming_search_with(adapters, base, scope, filter, attrs)
                .await
                .map_err(|e| what(&e))?;
            let mut out = Vec::new();
            while let Some(entry) = stream.next().await.map_err(|e| what(&e))? {
                out.push(SearchEntry::construct(entry));
            }
            stream.finish().await.success().map_err(|e| what(&e))?;
            Ok(out)
        };
        // A whole paged search may take several timeouts' worth on a big directory, never
        // forever.
        tokio::time::timeout(timeout * 10, run)
            .await
            .map_err(|_| what(&"timed out"))?
    }
}

/// The first value of `attr`.
fn first<'e>(e: &'e SearchEntry, attr: &str) -> Option<&'e str> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// Every value of `attr`.
fn all<'e>(e: &'e SearchEntry, attr: &str) -> Vec<&'e str> {
    e.attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
        .flat_map(|(_, v)| v.iter().map(String::as_str))
        .collect()
}

/// The user names of a group entry: `memberUid` values and the first RDN value of `member` DNs.
fn members(e: &SearchEntry) -> Vec<String> {
    let mut out: Vec<String> = all(e, "memberUid").into_iter().map(String::from).collect();
    for dn in all(e, "member") {
        if let Some(rdn) = dn.split(',').next()
            && let Some((_, v)) = rdn.split_once('=')
        {
            out.push(v.trim().to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A posixAccount entry's (uid, uidNumber, gidNumber, home).
fn posix(e: &SearchEntry) -> Option<(&str, u32, u32, PathBuf)> {
    Some((
        first(e, "uid")?,
        first(e, "uidNumber")?.parse().ok()?,
        first(e, "gidNumber")?.parse().ok()?,
        PathBuf::from(first(e, "homeDirectory")?),
    ))
}

impl LdapSource {
    async fn admins(&self, ldap: &mut Ldap) -> Result<Vec<Person>, AccountsError> {
        let (Some(group), Some(users_base)) =
            (&self.settings.admin_group, &self.settings.users_base)
        else {
            return Ok(Vec::new());
        };
        let groups = self
            .search(
                ldap,
                group,
                Scope::Base,
                "(objectClass=*)",
                &["member", "memberUid"],
            )
            .await?;
        let names: Vec<String> = groups.iter().flat_map(members).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let any: String = names
            .iter()
            .map(|n| format!("(uid={})", ldap_escape(n)))
            .collect();
        let filter = format!("(&(objectClass=posixAccount)(|{any}))");
        let entries = self
            .search(
                ldap,
                users_base,
                Scope::Subtree,
                &filter,
                &["uid", "uidNumber", "gidNumber", "homeDirectory"],
            )
            .await?;
        Ok(entries
            .iter()
            .filter_map(posix)
            .map(|(name, uid, gid, home)| Person {
                name: name.to_string(),
                uid,
                gid,
                home,
            })
            .collect())
    }
}

impl Source for LdapSource {
    async fn load(&self) -> Result<Directory, AccountsError> {
        let s = &self.settings;
        let prefix = ldap_escape(&s.tool_prefix).into_owned();
        let disabled_attr = s.disabled_attribute.as_str();
        let account_filter = format!("(&(objectClass=posixAccount)(uid={prefix}*))");
        let group_filter =
            format!("(&(|(objectClass=groupOfNames)(objectClass=posixGroup))(cn={prefix}*))");
        let account_attrs = [
            "uid",
            "uidNumber",
            "gidNumber",
            "homeDirectory",
            disabled_attr,
        ];
        // The three searches side by side, each on a connection of its own (OpenLDAP keeps one
        // paged search per connection).
        let (mut l1, mut l2, mut l3) =
            tokio::try_join!(self.connect(), self.connect(), self.connect())?;
        let (accounts, groups, admins) = tokio::try_join!(
            self.search(
                &mut l1,
                &s.tools_base,
                Scope::Subtree,
                &account_filter,
                &account_attrs,
            ),
            self.search(
                &mut l2,
                &s.groups_base,
                Scope::Subtree,
                &group_filter,
                &["cn", "member", "memberUid"],
            ),
            self.admins(&mut l3),
        )?;
        for l in [&mut l1, &mut l2, &mut l3] {
            let _ = l.unbind().await;
        }
        let maintainers: HashMap<&str, Vec<String>> = groups
            .iter()
            .filter_map(|g| {
                Some((
                    first(g, "cn")?.strip_prefix(s.tool_prefix.as_str())?,
                    members(g),
                ))
            })
            .collect();
        let mut tools = BTreeMap::new();
        for e in &accounts {
            let Some((uid_attr, uid, gid, home)) = posix(e) else {
                tracing::warn!(dn = %e.dn, "LDAP entry without uid, uidNumber, gidNumber or homeDirectory: skipped");
                continue;
            };
            let Some(name) = uid_attr.strip_prefix(s.tool_prefix.as_str()) else {
                continue;
            };
            let disabled = match &s.disabled_value {
                Some(v) => all(e, disabled_attr).contains(&v.as_str()),
                None => !all(e, disabled_attr).is_empty(),
            };
            tools.insert(
                name.to_string(),
                ToolAccount {
                    name: name.to_string(),
                    uid,
                    gid,
                    home,
                    maintainers: maintainers.get(name).cloned().unwrap_or_default(),
                    disabled,
                },
            );
        }
        Ok(Directory {
            tools: tools.into_values().collect(),
            admins,
        })
    }
}
