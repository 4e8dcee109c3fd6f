//! The seam where policy plugs into the statement path.
//!
//! A [`HookFactory`] is asked once per client session for that session's hooks. Both are
//! optional: a session without hooks pays one `Option` check per message and nothing else.
//! The [`StatementHook`] sees every simple Query, every Parse and every fast-path
//! FunctionCall before it is forwarded; the [`RowHook`] sees every RowDescription and
//! DataRow the server sends back.
//!
//! A denial never desynchronizes the protocol: a denied Query gets an ErrorResponse and a
//! ReadyForQuery; a denied Parse gets an ErrorResponse and the client's following
//! extended-protocol messages are discarded (not forwarded) until Sync, which gets
//! ReadyForQuery, exactly as a server behaves after an error.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::BytesMut;
use dbwarden_audit::Ticket;

use crate::protocol::backend::{DataRow, RowDescription};

/// Who is on the other end of a session, as decided by the [`crate::frontend::IdentityHook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject: a user from a verified token, or the workload itself.
    pub subject: String,
    /// Groups the subject belongs to.
    pub groups: Vec<String>,
    /// True when the subject comes from an end-user token, false for the workload.
    pub end_user: bool,
}

impl Identity {
    /// The workload's own identity (no end-user token).
    pub fn workload(name: impl Into<String>) -> Self {
        Self {
            subject: name.into(),
            groups: Vec::new(),
            end_user: false,
        }
    }
}

/// What a hook knows about the session it serves.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The listener's name from the configuration.
    pub listener: String,
    /// The upstream database name.
    pub database: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The authenticated identity.
    pub identity: Identity,
    /// `application_name` sent by the client, if any.
    pub application_name: Option<String>,
    /// The session's audit and metrics handle: hooks report every decision through it.
    pub audit: crate::audit::SessionAudit,
}

/// A statement on its way to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement<'a> {
    /// A simple Query; may hold several statements separated by `;`.
    Query {
        /// The SQL text (UTF-8; non-UTF-8 text is denied before any hook sees it).
        sql: &'a str,
    },
    /// A Parse of the extended protocol.
    Parse {
        /// Statement name, empty for the unnamed statement.
        name: &'a str,
        /// The SQL text.
        sql: &'a str,
    },
    /// A fast-path FunctionCall, which names a function by OID and has no SQL text.
    FunctionCall {
        /// The function's OID.
        oid: u32,
    },
}

/// Why a statement or a row was refused; becomes an ErrorResponse with SQLSTATE 42501.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The primary message, shown to the client (say which rule and why).
    pub message: String,
    /// Optional detail line.
    pub detail: Option<String>,
}

impl Denial {
    /// A denial with `message` and no detail.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            detail: None,
        }
    }
}

/// The decision on one statement.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Refuse it with SQLSTATE 42501.
    Deny(Denial),
    /// Decide later (a statement waiting for a person's approval): the session awaits the
    /// future before forwarding or refusing. Meanwhile the client's messages stay unread-on
    /// (but a disconnect is noticed), and a CancelRequest for the session ends the wait with a
    /// refusal; either way the future is dropped and the statement never runs.
    Hold(Hold),
}

impl Verdict {
    /// True for [`Verdict::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// The pending decision of a [`Verdict::Hold`]; it resolves to `Allow` or `Deny` (a nested
/// `Hold` is taken as a refusal).
pub struct Hold(pub Pin<Box<dyn Future<Output = Verdict> + Send + 'static>>);

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hold(..)")
    }
}

/// What to do with one DataRow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowAction {
    /// Forward the row unchanged (no copy is made).
    Forward,
    /// Send the complete message the hook wrote into `out` instead (e.g. masked values).
    Replace,
    /// Drop the row: the client does not see it (e.g. rows past a `truncate` row limit).
    Skip,
    /// Stop the result: the client gets an ErrorResponse and the rest of this result is
    /// discarded up to the server's next ReadyForQuery.
    Deny(Denial),
}

/// Checks statements before they reach the server; one instance per session.
///
/// Besides [`Self::check`], the extended protocol's Bind, Execute and Close pass through the
/// hook (after the session's own discarding, so only what reaches the server): a hook that
/// audits prepared statements when they run follows portals from here. The defaults do nothing.
pub trait StatementHook: Send {
    /// Decides on one statement.
    fn check(&mut self, statement: Statement<'_>) -> Verdict;

    /// A Bind of prepared statement `statement` into `portal` (empty names: the unnamed ones).
    fn bind(&mut self, _portal: &[u8], _statement: &[u8]) -> Verdict {
        Verdict::Allow
    }

    /// An Execute of `portal`, about to be forwarded.
    fn execute(&mut self, _portal: &[u8]) -> Verdict {
        Verdict::Allow
    }

    /// A Close of a portal (`portal` true) or a prepared statement.
    fn close(&mut self, _portal: bool, _name: &[u8]) {}

    /// The statement this hook last held ([`Verdict::Hold`]) was forwarded (`true`) or not
    /// (refused, cancelled, or the session ended).
    fn held(&mut self, _forwarded: bool) {}

    /// The statements the Query or Execute just decided will run, as ids of the hook's
    /// choosing, in the order the database answers them. Called after every Query and Execute
    /// is decided (also one that is refused, so a hook can forget what it noted); when the
    /// message is forwarded, the row hook hears of each id again with its statement's
    /// [`Completion`]. A hook that follows results gives every Execute exactly one entry
    /// (`None` when it does not record that one), so each Execute's answer is matched to its own
    /// entry. The default follows nothing.
    fn take_runs(&mut self, _into: &mut Vec<Option<u64>>) {}

    /// Audit events the decisions so far recorded that may not be written yet. The session
    /// settles the ticket before it sends anything on (statements to the database, refusals
    /// to the client), so an event is stored before what it records happens, while the
    /// sessions busy at the same moment share one write.
    fn take_ticket(&mut self) -> Option<Ticket> {
        None
    }
}

/// How a followed statement (see [`StatementHook::take_runs`]) ended, as the session saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion<'a> {
    /// What ended it.
    pub end: RunEnd<'a>,
    /// DataRows the client was sent for it (forwarded or replaced; rows the row hook skipped
    /// are not counted).
    pub rows_sent: u64,
    /// From forwarding it to the database to its end.
    pub upstream: std::time::Duration,
    /// A row hook had refused an earlier result of the same exchange (up to ReadyForQuery),
    /// so this one ran in the database but the client was sent none of it.
    pub withheld: bool,
}

/// The message, or the absence of one, that ended a followed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd<'a> {
    /// CommandComplete with its tag (`SELECT 3`, `UPDATE 2`, `COPY 10`).
    Command(&'a str),
    /// EmptyQueryResponse.
    Empty,
    /// PortalSuspended: the client may fetch more rows of the same portal later.
    Suspended,
    /// The database's ErrorResponse, with its SQLSTATE (empty if it gave none, or none well
    /// formed).
    Failed(&'a str),
    /// The row hook refused this result with this message (sent to the client instead).
    Refused(&'a str),
    /// The exchange ended (ReadyForQuery) without an answer for it: an earlier statement of
    /// the same string or pipeline failed, so the database skipped it.
    NotRun,
    /// The session ended before it was answered.
    Abandoned(EndedBy<'a>),
}

/// What ended a session that left statements unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy<'a> {
    /// The client, the sidecar, or a broken connection.
    Other,
    /// The database's FATAL or PANIC error (which may or may not have been the statement's
    /// own), with its SQLSTATE when it gave a well-formed one.
    Database(Option<&'a str>),
}

impl Completion<'_> {
    /// Rows returned or affected: the rows the client was sent when it was sent any, else the
    /// count of the command tag (`INSERT 0 5`, `UPDATE 2`, `SELECT 0`; none for `SET`).
    pub fn rows(&self) -> Option<u64> {
        match self.end {
            RunEnd::Command(_) if self.rows_sent > 0 && !self.withheld => Some(self.rows_sent),
            RunEnd::Command(tag) => tag.rsplit(' ').next().and_then(|n| n.parse().ok()),
            RunEnd::Suspended | RunEnd::Refused(_) => Some(self.rows_sent),
            RunEnd::Empty => Some(0),
            RunEnd::Failed(_) | RunEnd::NotRun | RunEnd::Abandoned(_) => None,
        }
    }
}

/// Work a row hook needs done before it can describe a result (catalog look-ups); the server
/// pump awaits it, then asks again. An error refuses the result.
pub type Pending = Pin<Box<dyn Future<Output = Result<(), Denial>> + Send + 'static>>;

/// Sees result rows before they reach the client; one instance per session.
///
/// With a row hook installed, the session also describes every portal just before its
/// Execute (the answer goes to the hook, not to the client), so every result's rows follow a
/// RowDescription with their real formats, whichever prepared statement they come from.
pub trait RowHook: Send {
    // --- async step (masking branch) ---
    /// Called for each RowDescription before [`Self::row_description`]: `Some` when I/O must
    /// happen first (the pump awaits it and calls this again, a bounded number of times).
    /// The default needs nothing, at no cost.
    fn resolve(&mut self, _description: &RowDescription<'_>) -> Option<Pending> {
        None
    }
    /// Like [`Self::row_description`], for the result of an Execute of portal `portal` (a
    /// session-unique number); `resumed` when that portal already returned rows since its Bind
    /// (after PortalSuspended), so a row count should carry on. The default treats it as a new
    /// result.
    fn portal_description(
        &mut self,
        description: &RowDescription<'_>,
        _portal: u64,
        _resumed: bool,
    ) -> Result<(), Denial> {
        self.row_description(description)
    }
    // --- end async step ---
    /// A new result set starts with these columns.
    fn row_description(&mut self, description: &RowDescription<'_>) -> Result<(), Denial>;
    /// One row of the current result set. To replace it, append a complete DataRow message
    /// to `out` (see [`crate::protocol::backend::encode_data_row`]) and return
    /// [`RowAction::Replace`].
    fn data_row(&mut self, row: &DataRow<'_>, out: &mut BytesMut) -> RowAction;
    /// A result ended: that of statement `run` (an id from [`StatementHook::take_runs`]), or
    /// `None` for one nobody follows. Only called while the statement hook follows results
    /// (sessions with both hooks). The default ignores it.
    fn completed(&mut self, _run: Option<u64>, _completion: &Completion<'_>) {}
}

/// The hooks of one session.
#[derive(Default)]
pub struct SessionHooks {
    /// Checks statements (None: allow all, at no cost).
    pub statements: Option<Box<dyn StatementHook>>,
    /// Sees rows (None: rows pass untouched, at no cost).
    pub rows: Option<Box<dyn RowHook>>,
}

impl fmt::Debug for SessionHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHooks")
            .field("statements", &self.statements.is_some())
            .field("rows", &self.rows.is_some())
            .finish()
    }
}

/// Makes the hooks of each new session.
pub trait HookFactory: Send + Sync + fmt::Debug + 'static {
    /// Called once per session after authentication, before the first statement.
    fn open(&self, session: &SessionInfo) -> SessionHooks;

    /// Checks the startup parameters the client asked to pass on to the database (`user` and
    /// `database` already removed), before the upstream connection opens. A denial ends the
    /// connection with `FATAL 42501`. The default allows all.
    fn check_startup(&self, _params: &[(String, String)]) -> Result<(), Denial> {
        Ok(())
    }
}

/// The default: no hooks, everything is allowed and nothing is inspected.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl HookFactory for AllowAll {
    fn open(&self, _session: &SessionInfo) -> SessionHooks {
        SessionHooks::default()
    }
}
