//! Value detectors: find sensitive values inside text, so that only the matched spans are masked.
//!
//! Every detector is a forward scanner over bytes (the patterns are ASCII; UTF-8 text passes
//! through untouched around them), returning the next match at or after a position. They are
//! deliberately conservative: a match must stand alone (not glued to letters or digits) and,
//! where the format has one, pass its checksum (Luhn for cards, mod-97 for IBANs). Work is linear
//! in the value's length.

mod numbers;
mod text;

use std::ops::Range;

use dbwarden_crds::policy::Detector;

/// Finds the next value of `kind` in `text` starting at or after `from`.
pub fn find(kind: Detector, text: &[u8], from: usize) -> Option<Range<usize>> {
    match kind {
        Detector::Email => text::email(text, from),
        Detector::Phone => numbers::phone(text, from),
        Detector::CardNumber => numbers::card(text, from),
        Detector::Iban => numbers::iban(text, from),
        Detector::Ssn => numbers::ssn(text, from),
        Detector::IpAddress => text::ip(text, from),
        Detector::Jwt => text::jwt(text, from),
        Detector::ApiKey => text::api_key(text, from),
    }
}

/// A bounded label for metrics and audit events.
pub fn label(kind: Detector) -> &'static str {
    match kind {
        Detector::Email => "email",
        Detector::Phone => "phone",
        Detector::CardNumber => "card_number",
        Detector::Iban => "iban",
        Detector::Ssn => "ssn",
        Detector::IpAddress => "ip_address",
        Detector::Jwt => "jwt",
        Detector::ApiKey => "api_key",
    }
}

/// Letters, digits and `_`: characters that glue a candidate to its neighbours.
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// True when the byte before `start` (if any) does not glue to the candidate.
pub(crate) fn free_before(text: &[u8], start: usize) -> bool {
    start == 0 || text.get(start - 1).is_none_or(|b| !is_word(*b))
}

/// True when the byte at `end` (if any) does not glue to the candidate.
pub(crate) fn free_after(text: &[u8], end: usize) -> bool {
    text.get(end).is_none_or(|b| !is_word(*b))
}

#[cfg(test)]
mod tests;
