//! Digit-shaped detectors: card numbers (Luhn), IBANs (mod-97), US SSNs and phone numbers.

use std::ops::Range;

use super::{free_after, free_before};

/// Card numbers: 13 to 19 digits, optionally grouped by single spaces or dashes, starting with a
/// known issuer prefix and passing Luhn.
///
/// Every group start is tried, and from each start every group end from the longest down, so a
/// card next to other numbers (`qty 2 4111 1111 1111 1111 x 3`) is still found. At most 19 digits
/// are read per start, so the work stays linear in the value's length.
pub(super) fn card(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i < text.len() {
        let group_start = text[i].is_ascii_digit()
            && (free_before(text, i) || i >= 1 && matches!(text[i - 1], b' ' | b'-'));
        if !group_start || (i > 0 && text[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        // Group ends (exclusive) and the digit count up to each, at most 19 digits.
        let mut ends = [(0usize, 0usize); 20];
        let mut n = 0;
        let mut digits = 0usize;
        let mut j = i;
        while j < text.len() && digits < 20 {
            match text[j] {
                b'0'..=b'9' => {
                    digits += 1;
                    j += 1;
                    if !text.get(j).is_some_and(u8::is_ascii_digit) && n < ends.len() {
                        ends[n] = (j, digits);
                        n += 1;
                    }
                }
                b' ' | b'-' if text.get(j + 1).is_some_and(u8::is_ascii_digit) => j += 1,
                _ => break,
            }
        }
        let found = ends[..n].iter().rev().find(|(end, count)| {
            (13..=19).contains(count)
                && free_after(text, *end)
                && known_issuer(&text[i..*end])
                && luhn(&text[i..*end])
        });
        if let Some((end, _)) = found {
            return Some(i..*end);
        }
        i += 1;
    }
    None
}

/// Issuer prefixes of the card networks (Visa 4; Mastercard 51-55 and 2221-2720; Mir 2200-2204;
/// Amex 34, 37; Diners 30, 36, 38; JCB 35; Discover, UnionPay and Maestro 5x and 6x). One in ten
/// random long numbers passes Luhn; the prefix keeps ids such as `1700000000000000001` apart.
fn known_issuer(candidate: &[u8]) -> bool {
    let mut digits = candidate.iter().filter(|b| b.is_ascii_digit());
    let mut next = || digits.next().map_or(0, |d| u32::from(d - b'0'));
    let (a, b, c, d) = (next(), next(), next(), next());
    match a {
        4..=6 => true,
        3 => matches!(b, 0 | 4..=8),
        2 => (2200..=2720).contains(&(a * 1000 + b * 100 + c * 10 + d)),
        _ => false,
    }
}

/// The Luhn checksum over the digits of `candidate` (separators ignored).
pub(crate) fn luhn(candidate: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for b in candidate.iter().rev().filter(|b| b.is_ascii_digit()) {
        let mut d = u32::from(b - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// IBANs: two letters, two check digits, 11 to 30 letters or digits, either contiguous or in
/// groups of four separated by single spaces; the ISO 13616 mod-97 check must give 1.
pub(super) fn iban(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i + 15 <= text.len() {
        let head = &text[i..i + 4];
        let plausible = head[0].is_ascii_uppercase()
            && head[1].is_ascii_uppercase()
            && head[2].is_ascii_digit()
            && head[3].is_ascii_digit()
            && free_before(text, i);
        if plausible && let Some(end) = iban_end(text, i) {
            return Some(i..end);
        }
        i += 1;
    }
    None
}

/// The end of a valid IBAN starting at `start`, trying the grouped form and then the contiguous one.
fn iban_end(text: &[u8], start: usize) -> Option<usize> {
    // Contiguous: the whole alphanumeric run.
    let run = text[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if (15..=34).contains(&run) && free_after(text, start + run) && mod97(&text[start..start + run])
    {
        return Some(start + run);
    }
    if run != 4 {
        return None;
    }
    // Grouped: "DE89 3704 0044 0532 0130 00".
    let mut end = start + 4;
    let mut chars = 4;
    let mut candidates = [0usize; 9];
    let mut n = 0;
    while chars < 34 && text.get(end) == Some(&b' ') {
        let group = text[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if group == 0 || group > 4 || chars + group > 34 {
            break;
        }
        end += 1 + group;
        chars += group;
        if n < candidates.len() {
            candidates[n] = end;
            n += 1;
        }
        if group < 4 {
            break;
        }
    }
    candidates[..n].iter().rev().copied().find(|&e| {
        let len = text[start..e].iter().filter(|b| **b != b' ').count();
        (15..=34).contains(&len) && free_after(text, e) && mod97(&text[start..e])
    })
}

/// ISO 13616: move the first four characters to the end, letters to 10..35, remainder mod 97 is 1.
pub(crate) fn mod97(candidate: &[u8]) -> bool {
    let chars = || candidate.iter().copied().filter(|b| *b != b' ');
    let mut remainder = 0u32;
    for b in chars().skip(4).chain(chars().take(4)) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'a'..=b'z' => u32::from(b - b'a') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// US social security numbers written `AAA-GG-SSSS`, excluding numbers never issued: area 000,
/// 666 or 900-999, group 00, serial 0000.
pub(super) fn ssn(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i + 11 <= text.len() {
        let c = &text[i..i + 11];
        let shape = c.iter().enumerate().all(|(k, b)| match k {
            3 | 6 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
        if shape && free_before(text, i) && free_after(text, i + 11) && !glued_dash(text, i, i + 11)
        {
            let area = number(&c[0..3]);
            let group = number(&c[4..6]);
            let serial = number(&c[7..11]);
            if area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 {
                return Some(i..i + 11);
            }
        }
        i += 1;
    }
    None
}

/// True when a dash and a digit continue the candidate on either side (`1-123-45-6789`).
fn glued_dash(text: &[u8], start: usize, end: usize) -> bool {
    let before = start >= 2 && text[start - 1] == b'-' && text[start - 2].is_ascii_digit();
    let after = text.get(end) == Some(&b'-') && text.get(end + 1).is_some_and(u8::is_ascii_digit);
    before || after
}

fn number(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |n, d| n * 10 + u32::from(d.saturating_sub(b'0')))
}

/// Phone numbers, conservatively: international `+` followed by 8 to 15 digits (spaces, dashes,
/// dots and one pair of parentheses allowed between digits), or the North American shapes
/// `(555) 123-4567`, `555-123-4567`, `555.123.4567`, `555 123 4567` (one separator kind).
/// Bare digit runs are never phone numbers here: too many ids and amounts look like one.
pub(super) fn phone(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i < text.len() {
        let b = text[i];
        let found = if b == b'+' && (i == 0 || !super::is_word(text[i - 1]) && text[i - 1] != b'+')
        {
            international(text, i)
        } else if (b == b'(' || b.is_ascii_digit()) && free_before(text, i) && !digit_left(text, i)
        {
            north_american(text, i)
        } else {
            None
        };
        if let Some(end) = found {
            return Some(i..end);
        }
        i += 1;
    }
    None
}

/// True when a digit and a separator precede `i` (inside a longer number).
fn digit_left(text: &[u8], i: usize) -> bool {
    i >= 2 && matches!(text[i - 1], b'-' | b'.' | b' ') && text[i - 2].is_ascii_digit()
}

fn international(text: &[u8], start: usize) -> Option<usize> {
    let mut digits = 0;
    let mut end = start + 1;
    let mut j = start + 1;
    let mut parens = false;
    while j < text.len() {
        match text[j] {
            b'0'..=b'9' => {
                digits += 1;
                j += 1;
                end = j;
            }
            b' ' | b'-' | b'.'
                if digits > 0
                    && text
                        .get(j + 1)
                        .is_some_and(|n| n.is_ascii_digit() || *n == b'(') =>
            {
                j += 1
            }
            b'(' if !parens && digits > 0 => {
                parens = true;
                j += 1;
            }
            b')' if parens && text.get(j - 1).is_some_and(u8::is_ascii_digit) => j += 1,
            _ => break,
        }
        if digits > 15 {
            return None;
        }
    }
    ((8..=15).contains(&digits) && free_after(text, end)).then_some(end)
}

fn north_american(text: &[u8], start: usize) -> Option<usize> {
    let t = &text[start..];
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // (555) 123-4567 / (555) 123 4567
    if t.len() >= 14
        && t[0] == b'('
        && digits(&t[1..4])
        && t[4] == b')'
        && t[5] == b' '
        && digits(&t[6..9])
        && matches!(t[9], b'-' | b' ')
        && digits(&t[10..14])
    {
        let end = start + 14;
        return (free_after(text, end) && !dash_digit(text, end)).then_some(end);
    }
    if t.len() >= 12
        && digits(&t[0..3])
        && matches!(t[3], b'-' | b'.' | b' ')
        && t[7] == t[3]
        && digits(&t[4..7])
        && digits(&t[8..12])
    {
        let end = start + 12;
        return (free_after(text, end) && !dash_digit(text, end)).then_some(end);
    }
    None
}

/// True when a separator and a digit follow `end` (the candidate is part of a longer number).
fn dash_digit(text: &[u8], end: usize) -> bool {
    matches!(text.get(end), Some(b'-' | b'.' | b' '))
        && text.get(end + 1).is_some_and(u8::is_ascii_digit)
}
