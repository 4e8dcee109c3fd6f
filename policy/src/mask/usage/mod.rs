//! Refusing statements that use a masked column where its mask cannot follow it.
//!
//! Result masking works on the columns PostgreSQL reports a source for: plain column references
//! in the outermost `SELECT` list (also through views, subqueries and CTEs). Anything else that
//! touches a masked column could reveal it: an expression computes a new, unmasked value
//! (`upper(email)`, `email || ''`, `substring(ssn, 1, 3)`), a filter, ordering or grouping answers
//! questions about it (`WHERE ssn LIKE '1%'`), and copies move it out of reach (`INSERT ... SELECT`,
//! `COPY ... TO`, `RETURNING`). For an identity the masks apply to, a statement touching a table
//! with masked columns is refused when it:
//!
//! 1. names a masked column (or an output alias of one) anywhere except as a plain item of the
//!    outermost `SELECT` list of a plain (non-`UNION`) query;
//! 2. refers to a whole row (`SELECT u FROM users u`, `to_json(u.*)`, `row_to_json(t)`);
//! 3. renames columns with an alias list (`FROM users AS u(a, b)`, `WITH c(x) AS (...)`);
//! 4. uses `*` anywhere but the outermost plain `SELECT` list (subqueries, CTEs, `UNION` branches,
//!    `INSERT ... SELECT *`, `RETURNING *`);
//! 5. orders or groups by position (`ORDER BY 2`, `GROUP BY 1`, `ORDER BY ALL`);
//! 6. is `COPY ... TO` (its rows bypass result masking).
//!
//! Names are matched by column name only (a qualifier may be an alias), against the masks whose
//! table part could match a table the statement touches, so the check errs towards refusing.

mod memo;
mod walk;

pub(crate) use memo::MaskedUseMemo;

use crate::analyze::{Analysis, CopyDirection, Operation, StatementAnalysis};
use crate::compile::CompiledPolicy;
use crate::compile::glob::{Part, Qualify};
use crate::decide::{Denial, DenyCause, Guardrail};
use crate::identity::Identity;

/// Why a statement's use of a masked column is refused (a bounded set, for audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskedColumnUse {
    /// A masked column in an expression, filter, ordering, grouping or nested query.
    Expression,
    /// A whole-row reference to a table with masked columns.
    WholeRow,
    /// A column alias list over a table with masked columns.
    Renamed,
    /// `*` outside the outermost plain `SELECT` list.
    NestedWildcard,
    /// Ordering or grouping by position.
    Positional,
    /// `COPY ... TO` of a table with masked columns.
    Copy,
    /// The statement could not be re-parsed for the check.
    Unchecked,
}

impl MaskedColumnUse {
    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Expression => "expression",
            Self::WholeRow => "whole_row",
            Self::Renamed => "renamed",
            Self::NestedWildcard => "nested_wildcard",
            Self::Positional => "positional",
            Self::Copy => "copy",
            Self::Unchecked => "unchecked",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Self::Expression => {
                "a masked column is used outside a plain column of the result (in an expression, filter, ordering, grouping, subquery or write)"
            }
            Self::WholeRow => "a whole row of a table with masked columns is used",
            Self::Renamed => "columns of a table with masked columns are renamed by an alias list",
            Self::NestedWildcard => {
                "* over a table with masked columns is only allowed in the outermost SELECT list"
            }
            Self::Positional => "ordering or grouping by position over masked columns",
            Self::Copy => "COPY TO would send masked columns unmasked",
            Self::Unchecked => "the statement could not be checked for masked columns",
        }
    }
}

/// Checks every statement of `sql` (whose analysis is `analysis`) for uses of masked columns that
/// masking cannot cover (see the module doc); the first problem becomes a [`Denial`].
/// [`CompiledPolicy::decide_string`] runs this check with the decisions.
pub fn check_masked_column_use(
    policy: &CompiledPolicy,
    identity: &Identity,
    sql: &str,
    analysis: &Analysis,
) -> Result<(), Denial> {
    check_indexed(policy, identity, sql, analysis).map_err(|(_, denial)| denial)
}

/// [`check_masked_column_use`], also saying which statement (by index) is refused.
pub(crate) fn check_indexed(
    policy: &CompiledPolicy,
    identity: &Identity,
    sql: &str,
    analysis: &Analysis,
) -> Result<(), (usize, Denial)> {
    let Some(masking) = policy
        .masking
        .as_ref()
        .filter(|_| policy.masks_for(identity))
    else {
        return Ok(());
    };
    let masked_parts = |statement: &StatementAnalysis| -> Vec<&Part> {
        // `PREPARE name AS stmt` is checked as `stmt`: its `EXECUTE`s run it.
        let statement = statement.prepared.as_deref().unwrap_or(statement);
        let tables = statement
            .tables_read
            .iter()
            .chain(&statement.tables_written);
        let mut parts = Vec::new();
        for table in tables {
            for rule in &masking.columns {
                for glob in &rule.globs {
                    if glob.table.matches_ref(table, Qualify::Possible) {
                        parts.push(&glob.column);
                    }
                }
            }
        }
        parts
    };
    let per_statement: Vec<Vec<&Part>> = analysis.statements.iter().map(masked_parts).collect();
    if per_statement.iter().all(Vec::is_empty) {
        return Ok(());
    }
    let refuse = |problem: MaskedColumnUse| Denial {
        policy: std::sync::Arc::clone(&policy.name),
        cause: DenyCause::Guardrail(Guardrail::MaskedColumnUse),
        reason: format!(
            "policy {} refuses the statement: {} (masking.columns; see docs/masking.md)",
            policy.name,
            problem.why()
        ),
    };
    for (index, (statement, parts)) in analysis.statements.iter().zip(&per_statement).enumerate() {
        if !parts.is_empty()
            && matches!(
                statement.operation,
                Operation::Copy {
                    direction: CopyDirection::To,
                    ..
                }
            )
        {
            return Err((index, refuse(MaskedColumnUse::Copy)));
        }
    }
    // The walk re-parses the text; a cached analysis may remember its answer for this policy (see
    // `memo`), valid for every text the cache hands this analysis for.
    let found = match analysis.masked_use.get(policy.id) {
        Some(outcome) => outcome,
        None => {
            let (outcome, read_literal) = walk_text(sql, &per_statement);
            if !read_literal {
                analysis.masked_use.put(policy.id, outcome);
            }
            outcome
        }
    };
    found.map_err(|(index, problem)| (index, refuse(problem)))
}

/// Parses `sql` again and walks each statement that touches masked columns (`parts`, per statement);
/// also says whether the answer came from a literal value.
fn walk_text(sql: &str, per_statement: &[Vec<&Part>]) -> (memo::Outcome, bool) {
    // Deep operator chains recurse once per operator when parsed, walked and dropped (see the
    // analysis module's limits): all three happen inside one closure given a stack sized by the
    // input, grown only when the caller has less than that left (no stack allocation per
    // statement in the common case).
    let budget = sql.len().saturating_mul(256).clamp(1 << 20, 96 << 20);
    stacker::maybe_grow(budget, budget, || {
        let Some(statements) = crate::analyze::parse_as_analysed(sql, 50) else {
            return (Err((0, MaskedColumnUse::Unchecked)), false);
        };
        if statements.len() != per_statement.len() {
            return (Err((0, MaskedColumnUse::Unchecked)), false);
        }
        let mut read_literal = false;
        for (index, (statement, parts)) in statements.iter().zip(per_statement).enumerate() {
            if parts.is_empty() {
                continue;
            }
            // A statement recognised without sqlparser cannot be walked.
            let Some(statement) = statement else {
                return (Err((index, MaskedColumnUse::Unchecked)), read_literal);
            };
            let statement = match statement {
                sqlparser::ast::Statement::Prepare { statement, .. } => statement.as_ref(),
                other => other,
            };
            let walked = walk::check_statement(statement, parts);
            read_literal |= walked.read_literal;
            if let Some(problem) = walked.problem {
                return (Err((index, problem)), read_literal);
            }
        }
        (Ok(()), read_literal)
    })
}

#[cfg(test)]
mod tests;
