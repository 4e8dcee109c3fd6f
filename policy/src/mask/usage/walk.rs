//! The walk over one parsed statement behind [`check_masked_column_use`](super::check_masked_column_use).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    JoinConstraint, JoinOperator, OrderByKind, Query, SelectItem, SetExpr, Statement, TableAlias,
    TableFactor, TableWithJoins, UpdateTableFromKind, Value, Visit, Visitor,
};

use super::MaskedColumnUse;
use crate::compile::glob::Part;

/// What the walk over one statement found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Walked {
    /// The first refused use of a masked column.
    pub(super) problem: Option<MaskedColumnUse>,
    /// The answer came from a literal: a positional reference (`ORDER BY 2` names a result column
    /// by number), so texts differing only in literal values may get different answers.
    pub(super) read_literal: bool,
}

impl Walked {
    fn found(problem: MaskedColumnUse) -> Self {
        Self {
            problem: Some(problem),
            read_literal: false,
        }
    }
}

pub(super) fn check_statement(statement: &Statement, parts: &[&Part]) -> Walked {
    let top = match statement {
        Statement::Query(query) => Some(query.as_ref()),
        _ => None,
    };
    let mut aliases: Vec<String> = Vec::new();
    let mut plain = 0usize;
    if let Some(SetExpr::Select(select)) = top.map(|q| q.body.as_ref()) {
        for item in &select.projection {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(expr) => (expr, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
                _ => continue,
            };
            if let Some(name) = column_name(expr)
                && parts.iter().any(|p| p.matches(&name))
            {
                plain += 1;
                aliases.extend(alias.map(|a| a.value.to_ascii_lowercase()));
            }
        }
    }
    let mut relations = Relations::default();
    let _ = statement.visit(&mut relations);
    if let Some(problem) = relations.problem {
        return Walked::found(problem);
    }
    if returning_wildcard(statement) {
        return Walked::found(MaskedColumnUse::NestedWildcard);
    }
    if let Some(problem) = statement_joins(statement)
        .iter()
        .find_map(|from| join_problem(from, parts))
    {
        return Walked::found(problem);
    }
    let mut walker = Uses {
        parts,
        aliases: &aliases,
        relations: &relations.names,
        top: top.map(std::ptr::from_ref),
        total: 0,
        problem: None,
        read_literal: false,
    };
    let _ = statement.visit(&mut walker);
    let problem = walker
        .problem
        .or_else(|| (walker.total > plain).then_some(MaskedColumnUse::Expression));
    Walked {
        problem,
        read_literal: walker.read_literal,
    }
}

/// The column name of a plain reference (`email`, `u.email`), lowercased unless quoted.
fn column_name(expr: &Expr) -> Option<String> {
    let ident = match expr {
        Expr::Identifier(ident) => ident,
        Expr::CompoundIdentifier(idents) => idents.last()?,
        Expr::Nested(inner) => return column_name(inner),
        _ => return None,
    };
    Some(fold(ident))
}

fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

fn alias_of(factor: &TableFactor) -> Option<&TableAlias> {
    match factor {
        TableFactor::Table { alias, .. }
        | TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::JsonTable { alias, .. }
        | TableFactor::NestedJoin { alias, .. } => alias.as_ref(),
        _ => None,
    }
}

/// Names rows can be referred to by (tables, aliases, CTEs); alias lists are refused.
#[derive(Default)]
struct Relations {
    names: BTreeSet<String>,
    problem: Option<MaskedColumnUse>,
}

impl Visitor for Relations {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } = factor
            && let Some(last) = name.0.last().and_then(|p| p.as_ident())
        {
            self.names.insert(fold(last));
        }
        if let Some(alias) = alias_of(factor) {
            if !alias.columns.is_empty() {
                self.problem = Some(MaskedColumnUse::Renamed);
                return ControlFlow::Break(());
            }
            self.names.insert(fold(&alias.name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            if !cte.alias.columns.is_empty() {
                self.problem = Some(MaskedColumnUse::Renamed);
                return ControlFlow::Break(());
            }
            self.names.insert(fold(&cte.alias.name));
        }
        ControlFlow::Continue(())
    }
}

/// Counts references to masked names and spots whole-row references, nested wildcards and
/// positional ordering.
struct Uses<'a> {
    parts: &'a [&'a Part],
    aliases: &'a [String],
    relations: &'a BTreeSet<String>,
    top: Option<*const Query>,
    total: usize,
    problem: Option<MaskedColumnUse>,
    /// Set when a positional reference was met (see [`Walked::read_literal`]).
    read_literal: bool,
}

impl Uses<'_> {
    fn fail(&mut self, problem: MaskedColumnUse) -> ControlFlow<()> {
        self.problem = Some(problem);
        ControlFlow::Break(())
    }
}

impl Visitor for Uses<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(ident) => {
                let name = fold(ident);
                if self.relations.contains(&name) {
                    return self.fail(MaskedColumnUse::WholeRow);
                }
                if self.parts.iter().any(|p| p.matches(&name)) || self.aliases.contains(&name) {
                    self.total += 1;
                }
            }
            Expr::CompoundIdentifier(idents) => {
                if let Some(last) = idents.last()
                    && self.parts.iter().any(|p| p.matches(&fold(last)))
                {
                    self.total += 1;
                }
            }
            Expr::QualifiedWildcard(..) | Expr::Wildcard(_) => {
                return self.fail(MaskedColumnUse::WholeRow);
            }
            Expr::Function(function) => {
                if let FunctionArguments::List(list) = &function.args {
                    let whole_row = list.args.iter().any(|arg| {
                        let arg = match arg {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        matches!(arg, FunctionArgExpr::QualifiedWildcard(_))
                    });
                    if whole_row {
                        return self.fail(MaskedColumnUse::WholeRow);
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let mut froms = Vec::new();
        select_froms(&query.body, &mut froms);
        if let Some(problem) = froms.iter().find_map(|from| join_problem(from, self.parts)) {
            return self.fail(problem);
        }
        let is_top = self.top.is_some_and(|top| std::ptr::eq(top, query));
        let plain_top = is_top && matches!(query.body.as_ref(), SetExpr::Select(_));
        if !plain_top && has_wildcard(&query.body) {
            return self.fail(MaskedColumnUse::NestedWildcard);
        }
        match query.order_by.as_ref().map(|o| &o.kind) {
            Some(OrderByKind::All(_)) => return self.fail(MaskedColumnUse::Positional),
            Some(OrderByKind::Expressions(items)) if items.iter().any(|i| is_position(&i.expr)) => {
                self.read_literal = true;
                return self.fail(MaskedColumnUse::Positional);
            }
            _ => {}
        }
        match positional_group_by(&query.body) {
            Some(Grouping::All) => return self.fail(MaskedColumnUse::Positional),
            Some(Grouping::Position) => {
                self.read_literal = true;
                return self.fail(MaskedColumnUse::Positional);
            }
            None => {}
        }
        ControlFlow::Continue(())
    }
}

fn is_position(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if matches!(v.value, Value::Number(..)))
}

/// How a `GROUP BY` refers to columns other than by expression.
enum Grouping {
    /// `GROUP BY ALL`.
    All,
    /// `GROUP BY 2`: a literal names the column.
    Position,
}

fn positional_group_by(body: &SetExpr) -> Option<Grouping> {
    match body {
        SetExpr::Select(select) => match &select.group_by {
            GroupByExpr::All(_) => Some(Grouping::All),
            GroupByExpr::Expressions(exprs, _) => {
                exprs.iter().any(is_position).then_some(Grouping::Position)
            }
        },
        SetExpr::SetOperation { left, right, .. } => {
            positional_group_by(left).or_else(|| positional_group_by(right))
        }
        _ => None,
    }
}

fn has_wildcard(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.projection.iter().any(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }),
        SetExpr::SetOperation { left, right, .. } => has_wildcard(left) || has_wildcard(right),
        SetExpr::Query(query) => has_wildcard(&query.body),
        _ => false,
    }
}

fn returning_wildcard(statement: &Statement) -> bool {
    let returning = match statement {
        Statement::Insert(insert) => insert.returning.as_ref(),
        Statement::Update(update) => update.returning.as_ref(),
        Statement::Delete(delete) => delete.returning.as_ref(),
        _ => None,
    };
    returning.is_some_and(|items| {
        items.iter().any(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        })
    })
}

/// The `FROM` lists of the `SELECT`s of one query body (not of its subqueries: the walk visits
/// each query).
fn select_froms<'a>(body: &'a SetExpr, out: &mut Vec<&'a TableWithJoins>) {
    match body {
        SetExpr::Select(select) => out.extend(&select.from),
        SetExpr::SetOperation { left, right, .. } => {
            select_froms(left, out);
            select_froms(right, out);
        }
        _ => {}
    }
}

/// The tables and joins of an `UPDATE ... FROM` or a `DELETE ... USING`.
fn statement_joins(statement: &Statement) -> Vec<&TableWithJoins> {
    match statement {
        Statement::Update(update) => {
            let mut all = vec![&update.table];
            if let Some(
                UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
            ) = &update.from
            {
                all.extend(from);
            }
            all
        }
        Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            from.iter().chain(delete.using.iter().flatten()).collect()
        }
        _ => Vec::new(),
    }
}

/// A join that compares a masked column without naming it in an expression: `USING (email)`
/// names it, and a `NATURAL` join may match it by name (the statement touches a table with masked
/// columns, and which columns two relations share is not known without the catalog). Both answer
/// "which row has this value", like `WHERE email = ...`.
fn join_problem(from: &TableWithJoins, parts: &[&Part]) -> Option<MaskedColumnUse> {
    let nested = |factor: &TableFactor| match factor {
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => join_problem(table_with_joins, parts),
        _ => None,
    };
    nested(&from.relation).or_else(|| {
        from.joins.iter().find_map(|join| {
            let refused = match constraint(&join.join_operator) {
                Some(JoinConstraint::Natural) => true,
                Some(JoinConstraint::Using(names)) => names.iter().any(|name| {
                    name.0
                        .last()
                        .and_then(|part| part.as_ident())
                        .is_some_and(|ident| parts.iter().any(|p| p.matches(&fold(ident))))
                }),
                _ => false,
            };
            if refused {
                Some(MaskedColumnUse::Expression)
            } else {
                nested(&join.relation)
            }
        })
    })
}

fn constraint(operator: &JoinOperator) -> Option<&JoinConstraint> {
    match operator {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c)
        | JoinOperator::AsOf { constraint: c, .. } => Some(c),
        JoinOperator::CrossApply
        | JoinOperator::OuterApply
        | JoinOperator::ArrayJoin
        | JoinOperator::LeftArrayJoin
        | JoinOperator::InnerArrayJoin => None,
    }
}
