//! Text-shaped detectors: email addresses, IP addresses, JWTs and API keys with known prefixes.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::str::FromStr;

use super::{free_after, free_before, is_word};

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Email addresses: `local@domain.tld`, the top-level domain two or more letters.
pub(super) fn email(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut at = from;
    while let Some(offset) = text.get(at..)?.iter().position(|b| *b == b'@') {
        let pos = at + offset;
        at = pos + 1;
        // Local part: up to 64 characters to the left, not before `from`.
        let mut start = pos;
        while start > from && pos - start < 64 && is_local(text[start - 1]) {
            start -= 1;
        }
        while start < pos && matches!(text[start], b'.' | b'-' | b'+') {
            start += 1;
        }
        if start == pos {
            continue;
        }
        // Domain: labels to the right, trailing dots and dashes trimmed.
        let mut end = pos + 1;
        while end < text.len() && end - pos <= 253 && is_domain(text[end]) {
            end += 1;
        }
        while end > pos + 1 && matches!(text[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[pos + 1..end];
        let Some(dot) = domain.iter().rposition(|b| *b == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        let labels_ok = domain.split(|b| *b == b'.').all(|l| !l.is_empty());
        if tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && labels_ok {
            return Some(start..end);
        }
    }
    None
}

/// IPv4 (dotted quad, no leading zeros) and IPv6 addresses, parsed with the standard library.
pub(super) fn ip(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i < text.len() {
        let b = text[i];
        let boundary = i == 0 || !(is_word(text[i - 1]) || matches!(text[i - 1], b'.' | b':'));
        if boundary && (b.is_ascii_hexdigit() || b == b':') {
            let run = text[i..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit() || matches!(c, b'.' | b':'))
                .count();
            let mut end = i + run;
            while end > i && matches!(text[end - 1], b'.') {
                end -= 1;
            }
            if free_after(text, end) && parses_as_ip(&text[i..end]) {
                return Some(i..end);
            }
            i += run.max(1);
        } else {
            i += 1;
        }
    }
    None
}

fn parses_as_ip(candidate: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(candidate) else {
        return false;
    };
    let colons = candidate.iter().filter(|b| **b == b':').count();
    if colons >= 2 {
        Ipv6Addr::from_str(s).is_ok()
    } else {
        colons == 0 && Ipv4Addr::from_str(s).is_ok()
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

/// JWTs: three base64url segments joined by dots, header and payload both JSON objects (`eyJ`).
pub(super) fn jwt(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while let Some(offset) = find(text.get(i..)?, b"eyJ") {
        let start = i + offset;
        i = start + 3;
        if start > 0 && is_b64url(text[start - 1]) {
            continue;
        }
        let header = segment(text, start);
        if header - start < 10 || text.get(header) != Some(&b'.') {
            continue;
        }
        if !text[header + 1..].starts_with(b"eyJ") {
            continue;
        }
        let payload = segment(text, header + 1);
        if payload - header - 1 < 10 || text.get(payload) != Some(&b'.') {
            continue;
        }
        let signature = segment(text, payload + 1);
        if text.get(signature) == Some(&b'.') {
            continue;
        }
        return Some(start..signature);
    }
    None
}

fn segment(text: &[u8], start: usize) -> usize {
    start + text[start..].iter().take_while(|b| is_b64url(**b)).count()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Known API-key shapes: prefix, the characters that may follow, and the length of that tail.
struct KeyShape {
    prefix: &'static [u8],
    tail: fn(u8) -> bool,
    min: usize,
    max: usize,
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn upper_alnum(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

fn token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

const SHAPES: &[KeyShape] = &[
    KeyShape {
        prefix: b"sk_live_",
        tail: alnum,
        min: 16,
        max: 256,
    },
    KeyShape {
        prefix: b"sk_test_",
        tail: alnum,
        min: 16,
        max: 256,
    },
    KeyShape {
        prefix: b"rk_live_",
        tail: alnum,
        min: 16,
        max: 256,
    },
    KeyShape {
        prefix: b"rk_test_",
        tail: alnum,
        min: 16,
        max: 256,
    },
    KeyShape {
        prefix: b"whsec_",
        tail: alnum,
        min: 24,
        max: 256,
    },
    KeyShape {
        prefix: b"AKIA",
        tail: upper_alnum,
        min: 16,
        max: 16,
    },
    KeyShape {
        prefix: b"ASIA",
        tail: upper_alnum,
        min: 16,
        max: 16,
    },
    KeyShape {
        prefix: b"ghp_",
        tail: alnum,
        min: 36,
        max: 255,
    },
    KeyShape {
        prefix: b"gho_",
        tail: alnum,
        min: 36,
        max: 255,
    },
    KeyShape {
        prefix: b"ghu_",
        tail: alnum,
        min: 36,
        max: 255,
    },
    KeyShape {
        prefix: b"ghs_",
        tail: alnum,
        min: 36,
        max: 255,
    },
    KeyShape {
        prefix: b"ghr_",
        tail: alnum,
        min: 36,
        max: 255,
    },
    KeyShape {
        prefix: b"github_pat_",
        tail: token,
        min: 22,
        max: 255,
    },
    KeyShape {
        prefix: b"glpat-",
        tail: token,
        min: 20,
        max: 255,
    },
    KeyShape {
        prefix: b"xoxb-",
        tail: token,
        min: 10,
        max: 255,
    },
    KeyShape {
        prefix: b"xoxp-",
        tail: token,
        min: 10,
        max: 255,
    },
    KeyShape {
        prefix: b"xoxa-",
        tail: token,
        min: 10,
        max: 255,
    },
    KeyShape {
        prefix: b"xoxr-",
        tail: token,
        min: 10,
        max: 255,
    },
    KeyShape {
        prefix: b"xoxs-",
        tail: token,
        min: 10,
        max: 255,
    },
    KeyShape {
        prefix: b"AIza",
        tail: token,
        min: 35,
        max: 35,
    },
    KeyShape {
        prefix: b"sk-",
        tail: token,
        min: 32,
        max: 255,
    },
];

/// API keys with a known prefix (Stripe, AWS access key ids, GitHub, GitLab, Slack, Google,
/// OpenAI-style `sk-`). Generic high-entropy strings are out of scope.
pub(super) fn api_key(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i < text.len() {
        if free_before(text, i) && (i == 0 || text[i - 1] != b'-') {
            for shape in SHAPES {
                if !text[i..].starts_with(shape.prefix) {
                    continue;
                }
                let tail_start = i + shape.prefix.len();
                let tail = text[tail_start..]
                    .iter()
                    .take(shape.max + 1)
                    .take_while(|b| (shape.tail)(**b))
                    .count();
                let end = tail_start + tail;
                if (shape.min..=shape.max).contains(&tail) && free_after(text, end) {
                    return Some(i..end);
                }
            }
        }
        i += 1;
    }
    None
}
