//! One walk over a statement's tree: tables read and written, CTE scopes, columns, functions, row
//! locks, and whether every UPDATE/DELETE is filtered.
//!
//! The walk uses sqlparser's [`Visitor`]: it reaches every nested query, expression and table factor,
//! so nothing hides in a corner this module forgot. DML targets and CTE queries are recognised by
//! address (`std::ptr::eq`) because the visitor hands out nodes without their parent.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Expr, FromTable, Ident, MergeAction, ObjectName, ObjectNamePart, OnConflict,
    OnConflictAction, OnInsert, Query, Select, Statement, TableAlias, TableFactor, TableObject,
    Visit, Visitor,
};

use super::names::{ColumnRef, FunctionRef, TableRef, normalize_ident};

/// The CTE names one query defines, and how many of them are visible at this point of the walk.
struct CteScope {
    names: Vec<String>,
    queries: Vec<*const Query>,
    /// Names `..visible` are in scope (a non-recursive CTE sees only the ones before it).
    visible: usize,
    recursive: bool,
}

impl CteScope {
    fn of(query: &Query) -> Self {
        let (names, queries, recursive) = match &query.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|cte| normalize_ident(&cte.alias.name))
                    .collect(),
                with.cte_tables
                    .iter()
                    .map(|cte| std::ptr::from_ref::<Query>(&cte.query))
                    .collect(),
                with.recursive,
            ),
            None => (Vec::new(), Vec::new(), false),
        };
        let visible = if recursive { names.len() } else { 0 };
        Self {
            names,
            queries,
            visible,
            recursive,
        }
    }

    fn position(&self, query: &Query) -> Option<usize> {
        self.queries.iter().position(|q| std::ptr::eq(*q, query))
    }
}

/// Everything the walk found in one statement.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub read: BTreeSet<TableRef>,
    pub written: BTreeSet<TableRef>,
    pub columns: BTreeSet<ColumnRef>,
    pub functions: BTreeSet<FunctionRef>,
    /// `SELECT ... FOR UPDATE/SHARE` somewhere.
    pub locking: bool,
    /// `SELECT ... INTO` somewhere: creates a table.
    pub select_into: bool,
    /// Data-modifying statements found (nested in CTEs included).
    pub dml: BTreeSet<&'static str>,
    /// `Some(all filtered)` when the statement holds an UPDATE or DELETE.
    pub has_where: Option<bool>,
}

#[derive(Default)]
struct Walker {
    out: Collected,
    scopes: Vec<CteScope>,
    /// Table factors that are DML targets (UPDATE, DELETE, MERGE), by address.
    write_targets: Vec<*const TableFactor>,
    /// Expressions that name a table, not a column (`SELECT INTO t`).
    skip_exprs: Vec<*const Expr>,
}

/// Walks `statement` (and everything nested in it).
pub(crate) fn collect(statement: &Statement) -> Collected {
    let mut walker = Walker::default();
    // The walker never breaks, so the result carries nothing.
    let _ = statement.visit(&mut walker);
    walker.out
}

impl Walker {
    fn is_cte(&self, table: &TableRef) -> bool {
        table.schema.is_none()
            && self
                .scopes
                .iter()
                .rev()
                .any(|scope| scope.names[..scope.visible].contains(&table.name))
    }

    fn filtered(&mut self, selection: Option<&Expr>) {
        let filtered = selection.is_some_and(references_data);
        self.out.has_where = Some(self.out.has_where.unwrap_or(true) && filtered);
    }

    fn target(&mut self, factor: &TableFactor) {
        self.write_targets.push(std::ptr::from_ref(factor));
    }

    fn column_names<'a>(&mut self, names: impl IntoIterator<Item = &'a ObjectName>) {
        for name in names {
            let idents: Vec<Ident> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().cloned())
                .collect();
            self.out.columns.extend(ColumnRef::from_idents(&idents));
        }
    }
}

/// The table a factor names. sqlparser 0.63 reads `FROM ONLY t` as table `only` aliased `t`; ONLY is
/// reserved in PostgreSQL, so an unquoted table named `only` is always that misreading.
fn table_of(name: &ObjectName, alias: Option<&TableAlias>) -> TableRef {
    if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice()
        && ident.quote_style.is_none()
        && ident.value.eq_ignore_ascii_case("only")
        && let Some(alias) = alias
        && alias.columns.is_empty()
    {
        return TableRef::from_ident(&alias.name);
    }
    TableRef::from_object_name(name)
}

/// A WHERE that mentions no column anywhere, subqueries included (`WHERE true`, `WHERE 1 = 1`,
/// `WHERE EXISTS (SELECT 1)`), filters nothing.
fn references_data(expr: &Expr) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = expr.visit(&mut finder);
    finder.0
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Insert(insert) => {
                self.out.dml.insert("insert");
                if let TableObject::TableName(name) = &insert.table {
                    self.out.written.insert(TableRef::from_object_name(name));
                }
                self.column_names(&insert.columns);
                // An upsert overwrites existing rows: it is an update too.
                if let Some(OnInsert::OnConflict(OnConflict {
                    action: OnConflictAction::DoUpdate(_),
                    ..
                })) = &insert.on
                {
                    self.out.dml.insert("update");
                }
            }
            Statement::Update(update) => {
                self.out.dml.insert("update");
                self.target(&update.table.relation);
                for assignment in &update.assignments {
                    match &assignment.target {
                        AssignmentTarget::ColumnName(name) => self.column_names([name]),
                        AssignmentTarget::Tuple(names) => self.column_names(names),
                    }
                }
                self.filtered(update.selection.as_ref());
            }
            Statement::Delete(delete) => {
                self.out.dml.insert("delete");
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                for table in from {
                    self.target(&table.relation);
                }
                self.out
                    .written
                    .extend(delete.tables.iter().map(TableRef::from_object_name));
                self.filtered(delete.selection.as_ref());
            }
            Statement::Merge(merge) => {
                self.out.dml.insert("merge");
                self.target(&merge.table);
                // What MERGE may do is what its actions do.
                for clause in &merge.clauses {
                    match clause.action {
                        MergeAction::Insert(_) => self.out.dml.insert("insert"),
                        MergeAction::Update(_) => self.out.dml.insert("update"),
                        MergeAction::Delete { .. } => self.out.dml.insert("delete"),
                        MergeAction::DoNothing { .. } => false,
                    };
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(parent) = self.scopes.last_mut()
            && let Some(index) = parent.position(query)
            && !parent.recursive
        {
            parent.visible = index;
        }
        if !query.locks.is_empty() {
            self.out.locking = true;
        }
        self.scopes.push(CteScope::of(query));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        if let Some(parent) = self.scopes.last_mut()
            && let Some(index) = parent.position(query)
            && !parent.recursive
        {
            parent.visible = index + 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.out.select_into = true;
            for target in &into.targets {
                self.skip_exprs.push(std::ptr::from_ref(target));
                match target {
                    Expr::Identifier(ident) => {
                        self.out.written.insert(TableRef::from_ident(ident));
                    }
                    Expr::CompoundIdentifier(idents) => {
                        let name = ObjectName::from(idents.clone());
                        self.out.written.insert(TableRef::from_object_name(&name));
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                self.out
                    .functions
                    .insert(FunctionRef::from_object_name(name));
            }
            TableFactor::Table { name, alias, .. } => {
                let table = table_of(name, alias.as_ref());
                if self.write_targets.iter().any(|t| std::ptr::eq(*t, factor)) {
                    self.out.written.insert(table);
                } else if !self.is_cte(&table) {
                    self.out.read.insert(table);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.skip_exprs.iter().any(|e| std::ptr::eq(*e, expr)) {
            return ControlFlow::Continue(());
        }
        match expr {
            Expr::Function(function) => {
                self.out
                    .functions
                    .insert(FunctionRef::from_object_name(&function.name));
            }
            Expr::Identifier(ident) => {
                self.out
                    .columns
                    .extend(ColumnRef::from_idents(std::slice::from_ref(ident)));
            }
            Expr::CompoundIdentifier(idents) => {
                self.out.columns.extend(ColumnRef::from_idents(idents));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
