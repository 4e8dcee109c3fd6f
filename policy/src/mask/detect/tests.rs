use dbwarden_crds::policy::Detector;

use super::find;
use super::numbers::{luhn, mod97};

/// Every match of `kind` in `text`, as strings.
fn all(kind: Detector, text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(range) = find(kind, bytes, at) {
        assert!(
            range.start >= at && range.end > range.start,
            "{kind:?} {text:?}"
        );
        found.push(text[range.clone()].to_owned());
        at = range.end;
    }
    found
}

fn check(kind: Detector, positives: &[(&str, &str)], negatives: &[&str]) {
    for (text, expected) in positives {
        assert_eq!(
            all(kind, text),
            vec![expected.to_string()],
            "{kind:?} in {text:?}"
        );
    }
    for text in negatives {
        assert_eq!(
            all(kind, text),
            Vec::<String>::new(),
            "{kind:?} in {text:?}"
        );
    }
}

#[test]
fn emails() {
    check(
        Detector::Email,
        &[
            ("jane.doe+tag@example.com", "jane.doe+tag@example.com"),
            (
                "contact: <bob@mail.example.co.uk>.",
                "bob@mail.example.co.uk",
            ),
            ("x,j@ex-ample.org,y", "j@ex-ample.org"),
        ],
        &[
            "@example.com",
            "jane@",
            "jane@localhost",
            "a@b.c",
            "user@host.123",
            "no at sign",
        ],
    );
    assert_eq!(all(Detector::Email, "a@x.io b@y.io").len(), 2);
}

#[test]
fn card_numbers_need_luhn() {
    check(
        Detector::CardNumber,
        &[
            ("4111111111111111", "4111111111111111"),
            ("card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
            ("5500-0000-0000-0004", "5500-0000-0000-0004"),
            ("amex 378282246310005.", "378282246310005"),
        ],
        &[
            "4111111111111112",
            // Luhn-valid, but no card network issues numbers starting with 1, 7, 8 or 9.
            "1000000000000008",
            "7992739871300008",
            "4111 1111 1111 1112",
            "order 12345678901234567890123",
            "id4111111111111111",
            "411111111111",
        ],
    );
    assert!(luhn(b"79927398713"));
    assert!(!luhn(b"79927398710"));
}

#[test]
fn ibans_need_their_checksum() {
    check(
        Detector::Iban,
        &[
            ("GB82WEST12345698765432", "GB82WEST12345698765432"),
            (
                "pay DE89 3704 0044 0532 0130 00 today",
                "DE89 3704 0044 0532 0130 00",
            ),
            ("FR1420041010050500013M02606", "FR1420041010050500013M02606"),
        ],
        &[
            "GB82WEST12345698765433",
            "DE88 3704 0044 0532 0130 00",
            "XX00",
            "GB82WEST1234",
        ],
    );
    assert!(mod97(b"GB82WEST12345698765432"));
}

#[test]
fn ssns_exclude_never_issued_ranges() {
    check(
        Detector::Ssn,
        &[("ssn 123-45-6789.", "123-45-6789")],
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "1-123-45-6789",
            "123-45-67890",
        ],
    );
}

#[test]
fn phones_are_conservative() {
    check(
        Detector::Phone,
        &[
            ("call +1 415 555 2671 now", "+1 415 555 2671"),
            ("+442071838750", "+442071838750"),
            ("+49 (30) 1234-5678", "+49 (30) 1234-5678"),
            ("(415) 555-2671", "(415) 555-2671"),
            ("tel 415-555-2671", "415-555-2671"),
            ("415.555.2671", "415.555.2671"),
        ],
        &[
            "4155552671",
            "+123",
            "2024-01-15",
            "415-555.2671",
            "1-415-555-2671-9",
            "v1.2.3",
        ],
    );
}

#[test]
fn ip_addresses() {
    check(
        Detector::IpAddress,
        &[
            ("from 10.0.0.1.", "10.0.0.1"),
            ("host=192.168.1.254;", "192.168.1.254"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::1", "::1"),
            ("fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
        ],
        &[
            "999.1.1.1",
            "1.2.3",
            "v1.2.3.4",
            "01.2.3.4",
            "12:30:45",
            "std::fmt",
            "version 1.2.3.4.5",
        ],
    );
}

#[test]
fn jwts() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlX2hlcmU";
    check(
        Detector::Jwt,
        &[(&format!("Bearer {token} x"), token)],
        &[
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.notjson.sig",
            "abc.def.ghi",
            "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig",
        ],
    );
}

#[test]
fn api_keys() {
    let stripe = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    let aws = "AKIAIOSFODNN7EXAMPLE";
    let github = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let slack = "xoxb-123456789012-abcdefghij";
    check(
        Detector::ApiKey,
        &[
            (&format!("key={stripe}"), stripe),
            (&format!("{aws} "), aws),
            (github, github),
            (slack, slack),
        ],
        &[
            "sk_live_short",
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "xAKIAIOSFODNN7EXAMPLE",
            "ghp_tooshort",
            "the task is done",
        ],
    );
}

#[test]
fn cards_next_to_other_numbers_are_still_found() {
    for (text, card) in [
        ("qty 2 4111 1111 1111 1111 x 3", "4111 1111 1111 1111"),
        ("4111111111111111 5", "4111111111111111"),
        ("12-4111111111111111", "4111111111111111"),
        ("7 7 7 5500-0000-0000-0004", "5500-0000-0000-0004"),
    ] {
        let at = text.find(card).unwrap();
        let covered = std::iter::successors(find(Detector::CardNumber, text.as_bytes(), 0), |r| {
            find(Detector::CardNumber, text.as_bytes(), r.end)
        })
        .any(|r| r.start <= at && r.end >= at + card.len());
        assert!(covered, "{text:?}");
    }
}
