//! One SSH connection to one host, reused for every command and transfer.

use russh::client::{self, Handle};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{Credentials, Endpoint, Settings, SshError, shell_quote};

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status; None when the command was killed by a signal.
    pub exit_code: Option<u32>,
    /// The signal that ended it, if any.
    pub signal: Option<String>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Wall time.
    pub duration: Duration,
}

impl Output {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// stdout as text, trimmed.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    /// stderr as text, trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Verifies the server's key and keeps the verdict so a refusal can be reported precisely.
struct Checker {
    ep: Endpoint,
    settings: Arc<Settings>,
    refusal: Arc<std::sync::Mutex<Option<SshError>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = key.public_key();
        let check = self.settings.host_keys.clone();
        let ep = self.ep.clone();
        let verdict = tokio::task::spawn_blocking(move || check.verify(&ep, &key))
            .await
            .unwrap_or_else(|e| {
                Err(SshError::Connect {
                    host: self.ep.name.clone(),
                    address: self.ep.address.clone(),
                    port: self.ep.port,
                    user: self.ep.user.clone(),
                    cause: format!("host key check failed: {e}"),
                })
            });
        match verdict {
            Ok(()) => Ok(true),
            Err(e) => {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some(e);
                }
                Ok(false)
            }
        }
    }
}

/// An authenticated connection to one host.
pub struct Session {
    handle: Handle<Checker>,
    endpoint: Endpoint,
    channels: Semaphore,
    command_timeout: Duration,
    // Keeps the bastion connection alive while this one tunnels through it.
    _via: Option<Arc<Session>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

fn connect_error(ep: &Endpoint, e: &std::io::Error, after: Duration) -> SshError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => SshError::Refused {
            host: ep.name.clone(),
            address: ep.address.clone(),
            port: ep.port,
            user: ep.user.clone(),
        },
        std::io::ErrorKind::TimedOut => timeout_error(ep, after, "TCP connect"),
        _ => SshError::Connect {
            host: ep.name.clone(),
            address: ep.address.clone(),
            port: ep.port,
            user: ep.user.clone(),
            cause: e.to_string(),
        },
    }
}

fn timeout_error(ep: &Endpoint, after: Duration, stage: &'static str) -> SshError {
    SshError::Timeout {
        host: ep.name.clone(),
        address: ep.address.clone(),
        port: ep.port,
        user: ep.user.clone(),
        after,
        stage,
    }
}

impl Session {
    /// Connects and authenticates, retrying refused and timed-out attempts with backoff for up
    /// to `settings.retry_for` (machines that are still booting).
    pub async fn connect(ep: &Endpoint, settings: Arc<Settings>) -> Result<Self, SshError> {
        let via = match &settings.bastion {
            Some(b) => {
                let mut direct = (*settings).clone();
                direct.bastion = None;
                Some(Arc::new(
                    Box::pin(Self::connect(b, Arc::new(direct))).await?,
                ))
            }
            None => None,
        };
        let deadline = Instant::now() + settings.retry_for;
        let mut delay = Duration::from_millis(100);
        loop {
            match Self::attempt(ep, settings.clone(), via.clone()).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_retryable() && Instant::now() + delay < deadline => {
                    tracing::debug!(host = %ep.name, error = %e, "connect failed, retrying");
                    let jitter = Duration::from_millis(u64::from(std::process::id() % 50));
                    tokio::time::sleep(delay + jitter).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(
        ep: &Endpoint,
        settings: Arc<Settings>,
        via: Option<Arc<Session>>,
    ) -> Result<Self, SshError> {
        let limit = settings.connect_timeout;
        let config = Arc::new(client::Config {
            nodelay: true,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            ..Default::default()
        });
        let refusal = Arc::new(std::sync::Mutex::new(None));
        let checker = Checker {
            ep: ep.clone(),
            settings: settings.clone(),
            refusal: refusal.clone(),
        };
        let handshake = async {
            match &via {
                None => {
                    let stream = TcpStream::connect((ep.address.as_str(), ep.port))
                        .await
                        .map_err(|e| connect_error(ep, &e, limit))?;
                    client::connect_stream(config, stream, checker).await
                }
                Some(b) => {
                    let ch = b
                        .handle
                        .channel_open_direct_tcpip(
                            ep.address.clone(),
                            u32::from(ep.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| SshError::Connect {
                            host: ep.name.clone(),
                            address: ep.address.clone(),
                            port: ep.port,
                            user: ep.user.clone(),
                            cause: format!("bastion {} could not reach it: {e}", b.endpoint.name),
                        })?;
                    client::connect_stream(config, ch.into_stream(), checker).await
                }
            }
            .map_err(|e| {
                refusal
                    .lock()
                    .ok()
                    .and_then(|mut r| r.take())
                    .unwrap_or_else(|| SshError::Connect {
                        host: ep.name.clone(),
                        address: ep.address.clone(),
                        port: ep.port,
                        user: ep.user.clone(),
                        cause: format!("SSH handshake failed: {e}"),
                    })
            })
        };
        let mut handle = tokio::time::timeout(limit, handshake)
            .await
            .map_err(|_| timeout_error(ep, limit, "SSH handshake"))??;
        tokio::time::timeout(limit, authenticate(&mut handle, ep, &settings.credentials))
            .await
            .map_err(|_| timeout_error(ep, limit, "authentication"))??;
        Ok(Self {
            handle,
            endpoint: ep.clone(),
            channels: Semaphore::new(settings.max_channels.clamp(1, super::MAX_CHANNELS)),
            command_timeout: settings.command_timeout,
            _via: via,
        })
    }

    /// Opens a session channel. The server may still count a channel we just closed against its
    /// MaxSessions for a moment, so a refusal is retried a few times with a short backoff.
    async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let mut delay = Duration::from_millis(10);
        for _ in 0..6 {
            match self.handle.channel_open_session().await {
                Err(russh::Error::ChannelOpenFailure(_)) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        self.handle.channel_open_session().await
    }

    /// The endpoint this session is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// True when the login user is root (no sudo needed).
    pub fn is_root(&self) -> bool {
        self.endpoint.user == "root"
    }

    /// `command` as root: unchanged for root, else through `sudo -n sh -c`.
    pub fn as_root(&self, command: &str) -> String {
        if self.is_root() {
            command.to_string()
        } else {
            format!("sudo -n -- sh -c {}", shell_quote(command))
        }
    }

    /// Runs `command` with the default timeout.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        self.exec_with(command, None, self.command_timeout).await
    }

    /// Runs `command`, feeding `stdin` if given. Everything (opening the channel included) is
    /// bounded by `limit`, so a host that stops answering yields a timeout, never a hang.
    pub async fn exec_with(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> Result<Output, SshError> {
        let started = Instant::now();
        match tokio::time::timeout(limit, self.exec_inner(command, stdin)).await {
            Ok(r) => r.map(|mut o| {
                o.duration = started.elapsed();
                o
            }),
            Err(_) => Err(SshError::CommandTimeout {
                host: self.endpoint.name.clone(),
                command: command.to_string(),
                after: limit,
            }),
        }
    }

    async fn exec_inner(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let lost_when = |started: bool| {
            move |cause: String| SshError::Lost {
                host: self.endpoint.name.clone(),
                command: command.to_string(),
                cause,
                started,
            }
        };
        let (not_started, lost) = (lost_when(false), lost_when(true));
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|e| not_started(e.to_string()))?;
        let mut ch = self
            .open_channel()
            .await
            .map_err(|e| not_started(e.to_string()))?;
        // Dropping the channel (on timeout) closes it. `exec` only queues the request: an
        // error means it was never sent.
        ch.exec(true, command)
            .await
            .map_err(|e| not_started(e.to_string()))?;
        if let Some(data) = stdin {
            ch.data(data).await.map_err(|e| lost(e.to_string()))?;
            ch.eof().await.map_err(|e| lost(e.to_string()))?;
        }
        let mut out = Output::default();
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.exit_code = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.signal = Some(format!("{signal_name:?}"))
                }
                _ => {}
            }
        }
        if out.exit_code.is_none() && out.signal.is_none() {
            return Err(lost(
                "the connection closed before the command finished".into(),
            ));
        }
        Ok(out)
    }

    /// Opens a TCP connection from the host to `address:port` (SSH direct-tcpip: the host's view
    /// of the network, e.g. a Service IP), sends `request` and reads until `complete` says the
    /// answer is whole or the peer closes. Bounded by `limit`, channel opening included.
    pub async fn tcp_exchange(
        &self,
        address: &str,
        port: u16,
        request: &[u8],
        complete: impl Fn(&[u8]) -> bool,
        limit: Duration,
    ) -> Result<Vec<u8>, SshError> {
        let what = format!("TCP exchange with {address}:{port}");
        let lost = |cause: String| SshError::Lost {
            host: self.endpoint.name.clone(),
            command: what.clone(),
            cause,
            started: true,
        };
        let work = async {
            let _permit = self
                .channels
                .acquire()
                .await
                .map_err(|e| lost(e.to_string()))?;
            let mut ch = self
                .handle
                .channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0)
                .await
                .map_err(|e| lost(format!("the host could not connect: {e}")))?;
            ch.data(request).await.map_err(|e| lost(e.to_string()))?;
            let mut answer = Vec::new();
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        answer.extend_from_slice(&data);
                        if complete(&answer) {
                            break;
                        }
                    }
                    ChannelMsg::Eof | ChannelMsg::Close => break,
                    _ => {}
                }
            }
            let _ = ch.close().await;
            Ok(answer)
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| SshError::CommandTimeout {
                host: self.endpoint.name.clone(),
                command: what.clone(),
                after: limit,
            })?
    }

    /// Writes `data` to `path` with `mode` and `owner` (`user:group`), atomically: SFTP to a private
    /// temp file, then (as root) move next to the target, chown, chmod and rename over it.
    pub async fn upload(
        &self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: &str,
    ) -> Result<(), SshError> {
        let fail = |cause: String| SshError::Transfer {
            host: self.endpoint.name.clone(),
            op: "upload",
            path: path.to_string(),
            cause,
        };
        let tmp = format!("/tmp/.forgectl-upload-{:032x}", rand_suffix());
        let sent = tokio::time::timeout(self.command_timeout, async {
            let _permit = self
                .channels
                .acquire()
                .await
                .map_err(|e| fail(e.to_string()))?;
            let ch = self.open_channel().await.map_err(|e| fail(e.to_string()))?;
            ch.request_subsystem(true, "sftp")
                .await
                .map_err(|e| fail(e.to_string()))?;
            let sftp = russh_sftp::client::SftpSession::new(ch.into_stream())
                .await
                .map_err(|e| fail(format!("SFTP: {e}")))?;
            let attrs = russh_sftp::protocol::FileAttributes {
                permissions: Some(0o600),
                ..Default::default()
            };
            use russh_sftp::protocol::OpenFlags;
            let mut f = sftp
                .open_with_flags_and_attributes(
                    tmp.clone(),
                    OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE | OpenFlags::EXCLUDE,
                    attrs,
                )
                .await
                .map_err(|e| fail(format!("SFTP open {tmp}: {e}")))?;
            f.write_all(data)
                .await
                .map_err(|e| fail(format!("SFTP write: {e}")))?;
            f.shutdown()
                .await
                .map_err(|e| fail(format!("SFTP close: {e}")))?;
            let _ = sftp.close().await;
            Ok::<(), SshError>(())
        })
        .await;
        match sent {
            Ok(r) => r?,
            Err(_) => {
                return Err(fail(format!(
                    "no progress within {:?}",
                    self.command_timeout
                )));
            }
        }
        let q = shell_quote(path);
        let script = format!(
            "set -e; t=$(dirname {q})/.$(basename {q}).forgectl-new; mkdir -p \"$(dirname {q})\"; \
             mv -f {tmp} \"$t\"; chown {owner} \"$t\"; chmod {mode:o} \"$t\"; mv -f \"$t\" {q}",
            owner = shell_quote(owner)
        );
        let out = self.exec(&self.as_root(&script)).await?;
        if !out.success() {
            let _ = self.exec(&format!("rm -f {tmp}")).await;
            return Err(fail(out.stderr_text()));
        }
        Ok(())
    }

    /// Reads `path` (as root).
    pub async fn download(&self, path: &str) -> Result<Vec<u8>, SshError> {
        let out = self
            .exec(&self.as_root(&format!("cat -- {}", shell_quote(path))))
            .await?;
        if !out.success() {
            return Err(SshError::Transfer {
                host: self.endpoint.name.clone(),
                op: "download",
                path: path.to_string(),
                cause: out.stderr_text(),
            });
        }
        Ok(out.stdout)
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn rand_suffix() -> u128 {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    u128::from_le_bytes(buf)
}

async fn authenticate(
    handle: &mut Handle<Checker>,
    ep: &Endpoint,
    creds: &Credentials,
) -> Result<(), SshError> {
    let failed = |method: String| SshError::AuthFailed {
        host: ep.name.clone(),
        address: ep.address.clone(),
        port: ep.port,
        user: ep.user.clone(),
        method,
    };
    let proto = |e: russh::Error| SshError::Connect {
        host: ep.name.clone(),
        address: ep.address.clone(),
        port: ep.port,
        user: ep.user.clone(),
        cause: e.to_string(),
    };
    match creds {
        Credentials::Key { key, source } => {
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(proto)?
                .flatten();
            let res = handle
                .authenticate_publickey(
                    ep.user.clone(),
                    PrivateKeyWithHashAlg::new(key.clone(), hash),
                )
                .await
                .map_err(proto)?;
            if res.success() {
                Ok(())
            } else {
                Err(failed(format!("key {}", source.display())))
            }
        }
        Credentials::Agent { socket } => {
            let connected = match socket {
                Some(p) => keys::agent::client::AgentClient::connect_uds(p).await,
                None => keys::agent::client::AgentClient::connect_env().await,
            };
            let mut agent = connected.map_err(|e| failed(format!("ssh-agent unavailable: {e}")))?;
            let ids = agent
                .request_identities()
                .await
                .map_err(|e| failed(format!("ssh-agent: {e}")))?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(proto)?
                .flatten();
            for id in ids {
                let keys::agent::AgentIdentity::PublicKey { key, .. } = id else {
                    continue;
                };
                let res = handle
                    .authenticate_publickey_with(ep.user.clone(), key, hash, &mut agent)
                    .await
                    .map_err(|e| failed(format!("ssh-agent: {e}")))?;
                if res.success() {
                    return Ok(());
                }
            }
            Err(failed("every key in ssh-agent".into()))
        }
    }
}
