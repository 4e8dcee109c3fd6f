//! Database -> client: track ReadyForQuery, pass rows through the row hook, place denials.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::follow::{Expected, Runs};
use super::news;
use super::out::Output;
use super::{Denied, Progress, SessionEnd, SessionError};
use crate::hook::{Denial, Pending, RowAction, RowHook};
use crate::net::{fill, reclaim};
use crate::protocol::backend::{
    self, DataRow, ErrorFields, INSUFFICIENT_PRIVILEGE, RowDescription, Severity, ready_status,
};
use crate::protocol::codec::peek_header;

/// SQLSTATE 26000 (invalid_sql_statement_name): the database's answer to the stand-in Describe.
const UNDEFINED_PREPARED_STATEMENT: &str = "26000";

pub(super) struct Pump {
    pub buf: BytesMut,
    pub hook: Option<Box<dyn RowHook>>,
    pub max_message: usize,
    pub progress: Arc<Progress>,
    pub denied: mpsc::UnboundedReceiver<Denied>,
    pub next_denial: Option<Denied>,
    /// The database sent an ErrorResponse since its last ReadyForQuery.
    pub cycle_errored: bool,
    /// A row hook denied the current result: drop messages until ReadyForQuery.
    pub discarding: bool,
    /// A warning of the database's passed while discarding, in this exchange (see [`news`]).
    pub warned: bool,
    /// Where row hooks write replacement rows.
    pub scratch: BytesMut,
    /// With a row hook: notes about the Describes forwarded, in order.
    pub expected: Expected,
    /// With both hooks: the statements followed to their ends.
    pub runs: Option<Runs>,
    /// How many times the row hook's `resolve` was awaited for the message at hand.
    pub resolve_attempts: u8,
    /// What this batch sends the client when it is not a plain run of the database's frames.
    pub out: Output,
}

/// Said with every result the row hook refuses: the database answered, so it ran the statement
/// (unless only describing it), and the client must not take the error for a rollback, as it
/// would an error of the database's own.
const WITHHELD: &str = "dbwarden withheld this result after the database produced \
     it: the statement, and any statement sent behind it before the next Sync, may have run, and \
     nothing was undone.";

/// Most times the row hook's `resolve` is awaited for one RowDescription; after that the hook
/// must describe the result with what it has (or refuse it).
const MAX_RESOLVE_ATTEMPTS: u8 = 2;

/// What to do with one database message.
enum Action {
    Forward,
    Skip,
    /// Write these bytes in its place.
    Replace,
    /// Write this error in its place, then drop the rest of the result.
    Deny(Denial),
    /// Await the row hook's work, then look at the same message again.
    Await(Pending),
}

impl Pump {
    pub async fn run<R, W>(
        &mut self,
        upstream: &mut R,
        client: &mut W,
    ) -> Result<SessionEnd, SessionError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if let Some(end) = self.drain(client).await? {
                return Ok(end);
            }
            match fill(upstream, &mut self.buf).await {
                Ok(true) => {}
                Ok(false) => {
                    // Relay whatever complete messages remain (a FATAL, typically).
                    self.drain(client).await?;
                    return Ok(SessionEnd::UpstreamClosed);
                }
                Err(e) => return Err(SessionError::UpstreamIo(e)),
            }
        }
    }

    /// True for the database's error about the stand-in Describe a denial sent (see the
    /// client pump's `deny`): a denial is queued for this cycle, and the error names the
    /// session's stand-in statement.
    fn is_stand_in_error(&mut self, pos: usize, len: usize) -> bool {
        let cycle = self.progress.seen.load(Ordering::Acquire) + 1;
        if self.peek_denial().is_none_or(|d| d.at != cycle) {
            return false;
        }
        let body = &self.buf[pos + 5..pos + len];
        ErrorFields::decode(b'E', body).is_ok_and(|fields| {
            // The message is in the client's encoding and language; the name is ASCII.
            fields.field(b'C') == Some(UNDEFINED_PREPARED_STATEMENT)
                && fields.field_bytes(b'M').is_some_and(|m| {
                    let name = self.progress.stand_in.as_bytes();
                    m.windows(name.len()).any(|w| w == name)
                })
        })
    }

    /// The next denial queued, if any (kept until its ReadyForQuery takes it).
    fn peek_denial(&mut self) -> Option<&Denied> {
        if self.next_denial.is_none() {
            self.next_denial = self.denied.try_recv().ok();
        }
        self.next_denial.as_ref()
    }

    /// The denial queued for ReadyForQuery number `seen`, if any.
    fn take_denial(&mut self, seen: u64) -> Option<Denied> {
        if self.peek_denial().is_some_and(|d| d.at <= seen) {
            self.next_denial.take()
        } else {
            None
        }
    }

    async fn drain<W: AsyncWrite + Unpin>(
        &mut self,
        client: &mut W,
    ) -> Result<Option<SessionEnd>, SessionError> {
        let mut pos = 0;
        let mut run_start = 0;
        let mut end = None;
        let (mut became_idle, mut readies) = (false, 0);
        while end.is_none() {
            let Some((tag, len)) = peek_header(&self.buf[pos..], self.max_message)
                .map_err(SessionError::UpstreamProtocol)?
            else {
                break;
            };
            if self.buf.len() - pos < len {
                break;
            }
            if tag == b'Z' {
                let body = &self.buf[pos + 5..pos + len];
                ready_status(body).map_err(SessionError::UpstreamProtocol)?;
                if let (Some(runs), Some(hook)) = (self.runs.as_mut(), self.hook.as_mut()) {
                    let cycle = self.progress.seen.load(Ordering::Acquire) + 1;
                    runs.end_cycle(cycle, hook.as_mut());
                }
                let seen = self.progress.seen.fetch_add(1, Ordering::AcqRel) + 1;
                readies += 1;
                self.expected.end_cycle(seen);
                if let Some(denied) = self.take_denial(seen) {
                    self.out.push(&self.buf[run_start..pos]);
                    if !self.cycle_errored {
                        self.out.push(&denied.error);
                    }
                    // A denied Parse's stand-in ReadyForQuery is not the client's to see.
                    run_start = if denied.ready { pos } else { pos + len };
                }
                self.cycle_errored = false;
                self.discarding = false;
                self.warned = false;
                pos += len;
                if self.progress.idle() {
                    if let Some(clock) = &self.progress.upstream {
                        clock.idle();
                    }
                    // Told once what came before is written: a client pump that ends the
                    // session then (shutdown, idle timeout) must not cut this off.
                    became_idle = true;
                    if self.progress.draining.load(Ordering::Acquire) {
                        end = Some(SessionEnd::Shutdown);
                    }
                }
                continue;
            }
            let mut action = self.decide(tag, pos, len)?;
            if let Action::Await(pending) = action {
                // Whatever came before is the client's already; it should not wait for this.
                self.write_client(client, run_start..pos).await?;
                run_start = pos;
                self.resolve_attempts += 1;
                match pending.await {
                    Ok(()) => continue,
                    Err(denial) => action = Action::Deny(denial),
                }
            }
            self.resolve_attempts = 0;
            if tag == b'G' {
                // CopyInResponse: the client's copy messages from now on are a COPY's.
                self.progress.copy_ins.fetch_add(1, Ordering::AcqRel);
                if !matches!(action, Action::Forward) {
                    // The client will not end a COPY it never heard of: the client pump must.
                    self.progress.copies_withheld.fetch_add(1, Ordering::AcqRel);
                    self.progress.copy_withheld.wake();
                }
            }
            match action {
                Action::Forward | Action::Await(_) => {}
                Action::Skip | Action::Replace | Action::Deny(_) => {
                    self.out.push(&self.buf[run_start..pos]);
                    run_start = pos + len;
                }
            }
            if let (Some(runs), Some(hook)) = (self.runs.as_mut(), self.hook.as_mut()) {
                let cycle = self.progress.seen.load(Ordering::Acquire) + 1;
                let body = &self.buf[pos + 5..pos + len];
                match (tag, &action) {
                    (b'D', Action::Forward | Action::Replace) => runs.rows += 1,
                    (b'C' | b'I' | b's' | b'E', _) => {
                        runs.completed(cycle, tag, body, hook.as_mut())?;
                    }
                    _ => {}
                }
                if let Action::Deny(denial) = &action {
                    runs.refuse(cycle, denial.message.clone());
                }
            }
            match action {
                Action::Replace => self.out.push(&self.scratch),
                Action::Deny(denial) => {
                    tracing::info!(message = %denial.message, "result denied by the row hook");
                    let detail = match denial.detail {
                        Some(detail) => format!("{detail} {WITHHELD}"),
                        None => WITHHELD.to_owned(),
                    };
                    let mut error = BytesMut::new();
                    backend::encode_error(
                        &mut error,
                        Severity::Error,
                        INSUFFICIENT_PRIVILEGE,
                        &denial.message,
                        Some(&detail),
                    );
                    self.out.push(&error);
                    self.discarding = true;
                    self.cycle_errored = true;
                }
                Action::Forward | Action::Skip | Action::Await(_) => {}
            }
            if self.out.is_large() {
                self.progress.park_if_ending().await;
                self.progress.writing.store(true, Ordering::Release);
                self.out
                    .flush(client)
                    .await
                    .map_err(SessionError::ClientIo)?;
                self.progress.writing.store(false, Ordering::Release);
            }
            pos += len;
        }
        self.write_client(client, run_start..pos).await?;
        self.progress.delivered.fetch_add(readies, Ordering::AcqRel);
        // The client pump waits for this with an idle timeout, and while draining (to end the
        // session once every answer is written).
        if became_idle
            && (self.progress.signal_idle || self.progress.draining.load(Ordering::Acquire))
        {
            self.progress.became_idle.notify_one();
        }
        self.buf.advance(pos);
        reclaim(&mut self.buf);
        Ok(end)
    }

    /// Writes what `out` holds, then the buffered frames in `tail`, to the client, with
    /// `Progress::writing` set meanwhile: a session the client pump ends lets the write finish
    /// before its farewell, which must not land inside a message.
    async fn write_client<W: AsyncWrite + Unpin>(
        &mut self,
        client: &mut W,
        tail: std::ops::Range<usize>,
    ) -> Result<(), SessionError> {
        self.progress.park_if_ending().await;
        self.progress.writing.store(true, Ordering::Release);
        self.out
            .finish(client, &self.buf[tail])
            .await
            .map_err(SessionError::ClientIo)?;
        self.progress.writing.store(false, Ordering::Release);
        Ok(())
    }

    /// The session is over: followed statements still unanswered are reported as such.
    pub(super) fn abandon_runs(&mut self, unstored_from: u64) {
        if let (Some(runs), Some(hook)) = (self.runs.as_mut(), self.hook.as_mut()) {
            runs.abandon(hook.as_mut(), unstored_from);
        }
    }

    /// An error or notice that arrives while a refused result is discarded (see [`news`]).
    fn news_while_discarding(&mut self, tag: u8, pos: usize, len: usize) -> Action {
        self.scratch.clear();
        let body = &self.buf[pos + 5..pos + len];
        if news::while_discarding(tag, body, &mut self.scratch, &mut self.warned) {
            Action::Replace
        } else {
            Action::Skip
        }
    }

    fn decide(&mut self, tag: u8, pos: usize, len: usize) -> Result<Action, SessionError> {
        if self.discarding {
            // What a refusal withholds is the exchange's results; the session's own news (a
            // setting's new value, a notification, the database ending it) still reaches the
            // client.
            return Ok(match tag {
                b'S' | b'A' => Action::Forward,
                b'E' | b'N' => self.news_while_discarding(tag, pos, len),
                _ => Action::Skip,
            });
        }
        if tag == b'E' && self.is_stand_in_error(pos, len) {
            // The denial's own error goes to the client at the stand-in's ReadyForQuery.
            return Ok(Action::Skip);
        }
        let body = &self.buf[pos + 5..pos + len];
        let Some(hook) = self.hook.as_mut() else {
            if tag == b'E' {
                self.cycle_errored = true;
            }
            return Ok(Action::Forward);
        };
        Ok(match tag {
            b'E' => {
                self.cycle_errored = true;
                Action::Forward
            }
            b'T' => {
                let description =
                    RowDescription::decode(body).map_err(SessionError::UpstreamProtocol)?;
                if self.resolve_attempts < MAX_RESOLVE_ATTEMPTS
                    && let Some(pending) = hook.resolve(&description)
                {
                    return Ok(Action::Await(pending));
                }
                let note = self.expected.take(&self.progress);
                let described = match note.and_then(|n| n.portal) {
                    Some((portal, resumed)) => {
                        hook.portal_description(&description, portal, resumed)
                    }
                    None => hook.row_description(&description),
                };
                match described {
                    Ok(()) if note.is_some_and(|n| n.injected) => Action::Skip,
                    Ok(()) => Action::Forward,
                    Err(denial) => Action::Deny(denial),
                }
            }
            b'n' if self
                .expected
                .take(&self.progress)
                .is_some_and(|n| n.injected) =>
            {
                Action::Skip
            }
            b'D' => {
                let row = DataRow::decode(body).map_err(SessionError::UpstreamProtocol)?;
                self.scratch.clear();
                match hook.data_row(&row, &mut self.scratch) {
                    RowAction::Forward => Action::Forward,
                    RowAction::Replace => Action::Replace,
                    RowAction::Skip => Action::Skip,
                    RowAction::Deny(denial) => Action::Deny(denial),
                }
            }
            _ => Action::Forward,
        })
    }
}
