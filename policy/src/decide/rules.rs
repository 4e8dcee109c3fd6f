//! Access rules and approval rules against one statement.
//!
//! A statement *needs* operations and tables:
//! - operations: its own kind, every data-modifying kind inside it (`data_operations`: a
//!   data-modifying CTE, an upsert's `update`), and `call` when it calls a function not known to be
//!   read-only (such a function may write), and `update` for row locks (`SELECT ... FOR UPDATE`);
//! - primary tables: the tables it writes, or, when it writes none, the tables it reads. Every
//!   needed operation must be allowed on every primary table;
//! - other tables read (the source of `INSERT ... SELECT`, `DELETE ... USING`, a subquery): each
//!   must be allowed for `select` or for one of the needed operations.
//!
//! Allow rules may share the work (one rule for `insert` on `archive`, another for `select` on
//! `orders`). A statement touching no table (`SELECT 1`, `CREATE ROLE`, `DO`, `CALL`) needs a rule
//! for its operations; unless the statement is read-only, that rule's tables must include `*`,
//! so a rule scoped to some tables never allows table-less writes such as `CREATE ROLE`.
//!
//! Deny rules match when they name a needed operation and a primary table (unqualified names match
//! if they *could* resolve to a denied table), or `select`/a needed operation and another table
//! read; a deny rule matches a table-less statement only when its tables include `*`.

use crate::analyze::{StatementAnalysis, TableRef};
use crate::compile::glob::{Qualify, TableGlob};
use crate::compile::ops::{Needed, policy_operation};
use crate::compile::{CompiledApproval, CompiledRule};
use dbwarden_crds::Operation;

/// At most the main kind, four DML kinds and `call`.
const MAX_NEEDS: usize = 8;

/// What a statement needs from the rules.
#[derive(Debug)]
pub(crate) struct Needs<'a> {
    ops: [Needed; MAX_NEEDS],
    len: usize,
    pub(crate) statement: &'a StatementAnalysis,
}

impl<'a> Needs<'a> {
    pub(crate) fn of(statement: &'a StatementAnalysis) -> Self {
        let mut needs = Self {
            ops: [Needed::Other; MAX_NEEDS],
            len: 0,
            statement,
        };
        needs.push(policy_operation(&statement.operation));
        for op in &statement.data_operations {
            needs.push(policy_operation(op));
        }
        if !statement.unverified_functions.is_empty() {
            needs.push(Needed::Op(Operation::Call));
        }
        // Row locks (`FOR UPDATE/SHARE`) need PostgreSQL's UPDATE privilege; policies ask the same.
        if statement.locking {
            needs.push(Needed::Op(Operation::Update));
        }
        needs
    }

    fn push(&mut self, needed: Needed) {
        if self.ops().contains(&needed) {
            return;
        }
        if self.len < MAX_NEEDS {
            self.ops[self.len] = needed;
            self.len += 1;
        } else {
            // Cannot happen (at most 7 distinct needs); if it did, only `all` may allow it.
            self.ops[MAX_NEEDS - 1] = Needed::Other;
        }
    }

    /// The needed operations, the statement's own kind first.
    pub(crate) fn ops(&self) -> &[Needed] {
        &self.ops[..self.len]
    }

    fn primary(&self) -> &'a [TableRef] {
        if self.statement.tables_written.is_empty() {
            &self.statement.tables_read
        } else {
            &self.statement.tables_written
        }
    }

    fn secondary(&self) -> impl Iterator<Item = &'a TableRef> {
        let written = &self.statement.tables_written;
        let read = if written.is_empty() {
            &[][..]
        } else {
            &self.statement.tables_read[..]
        };
        read.iter().filter(move |t| !written.contains(t))
    }
}

fn any_table(globs: &[TableGlob], table: &TableRef, qualify: Qualify) -> bool {
    globs.iter().any(|g| g.matches_ref(table, qualify))
}

/// A deny rule that matched, with the operation and table it matched on.
#[derive(Debug)]
pub(crate) struct DenyMatch<'r, 'a> {
    pub(crate) rule: &'r CompiledRule,
    pub(crate) op: Needed,
    pub(crate) table: Option<&'a TableRef>,
}

/// The first deny rule among `rules` (already filtered to the identity) that matches.
pub(crate) fn denied_by<'r, 'a>(
    rules: &[&'r CompiledRule],
    needs: &Needs<'a>,
) -> Option<DenyMatch<'r, 'a>> {
    for rule in rules.iter().filter(|r| !r.allow) {
        for &op in needs.ops() {
            if !rule.ops.contains(op) {
                continue;
            }
            let primary = needs.primary();
            if primary.is_empty() {
                if rule.match_all {
                    return Some(DenyMatch {
                        rule,
                        op,
                        table: None,
                    });
                }
            } else if let Some(table) = primary
                .iter()
                .find(|t| any_table(&rule.tables, t, Qualify::Possible))
            {
                return Some(DenyMatch {
                    rule,
                    op,
                    table: Some(table),
                });
            }
        }
        for table in needs.secondary() {
            let op = std::iter::once(Needed::Op(Operation::Select))
                .chain(needs.ops().iter().copied())
                .find(|op| rule.ops.contains(*op));
            if let Some(op) = op
                && any_table(&rule.tables, table, Qualify::Possible)
            {
                return Some(DenyMatch {
                    rule,
                    op,
                    table: Some(table),
                });
            }
        }
    }
    None
}

/// What no allow rule covers.
#[derive(Debug)]
pub(crate) struct Missing<'a> {
    pub(crate) op: Needed,
    pub(crate) table: Option<&'a TableRef>,
}

/// Checks that allow rules among `rules` (already filtered to the identity) cover everything the
/// statement needs; returns the rule covering its own kind on its first primary table, or what is
/// missing.
pub(crate) fn allowed_by<'r, 'a>(
    rules: &[&'r CompiledRule],
    needs: &Needs<'a>,
) -> Result<&'r CompiledRule, Missing<'a>> {
    let allows = || rules.iter().copied().filter(|r| r.allow);
    let mut cited: Option<&'r CompiledRule> = None;
    let primary = needs.primary();
    let read_only = !needs.statement.is_write;
    for &op in needs.ops() {
        if primary.is_empty() {
            let rule = allows()
                .find(|r| r.ops.contains(op) && (read_only || r.match_all))
                .ok_or(Missing { op, table: None })?;
            cited.get_or_insert(rule);
        }
        for table in primary {
            let rule = allows()
                .find(|r| r.ops.contains(op) && any_table(&r.tables, table, Qualify::Certain))
                .ok_or(Missing {
                    op,
                    table: Some(table),
                })?;
            cited.get_or_insert(rule);
        }
    }
    for table in needs.secondary() {
        let covered = allows().any(|r| {
            (r.ops.contains(Needed::Op(Operation::Select))
                || needs.ops().iter().any(|op| r.ops.contains(*op)))
                && any_table(&r.tables, table, Qualify::Certain)
        });
        if !covered {
            return Err(Missing {
                op: Needed::Op(Operation::Select),
                table: Some(table),
            });
        }
    }
    cited.ok_or(Missing {
        op: needs.ops().first().copied().unwrap_or(Needed::Other),
        table: None,
    })
}

/// The first approval rule that matches the statement in `environment`.
pub(crate) fn approval_for<'p>(
    approvals: &'p [CompiledApproval],
    needs: &Needs<'_>,
    environment: &str,
) -> Option<&'p CompiledApproval> {
    let statement = needs.statement;
    approvals.iter().find(|rule| {
        let in_environment =
            rule.environments.is_empty() || rule.environments.iter().any(|e| e == environment);
        let op = needs.ops().iter().any(|op| rule.ops.contains(*op));
        let mut tables = statement
            .tables_read
            .iter()
            .chain(&statement.tables_written)
            .peekable();
        let table = if tables.peek().is_none() {
            rule.tables.iter().any(TableGlob::is_match_all)
        } else {
            tables.any(|t| any_table(&rule.tables, t, Qualify::Possible))
        };
        in_environment && op && table
    })
}
