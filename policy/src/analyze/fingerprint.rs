//! Statement fingerprints: the same statement shape gives the same fingerprint whatever its literals.
//!
//! The statement tree is normalised and printed back by sqlparser, which already drops comments,
//! collapses whitespace and upper-cases keywords. Normalising then:
//! - replaces every literal (numbers, strings, dollar-quoted strings, booleans) and every parameter
//!   (`$1`) with `?`; `NULL` stays, since `= NULL` and `= 1` are different statements;
//! - folds unquoted identifiers to lowercase (`Users` and `users` name the same table);
//! - collapses runs of identical items in `IN (...)` lists and multi-row `VALUES`, so a batch of
//!   10 rows and one of 11 rows share a fingerprint.
//!
//! The fingerprint is the lowercase hex SHA-256 of the normalised text. A collision-resistant hash
//! matters: approvals and audit correlate on fingerprints, so one must not be forged for another
//! statement.

use std::fmt::Write as _;
use std::ops::ControlFlow;

use sha2::{Digest, Sha256};
use sqlparser::ast::{
    Expr, Ident, Query, SetExpr, Statement, Value, ValueWithSpan, VisitMut, VisitorMut,
};

/// A statement's normalised text and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Lowercase hex SHA-256 of `normalized` (64 characters).
    pub hash: String,
    /// The statement with literals and parameters replaced by `?`: safe for "literals redacted" audit.
    pub normalized: String,
}

impl Fingerprint {
    /// Fingerprints already-normalised text.
    pub(crate) fn of_text(normalized: String) -> Self {
        let digest = Sha256::digest(normalized.as_bytes());
        let mut hash = String::with_capacity(64);
        for byte in digest {
            // Writing to a String cannot fail.
            let _ = write!(hash, "{byte:02x}");
        }
        Self { hash, normalized }
    }

    /// Fingerprints a parsed statement (normalising a copy of it).
    pub(crate) fn of_statement(statement: &Statement) -> Self {
        let mut statement = statement.clone();
        let _ = statement.visit(&mut Normalizer);
        Self::of_text(statement.to_string())
    }
}

struct Normalizer;

fn is_placeholder(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Value(ValueWithSpan {
            value: Value::Placeholder(_),
            ..
        })
    )
}

impl VisitorMut for Normalizer {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if !matches!(value.value, Value::Null) {
            value.value = Value::Placeholder("?".to_owned());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<()> {
        if ident.quote_style.is_none() {
            ident.value.make_ascii_lowercase();
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::InList { list, .. } = expr
            && list.iter().all(is_placeholder)
        {
            list.dedup();
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Values(values) = query.body.as_mut() {
            values.rows.dedup();
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    #[allow(clippy::unwrap_used)]
    fn fp(sql: &str) -> Fingerprint {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        Fingerprint::of_statement(&statements[0])
    }

    #[test]
    fn literals_and_parameters_become_placeholders() {
        let f = fp("select * from Users where id = 42 and name = 'bob' and ok = $1");
        assert_eq!(
            f.normalized,
            "SELECT * FROM users WHERE id = ? AND name = ? AND ok = ?"
        );
        assert_eq!(f.hash.len(), 64);
    }

    #[test]
    fn lists_and_rows_collapse() {
        assert_eq!(
            fp("SELECT 1 FROM t WHERE id IN (1, 2, 3)").hash,
            fp("SELECT 2 FROM t WHERE id IN (4)").hash
        );
        assert_eq!(
            fp("INSERT INTO t VALUES (1, 'a'), (2, 'b')").hash,
            fp("INSERT INTO t VALUES (3, 'c')").hash
        );
    }

    #[test]
    fn quoted_identifiers_keep_case() {
        assert_ne!(
            fp("SELECT * FROM \"Users\"").hash,
            fp("SELECT * FROM users").hash
        );
        assert_eq!(
            fp("SELECT * FROM USERS").hash,
            fp("SELECT * FROM users").hash
        );
    }
}
