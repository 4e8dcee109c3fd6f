//! From a top-level statement to its [`Operation`] and the objects it names outside any `FROM`.
//!
//! Tables inside queries (FROM, joins, subqueries, DML targets, CTEs) are found by the
//! [`collect`](super::collect) walk; this module covers what only the statement's own shape says:
//! DDL targets, `COPY`, `TRUNCATE`, `LOCK`, maintenance and privilege statements.

use sqlparser::ast::{
    CopySource, CopyTarget, Expr, GrantObjects, ObjectName, ObjectType, Reset, Set, SetExpr,
    Statement,
};

use super::names::{FunctionRef, TableRef};
use super::operation::{CopyDirection, ObjectKind, Operation};

/// What the statement's shape says, before the walk adds what its queries say.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    pub operation: Option<Operation>,
    pub read: Vec<TableRef>,
    pub written: Vec<TableRef>,
    pub objects: Vec<TableRef>,
    pub functions: Vec<FunctionRef>,
}

impl Shape {
    fn op(operation: Operation) -> Self {
        Self {
            operation: Some(operation),
            ..Self::default()
        }
    }

    fn writes(mut self, names: impl IntoIterator<Item = TableRef>) -> Self {
        self.written.extend(names);
        self
    }

    fn names(mut self, names: impl IntoIterator<Item = TableRef>) -> Self {
        self.objects.extend(names);
        self
    }
}

fn refs<'a>(names: impl IntoIterator<Item = &'a ObjectName>) -> Vec<TableRef> {
    names.into_iter().map(TableRef::from_object_name).collect()
}

fn kind_of(object_type: &ObjectType) -> ObjectKind {
    match object_type {
        ObjectType::Table => ObjectKind::Table,
        ObjectType::View => ObjectKind::View,
        ObjectType::MaterializedView => ObjectKind::MaterializedView,
        ObjectType::Index => ObjectKind::Index,
        ObjectType::Schema => ObjectKind::Schema,
        ObjectType::Database => ObjectKind::Database,
        ObjectType::Role | ObjectType::User => ObjectKind::Role,
        ObjectType::Sequence => ObjectKind::Sequence,
        ObjectType::Type => ObjectKind::Type,
        _ => ObjectKind::Other,
    }
}

/// Whether a name is one of the session variables that switch identity.
fn identity_variable(name: &ObjectName) -> Option<Operation> {
    match TableRef::from_object_name(name).name.as_str() {
        "role" => Some(Operation::SetRole),
        "session_authorization" => Some(Operation::SetSessionAuthorization),
        _ => None,
    }
}

fn classify_set(set: &Set) -> Operation {
    match set {
        Set::SetRole { .. } => Operation::SetRole,
        Set::SetSessionAuthorization(_) => Operation::SetSessionAuthorization,
        Set::SingleAssignment { variable, .. } => {
            identity_variable(variable).unwrap_or(Operation::Set)
        }
        Set::ParenthesizedAssignments { variables, .. } => variables
            .iter()
            .find_map(identity_variable)
            .unwrap_or(Operation::Set),
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .find_map(|a| identity_variable(&a.name))
            .unwrap_or(Operation::Set),
        _ => Operation::Set,
    }
}

fn grant_objects(objects: Option<&GrantObjects>) -> Vec<TableRef> {
    match objects {
        Some(
            GrantObjects::Tables(names)
            | GrantObjects::Sequences(names)
            | GrantObjects::Views(names)
            | GrantObjects::Schemas(names)
            | GrantObjects::Databases(names),
        ) => refs(names),
        Some(
            GrantObjects::AllTablesInSchema { schemas }
            | GrantObjects::AllSequencesInSchema { schemas }
            | GrantObjects::AllFunctionsInSchema { schemas },
        ) => refs(schemas),
        Some(GrantObjects::Function { name, .. } | GrantObjects::Procedure { name, .. }) => {
            refs([name])
        }
        _ => Vec::new(),
    }
}

fn classify_copy(source: &CopySource, to: bool, target: &CopyTarget) -> Shape {
    let direction = if to {
        CopyDirection::To
    } else {
        CopyDirection::From
    };
    let mut shape = Shape::op(Operation::Copy {
        direction,
        program: matches!(target, CopyTarget::Program { .. }),
        file: matches!(target, CopyTarget::File { .. }),
    });
    if let CopySource::Table { table_name, .. } = source {
        let table = TableRef::from_object_name(table_name);
        match direction {
            CopyDirection::To => shape.read.push(table),
            CopyDirection::From => shape.written.push(table),
        }
    }
    shape
}

/// Classifies a statement whose operation comes from its shape. Returns an empty operation for
/// `Explain` and `Prepare`, which the caller resolves through the inner statement, and for queries,
/// whose operation depends on the walk (`SELECT INTO`).
pub(crate) fn classify(statement: &Statement) -> Shape {
    use Operation as Op;
    match statement {
        // `WITH ... INSERT/UPDATE/DELETE/MERGE` parses as a query whose body is the DML.
        Statement::Query(query) => match query.body.as_ref() {
            SetExpr::Insert(_) => Shape::op(Op::Insert),
            SetExpr::Update(_) => Shape::op(Op::Update),
            SetExpr::Delete(_) => Shape::op(Op::Delete),
            SetExpr::Merge(_) => Shape::op(Op::Merge),
            _ => Shape::default(),
        },
        Statement::Explain { .. } | Statement::Prepare { .. } => Shape::default(),
        Statement::Insert(_) => Shape::op(Op::Insert),
        Statement::Update(_) => Shape::op(Op::Update),
        Statement::Delete(_) => Shape::op(Op::Delete),
        Statement::Merge(_) => Shape::op(Op::Merge),
        Statement::Copy {
            source, to, target, ..
        } => classify_copy(source, *to, target),
        Statement::CreateTable(t) => {
            Shape::op(Op::Create(ObjectKind::Table)).writes(refs([&t.name]))
        }
        Statement::CreateView(v) => {
            let kind = if v.materialized {
                ObjectKind::MaterializedView
            } else {
                ObjectKind::View
            };
            Shape::op(Op::Create(kind)).writes(refs([&v.name]))
        }
        Statement::CreateIndex(i) => Shape::op(Op::Create(ObjectKind::Index))
            .writes(refs([&i.table_name]))
            .names(refs(i.name.as_ref())),
        Statement::CreateRole(r) => Shape::op(Op::Create(ObjectKind::Role)).names(refs(&r.names)),
        Statement::CreateUser(_) => Shape::op(Op::Create(ObjectKind::Role)),
        Statement::CreateSchema { .. } => Shape::op(Op::Create(ObjectKind::Schema)),
        Statement::CreateDatabase { db_name, .. } => {
            Shape::op(Op::Create(ObjectKind::Database)).names(refs([db_name]))
        }
        Statement::CreateFunction(f) => {
            Shape::op(Op::Create(ObjectKind::Function)).names(refs([&f.name]))
        }
        Statement::CreateProcedure { name, .. } => {
            Shape::op(Op::Create(ObjectKind::Function)).names(refs([name]))
        }
        Statement::CreateTrigger(_) => Shape::op(Op::Create(ObjectKind::Trigger)),
        Statement::CreateExtension(e) => {
            Shape::op(Op::Create(ObjectKind::Extension)).names([TableRef::from_ident(&e.name)])
        }
        Statement::CreatePolicy(p) => {
            Shape::op(Op::Create(ObjectKind::Policy)).names(refs([&p.table_name]))
        }
        Statement::CreateSequence { name, .. } => {
            Shape::op(Op::Create(ObjectKind::Sequence)).writes(refs([name]))
        }
        Statement::CreateType { .. } | Statement::CreateDomain(_) => {
            Shape::op(Op::Create(ObjectKind::Type))
        }
        Statement::AlterTable(t) => Shape::op(Op::Alter(ObjectKind::Table)).writes(refs([&t.name])),
        Statement::AlterIndex { name, .. } => {
            Shape::op(Op::Alter(ObjectKind::Index)).names(refs([name]))
        }
        Statement::AlterView { name, .. } => {
            Shape::op(Op::Alter(ObjectKind::View)).writes(refs([name]))
        }
        Statement::AlterSchema(_) => Shape::op(Op::Alter(ObjectKind::Schema)),
        Statement::AlterFunction(_) => Shape::op(Op::Alter(ObjectKind::Function)),
        Statement::AlterType(_) => Shape::op(Op::Alter(ObjectKind::Type)),
        Statement::AlterRole { .. } | Statement::AlterUser(_) => {
            Shape::op(Op::Alter(ObjectKind::Role))
        }
        Statement::AlterPolicy(_) => Shape::op(Op::Alter(ObjectKind::Policy)),
        Statement::RenameTable(renames) => Shape::op(Op::Alter(ObjectKind::Table)).writes(
            renames
                .iter()
                .flat_map(|r| refs([&r.old_name, &r.new_name])),
        ),
        Statement::Drop {
            object_type, names, ..
        } => {
            let kind = kind_of(object_type);
            let shape = Shape::op(Op::Drop(kind));
            match kind {
                ObjectKind::Table
                | ObjectKind::View
                | ObjectKind::MaterializedView
                | ObjectKind::Sequence => shape.writes(refs(names)),
                _ => shape.names(refs(names)),
            }
        }
        Statement::DropFunction(_) | Statement::DropProcedure { .. } => {
            Shape::op(Op::Drop(ObjectKind::Function))
        }
        Statement::DropTrigger(t) => {
            Shape::op(Op::Drop(ObjectKind::Trigger)).names(refs(t.table_name.as_ref()))
        }
        Statement::DropExtension(e) => Shape::op(Op::Drop(ObjectKind::Extension))
            .names(e.names.iter().map(TableRef::from_ident)),
        Statement::DropPolicy(p) => {
            Shape::op(Op::Drop(ObjectKind::Policy)).names(refs([&p.table_name]))
        }
        Statement::DropDomain(_) => Shape::op(Op::Drop(ObjectKind::Type)),
        Statement::Truncate(t) => Shape::op(Op::Truncate).writes(
            t.table_names
                .iter()
                .map(|t| TableRef::from_object_name(&t.name)),
        ),
        Statement::Comment { object_name, .. } => Shape::op(Op::Comment).names(refs([object_name])),
        Statement::Grant(g) => Shape::op(Op::Grant).names(grant_objects(g.objects.as_ref())),
        Statement::Revoke(r) => Shape::op(Op::Revoke).names(grant_objects(r.objects.as_ref())),
        Statement::Set(set) => Shape::op(classify_set(set)),
        Statement::Reset(reset) => Shape::op(match &reset.reset {
            Reset::SessionAuthorization => Op::SetSessionAuthorization,
            Reset::ConfigurationParameter(name) => identity_variable(name).unwrap_or(Op::Reset),
            Reset::ALL => Op::Reset,
        }),
        Statement::StartTransaction { .. } => Shape::op(Op::Begin),
        Statement::Commit { .. } => Shape::op(Op::Commit),
        Statement::Rollback { .. } => Shape::op(Op::Rollback),
        Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => {
            Shape::op(Op::Savepoint)
        }
        Statement::Call(function) => {
            let mut shape = Shape::op(Op::Call);
            shape
                .functions
                .push(FunctionRef::from_object_name(&function.name));
            shape
        }
        Statement::Execute { .. } => Shape::op(Op::Execute),
        Statement::Deallocate { .. } => Shape::op(Op::Deallocate),
        Statement::ExplainTable { table_name, .. } => {
            let mut shape = Shape::op(Op::Explain { analyze: false });
            shape.read.push(TableRef::from_object_name(table_name));
            shape
        }
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. } => Shape::op(Op::Show),
        Statement::LISTEN { .. } => Shape::op(Op::Listen),
        Statement::UNLISTEN { .. } => Shape::op(Op::Unlisten),
        Statement::NOTIFY { .. } => Shape::op(Op::Notify),
        Statement::Vacuum(v) => Shape::op(Op::Vacuum).writes(refs(v.table_name.as_ref())),
        Statement::Analyze(a) => Shape::op(Op::Analyze).writes(refs(a.table_name.as_ref())),
        Statement::Lock(l) => Shape::op(Op::Lock).writes(refs(l.tables.iter().map(|t| &t.name))),
        Statement::Discard { .. } => Shape::op(Op::Discard),
        Statement::Declare { .. } => Shape::op(Op::Declare),
        Statement::Fetch { .. } | Statement::Close { .. } => Shape::op(Op::Fetch),
        _ => Shape::op(Op::Other),
    }
}

/// Whether an `EXPLAIN` runs its statement: `EXPLAIN ANALYZE` or `EXPLAIN (ANALYZE [true|on|1])`.
pub(crate) fn explain_runs(
    analyze: bool,
    options: Option<&[sqlparser::ast::UtilityOption]>,
) -> bool {
    analyze
        || options.unwrap_or_default().iter().any(|option| {
            option.name.value.eq_ignore_ascii_case("analyze")
                && option.arg.as_ref().is_none_or(|arg| !is_false(arg))
        })
}

/// PostgreSQL's boolean option spellings for false; anything else counts as true (fail closed).
fn is_false(expr: &Expr) -> bool {
    let text = expr.to_string().trim_matches('\'').to_ascii_lowercase();
    matches!(text.as_str(), "false" | "off" | "0" | "no")
}
