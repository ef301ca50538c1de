//! Watches on every kind the provisioner manages (by its `managed-by` label): a change forgectl
//! did not make (a quota edited by hand, a RoleBinding deleted, a namespace removed) is drift,
//! and the controller runs a pass soon after instead of waiting for the next resync.
//!
//! Which changes count: an object added or modified whose newest `managedFields` entry is
//! another manager's, not a status update (the quota controller keeps `status.used` current and
//! that is no drift); an object deleted while no pass runs (forgectl deletes only in a pass);
//! a watch that had to list again (events may have been missed). forgectl's own writes are
//! never drift, so a pass does not set off another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::kube::api::{Api, DynamicObject};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prometheus_client::metrics::counter::Counter;

use super::desired::{KINDS, MANAGED_BY, MANAGER, key};
use super::observe::resource;

/// How long a deletion a pass made stays expected (a namespace's objects go with it, as the
/// namespace controller gets to them).
const EXPECTED_FOR: Duration = Duration::from_secs(600);

/// Managers that act on forgectl's objects as the system intends: the PV controller binding a
/// volume, the namespace controller finalizing. Their changes are no drift.
const SYSTEM_MANAGERS: &[&str] = &["kube-controller-manager"];

/// The drift seen since the last pass, shared by the watches and the controller loop.
pub struct Drift {
    state: Mutex<State>,
    events: Counter,
}

#[derive(Default)]
struct State {
    /// When the first drift since the last pass was seen, and what it was.
    pending: Option<(Instant, String)>,
    busy: bool,
    /// Deletions passes made (`Kind ns/name`, or `Namespace ns` for all of a namespace), until
    /// when they are expected.
    expected: HashMap<String, Instant>,
}

impl State {
    /// Whether the deletion of `kind` `ns`/`name` is one a pass made.
    fn expected(&mut self, kind: &str, meta: &ObjectMeta) -> bool {
        let now = Instant::now();
        self.expected.retain(|_, until| *until > now);
        let own = describe(kind, meta);
        let in_deleted_ns = meta
            .namespace
            .as_deref()
            .is_some_and(|ns| self.expected.contains_key(&key("Namespace", None, ns)));
        // A namespace's entry covers all it held (and stays); an object's own is used up.
        in_deleted_ns
            || if kind == "Namespace" {
                self.expected.contains_key(&own)
            } else {
                self.expected.remove(&own).is_some()
            }
    }
}

impl Drift {
    /// Counts drift events into `events`.
    pub fn new(events: Counter) -> Self {
        Self {
            state: Mutex::new(State::default()),
            events,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, what: String) {
        self.events.inc();
        let mut st = self.state();
        if st.pending.is_none() {
            tracing::info!(drift = %what, "a pass follows");
            st.pending = Some((Instant::now(), what));
        }
    }

    /// An object was deleted: drift unless a pass runs or a pass deleted it.
    fn note_deleted(&self, kind: &str, meta: &ObjectMeta) {
        let ours = {
            let mut st = self.state();
            st.busy || st.expected(kind, meta)
        };
        if !ours {
            self.note(format!("{} deleted", describe(kind, meta)));
        }
    }

    /// Since when drift waits for a pass.
    pub fn pending_since(&self) -> Option<Instant> {
        self.state().pending.as_ref().map(|p| p.0)
    }

    /// A pass starts: the drift it will see is taken (returned, for the log).
    pub fn pass_started(&self) -> Option<String> {
        let mut st = self.state();
        st.busy = true;
        st.pending.take().map(|p| p.1)
    }

    /// The pass ended, having deleted `deleted` (`Kind ns/name` keys): their deletion events,
    /// arriving now or later, are its own.
    pub fn pass_ended(&self, deleted: &[String]) {
        let mut st = self.state();
        st.busy = false;
        let until = Instant::now() + EXPECTED_FOR;
        st.expected
            .extend(deleted.iter().map(|k| (k.clone(), until)));
    }
}

/// The manager of the newest change to an object when that change is drift: not forgectl's
/// own, not a status update. Entries of the same (second-resolution) time count together.
pub fn foreign_change(meta: &ObjectMeta) -> Option<String> {
    let entries = meta.managed_fields.as_deref().unwrap_or_default();
    let newest = entries.iter().filter_map(|e| e.time.as_ref()).max()?;
    let ours = |m: &str| {
        m == MANAGER || m.starts_with(&format!("{MANAGER}-")) || SYSTEM_MANAGERS.contains(&m)
    };
    entries
        .iter()
        .filter(|e| e.time.as_ref() == Some(newest))
        .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty())
        .filter_map(|e| e.manager.as_deref())
        .find(|m| !ours(m))
        .map(str::to_string)
}

/// The object's key as a pass reports its deletions ([`key_of`](super::desired::key_of)).
fn describe(kind: &str, meta: &ObjectMeta) -> String {
    key(
        kind,
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// Starts one watch per managed kind (each retrying with backoff on its own); they run until
/// aborted.
pub fn spawn(
    client: &::kube::Client,
    drift: std::sync::Arc<Drift>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let selector = format!("{MANAGED_BY}={MANAGER}");
    KINDS
        .iter()
        .map(|(g, v, k, _)| {
            let ar = resource(g, v, k);
            let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
            let config = watcher::Config::default().labels(&selector);
            let (drift, kind) = (drift.clone(), k.to_string());
            tokio::spawn(async move {
                let mut events = watcher::watcher(api, config).default_backoff().boxed();
                let mut listed = false;
                while let Some(e) = events.next().await {
                    match e {
                        Ok(Event::Apply(o)) => {
                            if let Some(by) = foreign_change(&o.metadata) {
                                drift.note(format!(
                                    "{} changed by {by}",
                                    describe(&kind, &o.metadata)
                                ));
                            }
                        }
                        Ok(Event::Delete(o)) => {
                            drift.note_deleted(&kind, &o.metadata);
                        }
                        Ok(Event::InitDone) => {
                            if listed {
                                drift.note(format!("the watch on {kind} listed again"));
                            }
                            listed = true;
                        }
                        Ok(Event::Init | Event::InitApply(_)) => {}
                        Err(e) => {
                            tracing::warn!(kind = %kind, error = %e, "watch failed; retrying")
                        }
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn entry(manager: &str, secs: i64, subresource: Option<&str>) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            subresource: subresource.map(str::to_string),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).expect("a time"),
            )),
            ..Default::default()
        }
    }

    fn meta(entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_newest_change_by_someone_else_is_drift() {
        let ours = entry(MANAGER, 100, None);
        assert_eq!(foreign_change(&meta(vec![ours.clone()])), None);
        assert_eq!(
            foreign_change(&meta(vec![ours.clone(), entry("kubectl-edit", 200, None)])),
            Some("kubectl-edit".into())
        );
        // forgectl put its fields back after the edit.
        assert_eq!(
            foreign_change(&meta(vec![
                entry(MANAGER, 300, None),
                entry("kubectl-edit", 200, None)
            ])),
            None
        );
        // The quota controller updating status.used is no drift.
        assert_eq!(
            foreign_change(&meta(vec![
                ours.clone(),
                entry("kube-controller-manager", 200, Some("status"))
            ])),
            None
        );
        // The PV controller binding a volume is the system at work.
        assert_eq!(
            foreign_change(&meta(vec![
                ours.clone(),
                entry("kube-controller-manager", 200, None)
            ])),
            None
        );
        // The removal mark is forgectl's too.
        assert_eq!(
            foreign_change(&meta(vec![
                ours.clone(),
                entry("forgectl-accounts-removal", 200, None)
            ])),
            None
        );
        // Same second: someone else's change counts.
        assert_eq!(
            foreign_change(&meta(vec![
                entry(MANAGER, 200, None),
                entry("kubectl-patch", 200, None)
            ])),
            Some("kubectl-patch".into())
        );
        assert_eq!(foreign_change(&ObjectMeta::default()), None);
    }

    fn named(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: ns.map(str::to_string),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn deletions_a_pass_made_are_its_own_and_others_are_drift() {
        let d = Drift::new(Counter::default());
        d.pass_started();
        d.note_deleted("Role", &named(Some("tool-a"), "tool"));
        assert_eq!(d.pending_since(), None, "during a pass");
        d.pass_ended(&["RoleBinding tool-a/tool".into(), "Namespace tool-z".into()]);
        // The pass's own deletions, arriving after it ended.
        d.note_deleted("RoleBinding", &named(Some("tool-a"), "tool"));
        d.note_deleted("ResourceQuota", &named(Some("tool-z"), "tool-quota"));
        d.note_deleted("Namespace", &named(None, "tool-z"));
        d.note_deleted("ResourceQuota", &named(Some("tool-z"), "tool-limits"));
        assert_eq!(d.pending_since(), None);
        assert_eq!(d.events.get(), 0);
        // Used up: the same object deleted again is someone else's doing.
        d.note_deleted("RoleBinding", &named(Some("tool-a"), "tool"));
        d.note("ResourceQuota tool-c/tool changed by kubectl-edit".into());
        assert!(d.pending_since().is_some());
        assert_eq!(
            d.pass_started().as_deref(),
            Some("RoleBinding tool-a/tool deleted")
        );
        assert_eq!(d.pending_since(), None);
        assert_eq!(d.events.get(), 2);
    }
}
