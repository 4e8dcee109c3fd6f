//! The relay of one session after startup: client -> hook -> database -> rows -> client.
//!
//! Two pumps run concurrently inside one task: [`client`] reads the client's messages, asks
//! the statement hook, and forwards to the database; [`server`] reads the database's
//! messages, passes rows through the row hook, and writes to the client. Everything the
//! client receives goes through the server pump, so injected errors stay in order.
//!
//! A denied statement is answered without involving the database's parser: the client pump
//! forwards a Sync in its place (a cheap round trip that yields ReadyForQuery with the real
//! transaction status) and queues a [`Denied`] note naming that ReadyForQuery; the server
//! pump writes the ErrorResponse just before it. Both sides count ReadyForQuery-producing
//! messages (Query, Sync, FunctionCall) to match them.
//!
//! The client pump sends its notes to the server pump (denials, Describes, followed
//! statements) before the messages they are about are written, so the channels cannot be
//! bounded: a full one would wait on answers to messages not yet sent. What bounds them is the
//! relay itself: the client pump writes each batch upstream before it reads more, so the notes
//! outstanding are those of messages in flight (a single Query is at most `max_message`).

pub mod cancel;
mod client;
mod clock;
mod copy;
mod describe;
mod follow;
mod news;
mod out;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::hook::SessionHooks;
use crate::metrics::Metrics;
use crate::net::Stream;
use crate::protocol::backend::{
    self, ADMIN_SHUTDOWN, IDLE_SESSION_TIMEOUT, INSUFFICIENT_PRIVILEGE, PROTOCOL_VIOLATION,
    Severity,
};
use crate::protocol::{Limits, ProtocolError};

/// A denial waiting for the ReadyForQuery it precedes.
#[derive(Debug)]
struct Denied {
    /// Sequence number of the ReadyForQuery (1-based count since the relay started).
    at: u64,
    /// The complete ErrorResponse to send.
    error: BytesMut,
    /// True for Query/FunctionCall (their ReadyForQuery goes to the client); false for a
    /// Parse, whose stand-in ReadyForQuery is swallowed (the client's own Sync gets one).
    ready: bool,
}

/// A Describe forwarded while a row hook is installed: its RowDescription or NoData is
/// matched to this note, in order, within ReadyForQuery cycle `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    /// Sequence number of the ReadyForQuery that ends the cycle.
    at: u64,
    /// True when the sidecar added the Describe itself: its answer is not the client's.
    injected: bool,
    /// For a Describe of a portal: its session-unique number and whether it was executed
    /// before (a resumed portal's row count carries on). None for a prepared statement.
    portal: Option<(u64, bool)>,
}

/// A statement forwarded whose end the hooks follow (see `StatementHook::take_runs`): its
/// result is matched to this note, in order, within ReadyForQuery cycle `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunNote {
    /// Sequence number of the ReadyForQuery that ends the cycle.
    at: u64,
    /// The statement hook's id for it (`None`: an Execute whose end is not recorded).
    run: Option<u64>,
    /// When it was decided and forwarded.
    sent: std::time::Instant,
}

/// How long the server pump may go on once the client pump has ended the session: to relay
/// the database's last messages after a write to it failed, or to end a write to the client
/// before the farewell.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// Bytes a pump writes at the end of its batch, when it had to change something; above this
/// they are written at once (large results stay streamed).
const OUT_FLUSH_BYTES: usize = 64 * 1024;

/// Counters the two pumps share.
#[derive(Debug, Default)]
struct Progress {
    /// ReadyForQuery-producing messages sent upstream.
    sent: AtomicU64,
    /// ReadyForQuery messages received from upstream.
    seen: AtomicU64,
    /// ReadyForQuery messages written to the client (with everything before them).
    delivered: AtomicU64,
    /// The statement a denial's stand-in Describe names (random per session, so no client
    /// statement has it): the database's "does not exist" error for it is the denial's.
    stand_in: String,
    /// CopyInResponse messages received from upstream: a client's copy messages belong to a
    /// COPY only after one (the server drops stray ones, and so must the accounting).
    copy_ins: AtomicU64,
    /// CopyInResponses the server pump withheld, as part of a result it refused: the client
    /// never learns of that COPY and sends no data, so the client pump ends it with a CopyFail
    /// of its own (see [`copy`]).
    copies_withheld: AtomicU64,
    /// Woken with each of those: the client pump registers while it waits (cheaper than a
    /// `Notify`, whose waiter list would be locked at every wait of every session).
    copy_withheld: futures::task::AtomicWaker,
    /// The server pump is writing to the client: the stream may be inside a message (left
    /// set when a write failed or was dropped midway).
    writing: AtomicBool,
    /// The session is ending with a farewell: the server pump starts no new write.
    ending: AtomicBool,
    /// Graceful shutdown requested.
    draining: AtomicBool,
    /// Signalled by the server pump once the last awaited ReadyForQuery is written to the
    /// client, so the client pump can start its idle timer (or end a draining session).
    became_idle: tokio::sync::Notify,
    /// Whether the client pump waits for `became_idle` while not draining (only with an
    /// idle timeout).
    signal_idle: bool,
    /// Times the database's round trips, when metrics are on.
    upstream: Option<clock::UpstreamClock>,
}

impl Progress {
    /// Nothing in flight: every ReadyForQuery the client is owed has been received.
    fn idle(&self) -> bool {
        self.seen.load(Ordering::Acquire) >= self.sent.load(Ordering::Acquire)
    }

    /// Ready once the server pump has withheld more COPYs than `failed`.
    fn copies_to_fail(&self, failed: u64) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            self.copy_withheld.register(cx.waker());
            if self.copies_withheld.load(Ordering::Acquire) > failed {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }

    /// Once the session ends with a farewell, waits (for the server pump to be dropped)
    /// instead of letting it start a write: the stream stays at a message boundary.
    async fn park_if_ending(&self) {
        if self.ending.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    }

    /// Nothing in flight and every answer written to the client: the session may end (for
    /// shutdown or an idle timeout) without cutting a result off.
    fn answered(&self) -> bool {
        self.delivered.load(Ordering::Acquire) >= self.sent.load(Ordering::Acquire)
    }
}

/// True when the session, ending with `result` from the client pump, sends the client a
/// farewell (see the `farewell` in [`Relay::run`]).
fn says_farewell(result: &Result<SessionEnd, SessionError>) -> bool {
    matches!(
        result,
        Err(SessionError::ClientProtocol(_) | SessionError::AuditRefused { .. })
            | Ok(SessionEnd::IdleTimeout | SessionEnd::Shutdown)
    )
}

/// A fresh name for the statement a denial's stand-in Describe names.
fn stand_in_name() -> String {
    let mut random = [0u8; 8];
    // Only fails without an entropy source; a fixed name is then still one no driver uses.
    let _ = getrandom::fill(&mut random);
    format!("dbwarden_refused_{:016x}", u64::from_ne_bytes(random))
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client sent Terminate.
    Terminated,
    /// The client closed its socket.
    ClientClosed,
    /// The database closed (its FATAL, if any, was relayed).
    UpstreamClosed,
    /// The idle timeout expired.
    IdleTimeout,
    /// Graceful shutdown.
    Shutdown,
}

/// A session that failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Client socket error.
    #[error("client i/o")]
    ClientIo(#[source] std::io::Error),
    /// Database socket error.
    #[error("database i/o")]
    UpstreamIo(#[source] std::io::Error),
    /// The client broke the protocol (it was sent 08P01 and disconnected).
    #[error("client protocol violation")]
    ClientProtocol(#[source] ProtocolError),
    /// The database broke the protocol.
    #[error("database protocol violation")]
    UpstreamProtocol(#[source] ProtocolError),
    /// Audit events could not be stored under failure policy `closed` (the client was told
    /// why and disconnected: what was decided must not run).
    #[error("audit events not stored: {message}")]
    AuditRefused {
        /// What the client is told.
        message: String,
        /// The first of the session's events that was not stored: its statements and those
        /// after it never ran (and the seqs may be handed out again).
        unstored_from: u64,
    },
}

impl SessionError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ClientIo(_) => "client_io",
            Self::UpstreamIo(_) => "upstream_io",
            Self::ClientProtocol(_) => "client_protocol",
            Self::UpstreamProtocol(_) => "upstream_protocol",
            Self::AuditRefused { .. } => "audit_refused",
        }
    }
}

/// One session ready to relay.
#[derive(Debug)]
pub struct Relay {
    /// The client connection and bytes already read from it.
    pub client: (Stream, BytesMut),
    /// The database connection and bytes already read from it.
    pub upstream: (Stream, BytesMut),
    /// The session's hooks.
    pub hooks: SessionHooks,
    /// Size limits.
    pub limits: Limits,
    /// Idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Most notes (a Describe answer or a statement's end to expect) waiting for the
    /// database at once (`limits.max_unanswered_messages`): a pipeline's notes are used up as
    /// the database answers, but after an error it skips everything up to the next Sync
    /// without a word, and a client sending no Sync would make the sidecar hold a note for
    /// every message.
    pub max_notes: usize,
    /// Flips to true at graceful shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Notified when the client cancels (see [`cancel::CancelRegistry`]); ends a held statement.
    pub cancel: Arc<cancel::HeldCancel>,
    /// Where the database's round-trip times go (`dbwarden_upstream_duration_seconds`).
    pub metrics: Option<Arc<Metrics>>,
}

impl Relay {
    /// Relays until either side ends the session.
    pub async fn run(self) -> Result<SessionEnd, SessionError> {
        let Relay {
            client: (client, client_buf),
            upstream: (upstream, upstream_buf),
            hooks,
            limits,
            metrics,
            max_notes,
            ..
        } = self;
        let (mut client_rd, mut client_wr) = client.split();
        let (mut upstream_rd, mut upstream_wr) = upstream.split();
        let progress = Arc::new(Progress {
            stand_in: stand_in_name(),
            signal_idle: self.idle_timeout.is_some(),
            upstream: metrics.map(clock::UpstreamClock::new),
            ..Progress::default()
        });
        self.cancel.attach(progress.clone());
        let (denied_tx, denied_rx) = mpsc::unbounded_channel();
        // Only sessions with a row hook describe portals; the others pay nothing.
        let (expect_tx, expect_rx) = if hooks.rows.is_some() {
            let (tx, rx) = mpsc::channel(max_notes);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        // Results are followed only when both hooks are there to note and to hear of them.
        let (runs_tx, runs_rx) = if hooks.rows.is_some() && hooks.statements.is_some() {
            let (tx, rx) = mpsc::channel(max_notes);
            (Some(tx), Some(follow::Runs::new(rx)))
        } else {
            (None, None)
        };

        let mut to_server = client::Pump {
            buf: client_buf,
            cancel: self.cancel,
            checker: client::Checker {
                hook: hooks.statements,
                discarding: false,
            },
            copy: copy::CopyTracking::default(),
            stand_in: BytesMut::new(),
            max_message: limits.max_message,
            progress: progress.clone(),
            denied: denied_tx,
            expect: expect_tx,
            runs: runs_tx,
            run_ids: Vec::new(),
            describe: BytesMut::new(),
            executed: describe::Executed::default(),
            out: out::Output::default(),
            idle_timeout: self.idle_timeout,
            shutdown: self.shutdown,
        };
        let mut to_client = server::Pump {
            buf: upstream_buf,
            hook: hooks.rows,
            max_message: limits.max_message,
            progress: progress.clone(),
            denied: denied_rx,
            next_denial: None,
            expected: follow::Expected::new(expect_rx),
            runs: runs_rx,
            resolve_attempts: 0,
            cycle_errored: false,
            discarding: false,
            warned: false,
            scratch: BytesMut::new(),
            out: out::Output::default(),
        };
        let result = {
            let answers = to_client.run(&mut upstream_rd, &mut client_wr);
            tokio::pin!(answers);
            tokio::select! {
                r = to_server.run(&mut client_rd, &mut upstream_wr) => match r {
                    // A database that ends the session (FATAL) and exits with our input
                    // unread resets the connection, failing our write; what it said before
                    // is still to be read and relayed.
                    Err(SessionError::UpstreamIo(e)) => {
                        match tokio::time::timeout(LAST_WORDS, &mut answers).await {
                            Ok(Ok(SessionEnd::UpstreamClosed)) => Ok(SessionEnd::UpstreamClosed),
                            _ => Err(SessionError::UpstreamIo(e)),
                        }
                    }
                    // A farewell follows: the server pump may be inside a write to the client,
                    // which must end first (bounded: the client may not be reading), and it
                    // starts no other. Not for an audit refusal: the pump would go on
                    // reporting results for statements whose events were never stored.
                    r if says_farewell(&r) && !matches!(r, Err(SessionError::AuditRefused { .. })) => {
                        progress.ending.store(true, Ordering::Release);
                        let at_boundary = std::future::poll_fn(|cx| {
                            if progress.writing.load(Ordering::Acquire) {
                                if answers.as_mut().poll(cx).is_ready() {
                                    return Poll::Ready(());
                                }
                                if progress.writing.load(Ordering::Acquire) {
                                    return Poll::Pending;
                                }
                            }
                            Poll::Ready(())
                        });
                        let _ = tokio::time::timeout(LAST_WORDS, at_boundary).await;
                        r
                    }
                    r => r,
                },
                r = &mut answers => r,
            }
        };
        // Statements still unanswered get a result saying so; but a session ended for an audit
        // write that failed under `closed` never forwarded what that write held, whose seqs may
        // be handed out again: only the runs before it are reported.
        let unstored_from = match &result {
            Err(SessionError::AuditRefused { unstored_from, .. }) => *unstored_from,
            _ => u64::MAX,
        };
        to_client.abandon_runs(unstored_from);

        let farewell = match &result {
            Err(SessionError::ClientProtocol(e)) => Some((PROTOCOL_VIOLATION, e.to_string())),
            // Typically a row above `limits.max_message_bytes`: without a word the client
            // would see only a connection closed. The client's stream is at a message
            // boundary (what came before it in the same read is dropped).
            Err(SessionError::UpstreamProtocol(e)) => Some((
                PROTOCOL_VIOLATION,
                format!("dbwarden cannot relay the database's answer: {e}"),
            )),
            Err(SessionError::AuditRefused { message, .. }) => {
                Some((INSUFFICIENT_PRIVILEGE, message.clone()))
            }
            Ok(SessionEnd::IdleTimeout) => Some((
                IDLE_SESSION_TIMEOUT,
                "terminating connection due to idle-session timeout".into(),
            )),
            Ok(SessionEnd::Shutdown) => Some((
                ADMIN_SHUTDOWN,
                "terminating connection: the dbwarden sidecar is shutting down".into(),
            )),
            _ => None,
        };
        // Cut off inside a message, the client could not read the farewell as one.
        let farewell = farewell.filter(|_| !progress.writing.load(Ordering::Acquire));
        if !matches!(
            result,
            Ok(SessionEnd::Terminated | SessionEnd::UpstreamClosed)
        ) {
            // Say goodbye so the server does not log an unexpected EOF.
            let _ = upstream_wr.write_all(b"X\0\0\0\x04").await;
        }
        let _ = upstream_wr.shutdown().await;
        // Bounded: a client that does not read must not keep the session.
        let goodbye = async {
            if let Some((code, message)) = farewell {
                let mut out = BytesMut::new();
                backend::encode_error(&mut out, Severity::Fatal, code, &message, None);
                let _ = client_wr.write_all(&out).await;
            }
            let _ = client_wr.shutdown().await;
        };
        let _ = tokio::time::timeout(LAST_WORDS, goodbye).await;
        result
    }
}
