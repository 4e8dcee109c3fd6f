//! Holding a statement for a decision: the client is watched meanwhile (a disconnect, a
//! Terminate, a shutdown or a cancel ends the wait), and pipelined input is kept for after.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::futures::Notified;

use super::Pump;
use crate::hook::{Denial, Hold, Verdict};
use crate::net::fill;
use crate::protocol::codec::peek_header;
use crate::session::{SessionEnd, SessionError};

/// How a hold ended.
pub(super) enum Held {
    /// The hook decided (or the client cancelled: a refusal).
    Verdict(Verdict),
    /// The session ends without the statement.
    End(SessionEnd),
}

/// While a statement is held, the client's further input is read (to notice a disconnect) up
/// to this many buffered bytes; beyond, reading pauses until the verdict.
const HOLD_READ_LIMIT: usize = 1024 * 1024;

impl Pump {
    /// Waits for a held statement's verdict while watching the client: a disconnect or a
    /// graceful shutdown ends the session (the statement never runs), a CancelRequest refuses
    /// the statement. Pipelined input that arrives meanwhile is kept for after the verdict.
    pub(super) async fn hold<R, W>(
        &mut self,
        client: &mut R,
        upstream: &mut W,
        hold: Hold,
        after: usize,
    ) -> Result<Held, SessionError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        tracing::info!("statement held for a decision");
        // One registration for the whole hold, so a cancel between two reads is not missed.
        let cancel = Arc::clone(&self.cancel);
        let cancelled = cancel.notified();
        tokio::pin!(cancelled);
        cancelled.as_mut().enable();
        let held = if cancel.taken() {
            // A cancel came while what was before the statement went out.
            tracing::info!("held statement cancelled by the client");
            Ok(Held::Verdict(Verdict::Deny(cancelled_denial())))
        } else {
            self.wait_held(client, upstream, hold, after, cancelled)
                .await
        };
        // A cancel that came as the verdict did took the statement first: it must not run.
        match held {
            Ok(Held::Verdict(Verdict::Allow)) if !cancel.release() => {
                tracing::info!("held statement cancelled by the client as it was allowed");
                Ok(Held::Verdict(Verdict::Deny(cancelled_denial())))
            }
            held => {
                cancel.release();
                held
            }
        }
    }

    async fn wait_held<R, W>(
        &mut self,
        client: &mut R,
        upstream: &mut W,
        hold: Hold,
        after: usize,
        mut cancelled: std::pin::Pin<&mut Notified<'_>>,
    ) -> Result<Held, SessionError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut wait = hold.0;
        loop {
            // A Terminate sent behind the held statement is a goodbye like a closed socket.
            if self.terminated_after(after) {
                tracing::info!("client said goodbye while its statement was held; it will not run");
                return Ok(Held::End(SessionEnd::Terminated));
            }
            let can_read = self.buf.len() < HOLD_READ_LIMIT;
            tokio::select! {
                verdict = &mut wait => return Ok(Held::Verdict(verdict)),
                () = &mut cancelled => {
                    tracing::info!("held statement cancelled by the client");
                    return Ok(Held::Verdict(Verdict::Deny(cancelled_denial())));
                }
                read = fill(client, &mut self.buf), if can_read => match read {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!("client left while its statement was held; it will not run");
                        return Ok(Held::End(SessionEnd::ClientClosed));
                    }
                    Err(e) => return Err(SessionError::ClientIo(e)),
                },
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        return Ok(Held::End(SessionEnd::Shutdown));
                    }
                }
                // A COPY sent before the held statement must not wait for the verdict.
                () = self.progress.copies_to_fail(self.copy.withheld_failed) => {
                    self.fail_withheld_copies(upstream).await?;
                }
            }
        }
    }

    /// True when the complete frames buffered from `from` on include a Terminate.
    fn terminated_after(&self, mut from: usize) -> bool {
        while let Ok(Some((tag, len))) = peek_header(&self.buf[from..], self.max_message) {
            if self.buf.len() - from < len {
                return false;
            }
            if tag == b'X' {
                return true;
            }
            from += len;
        }
        false
    }
}

/// The refusal of a held statement the client cancelled.
fn cancelled_denial() -> Denial {
    Denial::new(
        "canceling statement due to user request; it will not run (an approval request already \
         filed stays for the approvers to see)",
    )
}
