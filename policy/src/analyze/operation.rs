//! What kind of statement it is, with a stable label for metrics and policy matching.

/// The kind of object a DDL statement creates, alters or drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A table (also `SELECT INTO` and `CREATE TABLE AS`).
    Table,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
    /// An index.
    Index,
    /// A schema.
    Schema,
    /// A database.
    Database,
    /// A role or user.
    Role,
    /// A sequence.
    Sequence,
    /// A type or domain.
    Type,
    /// A function or procedure.
    Function,
    /// A trigger.
    Trigger,
    /// An extension.
    Extension,
    /// A row-level security policy.
    Policy,
    /// The server configuration (`ALTER SYSTEM`).
    System,
    /// Anything else (collations, operators, servers...).
    Other,
}

impl ObjectKind {
    /// A stable lowercase name.
    pub fn label(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::View => "view",
            Self::MaterializedView => "materialized_view",
            Self::Index => "index",
            Self::Schema => "schema",
            Self::Database => "database",
            Self::Role => "role",
            Self::Sequence => "sequence",
            Self::Type => "type",
            Self::Function => "function",
            Self::Trigger => "trigger",
            Self::Extension => "extension",
            Self::Policy => "policy",
            Self::System => "system",
            Self::Other => "other",
        }
    }
}

/// Which way a `COPY` moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyDirection {
    /// `COPY ... FROM`: into a table.
    From,
    /// `COPY ... TO`: out of a table or query.
    To,
}

/// The operation one statement performs. See the module doc of [`crate::analyze`] for the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `SELECT`, `VALUES`, set operations.
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// `COPY`; `program` when the server runs a shell command (`FROM/TO PROGRAM`), `file` when it
    /// reads or writes a file on the server (`FROM/TO '/path'`). Plain `COPY` uses `STDIN`/`STDOUT`.
    Copy {
        /// Into or out of the database.
        direction: CopyDirection,
        /// `PROGRAM '...'`: runs a command on the database server.
        program: bool,
        /// `'/path'`: a file on the database server.
        file: bool,
    },
    /// `CREATE <kind>`, `SELECT INTO`.
    Create(ObjectKind),
    /// `ALTER <kind>`, `ALTER SYSTEM`.
    Alter(ObjectKind),
    /// `DROP <kind>`.
    Drop(ObjectKind),
    /// `TRUNCATE`.
    Truncate,
    /// `COMMENT ON`.
    Comment,
    /// `GRANT`.
    Grant,
    /// `REVOKE`.
    Revoke,
    /// `SET` of a configuration parameter (also `SET TRANSACTION`, `SET TIME ZONE`).
    Set,
    /// `RESET` of a configuration parameter, `RESET ALL`.
    Reset,
    /// `SET ROLE`, `SET role = ...`, `RESET ROLE`.
    SetRole,
    /// `SET SESSION AUTHORIZATION`, `RESET SESSION AUTHORIZATION`.
    SetSessionAuthorization,
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ROLLBACK TO SAVEPOINT`.
    Rollback,
    /// `SAVEPOINT`, `RELEASE SAVEPOINT`.
    Savepoint,
    /// `CALL`.
    Call,
    /// `DO` (anonymous code block).
    Do,
    /// `PREPARE name AS ...` (the inner statement is analysed as well).
    Prepare,
    /// `EXECUTE name`: what runs is the prepared statement, known only to the connection.
    Execute,
    /// `DEALLOCATE`.
    Deallocate,
    /// `EXPLAIN` of a read, or of anything without `ANALYZE` (the statement does not run).
    Explain {
        /// `EXPLAIN ANALYZE`: the statement runs.
        analyze: bool,
    },
    /// `SHOW`.
    Show,
    /// `LISTEN`.
    Listen,
    /// `UNLISTEN`.
    Unlisten,
    /// `NOTIFY`.
    Notify,
    /// `VACUUM`.
    Vacuum,
    /// `ANALYZE`.
    Analyze,
    /// `LOCK TABLE`.
    Lock,
    /// `DISCARD`.
    Discard,
    /// `DECLARE ... CURSOR FOR`.
    Declare,
    /// `FETCH`, `CLOSE`: read from an already declared cursor.
    Fetch,
    /// Anything else sqlparser understands; treated as a write.
    Other,
}

impl Operation {
    /// A stable lowercase label, bounded, for metrics and for policy `operations` lists.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Merge => "merge",
            Self::Copy { program: true, .. } => "copy:program",
            Self::Copy { file: true, .. } => "copy:file",
            Self::Copy {
                direction: CopyDirection::From,
                ..
            } => "copy:from",
            Self::Copy {
                direction: CopyDirection::To,
                ..
            } => "copy:to",
            Self::Alter(ObjectKind::System) => "alter_system",
            Self::Create(_) => "ddl:create",
            Self::Alter(_) => "ddl:alter",
            Self::Drop(_) => "ddl:drop",
            Self::Truncate => "truncate",
            Self::Comment => "ddl:comment",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Set => "set",
            Self::Reset => "reset",
            Self::SetRole => "set_role",
            Self::SetSessionAuthorization => "set_session_authorization",
            Self::Begin => "begin",
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::Savepoint => "savepoint",
            Self::Call => "call",
            Self::Do => "do",
            Self::Prepare => "prepare",
            Self::Execute => "execute",
            Self::Deallocate => "deallocate",
            Self::Explain { analyze: false } => "explain",
            Self::Explain { analyze: true } => "explain_analyze",
            Self::Show => "show",
            Self::Listen => "listen",
            Self::Unlisten => "unlisten",
            Self::Notify => "notify",
            Self::Vacuum => "vacuum",
            Self::Analyze => "analyze",
            Self::Lock => "lock",
            Self::Discard => "discard",
            Self::Declare => "declare",
            Self::Fetch => "fetch",
            Self::Other => "other",
        }
    }

    /// The DDL object kind, for `Create`, `Alter` and `Drop`.
    pub fn object_kind(&self) -> Option<ObjectKind> {
        match self {
            Self::Create(kind) | Self::Alter(kind) | Self::Drop(kind) => Some(*kind),
            _ => None,
        }
    }

    /// True for schema changes (`ddl:*`, `alter_system`).
    pub fn is_ddl(&self) -> bool {
        matches!(
            self,
            Self::Create(_) | Self::Alter(_) | Self::Drop(_) | Self::Comment
        )
    }

    /// True for transaction control, which never touches data.
    pub fn is_transaction_control(&self) -> bool {
        matches!(
            self,
            Self::Begin | Self::Commit | Self::Rollback | Self::Savepoint
        )
    }

    /// True for operations that change who the session is or what the server may do: role and
    /// authorization switches, grants, `ALTER SYSTEM`, `COPY PROGRAM`, `DO`, and DDL on roles,
    /// databases and extensions.
    pub fn is_privileged(&self) -> bool {
        match self {
            Self::SetRole
            | Self::SetSessionAuthorization
            | Self::Grant
            | Self::Revoke
            | Self::Do
            | Self::Copy { program: true, .. }
            | Self::Copy { file: true, .. } => true,
            Self::Create(kind) | Self::Alter(kind) | Self::Drop(kind) => matches!(
                kind,
                ObjectKind::System
                    | ObjectKind::Role
                    | ObjectKind::Database
                    | ObjectKind::Extension
            ),
            _ => false,
        }
    }

    /// True unless the operation by itself is provably read-only. The statement-level
    /// [`is_write`](crate::analyze::StatementAnalysis::is_write) also weighs tables written,
    /// row locks and function calls.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Self::Select
                | Self::Copy {
                    direction: CopyDirection::To,
                    program: false,
                    file: false,
                }
                | Self::Set
                | Self::Reset
                | Self::SetRole
                | Self::SetSessionAuthorization
                | Self::Begin
                | Self::Commit
                | Self::Rollback
                | Self::Savepoint
                | Self::Prepare
                | Self::Deallocate
                | Self::Explain { .. }
                | Self::Show
                | Self::Listen
                | Self::Unlisten
                | Self::Discard
                | Self::Declare
                | Self::Fetch
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_distinguish_privileged_variants() {
        assert_eq!(Operation::Alter(ObjectKind::System).label(), "alter_system");
        assert_eq!(Operation::Alter(ObjectKind::Table).label(), "ddl:alter");
        let program = Operation::Copy {
            direction: CopyDirection::From,
            program: true,
            file: false,
        };
        assert_eq!(program.label(), "copy:program");
        assert!(program.is_privileged() && program.is_write());
    }

    #[test]
    fn reads_and_session_ops_are_not_writes() {
        assert!(!Operation::Select.is_write());
        assert!(!Operation::SetRole.is_write());
        assert!(Operation::SetRole.is_privileged());
        assert!(Operation::Execute.is_write());
        assert!(Operation::Notify.is_write());
    }
}
