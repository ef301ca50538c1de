//! Watch streams as the real API server serves them (`?watch=true` on a collection): HTTP 200
//! with one JSON event per line, `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}`.
//!
//! - `resourceVersion` unset or `"0"`: a synthetic ADDED for every object that matches now,
//!   then the changes after now; `N`: every change after revision `N`, from the history; older
//!   than the last compaction: one ERROR event with the 410 `Expired` Status, then the end.
//! - Selectors are applied to both sides of a change, as the watch cache does: an object that
//!   starts to match is ADDED, one that stops matching is DELETED (the old object at the new
//!   revision), a deletion is DELETED with the object as it was, at the deletion's revision.
//! - `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`) ends the initial events
//!   with a BOOKMARK annotated `k8s.io/initial-events-end: "true"`; with `allowWatchBookmarks`
//!   a BOOKMARK is sent before the stream ends at `timeoutSeconds` (default 30 minutes).
//! - A stream that is up to date goes on through a compaction; one that fell behind the
//!   compacted history ends with the 410 ERROR event.
//!
//! Events carry `apiVersion` and `kind`, as in the real streams.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::errors::{self, Fail};
use super::select::Selectors;
use super::{Key, Req, Store, Target};

/// What a watch request asked for, checked under the store's lock.
pub struct Watch {
    target: Target,
    sel: Selectors,
    /// The revision after which changes are sent.
    from: u64,
    /// Events to send first (synthetic ADDED, or the ERROR of an expired revision).
    first: Vec<Value>,
    /// Send nothing after `first` (an expired revision).
    ended: bool,
    bookmarks: bool,
    timeout: Duration,
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|w| matches!(w.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// The 410 ERROR event of a revision older than the history.
fn expired(rv: u64, oldest: u64) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("too old resource version: {rv} ({oldest})"),
        "reason": "Expired", "code": 410}})
}

/// A stored object as a watch event sends it: with its apiVersion and kind.
fn typed(t: &Target, v: &Value) -> Value {
    let mut v = v.clone();
    v["apiVersion"] = json!(t.api_version());
    v["kind"] = json!(t.res.kind);
    v
}

fn bookmark(t: &Target, rev: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"apiVersion": t.api_version(), "kind": t.res.kind,
        "metadata": meta}})
}

impl Watch {
    /// Reads the request's options against the store as it is now.
    pub fn start(st: &Store, r: &Req, t: &Target) -> Result<Self, Fail> {
        let sel = Selectors::parse(r, t)?;
        let timeout = match r.query.get("timeoutSeconds").filter(|s| !s.is_empty()) {
            Some(s) => Duration::from_secs(
                s.parse::<u64>()
                    .map_err(|e| errors::bad_request(format!("timeoutSeconds: {e}")))?,
            ),
            None => Duration::from_secs(1800),
        };
        let target = Target {
            res: t.res.clone(),
            ns: t.ns.clone(),
            name: None,
            subresource: None,
        };
        let mut w = Self {
            sel,
            from: st.revision,
            first: Vec::new(),
            ended: false,
            bookmarks: truthy(r.query.get("allowWatchBookmarks")),
            timeout,
            target,
        };
        let rv = r.query.get("resourceVersion").map_or("", String::as_str);
        let initial = truthy(r.query.get("sendInitialEvents"));
        if rv.is_empty() || rv == "0" || initial {
            for (k, v) in st.of(&t.res.group, &t.res.plural) {
                if w.in_scope(k) && w.sel.matches(v) {
                    w.first
                        .push(json!({"type": "ADDED", "object": typed(&w.target, v)}));
                }
            }
            if initial {
                w.first.push(bookmark(&w.target, st.revision, true));
            }
        } else {
            let rev: u64 = rv.parse().map_err(|_| {
                errors::bad_request(format!("invalid resource version: {}", errors::quote(rv)))
            })?;
            if rev < st.compacted {
                w.first.push(expired(rev, st.compacted));
                w.ended = true;
            }
            w.from = rev;
        }
        Ok(w)
    }

    fn in_scope(&self, k: &Key) -> bool {
        self.target.ns.is_empty() || k.2 == self.target.ns
    }

    /// The events of the changes after `self.from`, and the revision they reach; `None` when
    /// the history no longer holds them.
    fn changes(&self, st: &Store) -> Option<(Vec<Value>, u64)> {
        if self.from < st.compacted {
            return None;
        }
        let (group, plural) = (&self.target.res.group, &self.target.res.plural);
        let start = st.history.partition_point(|(r, _, _)| *r <= self.from);
        // Each change's object after it: the next change's `before`, or what is stored now.
        let mut after: std::collections::HashMap<&Key, Option<&Value>> = Default::default();
        let mut out = Vec::new();
        for (rev, k, before) in st.history[start..].iter().rev() {
            if &k.0 != group || &k.1 != plural || !self.in_scope(k) {
                continue;
            }
            let now = *after.entry(k).or_insert_with(|| st.objects.get(k));
            after.insert(k, before.as_ref());
            let was = before.as_ref().filter(|v| self.sel.matches(v));
            let is = now.filter(|v| self.sel.matches(v));
            let at = |v: &Value| {
                let mut v = typed(&self.target, v);
                v["metadata"]["resourceVersion"] = json!(rev.to_string());
                v
            };
            let event = match (was, is) {
                (None, Some(v)) => json!({"type": "ADDED", "object": typed(&self.target, v)}),
                (Some(_), Some(v)) => json!({"type": "MODIFIED", "object": typed(&self.target, v)}),
                (Some(v), None) => json!({"type": "DELETED", "object": at(v)}),
                (None, None) => continue,
            };
            out.push(event);
        }
        out.reverse();
        Some((out, st.revision))
    }

    /// The streaming reply: the first events, then the changes as they happen, until the
    /// timeout, a compaction, or the client going away.
    pub fn serve(mut self, store: Arc<Mutex<Store>>) -> Response<BoxBody<Bytes, Infallible>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let line = |v: &Value| Bytes::from(format!("{v}\n"));
        let changed = store.lock().unwrap().changed.clone();
        tokio::spawn(async move {
            for e in std::mem::take(&mut self.first) {
                if tx.send(line(&e)).await.is_err() {
                    return;
                }
            }
            if self.ended {
                return;
            }
            let deadline = tokio::time::Instant::now() + self.timeout;
            loop {
                let notified = changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let batch = {
                    let st = store.lock().unwrap();
                    self.changes(&st).ok_or((self.from, st.compacted))
                };
                match batch {
                    Ok((events, reached)) => {
                        for e in &events {
                            if tx.send(line(e)).await.is_err() {
                                return;
                            }
                        }
                        self.from = reached;
                    }
                    Err((rev, oldest)) => {
                        let _ = tx.send(line(&expired(rev, oldest))).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        if self.bookmarks {
                            let _ = tx.send(line(&bookmark(&self.target, self.from, false))).await;
                        }
                        return;
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        let body = http_body_util::StreamBody::new(futures::stream::unfold(rx, |mut rx| async {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        }));
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("transfer-encoding", "chunked")
            .body(body.boxed())
            .unwrap()
    }
}
