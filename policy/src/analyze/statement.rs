//! The analysis of one statement, assembled from its shape and from the walk over its tree.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use sqlparser::ast::Statement;

use super::classify::{classify, explain_runs};
use super::collect::collect;
use super::fingerprint::Fingerprint;
use super::functions;
use super::names::{ColumnRef, FunctionRef, TableRef};
use super::operation::{ObjectKind, Operation};
use crate::carried::Carried;

/// Set when the statement was wrapped in `EXPLAIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Explain {
    /// `EXPLAIN ANALYZE`: the statement ran.
    pub analyze: bool,
}

/// Everything the policy needs to know about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatementAnalysis {
    /// What the statement does (see the module doc for how EXPLAIN and CTEs resolve).
    pub operation: Operation,
    /// Every data-modifying operation anywhere in the statement (`insert`, `update`, `delete`,
    /// `merge`), data-modifying CTEs included; sorted by label.
    pub data_operations: Vec<Operation>,
    /// Set when the statement was `EXPLAIN [ANALYZE] ...`.
    pub explain: Option<Explain>,
    /// False only when the statement is provably read-only (see the module doc).
    pub is_write: bool,
    /// `SELECT ... FOR UPDATE/SHARE` (or a locking clause in any subquery).
    pub locking: bool,
    /// `Some(false)` when an UPDATE or DELETE (anywhere, CTEs included) has no WHERE, or one that
    /// mentions no column (`WHERE true`); `Some(true)` when all have one; `None` without any.
    pub has_where: Option<bool>,
    /// Tables read, sorted, without duplicates.
    pub tables_read: Vec<TableRef>,
    /// Tables written (DML targets, table-like DDL targets), sorted, without duplicates.
    pub tables_written: Vec<TableRef>,
    /// Other objects a DDL, GRANT or COMMENT names (indexes, roles, schemas...), sorted.
    pub objects: Vec<TableRef>,
    /// Columns referenced, best effort (a qualifier may be an alias), sorted.
    pub columns: Vec<ColumnRef>,
    /// Functions called anywhere in the statement, sorted.
    pub functions: Vec<FunctionRef>,
    /// The subset of `functions` known to be dangerous.
    pub dangerous_functions: Vec<FunctionRef>,
    /// The subset of `functions` not known to be read-only (each makes the statement a write).
    pub unverified_functions: Vec<FunctionRef>,
    /// For `PREPARE name AS ...`: the prepared statement's analysis, for the connection to keep.
    pub prepared: Option<Box<StatementAnalysis>>,
    /// For `PREPARE` and `EXECUTE`: the prepared statement's name as the server knows it
    /// (unquoted names folded to lower case).
    pub prepared_name: Option<Box<str>>,
    /// Literal-free fingerprint and normalised text.
    pub fingerprint: Fingerprint,
    /// [`Self::table_names`], once asked for.
    table_names: Carried<OnceLock<Box<[String]>>>,
}

impl StatementAnalysis {
    /// Every table and other object the statement names (`tables_read`, `tables_written` and
    /// `objects`), as audit events list them: sorted, without duplicates. Worked out on the
    /// first call and kept, so an analysis the cache shares between statements does it once.
    pub fn table_names(&self) -> &[String] {
        self.table_names.get_or_init(|| {
            let mut names: Vec<String> = self
                .tables_read
                .iter()
                .chain(&self.tables_written)
                .chain(&self.objects)
                .map(ToString::to_string)
                .collect();
            names.sort_unstable();
            names.dedup();
            names.into_boxed_slice()
        })
    }

    /// Recomputes [`is_write`](Self::is_write) trusting the functions `read_only` accepts (a policy's
    /// own list of read-only user functions).
    pub fn is_write_with(&self, read_only: impl Fn(&FunctionRef) -> bool) -> bool {
        let explained_only = matches!(self.operation, Operation::Explain { analyze: false });
        if explained_only {
            return false;
        }
        self.operation.is_write()
            || !self.tables_written.is_empty()
            || self.locking
            || self.unverified_functions.iter().any(|f| !read_only(f))
    }

    /// The operation label (shorthand for `self.operation.label()`).
    pub fn label(&self) -> &'static str {
        self.operation.label()
    }

    /// A statement recognised from its first words only (`DO`, `ALTER SYSTEM`).
    pub(crate) fn unparsed(operation: Operation, fingerprint: Fingerprint) -> Self {
        Self {
            operation,
            data_operations: Vec::new(),
            explain: None,
            is_write: true,
            locking: false,
            has_where: None,
            tables_read: Vec::new(),
            tables_written: Vec::new(),
            objects: Vec::new(),
            columns: Vec::new(),
            functions: Vec::new(),
            dangerous_functions: Vec::new(),
            unverified_functions: Vec::new(),
            prepared: None,
            prepared_name: None,
            fingerprint,
            table_names: Carried::default(),
        }
    }
}

/// A name as PostgreSQL resolves it: unquoted identifiers fold to lower case.
fn server_name(ident: &sqlparser::ast::Ident) -> Box<str> {
    match ident.quote_style {
        Some(_) => ident.value.as_str().into(),
        None => ident.value.to_lowercase().into(),
    }
}

/// Analyses one parsed statement.
pub(crate) fn analyze_statement(statement: &Statement) -> StatementAnalysis {
    match statement {
        Statement::Explain {
            analyze,
            options,
            statement: inner,
            ..
        } => {
            let runs = explain_runs(*analyze, options.as_deref());
            let mut analysis = analyze_statement(inner);
            analysis.fingerprint = Fingerprint::of_statement(statement);
            analysis.explain = Some(Explain { analyze: runs });
            analysis.prepared = None;
            if !runs {
                explain_only(&mut analysis);
            } else if !analysis.is_write {
                analysis.operation = Operation::Explain { analyze: true };
            }
            analysis
        }
        Statement::Prepare {
            name,
            statement: inner,
            ..
        } => {
            let mut analysis = StatementAnalysis::unparsed(
                Operation::Prepare,
                Fingerprint::of_statement(statement),
            );
            analysis.is_write = false;
            analysis.prepared = Some(Box::new(analyze_statement(inner)));
            analysis.prepared_name = Some(server_name(name));
            analysis
        }
        Statement::Execute { name, .. } => {
            let mut analysis = analyze_plain(statement);
            analysis.prepared_name = name
                .as_ref()
                .and_then(|n| n.0.last())
                .and_then(|part| part.as_ident())
                .map(server_name);
            analysis
        }
        _ => analyze_plain(statement),
    }
}

/// `EXPLAIN` without `ANALYZE`: nothing runs, so nothing is written; the tables stay visible as
/// reads so that table rules still apply to planning them.
fn explain_only(analysis: &mut StatementAnalysis) {
    let written = std::mem::take(&mut analysis.tables_written);
    let mut read: BTreeSet<TableRef> = analysis.tables_read.drain(..).collect();
    read.extend(written);
    analysis.tables_read = read.into_iter().collect();
    analysis.operation = Operation::Explain { analyze: false };
    analysis.data_operations.clear();
    analysis.unverified_functions.clear();
    analysis.has_where = None;
    analysis.locking = false;
    analysis.is_write = false;
}

fn dml_operation(label: &str) -> Option<Operation> {
    match label {
        "delete" => Some(Operation::Delete),
        "insert" => Some(Operation::Insert),
        "merge" => Some(Operation::Merge),
        "update" => Some(Operation::Update),
        _ => None,
    }
}

fn analyze_plain(statement: &Statement) -> StatementAnalysis {
    let shape = classify(statement);
    let collected = collect(statement);
    let data_operations: Vec<Operation> = collected
        .dml
        .iter()
        .filter_map(|label| dml_operation(label))
        .collect();
    let operation = shape.operation.unwrap_or_else(|| {
        if collected.select_into {
            return Operation::Create(ObjectKind::Table);
        }
        // A query whose CTEs modify data is that modification; the most destructive one names it.
        [
            Operation::Delete,
            Operation::Update,
            Operation::Merge,
            Operation::Insert,
        ]
        .into_iter()
        .find(|op| data_operations.contains(op))
        .unwrap_or(Operation::Select)
    });

    let mut read = collected.read;
    read.extend(shape.read);
    let mut written = collected.written;
    written.extend(shape.written);
    let objects: BTreeSet<TableRef> = shape.objects.into_iter().collect();
    let mut functions_called = collected.functions;
    functions_called.extend(shape.functions);

    let dangerous_functions: Vec<FunctionRef> = functions_called
        .iter()
        .filter(|f| functions::is_dangerous(f))
        .cloned()
        .collect();
    let unverified_functions: Vec<FunctionRef> = functions_called
        .iter()
        .filter(|f| !functions::is_read_only(f))
        .cloned()
        .collect();
    let is_write = operation.is_write()
        || !written.is_empty()
        || collected.locking
        || !unverified_functions.is_empty();

    StatementAnalysis {
        operation,
        data_operations,
        explain: None,
        is_write,
        locking: collected.locking,
        has_where: collected.has_where,
        tables_read: read.into_iter().collect(),
        tables_written: written.into_iter().collect(),
        objects: objects.into_iter().collect(),
        columns: collected.columns.into_iter().collect(),
        functions: functions_called.into_iter().collect(),
        dangerous_functions,
        unverified_functions,
        prepared: None,
        prepared_name: None,
        fingerprint: Fingerprint::of_statement(statement),
        table_names: Carried::default(),
    }
}
