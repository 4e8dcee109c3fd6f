//! The statement kinds policies talk about.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of an SQL statement, as the sidecar classifies it, or a group of kinds.
///
/// Groups (`read`, `write`, `ddl`, `dcl`, `all`) stand for the kinds listed in
/// [`Operation::members`]; the sidecar never reports a group as a statement's operation.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// `SELECT`, `TABLE`, `VALUES` and `WITH ... SELECT`.
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// `COPY` in either direction.
    Copy,
    /// `CREATE` of any object.
    Create,
    /// `ALTER` of any object.
    Alter,
    /// `DROP` of any object.
    Drop,
    /// `TRUNCATE`.
    Truncate,
    /// `COMMENT ON`.
    Comment,
    /// `GRANT`.
    Grant,
    /// `REVOKE`.
    Revoke,
    /// `CALL` of a procedure.
    Call,
    /// `DO` (anonymous code block).
    Do,
    /// `SET` and `RESET` of session settings.
    Set,
    /// `SHOW`.
    Show,
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`.
    Transaction,
    /// `EXPLAIN` (with `ANALYZE`, the explained statement is also checked on its own).
    Explain,
    /// `PREPARE`, `EXECUTE` and `DEALLOCATE` of SQL-level prepared statements.
    Prepare,
    /// `LOCK`.
    Lock,
    /// `VACUUM`, `ANALYZE`, `REINDEX`, `CLUSTER`, `REFRESH MATERIALIZED VIEW`, `CHECKPOINT`.
    Maintenance,
    /// `LISTEN`, `UNLISTEN`, `NOTIFY`.
    Notify,
    /// Group: `select`, `show`, `explain`.
    Read,
    /// Group: `insert`, `update`, `delete`, `merge`, `copy`.
    Write,
    /// Group: `create`, `alter`, `drop`, `truncate`, `comment`.
    Ddl,
    /// Group: `grant`, `revoke`.
    Dcl,
    /// Group: every kind.
    All,
}

impl Operation {
    /// Every concrete (non-group) kind.
    pub const CONCRETE: [Operation; 23] = [
        Self::Select,
        Self::Insert,
        Self::Update,
        Self::Delete,
        Self::Merge,
        Self::Copy,
        Self::Create,
        Self::Alter,
        Self::Drop,
        Self::Truncate,
        Self::Comment,
        Self::Grant,
        Self::Revoke,
        Self::Call,
        Self::Do,
        Self::Set,
        Self::Show,
        Self::Transaction,
        Self::Explain,
        Self::Prepare,
        Self::Lock,
        Self::Maintenance,
        Self::Notify,
    ];

    /// The concrete kinds this operation stands for: itself, or a group's members.
    pub fn members(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Read => &[Select, Show, Explain],
            Write => &[Insert, Update, Delete, Merge, Copy],
            Ddl => &[Create, Alter, Drop, Truncate, Comment],
            Dcl => &[Grant, Revoke],
            All => &Self::CONCRETE,
            // Concrete kinds are declared first, in the order of CONCRETE.
            _ => {
                let i = self as usize;
                Self::CONCRETE.get(i..i + 1).unwrap_or(&[])
            }
        }
    }

    /// True for `read`, `write`, `ddl`, `dcl` and `all`.
    pub fn is_group(self) -> bool {
        matches!(
            self,
            Self::Read | Self::Write | Self::Ddl | Self::Dcl | Self::All
        )
    }

    /// True when `self` is `concrete` or a group containing it.
    pub fn covers(self, concrete: Operation) -> bool {
        self.members().contains(&concrete)
    }

    /// The name used in policies and audit events (`select`, `ddl`, ...); also a bounded metric label.
    pub fn label(self) -> &'static str {
        use Operation::*;
        match self {
            Select => "select",
            Insert => "insert",
            Update => "update",
            Delete => "delete",
            Merge => "merge",
            Copy => "copy",
            Create => "create",
            Alter => "alter",
            Drop => "drop",
            Truncate => "truncate",
            Comment => "comment",
            Grant => "grant",
            Revoke => "revoke",
            Call => "call",
            Do => "do",
            Set => "set",
            Show => "show",
            Transaction => "transaction",
            Explain => "explain",
            Prepare => "prepare",
            Lock => "lock",
            Maintenance => "maintenance",
            Notify => "notify",
            Read => "read",
            Write => "write",
            Ddl => "ddl",
            Dcl => "dcl",
            All => "all",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn labels_match_serde_names() {
        for op in Operation::CONCRETE.iter().chain(&[
            Operation::Read,
            Operation::Write,
            Operation::Ddl,
            Operation::Dcl,
            Operation::All,
        ]) {
            let json = serde_json::to_value(op).unwrap();
            assert_eq!(json, serde_json::json!(op.label()));
        }
    }

    #[test]
    fn groups_cover_their_members_only() {
        assert!(Operation::Ddl.covers(Operation::Drop));
        assert!(!Operation::Ddl.covers(Operation::Delete));
        assert!(Operation::Write.covers(Operation::Delete));
        assert!(Operation::All.covers(Operation::Notify));
        assert!(Operation::Delete.covers(Operation::Delete));
        assert!(!Operation::Delete.covers(Operation::Update));
        for op in Operation::CONCRETE {
            assert_eq!(op.members(), &[op], "{op}");
            assert!(!op.is_group());
        }
    }
}
