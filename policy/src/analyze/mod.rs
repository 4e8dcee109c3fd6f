//! SQL analysis: what each statement of a client string does, before any policy decides on it.
//!
//! [`analyze`] parses a client string (one or several statements, as the simple-query protocol
//! allows) with sqlparser's PostgreSQL dialect and returns one [`StatementAnalysis`] per statement.
//! Anything that cannot be parsed is [`AnalyzeError::Unparseable`]: the caller fails closed.
//! [`AnalysisCache`] memoises results per statement text, and per shape (literal values and the
//! text of comments that cannot be optimizer hints erased).
//!
//! # Operation labels
//!
//! [`Operation::label`] is bounded and stable (metrics and policy `operations` lists use it):
//! `select`, `insert`, `update`, `delete`, `merge`, `copy:from`, `copy:to`, `copy:program`,
//! `copy:file`, `ddl:create`, `ddl:alter`, `ddl:drop`, `ddl:comment` (the object kind is
//! [`ObjectKind::label`]: `table`, `view`, `index`, `role`...), `alter_system`, `truncate`, `grant`,
//! `revoke`, `set`, `reset`, `set_role`, `set_session_authorization`, `begin`, `commit`, `rollback`,
//! `savepoint`, `call`, `do`, `prepare`, `execute`, `deallocate`, `explain`, `explain_analyze`,
//! `show`, `listen`, `unlisten`, `notify`, `vacuum`, `analyze`, `lock`, `discard`, `declare`,
//! `fetch`, `other`.
//!
//! Decisions worth knowing:
//! - `EXPLAIN ANALYZE` runs its statement, so `EXPLAIN ANALYZE DELETE ...` *is* a `delete` (with
//!   [`StatementAnalysis::explain`] set). `EXPLAIN` without `ANALYZE` runs nothing: it is `explain`,
//!   never a write, and every table the inner statement names is reported as read.
//! - A data-modifying CTE makes the statement that write: `WITH d AS (DELETE FROM t RETURNING *)
//!   SELECT * FROM d` is a `delete` of `t` (the main verb wins when the statement itself is DML:
//!   `WITH d AS (DELETE ...) INSERT ...` is an `insert`). [`StatementAnalysis::data_operations`]
//!   lists every DML kind the statement may perform, anywhere: an upsert (`ON CONFLICT DO UPDATE`) is
//!   also an `update`, and a `MERGE` is also each of its actions. Policies should check them all.
//!   `SELECT ... INTO t` is `ddl:create` of a table.
//! - `SET role = ...`/`RESET ROLE` are `set_role`; `SET session_authorization`/`RESET SESSION
//!   AUTHORIZATION` are `set_session_authorization`.
//! - `DO` and `ALTER SYSTEM` are not parsed by sqlparser 0.63; they are recognised from their first
//!   words (no tables, always writes; a `DO` block's normalised text keeps its body, which is code).
//!   Other unparseable statements are errors, whose reason never echoes a literal.
//!
//! # What counts as a write
//!
//! [`StatementAnalysis::is_write`] is true unless the statement is provably read-only: the operation
//! writes ([`Operation::is_write`]: DML, DDL, `COPY FROM`, `CALL`, `DO`, `EXECUTE` (unknown here),
//! `NOTIFY`, `LOCK`, maintenance, `other`), or a table is written, or rows are locked
//! (`FOR UPDATE/SHARE`, refused in read-only transactions too), or a function is called that is not a
//! known read-only built-in (see [`functions`]: user functions may write;
//! `nextval` does). [`StatementAnalysis::is_write_with`] lets a policy vouch for functions.
//!
//! # Tables and names
//!
//! [`TableRef`] keeps the schema only when written (an unqualified name resolves through
//! `search_path`); unquoted identifiers fold to lowercase, quoted ones stay exact. CTE names are not
//! tables. A write target (INSERT/UPDATE/DELETE/MERGE, COPY FROM, TRUNCATE, DDL on table-like
//! objects, VACUUM/ANALYZE/LOCK) is in `tables_written`; sources anywhere (joins, subqueries in any
//! clause, `USING`, `FROM` of UPDATE, MERGE source, `COPY TO`, `CREATE TABLE AS`) are in `tables_read`.
//! Other DDL targets (indexes, roles, extensions, grant objects) are in `objects`.
//!
//! # Fingerprint
//!
//! See [`Fingerprint`]: SHA-256 hex of the normalised statement (literals and parameters as `?`,
//! comments and whitespace gone, keywords upper-case, unquoted identifiers lowercase, repeated
//! `IN`-list items and `VALUES` rows collapsed).
//!
//! # Limits
//!
//! [`AnalyzeConfig`] bounds the input size, the parser's nesting depth and the number of
//! operator-like tokens. Long operator chains (`1+1+...`, `a OR b OR ...`, `... UNION ...`) build
//! trees as deep as the chain without touching the parser's recursion limit, and cloning, printing
//! or dropping such a tree recurses: inputs with many operators are therefore analysed on a stack
//! grown for them (`stacker`), so the analysis cannot overflow a tokio worker's 2 MiB stack. The
//! operator count is a token-level bound; a chain built from tokens it does not weigh would escape
//! it (none is known in sqlparser 0.63's PostgreSQL grammar).
//!
//! # Prepared statements
//!
//! A `Parse` message carries one statement: analyse it (through [`AnalysisCache`]), take
//! [`Analysis::single`] and keep it per connection under the statement name; `Bind`/`Execute` then
//! reuse it. SQL-level `PREPARE` exposes its inner analysis in [`StatementAnalysis::prepared`];
//! `EXECUTE name` is [`Operation::Execute`] and must be resolved by the connection's own map.

mod cache;
mod classify;
mod collect;
mod fingerprint;
pub mod functions;
#[doc(hidden)]
pub mod fuzz;
mod lex;
mod names;
mod operation;
mod shape;
mod statement;

pub use cache::AnalysisCache;
pub use fingerprint::Fingerprint;
pub use names::{ColumnRef, FunctionRef, TableRef};
pub use operation::{CopyDirection, ObjectKind, Operation};
pub use statement::{Explain, StatementAnalysis};

use std::ops::ControlFlow;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::TokenWithSpan;

use crate::carried::Carried;
use crate::mask::MaskedUseMemo;

/// Limits applied to every analysed string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzeConfig {
    /// Largest accepted input, in bytes.
    pub max_input_bytes: usize,
    /// The parser's recursion limit (nested subqueries, parentheses, unary operators).
    pub max_nesting: usize,
    /// Most operator-like tokens in one input, a set operation (`UNION`...) counting as 8: bounds
    /// the depth of operator and set-operation chains, and the stack their analysis may need.
    pub max_operators: usize,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        Self {
            max_input_bytes: 1024 * 1024,
            max_nesting: 50,
            max_operators: 5_000,
        }
    }
}

/// Why a string could not be analysed. Every variant means: deny unless the policy says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzeError {
    /// The input exceeds [`AnalyzeConfig::max_input_bytes`].
    #[error("statement is {len} bytes, over the {limit}-byte analysis limit")]
    TooLarge {
        /// Input length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The input nests deeper than [`AnalyzeConfig::max_nesting`].
    #[error("statement nests deeper than the limit of {limit}")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// The input holds more operators than [`AnalyzeConfig::max_operators`].
    #[error("statement has {operators} operators, over the limit of {limit}")]
    TooComplex {
        /// Operator-like tokens counted.
        operators: usize,
        /// The configured limit.
        limit: usize,
    },
    /// sqlparser (PostgreSQL dialect) could not parse the input.
    #[error("statement could not be parsed: {reason}")]
    Unparseable {
        /// The parser's message.
        reason: String,
    },
}

impl AnalyzeError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::TooDeep { .. } => "too_deep",
            Self::TooComplex { .. } => "too_complex",
            Self::Unparseable { .. } => "unparseable",
        }
    }
}

/// The analysis of one client string: one entry per statement, in order. Empty for an empty query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The statements, in the order the client sent them.
    pub statements: Vec<StatementAnalysis>,
    /// Answers of the masked-column check per compiled policy, kept only on analyses the
    /// [`AnalysisCache`] shares between texts (it vouches they share the answer); ignored by
    /// equality, emptied by cloning.
    pub(crate) masked_use: Carried<MaskedUseMemo>,
}

impl Analysis {
    /// The statement, when the string holds exactly one (always the case for a `Parse` message).
    pub fn single(&self) -> Option<&StatementAnalysis> {
        match self.statements.as_slice() {
            [statement] => Some(statement),
            _ => None,
        }
    }

    /// True if any statement is a write.
    pub fn is_write(&self) -> bool {
        self.statements.iter().any(|s| s.is_write)
    }
}

/// Analyses `sql` with the default limits.
pub fn analyze(sql: &str) -> Result<Analysis, AnalyzeError> {
    analyze_with(sql, &AnalyzeConfig::default())
}

/// Analyses `sql` with explicit limits.
pub fn analyze_with(sql: &str, config: &AnalyzeConfig) -> Result<Analysis, AnalyzeError> {
    check_size(sql, config)?;
    let tokens = lex::tokenize(sql)?;
    analyze_lexed(sql, tokens, config, None).map(|(analysis, _)| analysis)
}

fn check_size(sql: &str, config: &AnalyzeConfig) -> Result<(), AnalyzeError> {
    if sql.len() > config.max_input_bytes {
        return Err(AnalyzeError::TooLarge {
            len: sql.len(),
            limit: config.max_input_bytes,
        });
    }
    Ok(())
}

/// [`analyze_with`] from the tokens of `sql` (what [`lex::tokenize`] gave). With a `shape`, also
/// says whether the analysis holds for every text of that shape ([`shape::literal_independent`]);
/// without one, or when the string only parsed statement by statement, that is `false`.
fn analyze_lexed(
    sql: &str,
    tokens: Vec<TokenWithSpan>,
    config: &AnalyzeConfig,
    shape: Option<&shape::Shape>,
) -> Result<(Analysis, bool), AnalyzeError> {
    let operators = lex::check_operators(&tokens, config.max_operators)?;
    if operators <= SMALL_STACK_OPERATORS {
        // Nesting is bounded by the parser's limit (measured to need under 1 MiB in debug builds
        // at the default); grow only when the caller has less than that left.
        stacker::maybe_grow(1024 * 1024, 4 * 1024 * 1024, || {
            analyze_tokens(sql, tokens, config, shape)
        })
    } else {
        // Printing, cloning, comparing and dropping the tree recurse once per chained operator and
        // sqlparser only guards its parser and visitor: run on a stack sized for the budget rather
        // than trusting the caller's (tokio workers have 2 MiB).
        let stack = STACK_PER_OPERATOR
            .saturating_mul(operators)
            .max(1024 * 1024);
        stacker::grow(stack, || analyze_tokens(sql, tokens, config, shape))
    }
}

/// Below this many operators, the caller's stack is enough (measured in debug builds).
const SMALL_STACK_OPERATORS: usize = 64;

/// Stack reserved per operator when growing: generous for debug builds, which use the most.
const STACK_PER_OPERATOR: usize = 16 * 1024;

fn analyze_tokens(
    sql: &str,
    tokens: Vec<TokenWithSpan>,
    config: &AnalyzeConfig,
    shape: Option<&shape::Shape>,
) -> Result<(Analysis, bool), AnalyzeError> {
    match parse_whole(tokens, config) {
        Ok(statements) => {
            let analysis = Analysis {
                statements: statements
                    .iter()
                    .map(statement::analyze_statement)
                    .collect(),
                masked_use: Carried::default(),
            };
            let shared = shape.is_some_and(|shape| shape::literal_independent(&statements, shape));
            Ok((analysis, shared))
        }
        Err(error @ (AnalyzeError::TooDeep { .. } | AnalyzeError::TooComplex { .. })) => Err(error),
        // The rare failure path tokenizes again rather than cloning the tokens on every call.
        Err(error) => lex::tokenize(sql)
            .ok()
            .and_then(|tokens| analyze_segments(tokens, config))
            .map(|analysis| (analysis, false))
            .ok_or(error),
    }
}

fn parse(
    tokens: Vec<TokenWithSpan>,
    config: &AnalyzeConfig,
) -> Result<Vec<sqlparser::ast::Statement>, AnalyzeError> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(config.max_nesting)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|error| match error {
            ParserError::RecursionLimitExceeded => AnalyzeError::TooDeep {
                limit: config.max_nesting,
            },
            other => AnalyzeError::Unparseable {
                reason: lex::redact_reason(&other.to_string()),
            },
        })
}

/// [`parse`] of a whole string, refused when it holds a `COPY ... FROM STDIN`: sqlparser reads
/// whatever follows that statement as inline copy data, but in the wire protocol copy data never
/// travels in the query text, and PostgreSQL runs the rest as statements once the copy ends. The
/// callers then split the string the way the server does ([`parse_segments`]), so every statement
/// behind the COPY is seen.
fn parse_whole(
    tokens: Vec<TokenWithSpan>,
    config: &AnalyzeConfig,
) -> Result<Vec<sqlparser::ast::Statement>, AnalyzeError> {
    let statements = parse(tokens, config)?;
    if statements.iter().any(copies_inline_data) {
        return Err(AnalyzeError::Unparseable {
            reason: "the text after COPY ... FROM STDIN does not parse as statements".into(),
        });
    }
    Ok(statements)
}

/// One statement of a string split at its semicolons.
enum Segment {
    /// Boxed: only the rare fallback path splits strings.
    Parsed(Box<sqlparser::ast::Statement>),
    /// Recognised from its first words only (`DO`, `ALTER SYSTEM`).
    Recognized(Operation, fingerprint::Fingerprint),
}

/// The string statement by statement, recognising `DO` and `ALTER SYSTEM`. `None` when any
/// statement is still unparseable.
fn parse_segments(tokens: Vec<TokenWithSpan>, config: &AnalyzeConfig) -> Option<Vec<Segment>> {
    let mut statements = Vec::new();
    for segment in lex::split_statements(tokens) {
        if let Some((operation, fingerprint)) = lex::recognize_unparsed(&segment) {
            statements.push(Segment::Recognized(operation, fingerprint));
        } else {
            let parsed = parse(segment, config).ok()?;
            statements.extend(parsed.into_iter().map(|s| Segment::Parsed(Box::new(s))));
        }
    }
    Some(statements)
}

/// The statements of `sql` as the analysis splits them, one per analysed statement: the whole
/// string parsed at once, or statement by statement where the analysis did so (`None` for one
/// recognised without sqlparser, such as `DO`). `None` when it does not parse. For checks that
/// walk the syntax tree again and must line up with [`Analysis::statements`].
pub(crate) fn parse_as_analysed(
    sql: &str,
    max_nesting: usize,
) -> Option<Vec<Option<sqlparser::ast::Statement>>> {
    let config = AnalyzeConfig {
        max_nesting,
        ..AnalyzeConfig::default()
    };
    if let Ok(statements) = parse_whole(lex::tokenize(sql).ok()?, &config) {
        return Some(statements.into_iter().map(Some).collect());
    }
    let segments = parse_segments(lex::tokenize(sql).ok()?, &config)?;
    Some(
        segments
            .into_iter()
            .map(|segment| match segment {
                Segment::Parsed(statement) => Some(*statement),
                Segment::Recognized(..) => None,
            })
            .collect(),
    )
}

/// A `COPY ... FROM STDIN`, also inside another statement (`EXPLAIN COPY ...`, `PREPARE p AS
/// COPY ...`): sqlparser may have taken the text behind it as its data (whether it did cannot be
/// told from the statement: data without a tab or newline is dropped). Such data would hold the
/// text of comments, which a shape does not, so it must never reach an analysis.
fn copies_inline_data(statement: &sqlparser::ast::Statement) -> bool {
    sqlparser::ast::visit_statements(statement, |s| {
        if matches!(
            s,
            sqlparser::ast::Statement::Copy {
                target: sqlparser::ast::CopyTarget::Stdin,
                ..
            }
        ) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// The fallback when the whole string does not parse: statement by statement
/// ([`parse_segments`]). `None` when any statement is still unparseable (the caller reports the
/// first error).
fn analyze_segments(tokens: Vec<TokenWithSpan>, config: &AnalyzeConfig) -> Option<Analysis> {
    let statements = parse_segments(tokens, config)?
        .into_iter()
        .map(|segment| match segment {
            Segment::Parsed(parsed) => statement::analyze_statement(&parsed),
            Segment::Recognized(operation, fingerprint) => {
                StatementAnalysis::unparsed(operation, fingerprint)
            }
        })
        .collect();
    Some(Analysis {
        statements,
        masked_use: Carried::default(),
    })
}
