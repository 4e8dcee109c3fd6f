//! What the server pump follows through the database's answers: the statements whose ends the
//! hooks hear of ([`Runs`]), and the Describes whose answers the row hook reads ([`Expected`]).
//! Both are notes the client pump sent, matched to answers in order within a ReadyForQuery
//! cycle.

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Expect, Progress, RunNote, SessionError};
use crate::hook::{Completion, EndedBy, RowHook, RunEnd};
use crate::protocol::backend::ErrorFields;

/// The statements the hooks follow to their ends (see `StatementHook::take_runs`), and what
/// the current one's result has sent so far.
pub(super) struct Runs {
    notes: mpsc::Receiver<RunNote>,
    next: Option<RunNote>,
    /// DataRows sent to the client since the last end.
    pub(super) rows: u64,
    /// The row hook refused the result at hand, in this cycle: its end is a refusal, with this
    /// message.
    refusal: Option<(u64, String)>,
    /// A result of this cycle was refused: the rest of the cycle ran, but was not sent.
    withholding: bool,
    /// The database ended the session with a FATAL or PANIC error: its SQLSTATE, when well
    /// formed.
    fatal: Option<Option<String>>,
}

impl Runs {
    pub(super) fn new(notes: mpsc::Receiver<RunNote>) -> Self {
        Self {
            notes,
            next: None,
            rows: 0,
            refusal: None,
            withholding: false,
            fatal: None,
        }
    }

    /// The row hook refused the result at hand, of `cycle`, with `message`.
    pub(super) fn refuse(&mut self, cycle: u64, message: String) {
        self.refusal = Some((cycle, message));
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
    /// failed Parse in a cycle without an Execute, ends nothing; nor does the database's FATAL).
    /// The other messages of a result pass by the server pump.
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
                let fields = ErrorFields::decode(tag, body).ok();
                sqlstate = fields.and_then(|f| f.sqlstate());
                if fields.is_some_and(|f| f.ends_session()) {
                    // The database ending the session says nothing of which statement ran:
                    // the runs left are reported unanswered, naming its code.
                    self.fatal = Some(sqlstate.map(str::to_owned));
                    return Ok(());
                }
                RunEnd::Failed(sqlstate.unwrap_or(""))
            }
        };
        // A refusal does not outlive its cycle (see `end_cycle`): it is this result's.
        let refusal = self.refusal.take().map(|(_, message)| message);
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
    /// A result refused before the end still ends as refused.
    pub(super) fn abandon(&mut self, hook: &mut dyn RowHook, unstored_from: u64) {
        let fatal = self.fatal.take();
        let ended_by = match &fatal {
            Some(code) => EndedBy::Database(code.as_deref()),
            None => EndedBy::Other,
        };
        let refusal = self.refusal.take();
        // The first is the statement whose result was at hand, if it is of the refusal's cycle
        // (a refused result may have no note, such as a Describe's).
        let mut refused = refusal.as_ref();
        while let Some(note) = self.next.take().or_else(|| self.notes.try_recv().ok()) {
            let end = match refused.take() {
                Some((cycle, message)) if note.at == *cycle => RunEnd::Refused(message),
                _ => RunEnd::Abandoned(ended_by),
            };
            if note.run.is_some_and(|run| run < unstored_from) {
                self.report(note, end, hook);
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
    notes: Option<mpsc::Receiver<Expect>>,
    next: Option<Expect>,
}

impl Expected {
    /// The notes from `notes` (none without a row hook).
    pub(super) fn new(notes: Option<mpsc::Receiver<Expect>>) -> Self {
        Self { notes, next: None }
    }

    /// The next note, if any (kept until taken or its cycle ends).
    fn peek(&mut self) -> Option<Expect> {
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

    /// Records which runs were reported, how they ended (`Debug`, as the ends borrow), and the
    /// rows they sent.
    #[derive(Default)]
    struct Reported(Vec<(Option<u64>, String, u64)>);

    impl RowHook for Reported {
        fn row_description(&mut self, _: &RowDescription<'_>) -> Result<(), Denial> {
            Ok(())
        }

        fn data_row(&mut self, _: &DataRow<'_>, _: &mut BytesMut) -> RowAction {
            RowAction::Forward
        }

        fn completed(&mut self, run: Option<u64>, completion: &Completion<'_>) {
            self.0
                .push((run, format!("{:?}", completion.end), completion.rows_sent));
        }
    }

    /// Runs following statements noted in cycles `notes` (cycle, run).
    fn noted(notes: &[(u64, Option<u64>)]) -> Runs {
        let (tx, rx) = mpsc::channel(8);
        let sent = std::time::Instant::now();
        for &(at, run) in notes {
            tx.try_send(RunNote { at, run, sent }).unwrap();
        }
        Runs::new(rx)
    }

    fn ended(run: u64, end: &str, rows: u64) -> (Option<u64>, String, u64) {
        (Some(run), end.to_owned(), rows)
    }

    #[test]
    fn abandoning_reports_only_the_runs_whose_events_were_stored() {
        let mut hook = Reported::default();
        // The write that held seq 5 on failed: 5 and 9 never ran.
        noted(&[(1, Some(1)), (1, None), (1, Some(5)), (1, Some(9))]).abandon(&mut hook, 5);
        assert_eq!(hook.0, [ended(1, "Abandoned(Other)", 0)]);
    }

    #[test]
    fn the_databases_fatal_ends_no_run_and_names_the_end_of_those_left() {
        for (body, expected) in [
            (
                &b"SFATAL\0VFATAL\0C57P01\0Mterminating\0\0"[..],
                r#"Database(Some("57P01"))"#,
            ),
            (
                b"SFATAL\0VFATAL\0C57P01 x\0Mterminating\0\0",
                "Database(None)",
            ),
            (b"SPANIC\0VPANIC\0Mcrash\0\0", "Database(None)"),
        ] {
            let mut hook = Reported::default();
            let mut runs = noted(&[(1, Some(1)), (1, Some(2))]);
            runs.completed(1, b'E', body, &mut hook).unwrap();
            assert_eq!(hook.0, [], "a FATAL is no statement's answer");
            runs.abandon(&mut hook, u64::MAX);
            let end = format!("Abandoned({expected})");
            assert_eq!(hook.0, [ended(1, &end, 0), ended(2, &end, 0)]);
        }
    }

    #[test]
    fn a_result_refused_before_the_session_ended_stays_refused() {
        let fatal = b"SFATAL\0VFATAL\0C57P01\0Mx\0\0";
        let mut hook = Reported::default();
        let mut runs = noted(&[(1, Some(1)), (1, Some(2))]);
        runs.rows = 3;
        runs.refuse(1, "maxRows".into());
        runs.completed(1, b'E', fatal, &mut hook).unwrap();
        runs.abandon(&mut hook, u64::MAX);
        assert_eq!(
            hook.0,
            [
                ended(1, r#"Refused("maxRows")"#, 3),
                ended(2, r#"Abandoned(Database(Some("57P01")))"#, 0),
            ]
        );

        // A refused result without a note (a Describe's): the statement pipelined behind it,
        // in the next cycle, was not refused.
        let mut hook = Reported::default();
        let mut runs = noted(&[(2, Some(7))]);
        runs.refuse(1, "maxRows".into());
        runs.completed(1, b'E', fatal, &mut hook).unwrap();
        runs.abandon(&mut hook, u64::MAX);
        assert_eq!(
            hook.0,
            [ended(7, r#"Abandoned(Database(Some("57P01")))"#, 0)]
        );
    }
}
