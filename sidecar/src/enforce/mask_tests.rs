//! The row hook without a database: plans, fail-closed resolution, maxRows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{BufMut, BytesMut};
use dbwarden_policy::ServiceAccount;

use super::EnforcingHooks;
use crate::hook::{HookFactory, RowAction, RowHook};
use crate::protocol::backend::{DataRow, RowDescription, encode_data_row};

fn hooks(extra_spec: &str) -> (tempfile::TempDir, Box<dyn RowHook>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {{name: p}}
spec:
  database: {{host: db, name: app, environment: dev, credentialsSecretRef: {{name: app-db}}}}
  workloadSelector: {{matchLabels: {{app: api}}}}
  rules:
    - {{name: r, subjects: {{serviceAccounts: [api]}}, operations: [select], tables: ['*']}}
{extra_spec}"
        ),
    )
    .unwrap();
    let hooks = EnforcingHooks::load(vec![path], ServiceAccount::new("shop", "api"), None).unwrap();
    let info = super::tests::session_info(
        "app",
        std::sync::Arc::new(crate::metrics::Metrics::new().unwrap()),
    );
    let rows = hooks.open(&info).rows.expect("a row hook");
    (dir, rows)
}

/// A RowDescription body: `(table OID, attnum)` per text column.
fn description(columns: &[(u32, i16)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u16(columns.len() as u16);
    for (table, attnum) in columns {
        b.put_slice(b"c\0");
        b.put_u32(*table);
        b.put_i16(*attnum);
        b.put_u32(25);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i16(0);
    }
    b.to_vec()
}

fn row(values: &[&str]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_data_row(&mut out, values.iter().map(|v| Some(v.as_bytes())));
    out[5..].to_vec()
}

fn send(hook: &mut dyn RowHook, values: &[&str]) -> (RowAction, BytesMut) {
    let body = row(values);
    let mut out = BytesMut::new();
    let action = hook.data_row(&DataRow::decode(&body).unwrap(), &mut out);
    (action, out)
}

const MASKS: &str = "  masking:
    columns: [{columns: [public.users.email], strategy: redact}]
    detectors: [{kind: email, strategy: redact}]
";

#[test]
fn computed_columns_are_scanned_and_unresolvable_sources_refused() {
    let (_dir, mut hook) = hooks(MASKS);
    let computed = description(&[(0, 0)]);
    let computed = RowDescription::decode(&computed).unwrap();
    // No catalog is configured: nothing to await, and nothing needs resolving here.
    assert!(hook.resolve(&computed).is_none());
    hook.row_description(&computed).unwrap();
    let (action, out) = send(hook.as_mut(), &["mail a.b@example.com now"]);
    assert_eq!(action, RowAction::Replace);
    assert!(out.ends_with(b"mail **** now"), "{out:?}");
    let (action, _) = send(hook.as_mut(), &["nothing here"]);
    assert_eq!(action, RowAction::Forward);

    // A column from a table the sidecar cannot resolve: the result is refused.
    let from_table = description(&[(16384, 2)]);
    let denial = hook
        .row_description(&RowDescription::decode(&from_table).unwrap())
        .unwrap_err();
    assert!(denial.message.contains("refused rather than sent unmasked"));
    // And rows without an accepted description are refused too.
    assert!(matches!(send(hook.as_mut(), &["x"]).0, RowAction::Deny(_)));
}

#[test]
fn without_masks_rows_pass_untouched_until_max_rows() {
    let (_dir, mut hook) = hooks("  guardrails: {maxRows: 2, onMaxRows: truncate}\n");
    let d = description(&[(16384, 2)]);
    let d = RowDescription::decode(&d).unwrap();
    hook.row_description(&d).unwrap();
    assert_eq!(send(hook.as_mut(), &["a"]).0, RowAction::Forward);
    assert_eq!(send(hook.as_mut(), &["b"]).0, RowAction::Forward);
    let (action, notice) = send(hook.as_mut(), &["c"]);
    assert_eq!(action, RowAction::Replace);
    assert_eq!(notice.first(), Some(&b'N'));
    assert_eq!(send(hook.as_mut(), &["d"]).0, RowAction::Skip);
    // A new result counts from zero; a resumed portal carries on.
    hook.portal_description(&d, 1, false).unwrap();
    assert_eq!(send(hook.as_mut(), &["a"]).0, RowAction::Forward);
    hook.row_description(&d).unwrap();
    hook.portal_description(&d, 1, true).unwrap();
    assert_eq!(send(hook.as_mut(), &["b"]).0, RowAction::Forward);
    assert_eq!(send(hook.as_mut(), &["c"]).0, RowAction::Replace);
}

#[test]
fn max_rows_error_names_the_policy_and_the_limit() {
    let (_dir, mut hook) = hooks("  guardrails: {maxRows: 1}\n");
    let d = description(&[(0, 0)]);
    hook.row_description(&RowDescription::decode(&d).unwrap())
        .unwrap();
    assert_eq!(send(hook.as_mut(), &["a"]).0, RowAction::Forward);
    match send(hook.as_mut(), &["b"]).0 {
        RowAction::Deny(d) => {
            assert!(d.message.contains("policy shop/p"), "{}", d.message);
            assert!(d.message.contains("more than 1 rows"), "{}", d.message);
        }
        other => panic!("{other:?}"),
    }
}
