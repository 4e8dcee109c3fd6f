//! The prepared statements and portals of one session, so each Execute is audited with the
//! statement it runs (the decision was made at Parse; the statement runs at Execute, maybe
//! many times).
//!
//! The sidecar changes this only for Parses it forwards, and refuses a Parse of a named
//! statement it already has: the server would refuse it too (a named statement is not
//! replaced), and letting it through would leave the sidecar believing the name runs the new
//! text while the server runs the old one. A name whose earlier Parse failed at the server (or
//! that was dropped with SQL `DEALLOCATE`) is refused the same way until the client sends a
//! Close for it, which the server accepts for any name.
//!
//! Bounded, and closed when full: a Parse past the bound and an Execute of a portal the
//! sidecar does not know are refused, rather than letting a statement run without its event.

use std::collections::HashMap;
use std::sync::Arc;

use dbwarden_policy::analyze::{Analysis, StatementAnalysis};

use crate::audit::Outcome;

/// Most named prepared statements a session may hold under a policy.
pub(super) const MAX_STATEMENTS: usize = 4096;
/// Most bytes of statement text they may hold together.
pub(super) const MAX_STATEMENT_BYTES: usize = 8 << 20;
/// Most named portals remembered (portals end with their transaction, which the sidecar does
/// not follow: past this the oldest are forgotten, and executing one is refused).
pub(super) const MAX_PORTALS: usize = 1024;

/// What every execution of a prepared statement is recorded as.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) sql: Box<str>,
    pub(super) analysis: Option<Arc<Analysis>>,
    /// The decision at Parse (`None`: nothing to record, e.g. an empty statement).
    pub(super) outcome: Option<Outcome>,
}

/// What an Execute runs.
#[derive(Debug)]
pub(super) enum Run {
    /// The first Execute of its portal since the Bind: a new run of this statement.
    First(Arc<Prepared>),
    /// More rows of the portal's run (after PortalSuspended): the seq of that run's event,
    /// when one was recorded.
    Resumed(Option<u64>),
}

/// Why a prepared statement or portal cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Untracked {
    /// Too many named statements, or too much text.
    Full,
    /// A Parse of a named statement the session already has.
    Exists,
    /// An Execute of a portal never bound here (or forgotten).
    UnknownPortal,
}

impl Untracked {
    pub(super) fn message(self) -> String {
        match self {
            Self::Full => format!(
                "dbwarden: this session holds too many prepared statements to audit (at most \
                 {MAX_STATEMENTS}, {} MiB of text); close some before preparing more",
                MAX_STATEMENT_BYTES >> 20
            ),
            Self::Exists => "dbwarden: a prepared statement of this name already exists in this \
                 session (or its earlier Parse failed); Close it before preparing it again"
                .to_owned(),
            Self::UnknownPortal => "dbwarden: the portal executed was not bound through the \
                 sidecar (or too many portals are open); it is refused rather than run without \
                 its audit event"
                .to_owned(),
        }
    }
}

/// A bound portal.
#[derive(Debug)]
struct Portal {
    /// Bind order.
    at: u64,
    statement: Arc<Prepared>,
    /// Executed since its Bind.
    executed: bool,
    /// The seq of the event recorded for its run.
    event: Option<u64>,
}

/// A session's statements and portals.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    statements: HashMap<Box<[u8]>, Arc<Prepared>>,
    bytes: usize,
    /// Portal -> its state since its Bind.
    portals: HashMap<Box<[u8]>, Portal>,
    /// Bind order, to forget the oldest named portal first.
    binds: u64,
}

impl Tracker {
    /// Whether a Parse of `name` may go ahead: the unnamed statement is replaced by every
    /// Parse, a named one must be closed first.
    pub(super) fn may_parse(&self, name: &[u8]) -> Result<(), Untracked> {
        if !name.is_empty() && self.statements.contains_key(name) {
            return Err(Untracked::Exists);
        }
        Ok(())
    }

    /// Remembers statement `name`, whose Parse is forwarded (replacing the unnamed statement).
    pub(super) fn parse(&mut self, name: &[u8], prepared: Prepared) -> Result<(), Untracked> {
        self.may_parse(name)?;
        let size = prepared.sql.len();
        let replaced = self.statements.get(name).map_or(0, |p| p.sql.len());
        let named = self.statements.len() - usize::from(self.statements.contains_key(&b""[..]));
        if !name.is_empty()
            && (self.bytes - replaced + size > MAX_STATEMENT_BYTES
                || (replaced == 0 && named >= MAX_STATEMENTS))
        {
            return Err(Untracked::Full);
        }
        self.bytes = self.bytes - replaced + size;
        self.statements.insert(name.into(), Arc::new(prepared));
        Ok(())
    }

    /// Forgets statement `name` (it was closed).
    pub(super) fn close_statement(&mut self, name: &[u8]) {
        if let Some(p) = self.statements.remove(name) {
            self.bytes -= p.sql.len();
        }
    }

    /// Binds `portal` to statement `statement`. A statement the sidecar does not know leaves
    /// the portal unknown (the server refuses the Bind, or the Execute is refused here).
    pub(super) fn bind(&mut self, portal: &[u8], statement: &[u8]) {
        self.portals.remove(portal);
        let Some(prepared) = self.statements.get(statement) else {
            return;
        };
        if self.portals.len() >= MAX_PORTALS
            && let Some(oldest) = self
                .portals
                .iter()
                .min_by_key(|(_, p)| p.at)
                .map(|(name, _)| name.clone())
        {
            self.portals.remove(&oldest);
        }
        self.binds += 1;
        self.portals.insert(
            portal.into(),
            Portal {
                at: self.binds,
                statement: Arc::clone(prepared),
                executed: false,
                event: None,
            },
        );
    }

    /// What an Execute of `portal` runs: the statement bound, or more rows of the run its
    /// first Execute started (recorded then).
    pub(super) fn execute(&mut self, portal: &[u8]) -> Result<Run, Untracked> {
        let p = self
            .portals
            .get_mut(portal)
            .ok_or(Untracked::UnknownPortal)?;
        Ok(if std::mem::replace(&mut p.executed, true) {
            Run::Resumed(p.event)
        } else {
            Run::First(Arc::clone(&p.statement))
        })
    }

    /// Notes that the run `portal` just started was recorded as event `seq`.
    pub(super) fn executed_as(&mut self, portal: &[u8], seq: u64) {
        if let Some(p) = self.portals.get_mut(portal) {
            p.event = Some(seq);
        }
    }

    pub(super) fn close_portal(&mut self, portal: &[u8]) {
        self.portals.remove(portal);
    }
}

/// SQL-level prepared statements (`PREPARE name AS ...`) the session sent, by name, so that each
/// `EXECUTE name` is decided as the statement it runs. Names are only ever added: a `DEALLOCATE`
/// may not reach the server's list (an aborted transaction skips it), and forgetting the name
/// then would let a later `PREPARE` of it be decided by a text the server never stored. The
/// policy refuses a `PREPARE` of a name held here. Bounded like the protocol-level statements.
#[derive(Debug, Default)]
pub(super) struct SqlPrepared {
    names: HashMap<Box<str>, Arc<StatementAnalysis>>,
    /// Normalised text held, as a measure of size.
    bytes: usize,
}

impl SqlPrepared {
    pub(super) fn get(&self, name: &str) -> Option<Arc<StatementAnalysis>> {
        self.names.get(name).cloned()
    }

    /// Whether the `PREPARE`s of `analysis` fit in the bounds.
    pub(super) fn fits(&self, analysis: &Analysis) -> bool {
        let (count, bytes) = preparing(analysis).fold((0, 0), |(n, b), (_, inner)| {
            (n + 1, b + inner.fingerprint.normalized.len())
        });
        count == 0
            || (self.names.len() + count <= MAX_STATEMENTS
                && self.bytes + bytes <= MAX_STATEMENT_BYTES)
    }

    /// Takes the names `analysis` prepares (the string is being forwarded).
    pub(super) fn remember(&mut self, analysis: &Analysis) {
        for (name, inner) in preparing(analysis) {
            if !self.names.contains_key(name) {
                self.bytes += inner.fingerprint.normalized.len();
                self.names.insert(name.into(), Arc::new(inner.clone()));
            }
        }
    }
}

fn preparing(analysis: &Analysis) -> impl Iterator<Item = (&str, &StatementAnalysis)> {
    analysis
        .statements
        .iter()
        .filter_map(|s| Some((s.prepared_name.as_deref()?, s.prepared.as_deref()?)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn statement(sql: &str) -> Prepared {
        Prepared {
            sql: sql.into(),
            analysis: None,
            outcome: None,
        }
    }

    #[test]
    fn portals_run_the_statement_they_were_bound_to() {
        let mut t = Tracker::default();
        t.parse(b"s1", statement("select 1")).unwrap();
        t.parse(b"", statement("select 2")).unwrap();
        t.bind(b"", b"s1");
        t.bind(b"p", b"");
        // Re-preparing the unnamed statement does not change what bound portals run.
        t.parse(b"", statement("select 3")).unwrap();
        let sql = |run: Run| match run {
            Run::First(p) => p.sql.to_string(),
            Run::Resumed(seq) => format!("resumed {seq:?}"),
        };
        assert_eq!(sql(t.execute(b"").unwrap()), "select 1");
        assert_eq!(sql(t.execute(b"p").unwrap()), "select 2");
        t.executed_as(b"p", 7);
        // Fetching more rows of the same run is not another run; a new Bind is.
        assert_eq!(sql(t.execute(b"p").unwrap()), "resumed Some(7)");
        t.bind(b"p", b"");
        assert_eq!(sql(t.execute(b"p").unwrap()), "select 3");
        t.close_portal(b"p");
        assert_eq!(t.execute(b"p").unwrap_err(), Untracked::UnknownPortal);
        // A Bind of an unknown statement leaves the portal unknown.
        t.bind(b"", b"nope");
        assert_eq!(t.execute(b"").unwrap_err(), Untracked::UnknownPortal);
    }

    #[test]
    fn bounded_and_closed_when_full() {
        let mut t = Tracker::default();
        for i in 0..MAX_STATEMENTS {
            t.parse(format!("s{i}").as_bytes(), statement("select 1"))
                .unwrap();
        }
        assert_eq!(
            t.parse(b"one-more", statement("select 1")).unwrap_err(),
            Untracked::Full
        );
        // A named statement is not replaced; the unnamed one is.
        assert_eq!(
            t.parse(b"s0", statement("select 2")).unwrap_err(),
            Untracked::Exists
        );
        t.parse(b"", statement("select 2")).unwrap();
        t.close_statement(b"s1");
        t.parse(b"one-more", statement("select 1")).unwrap();
        let big = "x".repeat(MAX_STATEMENT_BYTES);
        assert_eq!(
            t.parse(b"big", statement(&big)).unwrap_err(),
            Untracked::Full
        );
        // Past the portal bound the oldest is forgotten.
        for i in 0..=MAX_PORTALS {
            t.bind(format!("p{i}").as_bytes(), b"s0");
        }
        assert_eq!(t.execute(b"p0").unwrap_err(), Untracked::UnknownPortal);
        assert!(t.execute(format!("p{MAX_PORTALS}").as_bytes()).is_ok());
    }
}
