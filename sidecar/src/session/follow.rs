//! What the server pump follows through the database's answers: the statements whose ends the
//! hooks hear of ([`Runs`]), and the Describes whose answers the row hook reads ([`Expected`]).
//! Both are notes the client pump sent, matched to answers in order within a ReadyForQuery
//! cycle.

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Expect, Progress, RunNote, SessionError};
use crate::hook::{Completion, RowHook, RunEnd};
use crate::protocol::backend::ErrorFields;

/// The statements the hooks follow to their ends (see `StatementHook::take_runs`), and what
/// the current one's result has sent so far.
pub(super) struct Runs {
    notes: mpsc::Receiver<RunNote>,
    next: Option<RunNote>,
    /// DataRows sent to the client since the last end.
    pub(super) rows: u64,
    /// The row hook refused the result at hand: its end is a refusal, with this message.
    pub(super) refusal: Option<String>,
    /// A result of this cycle was refused: the rest of the cycle ran, but was not sent.
    withholding: bool,
    /// The SQLSTATE of the FATAL error the database ended the session with.
    ended_by: Option<String>,
}

impl Runs {
    pub(super) fn new(notes: mpsc::Receiver<RunNote>) -> Self {
        Self {
            notes,
            next: None,
            rows: 0,
            refusal: None,
            withholding: false,
            ended_by: None,
        }
    }

    /// The database ended the session with the FATAL error `body`: the runs left will be
    /// reported as having no result, naming its code.
    pub(super) fn session_ended(&mut self, body: &[u8]) {
        self.ended_by = ErrorFields::decode(b'E', body)
            .ok()
            .and_then(|f| f.sqlstate())
            .map(str::to_owned);
    }

    /// The next note, if it belongs to `cycle`; notes of earlier cycles end as not run.
    fn take(&mut self, cycle: u64, hook: &mut dyn RowHook) -> Option<RunNote> {
        loop {
            if self.next.is_none() {
                self.next = self.notes.try_recv().ok();
            }
            match self.next {
                Some(n) if n.at < cycle => {
                    self.next = None;
                    self.report(n, RunEnd::NotRun, hook);
                }
                Some(n) if n.at == cycle => return self.next.take(),
                _ => return None,
            }
        }
    }

    /// A CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse of `cycle`: the
    /// end of the next followed statement (an error that ends no followed statement, such as a
    /// failed Parse in a cycle without an Execute, ends nothing).
    pub(super) fn completed(
        &mut self,
        cycle: u64,
        tag: u8,
        body: &[u8],
        hook: &mut dyn RowHook,
    ) -> Result<(), SessionError> {
        let sqlstate;
        let end = match tag {
            b'C' => RunEnd::Command(command_tag(body)),
            b'I' => RunEnd::Empty,
            b's' => RunEnd::Suspended,
            _ => {
                // A malformed error is still an error; its text is the client's to judge, and
                // a code that is no SQLSTATE is left out of the record.
                sqlstate = ErrorFields::decode(tag, body)
                    .ok()
                    .and_then(|f| f.sqlstate())
                    .unwrap_or("");
                RunEnd::Failed(sqlstate)
            }
        };
        let refusal = self.refusal.take();
        let end = match &refusal {
            Some(message) => RunEnd::Refused(message),
            None => end,
        };
        match self.take(cycle, hook) {
            Some(note) => self.report(note, end, hook),
            // Nobody follows it (its statement has no event): the hook still starts afresh.
            None => hook.completed(None, &self.completion(end, None)),
        }
        self.rows = 0;
        if refusal.is_some() {
            self.withholding = true;
        }
        Ok(())
    }

    /// ReadyForQuery ends `cycle`: its statements not answered did not run.
    pub(super) fn end_cycle(&mut self, cycle: u64, hook: &mut dyn RowHook) {
        while let Some(note) = self.take(cycle, hook) {
            self.report(note, RunEnd::NotRun, hook);
        }
        self.rows = 0;
        self.refusal = None;
        self.withholding = false;
    }

    /// The session ended: what was not answered never will be.
    /// Reports every run still noted as abandoned, except those from `unstored_from` on (their
    /// events were never stored, so they never ran).
    pub(super) fn abandon(&mut self, hook: &mut dyn RowHook, unstored_from: u64) {
        let ended_by = self.ended_by.take();
        while let Some(note) = self.next.take().or_else(|| self.notes.try_recv().ok()) {
            if note.run.is_some_and(|run| run < unstored_from) {
                self.report(note, RunEnd::Abandoned(ended_by.as_deref()), hook);
            }
        }
    }

    fn report(&self, note: RunNote, end: RunEnd<'_>, hook: &mut dyn RowHook) {
        hook.completed(note.run, &self.completion(end, Some(note.sent)));
    }

    fn completion<'a>(&self, end: RunEnd<'a>, sent: Option<std::time::Instant>) -> Completion<'a> {
        Completion {
            end,
            rows_sent: if matches!(end, RunEnd::NotRun | RunEnd::Abandoned(_)) {
                0
            } else {
                self.rows
            },
            upstream: sent.map(|s| s.elapsed()).unwrap_or_default(),
            withheld: self.withholding,
        }
    }
}

/// The text of a CommandComplete (its NUL and anything that is not UTF-8 dropped).
fn command_tag(body: &[u8]) -> &str {
    let text = body.split(|&b| b == 0).next().unwrap_or_default();
    std::str::from_utf8(text).unwrap_or_default()
}

/// The notes about Describes, for the server pump.
pub(super) struct Expected {
    pub(super) notes: Option<mpsc::Receiver<Expect>>,
    pub(super) next: Option<Expect>,
}

impl Expected {
    /// The next note, if any (kept until taken or its cycle ends).
    pub(super) fn peek(&mut self) -> Option<Expect> {
        if self.next.is_none() {
            self.next = self.notes.as_mut()?.try_recv().ok();
        }
        self.next
    }

    /// The note of the Describe the RowDescription/NoData at hand answers, if any (`injected`:
    /// the client must not see it). Answers arrive in the order the Describes were sent, and
    /// notes of cycles already over were dropped at their end ([`Self::end_cycle`]).
    pub(super) fn take(&mut self, progress: &Progress) -> Option<Expect> {
        let cycle = progress.seen.load(Ordering::Acquire) + 1;
        match self.peek() {
            Some(e) if e.at == cycle => self.next.take(),
            // A simple Query's result, or a later cycle's note.
            _ => None,
        }
    }

    /// Drops the notes of cycle `seen` and before, which just ended: Describes the database
    /// skipped after an error get no answer, and their notes must not pile up (they count
    /// against `limits.max_unanswered_messages`).
    pub(super) fn end_cycle(&mut self, seen: u64) {
        while self.peek().is_some_and(|e| e.at <= seen) {
            self.next = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::BytesMut;

    use super::*;
    use crate::hook::{Denial, RowAction};
    use crate::protocol::backend::{DataRow, RowDescription};

    /// Records which runs were reported.
    #[derive(Default)]
    struct Reported(Vec<u64>);

    impl RowHook for Reported {
        fn row_description(&mut self, _: &RowDescription<'_>) -> Result<(), Denial> {
            Ok(())
        }

        fn data_row(&mut self, _: &DataRow<'_>, _: &mut BytesMut) -> RowAction {
            RowAction::Forward
        }

        fn completed(&mut self, run: Option<u64>, completion: &Completion<'_>) {
            assert!(matches!(completion.end, RunEnd::Abandoned(None)));
            self.0.extend(run);
        }
    }

    #[test]
    fn abandoning_reports_only_the_runs_whose_events_were_stored() {
        let (tx, rx) = mpsc::channel(8);
        let sent = std::time::Instant::now();
        for run in [Some(1), None, Some(5), Some(9)] {
            tx.try_send(RunNote { at: 1, run, sent }).unwrap();
        }
        let mut hook = Reported::default();
        // The write that held seq 5 on failed: 5 and 9 never ran.
        Runs::new(rx).abandon(&mut hook, 5);
        assert_eq!(hook.0, [1]);
    }
}
