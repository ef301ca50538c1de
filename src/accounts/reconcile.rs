//! One reconcile pass: read the source and the cluster, plan per account what differs (objects
//! to apply or delete, certificates to issue, kubeconfigs to write, workloads to stop,
//! namespaces to mark or delete), then carry the plans out side by side (bounded), or with
//! `dry_run` only report them. Unchanged accounts cost no write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};

use super::credentials::{Identity, kubeconfig, needs_new};
use super::desired::{
    self, ADMIN_LABEL, ADMINS_GROUP, DISABLED_LABEL, KINDS, MANAGER, REMOVED_ANNOTATION,
    TOOL_LABEL, TOOLS_GROUP, contained, key_of,
};
use super::directory::{Directory, Person, Source, ToolAccount};
use super::home_files::{CredentialFiles, OnDisk};
use super::observe::{self, Observed};
use super::{AccountsError, api_err, csr_client};
use crate::inventory::accounts::Accounts;

/// Field manager of the removal mark (its own, so the mark comes and goes on its own).
const REMOVAL_MANAGER: &str = "forgectl-accounts-removal";
/// The field manager of the patch that removes foreign quota entries.
const PRUNE_MANAGER: &str = "forgectl-accounts-prune";
/// The field manager of the patch that frees a Released home volume.
const REBIND_MANAGER: &str = "forgectl-accounts-rebind";

/// The cluster the kubeconfigs point at.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Its name (cluster and context names in kubeconfigs).
    pub name: String,
    /// The API server URL.
    pub server: String,
    /// The cluster CA (PEM).
    pub ca_pem: String,
}

/// How a pass runs.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// Mark tools for removal even when the source looks broken (lists none, or far fewer).
    pub allow_mass_removal: bool,
}

/// What a pass did (or, with dry_run, would do).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Accounts the cluster did not have.
    pub created: Vec<String>,
    /// Accounts whose objects, kubeconfig or files changed.
    pub updated: Vec<String>,
    /// Accounts that got a new certificate.
    pub renewed: Vec<String>,
    /// Tools disabled in this pass.
    pub disabled: Vec<String>,
    /// Tools whose namespace was deleted.
    pub removed: Vec<String>,
    /// Tools gone from the source, waiting out the grace period (name and when).
    pub pending_removal: Vec<String>,
    /// Accounts already as they should be.
    pub unchanged: usize,
    /// Every change, in words (`would …` with dry_run).
    pub actions: Vec<String>,
    /// Accounts skipped or failed, and why.
    pub problems: Vec<String>,
    /// API requests that changed something.
    pub writes: usize,
    /// What the pass deleted (`Kind ns/name`; `Namespace ns` with all it held).
    pub deleted: Vec<String>,
}

/// What happened to one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Renewed,
    Disabled,
    Removed,
    PendingRemoval,
    Unchanged,
}

/// One change.
#[derive(Debug, Clone)]
enum Step {
    /// Server-side apply of an object.
    Apply(Value),
    /// Delete an object (as observed).
    Delete(Value),
    /// Scale the workloads of a namespace to zero and suspend its jobs.
    StopWorkloads(String),
    /// Issue a certificate and write it with its key and kubeconfig.
    Issue {
        files: CredentialFiles,
        id: Identity,
        kubeconfig: String,
        why: String,
        renewal: bool,
        /// The cluster CA the new certificate is checked against once written.
        ca_pem: Arc<str>,
    },
    /// Write the kubeconfig (the certificate is still good) or fix files' owner and mode.
    Rewrite {
        files: CredentialFiles,
        kubeconfig: String,
        on_disk: OnDisk,
    },
    /// Remove the credentials from a home.
    RemoveFiles(CredentialFiles),
    /// Mark a namespace as gone from the source.
    Mark(String),
    /// Clear that mark (the tool is back).
    Unmark(String),
    /// Delete a tool's namespace (and everything in it).
    DeleteNamespace(String),
    /// Remove the `spec.hard` entries of a ResourceQuota that others added.
    Prune { obj: Value, keys: Vec<String> },
    /// Free a Released home volume for a new claim of the same name (the tool deleted its
    /// claim): drop the old claim's uid from `claimRef`, so the volume binds again.
    Rebind(String),
}

impl Step {
    /// Whether this replaces a certificate the account has.
    fn renews(&self) -> bool {
        matches!(self, Self::Issue { renewal: true, .. })
    }

    fn describe(&self) -> String {
        match self {
            Self::Apply(o) => format!("apply {}", key_of(o)),
            Self::Delete(o) => format!("delete {}", key_of(o)),
            Self::StopWorkloads(ns) => {
                format!("scale the workloads of {ns} to zero and suspend its jobs")
            }
            Self::Issue { files, id, why, .. } => format!(
                "issue a certificate for {} ({why}) and write {}",
                id.user,
                files.display()
            ),
            Self::Rewrite { files, .. } => format!("rewrite {}", files.display()),
            Self::RemoveFiles(f) => format!("remove the credentials in {}", f.display()),
            Self::Mark(ns) => format!("mark namespace {ns} as removed from the source"),
            Self::Unmark(ns) => format!("clear the removal mark of namespace {ns}"),
            Self::DeleteNamespace(ns) => format!("delete namespace {ns}"),
            Self::Rebind(pv) => format!("free PersistentVolume {pv} for the tool's new claim"),
            Self::Prune { obj, keys } => format!(
                "remove {} from {} (not in the inventory)",
                keys.join(", "),
                key_of(obj)
            ),
        }
    }
}

/// The plan of one account.
struct AccountPlan {
    name: String,
    outcome: Outcome,
    steps: Vec<Step>,
    problems: Vec<String>,
}

/// One reconcile pass of `source` against the cluster behind `client`.
pub async fn sync<S: Source>(
    client: &::kube::Client,
    cfg: &Accounts,
    cluster: &Cluster,
    source: &S,
    opts: &PassOptions,
) -> Result<Summary, AccountsError> {
    let started = std::time::Instant::now();
    let (dir, mut problems) = source.load().await?.checked();
    let loaded = started.elapsed();
    let accounts: Vec<Account> = dir
        .tools
        .iter()
        .map(|t| Account::Tool(t.clone()))
        .chain(dir.admins.iter().map(|a| Account::Admin(a.clone())))
        .collect();
    // The homes are read (and certificates checked) while the API server answers the lists:
    // blocking work, spread over a few threads of the blocking pool (not the async workers).
    let homes = {
        let (cfg, cluster) = (cfg.clone(), cluster.clone());
        on_blocking_threads(accounts.clone(), "read the homes", move |a| {
            read_home(&cfg, &cluster, &a)
        })
    };
    // The tools' ClusterRole is read beside the lists (no round trip of its own on a pass).
    let role = async { Ok(observe::tool_role(client).await) };
    let (lists, homes) = tokio::join!(
        async { tokio::try_join!(observe::managed(client), observe::requests(client), role) },
        homes
    );
    let ((observed, leftovers, role), homes) = (lists?, homes?);
    let listed = started.elapsed();
    let mut summary = Summary::default();
    if !leftovers.is_empty() {
        summary.actions.push(format!(
            "{}delete {} leftover certificate request(s)",
            if opts.dry_run { "would " } else { "" },
            leftovers.len()
        ));
        if !opts.dry_run {
            csr_client::delete_requests(client, &leftovers).await?;
            summary.writes += leftovers.len();
        }
    }
    ensure_tool_role(client, role, opts, &mut summary, &mut problems).await;
    let mut plans = plan_removals(cfg, &dir, &observed, opts)?;
    plans.extend(orphan_admin_bindings(&dir, &observed));
    let concurrency = cfg.concurrency.max(1);
    // Comparing tens of thousands of objects: a few threads of the blocking pool.
    let shared = Arc::new((cfg.clone(), observed));
    let planning = accounts.into_iter().zip(homes).collect();
    plans.extend(
        on_blocking_threads(planning, "plan the accounts", {
            let shared = shared.clone();
            move |(a, home)| plan_account(&shared.0, a, home, &shared.1)
        })
        .await?,
    );
    let planned = started.elapsed();
    // The signer's answers come through one watch, started by the first request.
    let answers = csr_client::Answers::new(client);
    let answers = &answers;
    let results: Vec<(AccountPlan, usize, Vec<String>)> = stream::iter(plans)
        .map(|p| async {
            if opts.dry_run || p.steps.is_empty() {
                return (p, 0, Vec::new());
            }
            let (writes, errors) = execute(client, cfg, answers, &p).await;
            (p, writes, errors)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    // What the pass wrote into homes is flushed once, here (not file by file).
    let written: Vec<std::path::PathBuf> = results
        .iter()
        .flat_map(|(p, ..)| p.steps.iter())
        .filter_map(|s| match s {
            Step::Issue { files, .. } | Step::Rewrite { files, .. } if !opts.dry_run => {
                Some(files.home.clone())
            }
            _ => None,
        })
        .collect();
    if !written.is_empty() {
        let synced = tokio::task::spawn_blocking(move || {
            super::home_files::sync_filesystems(written.iter().map(|h| h.as_path()))
        })
        .await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("the homes' credentials: {e}")),
            Err(e) => problems.push(format!("the homes' credentials: sync: {e}")),
        }
    }
    for (p, writes, errors) in results {
        summary.writes += writes;
        for s in &p.steps {
            match s {
                Step::Delete(o) if !opts.dry_run => summary.deleted.push(key_of(o)),
                Step::DeleteNamespace(ns) if !opts.dry_run => {
                    summary.deleted.push(format!("Namespace {ns}"))
                }
                _ => {}
            }
            let verb = if opts.dry_run { "would " } else { "" };
            summary
                .actions
                .push(format!("{}: {verb}{}", p.name, s.describe()));
        }
        problems.extend(p.problems.iter().map(|e| format!("{}: {e}", p.name)));
        problems.extend(errors.iter().map(|e| format!("{}: {e}", p.name)));
        let list = match p.outcome {
            Outcome::Created => &mut summary.created,
            Outcome::Updated => &mut summary.updated,
            Outcome::Renewed => &mut summary.renewed,
            Outcome::Disabled => &mut summary.disabled,
            Outcome::Removed => &mut summary.removed,
            Outcome::PendingRemoval => &mut summary.pending_removal,
            Outcome::Unchanged => {
                summary.unchanged += 1;
                continue;
            }
        };
        list.push(p.name.clone());
    }
    for l in [
        &mut summary.created,
        &mut summary.updated,
        &mut summary.renewed,
        &mut summary.disabled,
        &mut summary.removed,
        &mut summary.pending_removal,
        &mut summary.actions,
    ] {
        l.sort();
    }
    problems.sort();
    summary.problems = problems;
    tracing::debug!(
        source_ms = loaded.as_millis() as u64,
        list_ms = (listed - loaded).as_millis() as u64,
        plan_ms = (planned - listed).as_millis() as u64,
        apply_ms = (started.elapsed() - planned).as_millis() as u64,
        "pass timings"
    );
    // Freeing tens of thousands of listed objects takes a while: not on the caller's time.
    tokio::task::spawn_blocking(move || drop(shared));
    Ok(summary)
}

/// Makes sure the ClusterRole every tool is bound to is there as forgectl defines it (the
/// platform phase applies it; `accounts sync` with an admin's rights also can). A controller
/// without the right to write it reports a problem and goes on.
async fn ensure_tool_role(
    client: &::kube::Client,
    have: Result<Option<Value>, AccountsError>,
    opts: &PassOptions,
    summary: &mut Summary,
    problems: &mut Vec<String>,
) {
    let want = desired::tool_cluster_role();
    let have = match have {
        Ok(h) => h,
        Err(e) => {
            problems.push(format!(
                "ClusterRole {}: cannot read it: {e}",
                desired::TOOL_CLUSTER_ROLE
            ));
            return;
        }
    };
    if have.is_some_and(|h| contained(&want, &h)) {
        return;
    }
    let action = format!("apply ClusterRole {}", desired::TOOL_CLUSTER_ROLE);
    if opts.dry_run {
        summary.actions.push(format!("would {action}"));
        return;
    }
    let api: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let params = PatchParams::apply(crate::kube::FIELD_MANAGER).force();
    match api
        .patch(desired::TOOL_CLUSTER_ROLE, &params, &Patch::Apply(&want))
        .await
    {
        Ok(_) => {
            summary.actions.push(action);
            summary.writes += 1;
        }
        Err(e) => problems.push(format!(
            "ClusterRole {} is missing or differs and cannot be written here ({}): run `forgectl up --only platform`, which installs it",
            desired::TOOL_CLUSTER_ROLE,
            crate::kube::error_text(&e)
        )),
    }
}

/// Threads of the blocking pool that plan accounts side by side.
const PLAN_THREADS: usize = 8;

/// A tool or an admin.
#[derive(Clone)]
enum Account {
    Tool(ToolAccount),
    Admin(Person),
}

/// The steps that bring `want` about, given what the cluster has: an apply where a field
/// forgectl sets differs, and the removal of quota entries someone else added (server-side
/// apply leaves fields other managers own).
fn object_steps(want: Vec<Value>, observed: &Observed) -> Vec<Step> {
    let mut out = Vec::new();
    for w in want {
        let mut have = observed.get(&key_of(&w));
        // A binding's roleRef cannot change: one bound to the tool's old Role is made anew.
        if let Some(h) = have
            && w["kind"] == "RoleBinding"
            && h["roleRef"] != w["roleRef"]
        {
            out.push(Step::Delete(h.clone()));
            have = None;
        }
        let foreign = have.map(|h| foreign_quota_keys(&w, h)).unwrap_or_default();
        if !foreign.is_empty() {
            out.push(Step::Prune {
                obj: w.clone(),
                keys: foreign,
            });
        }
        if have.is_none_or(|h| !contained(&w, h)) {
            out.push(Step::Apply(w));
        }
    }
    out
}

/// The `spec.hard` keys of a stored ResourceQuota that forgectl does not set: a tool's quota is
/// exactly what the inventory says.
fn foreign_quota_keys(want: &Value, have: &Value) -> Vec<String> {
    if want["kind"] != "ResourceQuota" {
        return Vec::new();
    }
    let wanted = want["spec"]["hard"].as_object();
    have["spec"]["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !wanted.is_some_and(|w| w.contains_key(*k)))
        .cloned()
        .collect()
}

/// Managed objects of tool `name` that are no longer wanted (a NetworkPolicy switched off, the
/// RoleBinding of a disabled tool).
fn orphans(name: &str, want: &[Value], observed: &Observed) -> Vec<Step> {
    let wanted: BTreeSet<String> = want.iter().map(key_of).collect();
    let mut out: Vec<Step> = observed
        .of_tool(name)
        .filter(|(k, o)| o["kind"] != "Namespace" && !wanted.contains(*k))
        .map(|(_, o)| Step::Delete(o.clone()))
        .collect();
    out.sort_by_key(|s| s.describe());
    out
}

fn plan_account(cfg: &Accounts, account: Account, home: Home, observed: &Observed) -> AccountPlan {
    match account {
        Account::Tool(t) => plan_tool(cfg, t, home, observed),
        Account::Admin(a) => plan_admin(cfg, a, home, observed),
    }
}

/// What an account's home asks for, read before the cluster is compared.
enum Home {
    /// The credential steps of an account that has credentials (Err: the home cannot be used).
    Credentials(Result<Vec<Step>, String>),
    /// Whether a disabled tool's home still holds credential files (Err: it cannot be read).
    Leftover(Result<bool, String>),
}

/// The files the credentials of an account with `home`, `uid` and `gid` go to.
fn files_of(cfg: &Accounts, home: &std::path::Path, uid: u32, gid: u32) -> CredentialFiles {
    CredentialFiles {
        home: home.to_path_buf(),
        kubeconfig: cfg.kubeconfig_path.clone(),
        uid,
        gid,
    }
}

/// What the home of `account` asks for.
fn read_home(cfg: &Accounts, cluster: &Cluster, account: &Account) -> Home {
    let files = match account {
        Account::Tool(t) => files_of(cfg, &t.home, t.uid, t.gid),
        Account::Admin(a) => files_of(cfg, &a.home, a.uid, a.gid),
    };
    match account {
        Account::Tool(t) if t.disabled => {
            Home::Leftover(files.read().map(|d| d.any()).map_err(|e| e.to_string()))
        }
        Account::Tool(t) => {
            let id = Identity {
                user: desired::tool_user(cfg, &t.name),
                group: TOOLS_GROUP.into(),
            };
            let ns = desired::namespace(cfg, &t.name);
            Home::Credentials(credential_steps(cfg, cluster, files, id, Some(ns)))
        }
        Account::Admin(a) => {
            let id = Identity {
                user: a.name.clone(),
                group: ADMINS_GROUP.into(),
            };
            Home::Credentials(credential_steps(cfg, cluster, files, id, None))
        }
    }
}

/// `f` over `items` on a few threads of the blocking pool (not the async workers), the results
/// in the items' order; `what` names the work in an error.
async fn on_blocking_threads<T, R>(
    items: Vec<T>,
    what: &str,
    f: impl Fn(T) -> R + Send + Sync + 'static,
) -> Result<Vec<R>, AccountsError>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let f = Arc::new(f);
    let chunk = items.len().div_ceil(PLAN_THREADS).max(1);
    let mut items = items.into_iter();
    let mut tasks = Vec::new();
    loop {
        let part: Vec<T> = items.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        let f = f.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter().map(|x| f(x)).collect::<Vec<R>>()
        }));
    }
    let mut out = Vec::new();
    for part in futures::future::join_all(tasks).await {
        out.extend(part.map_err(|e| AccountsError::Api {
            what: what.into(),
            cause: e.to_string(),
        })?);
    }
    Ok(out)
}

/// The credential steps of an account: a new certificate when the one on disk is missing,
/// not this account's, not from the cluster CA or about to expire; a rewrite when only the
/// kubeconfig or the files' owner or mode differ. Err: the home cannot be used.
fn credential_steps(
    cfg: &Accounts,
    cluster: &Cluster,
    files: CredentialFiles,
    id: Identity,
    namespace: Option<String>,
) -> Result<Vec<Step>, String> {
    let want = kubeconfig(
        &cluster.name,
        &cluster.server,
        &cluster.ca_pem,
        &id.user,
        namespace.as_deref(),
    );
    if !files.home.is_dir() {
        return Err(format!("home {} does not exist", files.home.display()));
    }
    let on_disk = files.read().map_err(|e| e.to_string())?;
    let renew_before = Duration::from_secs(u64::from(cfg.renew_before_days) * 86_400);
    if let Some(why) = needs_new(
        on_disk.cert.as_deref(),
        on_disk.key.as_deref(),
        &id,
        &cluster.ca_pem,
        renew_before,
    ) {
        return Ok(vec![Step::Issue {
            ca_pem: Arc::from(cluster.ca_pem.as_str()),
            renewal: on_disk.cert.is_some(),
            files,
            id,
            kubeconfig: want,
            why,
        }]);
    }
    if on_disk.kubeconfig.as_deref() != Some(want.as_str()) || !on_disk.owner_and_mode_ok {
        return Ok(vec![Step::Rewrite {
            files,
            kubeconfig: want,
            on_disk,
        }]);
    }
    Ok(Vec::new())
}

fn plan_tool(cfg: &Accounts, t: ToolAccount, home: Home, observed: &Observed) -> AccountPlan {
    let ns = desired::namespace(cfg, &t.name);
    let have_ns = observed.get(&format!("Namespace {ns}"));
    let want = desired::tool_objects(cfg, &t);
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    if have_ns.is_some_and(|n| n["metadata"]["annotations"][REMOVED_ANNOTATION].is_string()) {
        steps.push(Step::Unmark(ns.clone()));
    }
    let files = files_of(cfg, &t.home, t.uid, t.gid);
    let was_disabled = have_ns.is_some_and(|n| n["metadata"]["labels"][DISABLED_LABEL] == "true");
    let mut renewing = false;
    if t.disabled {
        // Stop first, then revoke, then label: a pass cut short starts over.
        if have_ns.is_some() && !was_disabled {
            steps.push(Step::StopWorkloads(ns.clone()));
        }
        steps.extend(orphans(&t.name, &want, observed));
        match home {
            Home::Leftover(Ok(true)) => steps.push(Step::RemoveFiles(files)),
            Home::Leftover(Err(e)) => problems.push(e),
            Home::Leftover(Ok(false)) | Home::Credentials(_) => {}
        }
        steps.extend(object_steps(want, observed));
    } else {
        let deletes = orphans(&t.name, &want, observed);
        steps.extend(released_homes(&t.name, observed));
        steps.extend(object_steps(want.clone(), observed));
        steps.extend(deletes);
        match home {
            Home::Credentials(Ok(s)) => {
                renewing = s.iter().any(Step::renews) && have_ns.is_some();
                steps.extend(s);
            }
            Home::Credentials(Err(e)) => problems.push(format!("no kubeconfig written: {e}")),
            Home::Leftover(_) => {}
        }
    }
    let outcome = if have_ns.is_none() {
        Outcome::Created
    } else if t.disabled && !was_disabled {
        Outcome::Disabled
    } else if renewing {
        Outcome::Renewed
    } else if steps.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Updated
    };
    AccountPlan {
        name: t.name,
        outcome,
        steps,
        problems,
    }
}

fn plan_admin(cfg: &Accounts, a: Person, home: Home, observed: &Observed) -> AccountPlan {
    let want = desired::admin_objects(cfg, &a);
    let existed = want.iter().any(|w| observed.contains_key(&key_of(w)));
    let mut steps = object_steps(want, observed);
    let mut problems = Vec::new();
    let mut renewing = false;
    match home {
        Home::Credentials(Ok(s)) => {
            renewing = existed && s.iter().any(Step::renews);
            steps.extend(s);
        }
        Home::Credentials(Err(e)) => problems.push(format!("no kubeconfig written: {e}")),
        Home::Leftover(_) => {}
    }
    let outcome = match (existed, renewing, steps.is_empty()) {
        (false, _, _) => Outcome::Created,
        (true, true, _) => Outcome::Renewed,
        (true, false, true) => Outcome::Unchanged,
        (true, false, false) => Outcome::Updated,
    };
    AccountPlan {
        name: format!("admin {}", a.name),
        outcome,
        steps,
        problems,
    }
}

/// Bindings of admins the source no longer lists.
fn orphan_admin_bindings(dir: &Directory, observed: &Observed) -> Vec<AccountPlan> {
    let admins: BTreeSet<&str> = dir.admins.iter().map(|a| a.name.as_str()).collect();
    let mut by_admin: HashMap<String, Vec<Step>> = HashMap::new();
    for o in observed.values() {
        if let Some(a) = o["metadata"]["labels"][ADMIN_LABEL].as_str()
            && !admins.contains(a)
        {
            by_admin
                .entry(a.to_string())
                .or_default()
                .push(Step::Delete(o.clone()));
        }
    }
    by_admin
        .into_iter()
        .map(|(a, steps)| AccountPlan {
            name: format!("admin {a}"),
            outcome: Outcome::Removed,
            steps,
            problems: Vec::new(),
        })
        .collect()
}

/// Tool namespaces the source no longer lists: marked (credentials revoked, workloads
/// stopped) on first sight, deleted once the grace period has passed.
fn plan_removals(
    cfg: &Accounts,
    dir: &Directory,
    observed: &Observed,
    opts: &PassOptions,
) -> Result<Vec<AccountPlan>, AccountsError> {
    let listed: BTreeSet<&str> = dir.tools.iter().map(|t| t.name.as_str()).collect();
    let grace = Duration::from_secs(u64::from(cfg.removal_grace_days) * 86_400);
    let now = SystemTime::now();
    let mut plans = Vec::new();
    let mut newly_gone = 0;
    let mut namespaces = 0;
    for o in observed.values().filter(|o| o["kind"] == "Namespace") {
        namespaces += 1;
        let Some(tool) = o["metadata"]["labels"][TOOL_LABEL].as_str() else {
            continue;
        };
        if listed.contains(tool) {
            continue;
        }
        let ns = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let marked = o["metadata"]["annotations"][REMOVED_ANNOTATION]
            .as_str()
            .and_then(|s| humantime::parse_rfc3339(s).ok());
        let (outcome, steps, name) = match marked {
            None => {
                newly_gone += 1;
                let mut steps = vec![Step::StopWorkloads(ns.clone())];
                steps.extend(deletes_of(observed, tool, "RoleBinding"));
                steps.push(Step::Mark(ns.clone()));
                let until = humantime::format_rfc3339_seconds(now + grace);
                (
                    Outcome::PendingRemoval,
                    steps,
                    format!("{tool} (namespace deleted after {until})"),
                )
            }
            Some(at) if now.duration_since(at).unwrap_or_default() >= grace => {
                // The home volume goes too (its data stays: the volume is Retain, static).
                let mut steps = vec![Step::DeleteNamespace(ns.clone())];
                steps.extend(deletes_of(observed, tool, "PersistentVolume"));
                (Outcome::Removed, steps, tool.to_string())
            }
            Some(at) => {
                let until = humantime::format_rfc3339_seconds(at + grace);
                (
                    Outcome::PendingRemoval,
                    Vec::new(),
                    format!("{tool} (namespace deleted after {until})"),
                )
            }
        };
        plans.push(AccountPlan {
            name,
            outcome,
            steps,
            problems: Vec::new(),
        });
    }
    // A source that lost its data looks like every tool removed: refuse to mark many at once.
    let limit = (namespaces / 10).max(5);
    if newly_gone > 0 && (dir.tools.is_empty() || newly_gone > limit) && !opts.allow_mass_removal {
        return Err(AccountsError::MassRemoval {
            listed: dir.tools.len(),
            gone: newly_gone,
        });
    }
    Ok(plans)
}

/// Rebinds of tool `tool`'s home volumes that a deleted claim left Released.
fn released_homes(tool: &str, observed: &Observed) -> Vec<Step> {
    observed
        .of_tool(tool)
        .filter(|(_, o)| o["kind"] == "PersistentVolume" && o["status"]["phase"] == "Released")
        .filter_map(|(_, o)| o["metadata"]["name"].as_str())
        .map(|n| Step::Rebind(n.to_string()))
        .collect()
}

/// Deletions of tool `tool`'s managed objects of `kind`.
fn deletes_of<'a>(
    observed: &'a Observed,
    tool: &'a str,
    kind: &'a str,
) -> impl Iterator<Item = Step> + 'a {
    observed
        .of_tool(tool)
        .filter(move |(_, o)| o["kind"] == kind)
        .map(|(_, o)| Step::Delete(o.clone()))
}

/// The API resource of a managed object.
fn resource_of(o: &Value) -> Option<(::kube::api::ApiResource, bool)> {
    let kind = o["kind"].as_str()?;
    KINDS
        .iter()
        .find(|(_, _, k, _)| *k == kind)
        .map(|(g, v, k, namespaced)| (observe::resource(g, v, k), *namespaced))
}

fn dynamic_api(client: &::kube::Client, o: &Value) -> Option<Api<DynamicObject>> {
    let (ar, namespaced) = resource_of(o)?;
    Some(if namespaced {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    })
}

/// Carries out a plan, step by step; (writes made, errors). The first failing step ends the
/// plan (the next pass retries it).
async fn execute(
    client: &::kube::Client,
    cfg: &Accounts,
    answers: &csr_client::Answers,
    p: &AccountPlan,
) -> (usize, Vec<String>) {
    let mut writes = 0;
    for s in &p.steps {
        match run_step(client, cfg, answers, s).await {
            Ok(n) => writes += n,
            Err(e) => return (writes, vec![format!("{}: {e}", s.describe())]),
        }
    }
    (writes, Vec::new())
}

async fn run_step(
    client: &::kube::Client,
    cfg: &Accounts,
    answers: &csr_client::Answers,
    s: &Step,
) -> Result<usize, AccountsError> {
    let blocking = |f: Box<dyn FnOnce() -> std::io::Result<()> + Send>| async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|cause| AccountsError::Api {
                what: "write the credentials".into(),
                cause,
            })
    };
    match s {
        Step::Apply(o) => {
            let api = dynamic_api(client, o).ok_or_else(|| unknown(o))?;
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(o))
                .await
                .map_err(|e| api_err(format!("apply {}", key_of(o)), e))?;
            Ok(1)
        }
        Step::Prune { obj, keys } => {
            let api = dynamic_api(client, obj).ok_or_else(|| unknown(obj))?;
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let nulls: serde_json::Map<String, Value> =
                keys.iter().map(|k| (k.clone(), Value::Null)).collect();
            let params = PatchParams {
                field_manager: Some(PRUNE_MANAGER.into()),
                ..Default::default()
            };
            api.patch(
                name,
                &params,
                &Patch::Merge(json!({"spec": {"hard": nulls}})),
            )
            .await
            .map_err(|e| api_err(format!("prune {}", key_of(obj)), e))?;
            Ok(1)
        }
        Step::Delete(o) => delete_object(client, o).await,
        Step::StopWorkloads(ns) => stop_workloads(client, ns).await,
        Step::Issue {
            files,
            id,
            kubeconfig,
            ca_pem,
            ..
        } => {
            let validity = Duration::from_secs(u64::from(cfg.cert_days) * 86_400);
            let issued = csr_client::issue(client, answers, id, validity).await?;
            let (f, k, ca) = (files.clone(), kubeconfig.clone(), ca_pem.clone());
            blocking(Box::new(move || {
                f.write(&k, &issued.cert, &issued.key)?;
                // Checked now, the next pass finds it known (no signature checked again).
                super::credentials::remember(&issued.cert, &issued.key, &ca);
                Ok(())
            }))
            .await?;
            Ok(3)
        }
        Step::Rewrite {
            files,
            kubeconfig,
            on_disk,
        } => {
            let (f, k, d) = (files.clone(), kubeconfig.clone(), on_disk.clone());
            blocking(Box::new(move || {
                f.write(
                    &k,
                    d.cert.as_deref().unwrap_or_default(),
                    d.key.as_deref().unwrap_or_default(),
                )
            }))
            .await?;
            Ok(0)
        }
        Step::RemoveFiles(files) => {
            let f = files.clone();
            blocking(Box::new(move || f.remove().map(|_| ()))).await?;
            Ok(0)
        }
        Step::Mark(ns) | Step::Unmark(ns) => {
            let mut obj = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns}});
            if matches!(s, Step::Mark(_)) {
                obj["metadata"]["annotations"] = json!({REMOVED_ANNOTATION:
                    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()});
            }
            let api = dynamic_api(client, &obj).ok_or_else(|| unknown(&obj))?;
            api.patch(
                ns,
                &PatchParams::apply(REMOVAL_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .map_err(|e| api_err(format!("mark Namespace {ns}"), e))?;
            Ok(1)
        }
        Step::DeleteNamespace(ns) => {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            delete_object(client, &obj).await
        }
        Step::Rebind(pv) => {
            let api: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
            let patch = json!({"spec": {"claimRef": {"uid": null, "resourceVersion": null}}});
            let by = PatchParams {
                field_manager: Some(REBIND_MANAGER.into()),
                ..Default::default()
            };
            api.patch(pv, &by, &Patch::Merge(&patch))
                .await
                .map_err(|e| api_err(format!("free PersistentVolume {pv}"), e))?;
            Ok(1)
        }
    }
}

/// Deletes an object; 1 write, or 0 when it was already gone.
async fn delete_object(client: &::kube::Client, o: &Value) -> Result<usize, AccountsError> {
    let api = dynamic_api(client, o).ok_or_else(|| unknown(o))?;
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(1),
        Err(::kube::Error::Api(e)) if e.code == 404 => Ok(0),
        Err(e) => Err(api_err(format!("delete {}", key_of(o)), e)),
    }
}

fn unknown(o: &Value) -> AccountsError {
    AccountsError::Api {
        what: key_of(o),
        cause: "not a kind the provisioner manages".into(),
    }
}

/// Scales every Deployment and StatefulSet of `ns` to zero and suspends its CronJobs and Jobs;
/// kinds the API server does not serve are skipped. Writes made.
async fn stop_workloads(client: &::kube::Client, ns: &str) -> Result<usize, AccountsError> {
    let mut writes = 0;
    for (group, kind, patch) in [
        ("apps", "Deployment", json!({"spec": {"replicas": 0}})),
        ("apps", "StatefulSet", json!({"spec": {"replicas": 0}})),
        ("batch", "CronJob", json!({"spec": {"suspend": true}})),
        ("batch", "Job", json!({"spec": {"suspend": true}})),
    ] {
        let ar = observe::resource(group, "v1", kind);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let items = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(::kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(api_err(format!("list {kind} in {ns}"), e)),
        };
        for o in items {
            let done = match kind {
                "Deployment" | "StatefulSet" => o.data["spec"]["replicas"] == 0,
                "Job" => {
                    o.data["spec"]["suspend"] == true
                        || o.data["status"]["completionTime"].is_string()
                }
                _ => o.data["spec"]["suspend"] == true,
            };
            if done {
                continue;
            }
            let name = o.metadata.name.unwrap_or_default();
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| api_err(format!("stop {kind} {ns}/{name}"), e))?;
            writes += 1;
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(hard: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "tool-quota", "namespace": "tool-a"}, "spec": {"hard": hard}})
    }

    fn binding(kind: &str, name: &str) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "tool", "namespace": "tool-a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}})
    }

    fn described(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::describe).collect()
    }

    #[test]
    fn quota_entries_others_added_are_removed_and_nothing_else_is_touched() {
        let want = quota(json!({"pods": "16"}));
        let same = Observed::new([quota(json!({"pods": "16"}))]);
        assert!(object_steps(vec![want.clone()], &same).is_empty());
        let extra = Observed::new([quota(json!({"pods": "16", "requests.storage": "1Ti"}))]);
        assert_eq!(
            described(&object_steps(vec![want.clone()], &extra)),
            ["remove requests.storage from ResourceQuota tool-a/tool-quota (not in the inventory)"]
        );
        let both = Observed::new([quota(json!({"pods": "99", "x": "1"}))]);
        assert_eq!(
            described(&object_steps(vec![want], &both)),
            [
                "remove x from ResourceQuota tool-a/tool-quota (not in the inventory)",
                "apply ResourceQuota tool-a/tool-quota"
            ]
        );
    }

    #[test]
    fn a_binding_to_another_role_is_made_anew() {
        let want = binding("ClusterRole", "forgectl-tool");
        let old = Observed::new([binding("Role", "tool")]);
        assert_eq!(
            described(&object_steps(vec![want.clone()], &old)),
            [
                "delete RoleBinding tool-a/tool",
                "apply RoleBinding tool-a/tool"
            ]
        );
        let current = Observed::new([want.clone()]);
        assert!(object_steps(vec![want], &current).is_empty());
    }
}
