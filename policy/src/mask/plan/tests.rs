use dbwarden_crds::policy::{Detector, OnUnmaskable, Strategy};
use dbwarden_crds::{DatabaseAccessPolicySpec, Subjects};

use super::*;
use crate::mask::{HashEncoding, HashKey};

const TEXT: u32 = 25;
const INT8: u32 = 20;
const DATE: u32 = 1082;

fn policy(on_unmaskable: OnUnmaskable) -> CompiledPolicy {
    let mut spec = DatabaseAccessPolicySpec::builder()
        .allow(
            "read",
            Subjects::service_accounts(["api"]),
            [dbwarden_crds::Operation::Read],
            [],
        )
        .mask("users.email", Strategy::Email)
        .mask("*.ssn", Strategy::Partial)
        .mask("*.card_token", Strategy::Hash)
        .mask("public.users.birthday", Strategy::Redact)
        .mask("users.secret", Strategy::Null)
        .detect(Detector::CardNumber, Strategy::Redact)
        .detect(Detector::Email, Strategy::Email)
        .build();
    if let Some(masking) = spec.masking.as_mut() {
        masking.on_unmaskable = on_unmaskable;
        masking.exempt_subjects = Some(Subjects::groups(["privacy"]));
    }
    CompiledPolicy::compile("shop", "p", &spec)
        .unwrap()
        .with_hash_key(HashKey::new(b"k", HashEncoding::Hex))
}

fn col<'a>(table: &'a str, column: &'a str, oid: u32, format: Format) -> ResultColumn<'a> {
    ResultColumn {
        source: Some(ColumnSource {
            schema: "public",
            table,
            column,
        }),
        type_oid: oid,
        format,
    }
}

fn computed(oid: u32, format: Format) -> ResultColumn<'static> {
    ResultColumn {
        source: None,
        type_oid: oid,
        format,
    }
}

fn run(plan: &MaskPlan, column: usize, value: &str) -> (MaskOutcome, String) {
    let mut out = Vec::new();
    let outcome = plan.mask_value(column, value.as_bytes(), &mut out);
    (outcome, String::from_utf8(out).unwrap())
}

#[test]
fn column_masks_then_detectors() {
    let policy = policy(OnUnmaskable::Deny);
    let me = Identity::service_account("shop", "api");
    let columns = [
        col("users", "email", TEXT, Format::Text),
        col("people", "ssn", TEXT, Format::Binary),
        col("users", "id", INT8, Format::Text),
        computed(TEXT, Format::Text),
        col("users", "birthday", DATE, Format::Text),
        col("users", "secret", 17, Format::Binary),
        col("cards", "card_token", TEXT, Format::Text),
    ];
    let plan = policy.mask_plan(&me, &columns).unwrap();
    assert!(!plan.is_passthrough());
    assert_eq!(
        run(&plan, 0, "jane@example.com"),
        (MaskOutcome::Replaced, "j***@example.com".into())
    );
    assert_eq!(
        run(&plan, 1, "123-45-6789"),
        (MaskOutcome::Replaced, "*******6789".into())
    );
    // An id column passes unless a detector fires, and then it cannot be rewritten as an int8.
    assert_eq!(run(&plan, 2, "42"), (MaskOutcome::Pass, String::new()));
    assert_eq!(run(&plan, 2, "4111111111111111").0, MaskOutcome::Refuse);
    assert_eq!(
        run(&plan, 3, "paid with 4111 1111 1111 1111 by bob@example.org"),
        (
            MaskOutcome::Replaced,
            "paid with **** by b***@example.org".into()
        )
    );
    assert_eq!(
        run(&plan, 3, "nothing here"),
        (MaskOutcome::Pass, String::new())
    );
    // A date masked by a text strategy is unmaskable.
    assert_eq!(run(&plan, 4, "1990-01-01").0, MaskOutcome::Refuse);
    assert_eq!(run(&plan, 5, "\u{1}\u{2}").0, MaskOutcome::Null);
    let (outcome, hashed) = run(&plan, 6, "tok_123");
    assert_eq!(outcome, MaskOutcome::Replaced);
    assert_eq!(hashed.len(), 64);
    assert_eq!(run(&plan, 99, "x").0, MaskOutcome::Refuse);
}

#[test]
fn unmaskable_values_become_null_when_the_policy_says_so() {
    let policy = policy(OnUnmaskable::Null);
    let me = Identity::service_account("shop", "api");
    let plan = policy
        .mask_plan(&me, &[col("users", "birthday", DATE, Format::Binary)])
        .unwrap();
    assert_eq!(plan.actions(), &[ColumnAction::Null]);
    assert_eq!(run(&plan, 0, "x").0, MaskOutcome::Null);
}

#[test]
fn binary_integers_are_scanned_as_decimal() {
    let policy = policy(OnUnmaskable::Deny);
    let me = Identity::service_account("shop", "api");
    let plan = policy
        .mask_plan(&me, &[computed(INT8, Format::Binary)])
        .unwrap();
    let mut out = Vec::new();
    let card = 4_111_111_111_111_111_i64.to_be_bytes();
    assert_eq!(plan.mask_value(0, &card, &mut out), MaskOutcome::Refuse);
    assert_eq!(
        plan.mask_value(0, &(-42_i64).to_be_bytes(), &mut out),
        MaskOutcome::Pass
    );
    assert_eq!(
        plan.mask_value(0, &[1, 2, 3], &mut out),
        MaskOutcome::Refuse
    );
    let mut buf = [0u8; 20];
    assert_eq!(
        binary_int(INT8, &(-42_i64).to_be_bytes(), &mut buf),
        Some(&b"-42"[..])
    );
    assert_eq!(
        binary_int(21, &(-7_i16).to_be_bytes(), &mut buf),
        Some(&b"-7"[..])
    );
    assert_eq!(
        binary_int(INT8, &i64::MIN.to_be_bytes(), &mut buf),
        Some(&b"-9223372036854775808"[..])
    );
}

#[test]
fn exempt_subjects_and_missing_keys() {
    let policy = policy(OnUnmaskable::Deny);
    let officer = Identity::user("shop", "api", "olga", ["privacy"]);
    let plan = policy
        .mask_plan(&officer, &[col("users", "email", TEXT, Format::Text)])
        .unwrap();
    assert!(plan.is_passthrough());
    assert!(!policy.masks_for(&officer));

    let spec = DatabaseAccessPolicySpec::builder()
        .mask("*.card_token", Strategy::Hash)
        .build();
    let keyless = CompiledPolicy::compile("shop", "p", &spec).unwrap();
    assert!(keyless.needs_hash_key());
    let me = Identity::service_account("shop", "api");
    let error = keyless
        .mask_plan(&me, &[col("cards", "card_token", TEXT, Format::Text)])
        .unwrap_err();
    assert!(error.to_string().contains("no hash key"), "{error}");
}

#[test]
fn json_is_scanned_but_never_rewritten_whole() {
    let policy = policy(OnUnmaskable::Deny);
    let me = Identity::service_account("shop", "api");
    let plan = policy
        .mask_plan(
            &me,
            &[
                col("users", "email", 114, Format::Text),
                computed(114, Format::Binary),
                computed(3802, Format::Text),
                computed(3802, Format::Binary),
            ],
        )
        .unwrap();
    assert_eq!(
        plan.actions(),
        &[
            ColumnAction::Refuse,
            ColumnAction::Detect,
            ColumnAction::Detect,
            ColumnAction::DetectJsonb
        ]
    );
    let mut out = Vec::new();
    let binary = b"\x01{\"to\":\"jane@example.com\"}";
    assert_eq!(plan.mask_value(3, binary, &mut out), MaskOutcome::Replaced);
    assert_eq!(out, b"\x01{\"to\":\"j***@example.com\"}".to_vec());
    assert_eq!(plan.mask_value(3, b"\x02{}", &mut out), MaskOutcome::Refuse);
    assert_eq!(
        run(&plan, 1, r#"{"to":"jane@example.com"}"#),
        (MaskOutcome::Replaced, r#"{"to":"j***@example.com"}"#.into())
    );
}
