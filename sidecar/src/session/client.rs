//! Client -> database: decode, ask the statement hook, forward.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::cancel::HeldCancel;
use super::copy::CopyTracking;
use super::describe::{Executed, Note, describe_before};
use super::out::Output;
use super::{Denied, Expect, Progress, RunNote, SessionEnd, SessionError};
use crate::hook::{Denial, Hold, Statement, StatementHook, Verdict};
use crate::net::{fill, reclaim};
use crate::protocol::backend::{self, INSUFFICIENT_PRIVILEGE, Severity};
use crate::protocol::codec::{peek_header, put_cstr, put_message};
use crate::protocol::frontend::{FrontendMessage, Target};

mod hold;

use hold::Held;

/// A Sync message: it ends the stand-in sent upstream in place of a denied message.
const SYNC: &[u8] = b"S\0\0\0\x04";

/// Why the client pump woke up.
enum Wake {
    Data,
    Closed,
    IdleTimeout,
    Shutdown,
    /// The server pump withheld a CopyInResponse.
    CopyWithheld,
}

/// What to do with one client message.
enum Action {
    /// Pass the frame on unchanged.
    Forward,
    /// Drop it (discarding after a denial, until Sync).
    Skip,
    /// Drop it and answer with this denial.
    Deny { denial: Denial, ready: bool },
    /// Forward it and end the session.
    Terminate,
    /// Wait for the hook's later verdict, then forward or deny.
    Hold { hold: Hold, ready: bool },
}

/// What the database is told, in a CopyFail, about a COPY whose CopyInResponse was withheld.
const WITHHELD_COPY: &[u8] = b"dbwarden withheld an earlier result of this exchange, so the \
client never started this COPY";

pub(super) struct Pump {
    pub buf: BytesMut,
    /// How the client's CancelRequest reaches a statement this session holds.
    pub cancel: Arc<HeldCancel>,
    pub copy: CopyTracking,
    /// What [`Pump::deny`] sends in place of a denied message (built at the first denial).
    pub stand_in: BytesMut,
    pub checker: Checker,
    pub max_message: usize,
    pub progress: Arc<Progress>,
    pub denied: mpsc::UnboundedSender<Denied>,
    /// With a row hook: notes for the server pump about each Describe forwarded.
    pub expect: Option<mpsc::Sender<Expect>>,
    /// With both hooks: notes for the server pump about each statement followed to its end.
    pub runs: Option<mpsc::Sender<RunNote>>,
    /// The statement hook's run ids of the message at hand (reused).
    pub run_ids: Vec<Option<u64>>,
    /// The Describe added before an Execute (reused).
    pub describe: BytesMut,
    /// Portals numbered since their Bind.
    pub executed: Executed,
    /// What this batch sends upstream when it is not a plain run of the client's frames.
    pub out: Output,
    pub idle_timeout: Option<Duration>,
    pub shutdown: watch::Receiver<bool>,
}

impl Pump {
    pub async fn run<R, W>(
        &mut self,
        client: &mut R,
        upstream: &mut W,
    ) -> Result<SessionEnd, SessionError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            self.fail_withheld_copies(upstream).await?;
            if let Some(end) = self.drain(client, upstream).await? {
                return Ok(end);
            }
            match self.wait_for_client(client).await? {
                Wake::Data | Wake::CopyWithheld => {}
                Wake::Closed => return Ok(SessionEnd::ClientClosed),
                Wake::IdleTimeout => return Ok(SessionEnd::IdleTimeout),
                Wake::Shutdown => return Ok(SessionEnd::Shutdown),
            }
        }
    }

    /// Reads more client bytes; gives up on idle timeout, or on shutdown while nothing is in
    /// flight (while something is, the server pump ends the session at its ReadyForQuery).
    async fn wait_for_client<R: AsyncRead + Unpin>(
        &mut self,
        client: &mut R,
    ) -> Result<Wake, SessionError> {
        loop {
            let idle = self.progress.answered();
            let draining = self.progress.draining.load(Ordering::Acquire);
            if idle && draining {
                return Ok(Wake::Shutdown);
            }
            let idle_timer = async {
                match (idle, self.idle_timeout) {
                    (true, Some(d)) => tokio::time::sleep(d).await,
                    _ => std::future::pending().await,
                }
            };
            let became_idle = async {
                if idle || (self.idle_timeout.is_none() && !draining) {
                    std::future::pending().await
                } else {
                    self.progress.became_idle.notified().await
                }
            };
            tokio::select! {
                read = fill(client, &mut self.buf) => return match read {
                    Ok(true) => Ok(Wake::Data),
                    Ok(false) => Ok(Wake::Closed),
                    Err(e) => Err(SessionError::ClientIo(e)),
                },
                () = idle_timer => return Ok(Wake::IdleTimeout),
                () = self.progress.copies_to_fail(self.copy.withheld_failed) => {
                    return Ok(Wake::CopyWithheld);
                }
                () = became_idle => {}
                changed = self.shutdown.changed(), if !draining => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        self.progress.draining.store(true, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Ends each COPY FROM STDIN whose CopyInResponse the server pump withheld with a
    /// CopyFail, between the client's messages (see [`super::copy`]).
    async fn fail_withheld_copies<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<(), SessionError> {
        let withheld = self.progress.copies_withheld.load(Ordering::Acquire);
        if self.copy.withheld_failed >= withheld {
            return Ok(());
        }
        let copy_ins = self.progress.copy_ins.load(Ordering::Acquire);
        let mut fail = BytesMut::new();
        while self.copy.withheld_failed < withheld {
            put_message(&mut fail, b'f', |b| put_cstr(b, WITHHELD_COPY));
            for _ in 0..self.copy.fail_withheld(copy_ins) {
                fail.extend_from_slice(SYNC);
            }
        }
        upstream
            .write_all(&fail)
            .await
            .map_err(SessionError::UpstreamIo)
    }

    /// Handles every complete message in the buffer, writing runs of forwarded frames
    /// straight from the buffer (no copy).
    async fn drain<R, W>(
        &mut self,
        client: &mut R,
        upstream: &mut W,
    ) -> Result<Option<SessionEnd>, SessionError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut pos = 0;
        let mut run_start = 0;
        let mut end = None;
        while end.is_none() {
            let Some((tag, len)) = peek_header(&self.buf[pos..], self.max_message)
                .map_err(SessionError::ClientProtocol)?
            else {
                break;
            };
            if self.buf.len() - pos < len {
                break;
            }
            let body = &self.buf[pos + 5..pos + len];
            let message =
                FrontendMessage::decode(tag, body).map_err(SessionError::ClientProtocol)?;
            let describe = match self.expect {
                Some(_) => describe_before(&message, &mut self.describe, &mut self.executed),
                None => None,
            };
            let action = match self.checker.decide(message)? {
                Action::Hold { hold, ready } => {
                    // Everything before the held statement goes now; it waits alone. A cancel
                    // takes it from here on, also while that goes out.
                    self.cancel.hold();
                    self.settle_audit().await?;
                    self.out
                        .finish(upstream, &self.buf[run_start..pos])
                        .await
                        .map_err(SessionError::UpstreamIo)?;
                    run_start = pos;
                    let held = self.hold(client, upstream, hold, pos + len).await?;
                    let forwarded = matches!(held, Held::Verdict(Verdict::Allow));
                    if let Some(hook) = self.checker.hook.as_mut() {
                        hook.held(forwarded);
                    }
                    match held {
                        Held::Verdict(Verdict::Allow) => Action::Forward,
                        Held::Verdict(Verdict::Deny(denial)) => Action::Deny { denial, ready },
                        Held::Verdict(Verdict::Hold(_)) => Action::Deny {
                            denial: Denial::new("dbwarden: the statement's decision never came"),
                            ready,
                        },
                        Held::End(end) => {
                            self.buf.clear();
                            return Ok(Some(end));
                        }
                    }
                }
                action => action,
            };
            match (&action, describe) {
                (Action::Forward, Some(note)) => {
                    if note.injected {
                        self.out.push(&self.buf[run_start..pos]);
                        self.out.push(&self.describe);
                        run_start = pos;
                    }
                    self.expect_describe(note)?;
                }
                // A Describe that was not forwarded answers for no Execute.
                (Action::Forward, None) => {}
                _ => self.executed.described = None,
            }
            // The cycle a forwarded Query or Execute is answered in (a Query ends its own).
            let cycle = self.progress.sent.load(Ordering::Acquire) + 1;
            match action {
                Action::Forward => self.account(tag),
                Action::Terminate => end = Some(SessionEnd::Terminated),
                Action::Skip | Action::Deny { .. } | Action::Hold { .. } => {
                    self.out.push(&self.buf[run_start..pos]);
                    run_start = pos + len;
                }
            }
            if matches!(tag, b'Q' | b'E') {
                let forwarded = matches!(action, Action::Forward);
                self.note_runs(forwarded, cycle)?;
            }
            if let Action::Deny { denial, ready } = action {
                self.settle_audit().await?;
                self.deny(denial, ready)?;
            }
            if self.out.is_large() {
                self.settle_audit().await?;
                self.out
                    .flush(upstream)
                    .await
                    .map_err(SessionError::UpstreamIo)?;
            }
            pos += len;
        }
        self.settle_audit().await?;
        self.out
            .finish(upstream, &self.buf[run_start..pos])
            .await
            .map_err(SessionError::UpstreamIo)?;
        self.buf.advance(pos);
        reclaim(&mut self.buf);
        if end.is_some() {
            self.buf.clear();
        }
        Ok(end)
    }

    /// Waits until the audit events of what is about to be sent are stored (the write is
    /// shared with the sessions busy at the same moment). Under failure policy `closed` a
    /// failed write ends the session: the statements it decided must not run.
    async fn settle_audit(&mut self) -> Result<(), SessionError> {
        let Some(ticket) = self.checker.hook.as_mut().and_then(|h| h.take_ticket()) else {
            return Ok(());
        };
        let unstored_from = ticket.seqs().start;
        ticket
            .settle()
            .await
            .map_err(|e| SessionError::AuditRefused {
                message: crate::audit::refusal_message(&e),
                unstored_from,
            })
    }

    /// Counts the ReadyForQuery messages a forwarded message will produce (see
    /// [`CopyTracking::forwarded`]).
    fn account(&mut self, tag: u8) {
        let copy_ins = self.progress.copy_ins.load(Ordering::Acquire);
        let delta = self.copy.forwarded(tag, copy_ins);
        self.add_sent(delta);
    }

    /// Moves the count of ReadyForQuery messages owed by `delta`.
    fn add_sent(&mut self, delta: i64) {
        match delta {
            0 => {}
            d if d > 0 => {
                if let Some(clock) = self
                    .progress
                    .upstream
                    .as_ref()
                    .filter(|_| self.progress.idle())
                {
                    clock.busy();
                }
                self.progress
                    .sent
                    .fetch_add(d.unsigned_abs(), Ordering::AcqRel);
            }
            d => {
                let n = d.unsigned_abs();
                // Saturating, as a guard: only Syncs counted before a COPY are taken back.
                let _ = self
                    .progress
                    .sent
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        Some(v.saturating_sub(n))
                    });
            }
        }
    }

    /// Takes the statement hook's runs of the Query or Execute just decided and, when it is
    /// forwarded, tells the server pump to expect their ends in `cycle` (before they can
    /// possibly arrive).
    fn note_runs(&mut self, forwarded: bool, cycle: u64) -> Result<(), SessionError> {
        let Some(hook) = self.checker.hook.as_mut() else {
            return Ok(());
        };
        hook.take_runs(&mut self.run_ids);
        let Some(runs) = self.runs.as_ref().filter(|_| forwarded) else {
            self.run_ids.clear();
            return Ok(());
        };
        let sent = std::time::Instant::now();
        for run in self.run_ids.drain(..) {
            runs.try_send(RunNote {
                at: cycle,
                run,
                sent,
            })
            .map_err(note_refused(runs.max_capacity()))?;
        }
        Ok(())
    }

    /// Tells the server pump a Describe answer is coming (before it can possibly arrive).
    fn expect_describe(&mut self, note: Note) -> Result<(), SessionError> {
        let Some(expect) = &self.expect else {
            return Ok(());
        };
        let at = self.progress.sent.load(Ordering::Acquire) + 1;
        expect
            .try_send(Expect {
                at,
                injected: note.injected,
                portal: note.portal,
            })
            .map_err(note_refused(expect.max_capacity()))
    }

    /// Sends, in place of the denied message, a Describe of a statement that does not exist
    /// and a Sync, and queues the denial's error for that Sync's ReadyForQuery. The Describe
    /// fails in the database as the denied message would have: the transaction is aborted (a
    /// pipeline's earlier statements are not committed; inside BEGIN the block fails). The
    /// server pump swallows that error; the client gets the denial instead.
    fn deny(&mut self, denial: Denial, ready: bool) -> Result<(), SessionError> {
        tracing::info!(message = %denial.message, "statement denied");
        let mut error = BytesMut::new();
        backend::encode_error(
            &mut error,
            Severity::Error,
            INSUFFICIENT_PRIVILEGE,
            &denial.message,
            denial.detail.as_deref(),
        );
        if !ready {
            self.checker.discarding = true;
        }
        let at = self.progress.sent.load(Ordering::Acquire) + 1;
        // The note must be queued before the Sync can possibly be answered.
        self.denied
            .send(Denied { at, error, ready })
            .map_err(|_| SessionError::UpstreamIo(std::io::ErrorKind::BrokenPipe.into()))?;
        self.progress.sent.fetch_add(1, Ordering::AcqRel);
        if self.stand_in.is_empty() {
            put_message(&mut self.stand_in, b'D', |b| {
                b.put_u8(b'S');
                put_cstr(b, self.progress.stand_in.as_bytes());
            });
            self.stand_in.extend_from_slice(SYNC);
        }
        self.out.push(&self.stand_in);
        Ok(())
    }
}

/// The statement hook and the discard state after a denied Parse.
pub(super) struct Checker {
    pub hook: Option<Box<dyn StatementHook>>,
    /// After a denied Parse: drop extended-protocol messages until Sync.
    pub discarding: bool,
}

impl Checker {
    fn decide(&mut self, message: FrontendMessage<'_>) -> Result<Action, SessionError> {
        use FrontendMessage as M;
        Ok(match message {
            M::Sync => {
                self.discarding = false;
                Action::Forward
            }
            M::Terminate => Action::Terminate,
            M::Password(_) => {
                return Err(SessionError::ClientProtocol(
                    crate::protocol::ProtocolError::UnexpectedMessage {
                        tag: 'p',
                        context: "after authentication",
                    },
                ));
            }
            _ if self.discarding => Action::Skip,
            M::Query { sql } => self.check(sql, None, true),
            M::Parse { name, sql, .. } => self.check(sql, Some(name), false),
            M::FunctionCall { oid, .. } => {
                let verdict = self
                    .hook
                    .as_mut()
                    .map(|h| h.check(Statement::FunctionCall { oid }));
                action(verdict, true)
            }
            M::Bind {
                portal, statement, ..
            } => action(self.hook.as_mut().map(|h| h.bind(portal, statement)), false),
            M::Execute { portal, .. } => {
                action(self.hook.as_mut().map(|h| h.execute(portal)), false)
            }
            M::Close { target, name } => {
                if let Some(hook) = self.hook.as_mut() {
                    hook.close(target == Target::Portal, name);
                }
                Action::Forward
            }
            _ => Action::Forward,
        })
    }

    /// Runs the statement hook on a Query (`name` None) or Parse.
    fn check(&mut self, sql: &[u8], name: Option<&[u8]>, ready: bool) -> Action {
        let Some(hook) = self.hook.as_mut() else {
            return Action::Forward;
        };
        let (Ok(sql), Ok(name)) = (
            std::str::from_utf8(sql),
            std::str::from_utf8(name.unwrap_or_default()),
        ) else {
            let denial =
                Denial::new("dbwarden: statement text is not valid UTF-8 and cannot be checked");
            return Action::Deny { denial, ready };
        };
        let statement = if ready {
            Statement::Query { sql }
        } else {
            Statement::Parse { name, sql }
        };
        action(Some(hook.check(statement)), ready)
    }
}

/// What to do with a message given the hook's verdict (`None`: no hook). `ready`: the message
/// produces a ReadyForQuery of its own (see [`Action::Deny`]).
fn action(verdict: Option<Verdict>, ready: bool) -> Action {
    match verdict {
        Some(Verdict::Deny(denial)) => Action::Deny { denial, ready },
        Some(Verdict::Hold(hold)) => Action::Hold { hold, ready },
        Some(Verdict::Allow) | None => Action::Forward,
    }
}

/// A note the server pump could not take: it has ended, or the client has sent more than
/// `max` messages the database has not answered (it is skipping them after an error, waiting
/// for a Sync).
fn note_refused<T>(max: usize) -> impl FnOnce(mpsc::error::TrySendError<T>) -> SessionError {
    move |e| match e {
        mpsc::error::TrySendError::Full(_) => {
            SessionError::ClientProtocol(crate::protocol::ProtocolError::TooManyInFlight { max })
        }
        mpsc::error::TrySendError::Closed(_) => {
            SessionError::UpstreamIo(std::io::ErrorKind::BrokenPipe.into())
        }
    }
}
