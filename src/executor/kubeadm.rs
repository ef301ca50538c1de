//! The executor's kubeadm work that spans hosts: joins with bootstrap tokens made for them, and
//! fetching the admin kubeconfig into the state dir.

use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

use super::{ExecError, Executor, endpoints, failed};
use crate::phases::kubeadm_init::{CONFIG_DIR, wait_api_ready};
use crate::plan::{Action, JOIN_CONFIG, Op, TOKEN_PLACEHOLDER};
use crate::ssh::{Session, SshError};

/// Written once `kubeadm join` has finished every phase (kubelet.conf appears half-way through a
/// control plane's join, and a stale one must not pass for a join).
pub const JOIN_DONE: &str = "/var/lib/forgectl/kubeadm-join.done";
/// A node that has joined: the mark, or the first control plane (made by `kubeadm init`).
const JOINED: &str =
    "test -f /var/lib/forgectl/kubeadm-join.done || test -f /var/lib/forgectl/kubeadm-init.done";
/// How long one `kubeadm join` may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);

/// A bootstrap token in kubeadm's format (`[a-z0-9]{6}.[a-z0-9]{16}`).
fn is_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    matches!(s.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

impl Executor<'_> {
    fn session_error(host: &str) -> impl Fn(SshError) -> ExecError + '_ {
        move |e| ExecError::Hosts(vec![(host.to_string(), e)])
    }

    pub(super) async fn session_of(&self, host: &str) -> Result<Arc<Session>, ExecError> {
        let machine = self
            .inv
            .machines
            .iter()
            .find(|m| m.name == host)
            .ok_or_else(|| ExecError::Unsupported(format!("no machine named {host}")))?;
        let ep = endpoints(self.inv, &[machine]).remove(0);
        self.pool()
            .await?
            .session(&ep)
            .await
            .map_err(Self::session_error(host))
    }

    /// Copies `path` from the action's host into the state dir (0600); 1 when the copy changed.
    pub async fn fetch_file(&self, a: &Action) -> Result<usize, ExecError> {
        let (Some(host), Op::FetchFile { path, to }) = (&a.host, &a.op) else {
            return Ok(0);
        };
        let s = self.session_of(host).await?;
        let data = s.download(path).await.map_err(Self::session_error(host))?;
        let target = self.state.path().join(to);
        if std::fs::read(&target).ok().as_deref() == Some(data.as_slice()) {
            return Ok(0);
        }
        self.state.write_secret(to, &data)?;
        Ok(1)
    }

    /// Joins the hosts of `actions` that have not joined: control planes one at a time (each
    /// waited for until its API server answers), then workers together. One bootstrap token is
    /// made on the first control plane for the run and deleted afterwards, whatever happened.
    pub async fn kubeadm_join(&self, actions: &[&Action]) -> Result<usize, ExecError> {
        let joins: Vec<(&str, bool, &str, &str)> = actions
            .iter()
            .filter_map(|a| match (&a.host, &a.op) {
                (
                    Some(host),
                    Op::KubeadmJoin {
                        control_plane,
                        first,
                        config,
                        ..
                    },
                ) => Some((
                    host.as_str(),
                    *control_plane,
                    first.as_str(),
                    config.as_str(),
                )),
                _ => None,
            })
            .collect();
        let Some(first) = joins.first().map(|j| j.2.to_string()) else {
            return Ok(0);
        };
        // Which nodes have joined, asked of all of them at once.
        let machines: Vec<&crate::inventory::Machine> = joins
            .iter()
            .filter_map(|j| self.inv.machines.iter().find(|m| m.name == j.0))
            .collect();
        let pool = self.pool().await?;
        let checks = pool
            .each(&endpoints(self.inv, &machines), |s| async move {
                let joined = s.exec(&s.as_root(JOINED)).await?.success();
                Ok((s, joined))
            })
            .await;
        let mut todo: Vec<(Arc<Session>, bool, &str)> = Vec::new();
        let mut lost = Vec::new();
        for (r, (_, control_plane, _, config)) in checks.into_iter().zip(&joins) {
            match r.result {
                Ok((_, true)) => {}
                Ok((s, false)) => todo.push((s, *control_plane, config)),
                Err(e) => lost.push((r.host, e)),
            }
        }
        if !lost.is_empty() {
            return Err(ExecError::Hosts(lost));
        }
        if todo.is_empty() {
            return Ok(0);
        }
        let fs = self.session_of(&first).await?;
        let create = "kubeadm token create --ttl 15m --description 'forgectl: kubeadm join'";
        let out = fs
            .exec(&fs.as_root(create))
            .await
            .map_err(Self::session_error(&first))?;
        let token = out
            .stdout_text()
            .lines()
            .map(str::trim)
            .rfind(|l| is_token(l))
            .map(str::to_string);
        let Some(token) = token.filter(|_| out.success()) else {
            return Err(failed(&first, create, &out));
        };
        let result = self.join_all(&todo, &token).await;
        let delete = format!("kubeadm token delete {token}");
        let gone = fs.exec(&fs.as_root(&delete)).await;
        if !gone.as_ref().is_ok_and(|o| o.success()) {
            tracing::warn!(host = %first, "the bootstrap token could not be deleted; it expires within 15 minutes");
        }
        result
    }

    async fn join_all(
        &self,
        todo: &[(Arc<Session>, bool, &str)],
        token: &str,
    ) -> Result<usize, ExecError> {
        let mut joined = 0;
        for (s, _, config) in todo.iter().filter(|(_, cp, _)| *cp) {
            join_one(s, config, token, true).await?;
            joined += 1;
        }
        let workers = todo.iter().filter(|(_, cp, _)| !*cp);
        let limit = (self.inv.inventory.ssh.concurrency as usize).max(1);
        let results: Vec<Result<(), ExecError>> = futures::stream::iter(workers)
            .map(|(s, _, config)| join_one(s, config, token, false))
            .buffer_unordered(limit)
            .collect()
            .await;
        for r in results {
            r?;
            joined += 1;
        }
        Ok(joined)
    }
}

/// One node's join: the configuration with the token (0600), `kubeadm join`, the file removed;
/// for a control plane, then its API server waited for. The token never appears in errors.
async fn join_one(
    s: &Session,
    config: &str,
    token: &str,
    control_plane: bool,
) -> Result<(), ExecError> {
    let host = s.endpoint().name.clone();
    let ssh = |e: SshError| ExecError::Hosts(vec![(host.clone(), e)]);
    s.upload(
        JOIN_CONFIG,
        config.replace(TOKEN_PLACEHOLDER, token).as_bytes(),
        0o600,
        "root:root",
    )
    .await
    .map_err(ssh)?;
    let command = format!(
        "install -d -m 0700 {CONFIG_DIR}; kubeadm join --config {JOIN_CONFIG}; rc=$?; rm -f {JOIN_CONFIG}; \
         test $rc = 0 && mkdir -p /var/lib/forgectl && touch {JOIN_DONE}; exit $rc"
    );
    let out = s
        .exec_with(&s.as_root(&command), None, JOIN_TIMEOUT)
        .await
        .map_err(ssh)?;
    if !out.success() {
        let mut e = failed(&host, &format!("kubeadm join --config {JOIN_CONFIG}"), &out);
        if let ExecError::Command { stderr, .. } = &mut e {
            *stderr = stderr.replace(token, "<token>");
        }
        return Err(e);
    }
    if control_plane {
        // Returns at once when the API server answers already.
        let out = s.exec(&s.as_root(&wait_api_ready())).await.map_err(ssh)?;
        if !out.success() {
            return Err(failed(&host, "wait for the API server's /readyz", &out));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_token;

    #[test]
    fn bootstrap_token_format() {
        assert!(is_token("abcdef.0123456789abcdef"));
        assert!(!is_token("abcdef.0123456789abcde"));
        assert!(!is_token("ABCDEF.0123456789abcdef"));
        assert!(!is_token("[bootstrap-token] Using token"));
        assert!(!is_token(""));
    }
}
