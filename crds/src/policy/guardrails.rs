//! `spec.guardrails`: checks that stop dangerous statements whoever sends them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Checks applied to every statement before rules and approvals; a statement a guardrail stops
/// is refused even if a rule allows it or a person approved it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Guardrails {
    /// Refuse every DDL statement (`create`, `alter`, `drop`, `truncate`, `comment`).
    #[serde(default)]
    pub block_ddl: bool,
    /// Refuse `DROP` of any object.
    #[serde(default = "yes")]
    pub block_drop: bool,
    /// Refuse `TRUNCATE`.
    #[serde(default = "yes")]
    pub block_truncate: bool,
    /// Refuse `UPDATE` and `DELETE` without a `WHERE` clause that refers to a column (`WHERE
    /// true` and `WHERE EXISTS (SELECT 1)` filter nothing). A guard against accidents: a
    /// deliberate `WHERE id = id` still passes.
    #[serde(default = "yes")]
    pub require_where_for_update_delete: bool,
    /// Refuse `COPY ... TO/FROM PROGRAM` (runs a shell command on the database server).
    #[serde(default = "yes")]
    pub block_copy_program: bool,
    /// Functions a statement may not call, by name, optionally schema-qualified
    /// (`pg_terminate_backend`, `pg_catalog.pg_read_file`). Setting the list replaces the default.
    #[serde(default = "default_blocked_functions")]
    #[schemars(length(max = 128), inner(length(min = 1, max = 130)), extend("x-kubernetes-list-type" = "set"))]
    pub blocked_functions: Vec<String>,
    /// Most rows one statement may return to the client; unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rows: Option<i64>,
    /// What happens past `maxRows`: `error` ends the statement with an error, `truncate` stops
    /// sending rows and completes the statement normally.
    #[serde(default)]
    pub on_max_rows: OnMaxRows,
    /// What happens to a statement the sidecar cannot parse. `allow` never applies to identities
    /// the policy masks columns for: only an analysis shows whether a masked column is used in
    /// an expression.
    #[serde(default)]
    pub unparseable: Unparseable,
    /// Audit what guardrails, rules and approvals would refuse, but let it run. For trying a
    /// policy on live traffic; masking still applies, and so do the refusals that protect it (a
    /// masked column used in an expression, a statement that cannot be analysed).
    #[serde(default)]
    pub observe_only: bool,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            block_ddl: false,
            block_drop: true,
            block_truncate: true,
            require_where_for_update_delete: true,
            block_copy_program: true,
            blocked_functions: default_blocked_functions(),
            max_rows: None,
            on_max_rows: OnMaxRows::default(),
            unparseable: Unparseable::default(),
            observe_only: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// Server functions that reach outside the SQL session: other backends, the server's files,
/// other servers, the server's configuration.
pub(crate) fn default_blocked_functions() -> Vec<String> {
    [
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "dblink",
        "dblink_exec",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// What happens when a result passes `maxRows`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnMaxRows {
    /// End the statement with an error once the limit is passed.
    #[default]
    Error,
    /// Stop sending rows at the limit and complete the statement.
    Truncate,
}

/// What happens to a statement the sidecar cannot parse.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Unparseable {
    /// Refuse it (fail closed).
    #[default]
    Deny,
    /// Let it through, audited as unparsed; rules, masking and approvals cannot apply to it.
    Allow,
}
