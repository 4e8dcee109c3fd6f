//! Masking strategies: how one sensitive value (or one detected span) is rewritten.
//!
//! Every strategy writes its result into a caller-owned buffer and works on characters, never on
//! bytes, so multi-byte UTF-8 is never split. Input that is not UTF-8 is treated as opaque: `partial`
//! and `email` then fall back to `redact` (their output would otherwise be built from bytes that
//! may carry the secret in a form we cannot count characters of).

use ring::hmac;

/// Fixed replacement text of `redact` (and of strategies falling back to it).
pub const REDACTED: &[u8] = b"****";

/// The character that replaces hidden characters in `partial` and `email`.
const FILL: char = '*';

/// How a keyed hash is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashEncoding {
    /// 64 lowercase hex digits (the documented default).
    #[default]
    Hex,
    /// 43 characters of unpadded standard base64.
    Base64,
}

/// The key of the `hash` strategy (HMAC-SHA-256). Its bytes are never printed.
#[derive(Clone)]
pub struct HashKey {
    key: hmac::Key,
    encoding: HashEncoding,
}

impl HashKey {
    /// A key from the Secret's bytes, writing hashes in `encoding`.
    pub fn new(secret: &[u8], encoding: HashEncoding) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            encoding,
        }
    }

    /// Appends the keyed hash of `value` to `out`.
    pub fn write(&self, value: &[u8], out: &mut Vec<u8>) {
        let tag = hmac::sign(&self.key, value);
        match self.encoding {
            HashEncoding::Hex => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for byte in tag.as_ref() {
                    out.push(HEX[usize::from(byte >> 4)]);
                    out.push(HEX[usize::from(byte & 0x0f)]);
                }
            }
            HashEncoding::Base64 => base64_unpadded(tag.as_ref(), out),
        }
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashKey")
            .field("key", &"<redacted>")
            .field("encoding", &self.encoding)
            .finish()
    }
}

fn base64_unpadded(bytes: &[u8], out: &mut Vec<u8>) {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for sextet in sextets.iter().take(chunk.len() + 1) {
            out.push(TABLE[*sextet as usize]);
        }
    }
}

/// A strategy with its parameters, as compiled from a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Replace with [`REDACTED`].
    Redact,
    /// Keep `keep_first` and `keep_last` characters, `*` for each one in between.
    Partial {
        /// Characters kept at the start.
        keep_first: usize,
        /// Characters kept at the end.
        keep_last: usize,
    },
    /// Keyed hash (HMAC-SHA-256).
    Hash,
    /// SQL NULL.
    Null,
    /// `j***@example.com`: the first character and the domain are kept.
    Email,
}

impl Mask {
    /// A bounded label for metrics and audit events.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Partial { .. } => "partial",
            Self::Hash => "hash",
            Self::Null => "null",
            Self::Email => "email",
        }
    }

    /// Appends the masked form of `value` to `out`; returns `false` for [`Mask::Null`] (the caller
    /// sends SQL NULL) or for `hash` without a key (the caller must not send the value).
    pub fn apply(&self, value: &[u8], key: Option<&HashKey>, out: &mut Vec<u8>) -> bool {
        match *self {
            Self::Redact => out.extend_from_slice(REDACTED),
            Self::Null => return false,
            Self::Hash => match key {
                Some(key) => key.write(value, out),
                None => return false,
            },
            Self::Partial {
                keep_first,
                keep_last,
            } => match std::str::from_utf8(value) {
                Ok(text) => partial(text, keep_first, keep_last, out),
                Err(_) => out.extend_from_slice(REDACTED),
            },
            Self::Email => match std::str::from_utf8(value) {
                Ok(text) => email(text, out),
                Err(_) => out.extend_from_slice(REDACTED),
            },
        }
        true
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Keeps at most `keep_first` + `keep_last` characters, and never more than half of the value
/// (rounded down): a short value must not come back nearly whole.
fn partial(text: &str, keep_first: usize, keep_last: usize, out: &mut Vec<u8>) {
    let count = text.chars().count();
    let budget = count / 2;
    let first = keep_first.min(budget);
    let last = keep_last.min(budget - first);
    for (i, c) in text.chars().enumerate() {
        if i < first || i >= count - last {
            push_char(out, c);
        } else {
            push_char(out, FILL);
        }
    }
}

/// `jane@example.com` -> `j***@example.com`; anything without a usable `local@domain` shape is
/// redacted whole.
fn email(text: &str, out: &mut Vec<u8>) {
    match text.rsplit_once('@') {
        Some((local, domain)) if !domain.is_empty() && local.chars().count() >= 2 => {
            if let Some(first) = local.chars().next() {
                push_char(out, first);
            }
            out.extend_from_slice(b"***@");
            out.extend_from_slice(domain.as_bytes());
        }
        Some((_, domain)) if !domain.is_empty() => {
            out.extend_from_slice(b"***@");
            out.extend_from_slice(domain.as_bytes());
        }
        _ => out.extend_from_slice(REDACTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(mask: Mask, value: &str) -> String {
        let key = HashKey::new(b"k", HashEncoding::Hex);
        let mut out = Vec::new();
        assert!(mask.apply(value.as_bytes(), Some(&key), &mut out));
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn redact_and_null() {
        assert_eq!(masked(Mask::Redact, "secret"), "****");
        assert!(!Mask::Null.apply(b"x", None, &mut Vec::new()));
    }

    #[test]
    fn partial_counts_characters_and_never_keeps_more_than_half() {
        let last4 = Mask::Partial {
            keep_first: 0,
            keep_last: 4,
        };
        assert_eq!(masked(last4, "4111111111111111"), "************1111");
        assert_eq!(masked(last4, "héllo wörld"), "*******örld");
        assert_eq!(masked(last4, "abc"), "**c");
        assert_eq!(masked(last4, ""), "");
        let both = Mask::Partial {
            keep_first: 2,
            keep_last: 2,
        };
        assert_eq!(masked(both, "ääbbccdd"), "ää****dd");
        let mut out = Vec::new();
        assert!(last4.apply(&[0xff, 0xfe, 0x41], None, &mut out));
        assert_eq!(out, REDACTED);
    }

    #[test]
    fn email_keeps_first_letter_and_domain() {
        assert_eq!(masked(Mask::Email, "jane@example.com"), "j***@example.com");
        assert_eq!(masked(Mask::Email, "j@example.com"), "***@example.com");
        assert_eq!(masked(Mask::Email, "not-an-email"), "****");
        assert_eq!(masked(Mask::Email, "jane@"), "****");
    }

    #[test]
    fn hash_is_keyed_stable_and_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let key = HashKey::new(b"Jefe", HashEncoding::Hex);
        let mut out = Vec::new();
        key.write(b"what do ya want for nothing?", &mut out);
        assert_eq!(
            out,
            b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".to_vec()
        );
        assert_eq!(masked(Mask::Hash, "a"), masked(Mask::Hash, "a"));
        assert_ne!(masked(Mask::Hash, "a"), masked(Mask::Hash, "b"));
        let other = HashKey::new(b"other", HashEncoding::Hex);
        let mut again = Vec::new();
        other.write(b"what do ya want for nothing?", &mut again);
        assert_ne!(out, again);
        assert!(!Mask::Hash.apply(b"x", None, &mut Vec::new()));
    }

    #[test]
    fn base64_hash_is_43_characters() {
        let key = HashKey::new(b"Jefe", HashEncoding::Base64);
        let mut out = Vec::new();
        key.write(b"what do ya want for nothing?", &mut out);
        assert_eq!(out, b"W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM".to_vec());
    }
}
