//! The few JSON writers the hot path needs, byte for byte what `serde_json` writes (the canonical
//! bytes are defined by it; `tests/render.rs` checks the two agree on any string).
//!
//! Most strings in an event need no escaping (ids, hashes, times, names, SQL), so a string is
//! first checked in one branch-free pass and copied whole; only one with a quote, a backslash or
//! a control character is escaped byte by byte.

/// Appends `s` as a JSON string, quotes included.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // A fold rather than `any`: no early exit, so the compiler checks many bytes at once.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if plain {
        out.extend_from_slice(bytes);
    } else {
        escape(out, bytes);
    }
    out.push(b'"');
}

/// `serde_json`'s escaping: the short forms it uses, `\u00xx` (lowercase) for the other
/// control characters, everything else (also DEL and non-ASCII) as it is.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

/// Appends `n` in decimal.
pub(crate) fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `,"<key>":`; `key` is one of the schema's names, which need no escaping.
pub(crate) fn key(out: &mut Vec<u8>, key: &str) {
    out.reserve(key.len() + 4);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends `["a","b"]`.
pub(crate) fn strings(out: &mut Vec<u8>, items: &[impl AsRef<str>]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item.as_ref());
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let samples = [
            String::new(),
            "plain SELECT 1".to_owned(),
            "quote \" backslash \\ slash /".to_owned(),
            "\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f} é😀".to_owned(),
            (0u8..0x80).map(char::from).collect(),
        ];
        for s in samples {
            let mut ours = Vec::new();
            string(&mut ours, &s);
            let theirs = serde_json::to_vec(&s).unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }
}
