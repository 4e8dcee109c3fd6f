//! Guardrails: checks that refuse a statement whoever sends it, before rules and approvals.

use crate::analyze::{FunctionRef, ObjectKind, Operation, StatementAnalysis};
use crate::compile::CompiledGuardrails;

use super::types::Guardrail;

/// The first guardrail `statement` trips, with the sentence explaining it (no literals).
pub(crate) fn check(
    guardrails: &CompiledGuardrails,
    statement: &StatementAnalysis,
) -> Option<(Guardrail, String)> {
    let op = &statement.operation;
    match op {
        Operation::Alter(ObjectKind::System) => {
            return Some((
                Guardrail::AlterSystem,
                "ALTER SYSTEM changes the server's configuration and is never allowed".into(),
            ));
        }
        Operation::SetRole | Operation::SetSessionAuthorization => {
            return Some((
                Guardrail::SetRole,
                format!(
                    "{} would change the database role behind the identity this policy decides for, and is never allowed",
                    op.label()
                ),
            ));
        }
        Operation::Copy { program: true, .. } if guardrails.block_copy_program => {
            return Some((
                Guardrail::CopyProgram,
                "COPY ... PROGRAM runs a shell command on the database server".into(),
            ));
        }
        Operation::Copy { file: true, .. } if guardrails.block_copy_program => {
            return Some((
                Guardrail::CopyFile,
                "COPY to or from a file on the database server is not allowed; use STDIN/STDOUT"
                    .into(),
            ));
        }
        _ => {}
    }
    if guardrails.block_ddl && (op.is_ddl() || matches!(op, Operation::Truncate)) {
        return Some((
            Guardrail::Ddl,
            format!("schema changes ({}) are blocked", op.label()),
        ));
    }
    if guardrails.block_drop && matches!(op, Operation::Drop(_)) {
        return Some((Guardrail::Drop, "DROP statements are blocked".into()));
    }
    if guardrails.block_truncate && matches!(op, Operation::Truncate) {
        return Some((Guardrail::Truncate, "TRUNCATE is blocked".into()));
    }
    if guardrails.require_where && statement.has_where == Some(false) {
        return Some((
            Guardrail::MissingWhere,
            "UPDATE and DELETE need a WHERE clause that refers to a column".into(),
        ));
    }
    if let Some(function) = statement.dangerous_functions.first() {
        return Some((
            Guardrail::BlockedFunction,
            format!("function {function} reaches outside the SQL session and is blocked"),
        ));
    }
    if let Some(function) = statement
        .functions
        .iter()
        .find(|f| is_blocked(&guardrails.blocked_functions, f))
    {
        return Some((
            Guardrail::BlockedFunction,
            format!("function {function} is blocked by the policy"),
        ));
    }
    None
}

/// A blocked entry `schema.name` also matches an unqualified call (it may resolve to that schema
/// through `search_path`); an unqualified entry matches the name in any schema.
fn is_blocked(blocked: &[(Option<String>, String)], function: &FunctionRef) -> bool {
    blocked.iter().any(|(schema, name)| {
        function.name.eq_ignore_ascii_case(name)
            && match (schema, &function.schema) {
                (None, _) | (Some(_), None) => true,
                (Some(s), Some(f)) => s.eq_ignore_ascii_case(f),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_entries_match_qualified_and_unqualified_calls() {
        let blocked = vec![
            (Some("pg_catalog".to_owned()), "pg_read_file".to_owned()),
            (None, "dblink".to_owned()),
        ];
        assert!(is_blocked(
            &blocked,
            &FunctionRef::new(None, "pg_read_file")
        ));
        assert!(is_blocked(
            &blocked,
            &FunctionRef::new(Some("pg_catalog"), "pg_read_file")
        ));
        assert!(!is_blocked(
            &blocked,
            &FunctionRef::new(Some("mine"), "pg_read_file")
        ));
        assert!(is_blocked(
            &blocked,
            &FunctionRef::new(Some("ext"), "dblink")
        ));
        assert!(!is_blocked(&blocked, &FunctionRef::new(None, "lower")));
    }
}
