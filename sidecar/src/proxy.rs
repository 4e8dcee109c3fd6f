//! The running sidecar: listeners, the per-connection walk, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::audit::{SessionAudit, SidecarAudit};
use crate::backend::{BackendError, TargetError, UpstreamTarget};
use crate::config::{ClientAuth, Config, ConfigError, LimitsConfig};
use crate::frontend::tls::{TlsConfigError, server_config};
use crate::frontend::{
    ClientStartup, FrontendError, Handshake, HandshakeContext, IdentityHook, WorkloadIdentity,
    handshake,
};
use crate::health;
use crate::hook::{AllowAll, HookFactory, SessionInfo};
use crate::metrics::{ConnectionOutcome, Metrics};
use crate::net::Stream;
use crate::protocol::backend::{self, CONNECTION_FAILURE, Severity};
use crate::session::cancel::{CancelRegistry, CancelTarget};
use crate::session::{Relay, SessionEnd};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client TLS certificate or key could not be loaded.
    #[error("client TLS")]
    ClientTls(#[from] TlsConfigError),
    /// A listener's upstream (TLS, credentials) could not be set up.
    #[error(transparent)]
    Upstream(#[from] TargetError),
    /// The metrics could not be registered.
    #[error("registering metrics")]
    Metrics(#[from] prometheus::Error),
    /// A listen address could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A sidecar about to start, with its hooks.
#[derive(Debug)]
pub struct Sidecar {
    config: Config,
    hooks: Arc<dyn HookFactory>,
    identity: Arc<dyn IdentityHook>,
    metrics: Option<Arc<Metrics>>,
    audit: Option<Arc<SidecarAudit>>,
}

/// What every connection of every listener shares.
#[derive(Debug)]
struct Shared {
    hooks: Arc<dyn HookFactory>,
    identity: Arc<dyn IdentityHook>,
    registry: Arc<CancelRegistry>,
    tls: Option<Arc<rustls::ServerConfig>>,
    client_auth: ClientAuth,
    limits: LimitsConfig,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    audit: Option<Arc<SidecarAudit>>,
}

#[derive(Debug)]
struct ListenerCtx {
    name: String,
    target: Arc<UpstreamTarget>,
}

impl Sidecar {
    /// A sidecar with the default hooks: everything allowed, every client is the workload.
    pub fn new(config: Config) -> Self {
        let workload = std::env::var("DBWARDEN_WORKLOAD").unwrap_or_else(|_| "workload".into());
        Self {
            config,
            hooks: Arc::new(AllowAll),
            identity: Arc::new(WorkloadIdentity { workload }),
            metrics: None,
            audit: None,
        }
    }

    /// Validates `config`, binds every listener and starts serving with the default hooks.
    pub async fn bind(config: Config) -> Result<SidecarHandle, StartError> {
        Self::new(config).start().await
    }

    /// Replaces the statement/row hooks.
    pub fn with_hooks(mut self, hooks: Arc<dyn HookFactory>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Replaces the identity hook.
    pub fn with_identity(mut self, identity: Arc<dyn IdentityHook>) -> Self {
        self.identity = identity;
        self
    }

    /// Uses `metrics` (shared with the hooks) instead of a registry of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records audit events with `audit` (see [`crate::audit`]).
    pub fn with_audit(mut self, audit: Arc<SidecarAudit>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Validates the configuration, binds every listener and starts serving.
    pub async fn start(self) -> Result<SidecarHandle, StartError> {
        let config = self.config;
        let metrics = match self.metrics {
            Some(m) => m,
            None => Arc::new(Metrics::new()?),
        };
        config.validate()?;
        let tls = match &config.client_tls {
            Some(t) => Some(server_config(&t.cert_file, &t.key_file)?),
            None => None,
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            hooks: self.hooks,
            identity: self.identity,
            registry: Arc::new(CancelRegistry::default()),
            tls,
            client_auth: config.client_auth,
            limits: config.limits.clone(),
            shutdown: shutdown_rx,
            metrics: metrics.clone(),
            audit: self.audit.clone(),
        });
        let mut addrs = Vec::new();
        let mut tasks = JoinSet::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let up = &l.upstream;
            let target = Arc::new(UpstreamTarget::for_listener(&config, i)?);
            let tcp = TcpListener::bind(l.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: l.listen,
                    source,
                })?;
            let addr = tcp.local_addr().map_err(|source| StartError::Bind {
                addr: l.listen,
                source,
            })?;
            tracing::info!(listener = %l.name, %addr, upstream = %format!("{}:{}", up.host, up.port), "listening");
            addrs.push((l.name.clone(), addr));
            let ctx = Arc::new(ListenerCtx {
                name: l.name.clone(),
                target,
            });
            tasks.spawn(accept_loop(tcp, ctx, shared.clone()));
        }
        let ready = Arc::new(AtomicBool::new(true));
        let (health_addr, health_task) = match &config.health {
            Some(h) => {
                let (addr, task) = health::serve(h.listen, ready.clone(), metrics.clone())
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: h.listen,
                        source,
                    })?;
                (Some(addr), Some(task))
            }
            None => (None, None),
        };
        Ok(SidecarHandle {
            addrs,
            health_addr,
            health_task,
            ready,
            shutdown: shutdown_tx,
            tasks,
            registry: shared.registry.clone(),
            metrics,
            audit: self.audit,
        })
    }
}

/// A running sidecar.
#[derive(Debug)]
pub struct SidecarHandle {
    addrs: Vec<(String, SocketAddr)>,
    health_addr: Option<SocketAddr>,
    health_task: Option<tokio::task::JoinHandle<()>>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    registry: Arc<CancelRegistry>,
    metrics: Arc<Metrics>,
    audit: Option<Arc<SidecarAudit>>,
}

impl SidecarHandle {
    /// The bound address of listener `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Every listener's name and bound address.
    pub fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The health endpoint's bound address, if configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sessions currently relaying.
    pub fn active_sessions(&self) -> usize {
        self.registry.len()
    }

    /// Stops accepting, lets statements in flight finish for up to the configured grace
    /// period (each session closes at its next idle moment), then closes what is left.
    pub async fn shutdown(mut self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // Sessions are gone: deliver what the spool holds within the drain time.
        if let Some(audit) = self.audit.take() {
            audit.close().await;
        }
        if let Some(task) = self.health_task.take() {
            task.abort();
        }
    }

    /// Waits until every listener has stopped (after a shutdown).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn accept_loop(tcp: TcpListener, ctx: Arc<ListenerCtx>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    sessions.spawn(serve(stream, peer, ctx.clone(), shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %ctx.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break },
        }
    }
    drop(tcp);
    let grace = shared.limits.shutdown_grace();
    tracing::info!(listener = %ctx.name, sessions = sessions.len(), ?grace, "draining");
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(listener = %ctx.name, sessions = sessions.len(), "grace period over, closing sessions");
        sessions.shutdown().await;
    }
}

async fn serve(tcp: TcpStream, peer: SocketAddr, ctx: Arc<ListenerCtx>, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let hs_ctx = HandshakeContext {
        listener: &ctx.name,
        tls: shared.tls.as_ref(),
        limits: shared.limits.codec(),
        client_auth: shared.client_auth,
        identity: shared.identity.as_ref(),
        peer,
    };
    let startup = tokio::time::timeout(
        shared.limits.startup_timeout(),
        handshake(Stream::Plain(tcp), hs_ctx),
    )
    .await;
    // --- metrics and audit of the startup's outcome (a refused startup: bad token, no user,
    // replication, is an authentication failure) ---
    match &startup {
        Ok(Err(FrontendError::Refused(reason))) => {
            shared.metrics.connection(ConnectionOutcome::AuthFailed);
            if let Some(audit) = &shared.audit {
                audit.auth_failure(&ctx.name, &ctx.target.database, &peer.to_string(), reason);
            }
        }
        Err(_) | Ok(Err(_)) => shared.metrics.connection(ConnectionOutcome::StartupFailed),
        Ok(Ok(Handshake::Cancel(_))) => shared.metrics.connection(ConnectionOutcome::Cancel),
        Ok(Ok(Handshake::Session(_))) => {}
    }
    // --- end ---
    match startup {
        Err(_) => tracing::info!(listener = %ctx.name, %peer, "startup timed out"),
        Ok(Err(e)) => {
            tracing::info!(listener = %ctx.name, %peer, error = %e, kind = e.label(), "startup failed")
        }
        Ok(Ok(Handshake::Cancel(key))) => match shared.registry.lookup(key) {
            Some(CancelTarget::Upstream(target, upstream_key)) => {
                if let Err(e) = target.cancel(upstream_key).await {
                    tracing::warn!(listener = %ctx.name, error = %e, "passing a cancel request on failed");
                }
            }
            Some(CancelTarget::Held) => {
                tracing::info!(listener = %ctx.name, "cancel request refused a held statement")
            }
            None => {
                tracing::info!(listener = %ctx.name, %peer, "cancel request with an unknown key")
            }
        },
        Ok(Ok(Handshake::Session(client))) => session(*client, peer, &ctx, &shared).await,
    }
}

async fn session(client: ClientStartup, peer: SocketAddr, ctx: &ListenerCtx, shared: &Shared) {
    let ClientStartup {
        mut stream,
        buf,
        params,
        user,
        identity,
    } = client;
    if let Err(denial) = shared.hooks.check_startup(&params) {
        tracing::info!(listener = %ctx.name, %peer, "startup parameters refused by policy");
        shared.metrics.connection(ConnectionOutcome::Refused);
        refuse(&mut stream, &denial.message, denial.detail.as_deref()).await;
        return;
    }
    // --- audit: connection.open before the database is contacted; closed + full refuses.
    let audit = match SessionAudit::open(
        shared.audit.as_ref(),
        shared.metrics.clone(),
        &ctx.target.database,
        &identity,
        peer,
    ) {
        Ok(audit) => audit,
        Err(message) => {
            shared.metrics.connection(ConnectionOutcome::Refused);
            refuse(&mut stream, &message, None).await;
            return;
        }
    };
    let upstream = match ctx.target.connect(&params).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(listener = %ctx.name, %peer, error = %e, kind = e.label(), "upstream connection failed");
            shared.metrics.connection(ConnectionOutcome::UpstreamFailed);
            audit.close("upstream_failed");
            let mut out = BytesMut::new();
            match &e {
                BackendError::Server(frame) => out.extend_from_slice(frame.as_bytes()),
                other => backend::encode_error(
                    &mut out,
                    Severity::Fatal,
                    CONNECTION_FAILURE,
                    &format!("dbwarden: cannot open a session on the database: {other}"),
                    None,
                ),
            }
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let registration = shared.registry.register(ctx.target.clone(), upstream.key);
    let mut out = BytesMut::with_capacity(512);
    backend::encode_auth(&mut out, 0);
    out.extend_from_slice(&upstream.greeting);
    backend::encode_backend_key(&mut out, registration.key.pid, registration.key.secret);
    backend::encode_ready(&mut out, upstream.status);
    if let Err(e) = stream.write_all(&out).await {
        tracing::info!(listener = %ctx.name, %peer, error = %e, "client left during startup");
        audit.close("client_closed");
        return;
    }
    shared.metrics.connection(ConnectionOutcome::Session);
    let _open = shared.metrics.session_opened();
    let info = SessionInfo {
        listener: ctx.name.clone(),
        database: ctx.target.database.clone(),
        peer,
        identity,
        application_name: params
            .iter()
            .find(|(k, _)| k == "application_name")
            .map(|(_, v)| v.clone()),
        audit: audit.clone(),
    };
    tracing::info!(
        listener = %ctx.name, %peer, client_user = %user, identity = %info.identity.subject,
        upstream_pid = upstream.key.pid, upstream_auth = upstream.auth.label(), "session started"
    );
    let relay = Relay {
        client: (stream, buf),
        upstream: (upstream.stream, upstream.buf),
        hooks: shared.hooks.open(&info),
        limits: shared.limits.codec(),
        idle_timeout: shared.limits.idle_timeout(),
        max_notes: shared.limits.max_unanswered_messages,
        shutdown: shared.shutdown.clone(),
        cancel: registration.cancelled.clone(),
        metrics: Some(shared.metrics.clone()),
    };
    let ended = match relay.run().await {
        Ok(end) => {
            tracing::info!(listener = %ctx.name, %peer, ?end, "session ended");
            end_label(end)
        }
        Err(e) => {
            tracing::info!(listener = %ctx.name, %peer, error = %e, kind = e.label(), "session failed");
            e.label()
        }
    };
    audit.close(ended);
    drop(registration);
}

/// Ends a connection before its session starts with `FATAL 42501`.
async fn refuse(stream: &mut Stream, message: &str, detail: Option<&str>) {
    let mut out = BytesMut::new();
    backend::encode_error(
        &mut out,
        Severity::Fatal,
        backend::INSUFFICIENT_PRIVILEGE,
        message,
        detail,
    );
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// The bounded label of a session's end, for its `connection.close` event.
fn end_label(end: SessionEnd) -> &'static str {
    match end {
        SessionEnd::Terminated => "terminated",
        SessionEnd::ClientClosed => "client_closed",
        SessionEnd::UpstreamClosed => "upstream_closed",
        SessionEnd::IdleTimeout => "idle_timeout",
        SessionEnd::Shutdown => "shutdown",
    }
}
