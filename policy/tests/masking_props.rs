//! Properties of masking: it never panics, and masked values never carry the original.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbwarden_crds::policy::{Detector, Strategy as S};
use dbwarden_crds::{DatabaseAccessPolicySpec, Operation, Subjects};
use dbwarden_policy::mask::{
    ColumnSource, Format, HashEncoding, HashKey, Mask, MaskOutcome, MaskPlan, ResultColumn,
};
use dbwarden_policy::{CompiledPolicy, Identity};
use proptest::prelude::*;

const DETECTORS: [Detector; 8] = [
    Detector::Email,
    Detector::Phone,
    Detector::CardNumber,
    Detector::Iban,
    Detector::Ssn,
    Detector::IpAddress,
    Detector::Jwt,
    Detector::ApiKey,
];

/// A plan with one column per strategy, and a computed column scanned by every detector.
fn plan(detector_strategy: S) -> MaskPlan {
    let mut builder = DatabaseAccessPolicySpec::builder().allow(
        "read",
        Subjects::service_accounts(["api"]),
        [Operation::Read],
        [],
    );
    for (column, strategy) in [
        ("a", S::Redact),
        ("b", S::Hash),
        ("c", S::Null),
        ("d", S::Partial),
        ("e", S::Email),
    ] {
        builder = builder.mask(&format!("t.{column}"), strategy);
    }
    for kind in DETECTORS {
        let strategy = if kind != Detector::Email && detector_strategy == S::Email {
            S::Redact
        } else {
            detector_strategy
        };
        builder = builder.detect(kind, strategy);
    }
    let policy = CompiledPolicy::compile("shop", "p", &builder.build())
        .unwrap()
        .with_hash_key(HashKey::new(b"property-key", HashEncoding::Hex));
    let column = |name: &'static str| ResultColumn {
        source: Some(ColumnSource {
            schema: "public",
            table: "t",
            column: name,
        }),
        type_oid: 25,
        format: Format::Text,
    };
    let computed = ResultColumn {
        source: None,
        type_oid: 25,
        format: Format::Text,
    };
    policy
        .mask_plan(
            &Identity::service_account("shop", "api"),
            &[
                column("a"),
                column("b"),
                column("c"),
                column("d"),
                column("e"),
                computed,
            ],
        )
        .unwrap()
}

fn strategy() -> impl Strategy<Value = S> {
    prop_oneof![
        Just(S::Redact),
        Just(S::Hash),
        Just(S::Null),
        Just(S::Partial),
        Just(S::Email),
    ]
}

/// A Visa-like card number (prefix 4) with a valid Luhn digit.
fn card() -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..10, 14).prop_map(|tail| {
        let digits: Vec<u8> = std::iter::once(4).chain(tail).collect();
        let mut sum = 0;
        for (i, d) in digits.iter().rev().enumerate() {
            let mut d = u32::from(*d);
            if i % 2 == 0 {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
        }
        let check = (10 - sum % 10) % 10;
        let mut text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        text.push(char::from_digit(check, 10).unwrap());
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn masking_never_panics(value in proptest::collection::vec(any::<u8>(), 0..600), s in strategy()) {
        let plan = plan(s);
        let mut out = Vec::new();
        for column in 0..7 {
            let outcome = plan.mask_value(column, &value, &mut out);
            if outcome != MaskOutcome::Replaced {
                prop_assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn text_never_panics(value in "\\PC{0,300}", s in strategy()) {
        let plan = plan(s);
        let mut out = Vec::new();
        for column in 0..6 {
            let _ = plan.mask_value(column, value.as_bytes(), &mut out);
        }
    }

    #[test]
    fn redact_hash_and_null_never_carry_the_value(
        value in "[a-zA-Z0-9@._ -]{0,20}[g-zG-Z@._ -][a-zA-Z0-9@._ -]{4,40}",
    ) {
        let plan = plan(S::Redact);
        let mut out = Vec::new();
        prop_assert_eq!(plan.mask_value(0, value.as_bytes(), &mut out), MaskOutcome::Replaced);
        prop_assert!(!contains(&out, value.as_bytes()));
        prop_assert_eq!(plan.mask_value(1, value.as_bytes(), &mut out), MaskOutcome::Replaced);
        prop_assert!(!contains(&out, value.as_bytes()));
        prop_assert_eq!(out.len(), 64);
        prop_assert_eq!(plan.mask_value(2, value.as_bytes(), &mut out), MaskOutcome::Null);
        prop_assert!(out.is_empty());
        for mask in [Mask::Redact, Mask::Hash] {
            let mut direct = Vec::new();
            let key = HashKey::new(b"k", HashEncoding::Base64);
            prop_assert!(mask.apply(value.as_bytes(), Some(&key), &mut direct));
            prop_assert!(!contains(&direct, value.as_bytes()));
        }
    }

    #[test]
    fn detected_cards_never_leave(
        card in card(),
        prefix in "[a-z ]{0,20}",
        suffix in "[a-z ]{0,20}",
        s in prop_oneof![Just(S::Redact), Just(S::Hash), Just(S::Null)],
    ) {
        let text = format!("{prefix} {card} {suffix}");
        let plan = plan(s);
        let mut out = Vec::new();
        match plan.mask_value(5, text.as_bytes(), &mut out) {
            MaskOutcome::Replaced => prop_assert!(!contains(&out, card.as_bytes())),
            MaskOutcome::Null => prop_assert!(out.is_empty()),
            other => prop_assert!(false, "card not masked: {other:?} for {text:?}"),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
