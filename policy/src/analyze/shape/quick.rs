//! The shape key of a plain statement, read straight from its bytes.
//!
//! A statement whose exact text the cache has not seen (every literal variant of a hot statement
//! under `-M simple`) is tokenized only to find its shape, and sqlparser's tokenizer was about a
//! tenth of an enforcing sidecar's CPU doing it. [`key`] builds the same key without it, for texts
//! made only of tokens whose reading cannot be in doubt: ASCII words, `"quoted"` identifiers,
//! integers of at most 18 digits and `d.d` decimals, `'strings'` without a backslash,
//! `( ) , ; . ::`, the operators `= < > <= >= <> != + - * /` standing alone, spaces, tabs,
//! newlines, and `--` and `/* */` comments without a `+` (which could make them optimizer hints)
//! or a nested `/*`. At anything else it gives up and the caller tokenizes.
//!
//! It decides nothing of its own: a key it returns is, byte for byte, the key [`of`](super::of)
//! builds from the parser's tokens (property tests and the `shape` fuzz target in `sidecar/fuzz`
//! hold the two together, and debug builds check it whenever the quick key misses the cache).
//! So it cannot make two statements share an analysis that the parser's tokens would keep apart,
//! the rule the module above is built on.

use super::{MAX_ERASED_DIGITS, frame};

/// The shape key of `sql`, or `None` when `sql` holds anything outside the plain subset or its key
/// would be longer than `limit` bytes.
pub(crate) fn key(sql: &str, limit: usize) -> Option<String> {
    let bytes = sql.as_bytes();
    let mut key = String::with_capacity(sql.len().min(limit) + 16);
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        at = match byte {
            b' ' | b'\t' | b'\n' => {
                key.push(char::from(byte));
                at + 1
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let end = run(bytes, at, is_word_part);
                // A quote right after a word can make the word a prefix (`E'…'`, `B"…"`). What
                // else could go on a word (`$`, non-ASCII letters) ends the quick path below.
                if matches!(bytes.get(end), Some(b'\'' | b'"')) {
                    return None;
                }
                frame(&mut key, 'w', &sql[at..end]);
                end
            }
            b'0'..=b'9' => {
                let digits = run(bytes, at, |b| b.is_ascii_digit());
                let (end, marker) = if bytes.get(digits) == Some(&b'.') {
                    let fraction = run(bytes, digits + 1, |b| b.is_ascii_digit());
                    if fraction == digits + 1 {
                        // `1.` is kept exactly by `of`.
                        return None;
                    }
                    (fraction, "Ld")
                } else if digits - at > MAX_ERASED_DIGITS {
                    return None;
                } else {
                    (digits, "Ln")
                };
                // A letter or `_` would go on the number: `1e5`, `1_000`, `0x1F`, `1L`.
                if bytes.get(end).copied().is_some_and(is_word_part) {
                    return None;
                }
                key.push_str(marker);
                end
            }
            b'\'' => {
                let mut end = at + 1;
                loop {
                    match *bytes.get(end)? {
                        b'\'' if bytes.get(end + 1) == Some(&b'\'') => end += 2,
                        b'\'' => break,
                        // Read differently by a server without standard_conforming_strings.
                        b'\\' => return None,
                        _ => end += 1,
                    }
                }
                key.push_str("Ls");
                end + 1
            }
            b'"' => {
                let mut end = at + 1;
                let mut doubled = false;
                loop {
                    match *bytes.get(end)? {
                        b'"' if bytes.get(end + 1) == Some(&b'"') => {
                            doubled = true;
                            end += 2;
                        }
                        b'"' => break,
                        _ => end += 1,
                    }
                }
                let inner = &sql[at + 1..end];
                key.push_str("W\"");
                if doubled {
                    frame(&mut key, ':', &inner.replace("\"\"", "\""));
                } else {
                    frame(&mut key, ':', inner);
                }
                end + 1
            }
            // Comments whose text the key erases (see `of`); one that may be a hint, or holds
            // another comment's start (they nest), is left to the tokenizer.
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                let end = run(bytes, at, |b| !matches!(b, b'\n' | b'\r'));
                if bytes[at..end].contains(&b'+') {
                    return None;
                }
                frame(&mut key, 'c', "--");
                end
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                // Read as the tokenizer reads it: `/*` opens, `*/` closes, each two bytes taken
                // at once, so `/* a /*/` never closes.
                let mut end = at + 2;
                loop {
                    match (*bytes.get(end)?, bytes.get(end + 1)) {
                        (b'/', Some(b'*')) | (b'+', _) => return None,
                        (b'*', Some(b'/')) => break,
                        _ => end += 1,
                    }
                }
                key.push('C');
                end + 2
            }
            b'(' => kept(&mut key, "LParen", at + 1),
            b')' => kept(&mut key, "RParen", at + 1),
            b',' => kept(&mut key, "Comma", at + 1),
            b';' => kept(&mut key, "SemiColon", at + 1),
            // A period before a digit starts a number; before `_` the tokenizer looks back at the
            // token before it. Only the plain cases are taken.
            b'.' if bytes
                .get(at + 1)
                .is_some_and(|&next| next.is_ascii_alphabetic() || matches!(next, b'"' | b'*')) =>
            {
                kept(&mut key, "Period", at + 1)
            }
            b':' if bytes.get(at + 1) == Some(&b':') => kept(&mut key, "DoubleColon", at + 2),
            _ if is_operator_char(byte) => {
                // The whole run of operator characters must be one of the plain operators: the
                // tokenizer glues runs into longer operators and comments (`=-`, `<@`, `--`, `/*`).
                let end = run(bytes, at, is_operator_char);
                let name = match &bytes[at..end] {
                    b"=" => "Eq",
                    b"<" => "Lt",
                    b">" => "Gt",
                    b"<=" => "LtEq",
                    b">=" => "GtEq",
                    b"<>" | b"!=" => "Neq",
                    b"+" => "Plus",
                    b"-" => "Minus",
                    b"*" => "Mul",
                    b"/" => "Div",
                    _ => return None,
                };
                kept(&mut key, name, end)
            }
            _ => return None,
        };
        if key.len() > limit {
            return None;
        }
    }
    Some(key)
}

/// Writes a token `of` keeps by its `Debug` form, and returns where the text goes on.
fn kept(key: &mut String, debug: &str, end: usize) -> usize {
    key.push('o');
    key.push_str(debug);
    key.push('\0');
    end
}

/// The end of the run of bytes from `start` that satisfy `part`.
fn run(bytes: &[u8], start: usize, part: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(start..)
        .and_then(|rest| rest.iter().position(|&b| !part(b)))
        .map_or(bytes.len(), |offset| start + offset)
}

fn is_word_part(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Characters PostgreSQL builds operators from.
fn is_operator_char(byte: u8) -> bool {
    matches!(
        byte,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::super::super::fuzz::check_shape_keys;
    use super::super::super::lex::tokenize;
    use super::super::of;
    use super::*;

    const LIMIT: usize = 1 << 16;

    /// The key the parser's tokens give, when they give one.
    fn slow(sql: &str) -> Option<String> {
        of(&tokenize(sql).ok()?, LIMIT).map(|shape| shape.key)
    }

    #[track_caller]
    fn agrees(sql: &str) {
        assert_eq!(check_shape_keys(sql, LIMIT), Ok(()), "{sql:?}");
    }

    #[test]
    fn plain_statements_take_the_quick_path() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
            "UPDATE pgbench_accounts SET abalance = abalance + -4211 WHERE aid = 77;",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 9, 12, CURRENT_TIMESTAMP);",
            "SELECT u.id, u.\"Email\" FROM public.users u WHERE u.name <> 'it''s' AND u.age >= 21.5",
            "SELECT count(*) FROM t WHERE created_at > '2026-01-01'::date\n\tORDER BY 1 DESC",
            "select * from \"we\"\"ird\" where a != 1 or b <= 2 or c < 3 or d > 4",
            "SELECT * FROM users WHERE id = 1 /*route='%2Fusers',traceparent='00-4bf9-00f0-01'*/",
            "-- nightly job\nSELECT 1 --\n/**/ /* a * b / c */",
            "SELECT 1 /* é */ -- ü\n-- at the end",
            // Edges of the subset.
            "",
            "SELECT t.* FROM t",
            "SELECT \"\".a",
            "SELECT 1.5.a",
            "SELECT a::=b",
            "SELECT 123456789012345678",
            "SELECT 1234567890123456789.5",
            "SELECT 'a' 'b'",
            "SELECT 'é' AS \"ü\"",
        ] {
            let quick = key(sql, LIMIT);
            assert!(quick.is_some(), "{sql}");
            assert_eq!(quick, slow(sql), "{sql}");
        }
    }

    #[test]
    fn anything_else_is_left_to_the_tokenizer() {
        for sql in [
            "SELECT $1",
            "SELECT $$a$$",
            "SELECT E'a'",
            "SELECT e'a'",
            "SELECT B'01'",
            "SELECT x'1F'",
            "SELECT N'a'",
            "SELECT U&'a'",
            "SELECT b\"x\"",
            "SELECT 'a\\'",
            "SELECT 1 --+ c",
            "SELECT /*+ SeqScan(t) */ 1",
            "SELECT /* a /* nested */ b */ 1",
            "SELECT /* a /*/ 1",
            "SELECT 1 /* a+b */",
            "SELECT 1 -- a+b",
            "SELECT 1 -- c\r\n",
            "SELECT 1 /* a */*/",
            "SELECT /* unterminated",
            "SELECT 1+/* c */2",
            "SELECT 1 */",
            "SELECT 1e5",
            "SELECT 1.",
            "SELECT .5",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT 1L",
            "SELECT 1234567890123456789",
            "SELECT a$b",
            "SELECT t._c FROM t",
            "SELECT a=-1",
            "SELECT a <@ b",
            "SELECT 'a' || 'b'",
            "SELECT a[1]",
            "SELECT :a",
            "SELECT 1\r\n",
            "SELECT é",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
        ] {
            assert_eq!(key(sql, LIMIT), None, "{sql}");
        }
    }

    #[test]
    fn long_keys_are_refused_as_of_refuses_them() {
        let sql = "SELECT a_rather_long_column_name FROM t";
        assert_eq!(key(sql, 16), None);
        assert!(of(&tokenize(sql).unwrap(), 16).is_none());
        assert_eq!(key(sql, 1024), slow(sql));
        assert_eq!(key("a", 3), None);
        assert_eq!(key("a", 4).as_deref(), Some("w1:a"));
    }

    /// The byte classes above are copies of the dialect's: a sqlparser update that changed these
    /// would change what the tokenizer glues together.
    #[test]
    fn byte_classes_are_the_dialects() {
        use sqlparser::dialect::{Dialect, PostgreSqlDialect};
        let dialect = PostgreSqlDialect {};
        for byte in 0..=127u8 {
            let ch = char::from(byte);
            assert_eq!(
                is_operator_char(byte),
                dialect.is_custom_operator_part(ch),
                "{ch:?}"
            );
            assert_eq!(
                is_word_part(byte) || byte == b'$',
                dialect.is_identifier_part(ch),
                "{ch:?}"
            );
            let starts_word = byte.is_ascii_alphabetic() || byte == b'_';
            assert_eq!(starts_word, dialect.is_identifier_start(ch), "{ch:?}");
        }
    }

    /// Pieces that a plain statement is made of, and many that end the quick path, so that random
    /// sequences of them reach both sides of every check above.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            " ", "\t", "\n", "\r", "SELECT", "a", "e", "E", "b", "B", "n", "N", "x", "X", "u", "U",
            "q", "r", "_", "t1", "$", "$1", "0", "1", "42", "9.5", ".", "..", "'", "''", "'a'",
            "\"", "\"\"", "\"q\"", "\\", "(", ")", ",", ";", ":", "::", "=", "<", ">", "!", "-",
            "+", "*", "/", "%", "&", "|", "~", "@", "#", "^", "?", "`", "[", "]", "é", "L", "0x",
            "e5", "--", "/*", "*/", "/* c */", "-- c\n", "/*+ h */", "--+ h\n", "/**/", "/*/",
            "**/",
        ])
    }

    /// Only what the quick path reads, glued without separators, so that neighbours meet.
    fn plain_piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            " ", "\n", "\t", "SELECT", "a", "E", "b", "x", "_", "t1", "0", "42", "9.5", ".", "'a'",
            "''", "\"q\"", "\"\"", "(", ")", ",", ";", "::", "=", "<", ">", "!=", "-", "+", "*",
            "/", "/* c */", "/* ' */", "-- c\n", "--\n", "/**/",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn quick_keys_are_the_parser_keys(pieces in prop::collection::vec(piece(), 0..24)) {
            agrees(&pieces.concat());
        }

        #[test]
        fn quick_keys_are_the_parser_keys_for_plain_pieces(
            pieces in prop::collection::vec(plain_piece(), 0..24),
        ) {
            agrees(&pieces.concat());
        }

        #[test]
        fn quick_keys_are_the_parser_keys_for_spaced_pieces(
            pieces in prop::collection::vec(plain_piece(), 0..40),
            limit in 0..200usize,
        ) {
            let sql = pieces.join(" ");
            prop_assert_eq!(check_shape_keys(&sql, limit), Ok(()));
        }

        #[test]
        fn quick_keys_are_the_parser_keys_for_any_text(sql in "[ -~\t\n\r]{0,40}|\\PC{0,40}") {
            agrees(&sql);
        }
    }
}
