//! Statement shapes: the key under which statements that differ only in literal values share one
//! analysis ([`AnalysisCache`](super::AnalysisCache)).
//!
//! The key is built from the tokens the parser itself consumes (never from a lexer of our own, which
//! could disagree with the parser on where a string ends and let `; DROP TABLE` hide inside what it
//! took for a literal). It is the token sequence with the *value* of each literal token replaced by
//! a marker of its kind; every other token is kept exactly: words with their quote style, operators,
//! parameters (`$1`), and also whitespace, because a few constructs need tokens to be adjacent.
//! Numbers are erased only when they are plain digit strings short enough to fit any integer the
//! parser may read them into (`VARCHAR(10)`, `INT[3]`); other numbers stay exact.
//!
//! Comments stay in the key, but the text of one only when it holds a `+`: sqlparser 0.63 reads
//! `/*+ … */` and `--+ …` as optimizer hints into the tree, and reads no other comment's text. So
//! statements that carry a tag per request (sqlcommenter's `/*traceparent='…'*/`, an ORM's
//! caller) share a shape instead of each being parsed, analysed and cached on its own.
//!
//! The key alone does not make two statements' analyses equal: a literal could end up in the tree as
//! something other than a value (`SELECT 1 AS 'alias'` makes the string an identifier), or the
//! analysis could read a value (`EXPLAIN (ANALYZE 0)`). [`literal_independent`] checks, on the
//! parsed tree, that every erased token became a value node at its own position and that nothing
//! the analysis reads from values is present; only then may the analysis be shared by shape.

mod quick;

use std::fmt::Write as _;
use std::ops::ControlFlow;

use sqlparser::ast::{Statement, ValueWithSpan, Visit, Visitor};
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Whitespace};

pub(crate) use quick::key as quick_key;

/// A statement's shape key, and where its erased literals are.
#[derive(Debug)]
pub(crate) struct Shape {
    /// The key (see the module doc); an unambiguous encoding, never parsed back.
    pub(crate) key: String,
    /// Spans of the tokens whose values the key erased, in order.
    literals: Vec<Span>,
}

/// Digits beyond which a number could overflow an `i64` the parser reads it into.
const MAX_ERASED_DIGITS: usize = 18;

/// The shape of a token stream, or `None` when its key would be longer than `limit` bytes.
pub(crate) fn of(tokens: &[TokenWithSpan], limit: usize) -> Option<Shape> {
    let mut key = String::with_capacity(limit.min(256));
    let mut literals = Vec::new();
    for token in tokens {
        if let Some(kind) = erased_kind(&token.token) {
            key.push('L');
            key.push_str(kind);
            if let Token::DollarQuotedString(quoted) = &token.token {
                // The tag is not the value: keep it.
                match &quoted.tag {
                    Some(tag) => frame(&mut key, 't', tag),
                    None => key.push('-'),
                }
            }
            literals.push(token.span);
        } else {
            match &token.token {
                Token::EOF => {}
                Token::Word(word) => match word.quote_style {
                    None => frame(&mut key, 'w', &word.value),
                    Some(quote) => {
                        key.push('W');
                        key.push(quote);
                        frame(&mut key, ':', &word.value);
                    }
                },
                Token::Whitespace(Whitespace::Space) => key.push(' '),
                Token::Whitespace(Whitespace::Newline) => key.push('\n'),
                Token::Whitespace(Whitespace::Tab) => key.push('\t'),
                Token::Whitespace(Whitespace::SingleLineComment { comment, prefix })
                    if !may_be_hint(comment) =>
                {
                    frame(&mut key, 'c', prefix);
                }
                Token::Whitespace(Whitespace::MultiLineComment(comment))
                    if !may_be_hint(comment) =>
                {
                    key.push('C');
                }
                // Debug output escapes every control character, so it never holds a NUL: the NUL
                // ends the token unambiguously.
                other => {
                    let _ = write!(key, "o{other:?}\0");
                }
            }
        }
        if key.len() > limit {
            return None;
        }
    }
    Some(Shape { key, literals })
}

/// True for a comment whose text the parser may read as an optimizer hint (it reads those of the
/// form `[A-Za-z0-9]*+…`; any `+` is enough here).
fn may_be_hint(comment: &str) -> bool {
    comment.contains('+')
}

/// Writes `tag`, the length of `text`, `:` and `text`: self-delimiting whatever `text` holds.
fn frame(key: &mut String, tag: char, text: &str) {
    key.push(tag);
    let _ = write!(key, "{}:", text.len());
    key.push_str(text);
}

/// The marker of a literal token whose value the key erases, `None` for tokens kept exactly.
/// Token kinds the PostgreSQL tokenizer does not produce are kept exactly (safe by default).
fn erased_kind(token: &Token) -> Option<&'static str> {
    Some(match token {
        Token::Number(number, long) => match number.split_once('.') {
            None if number.len() <= MAX_ERASED_DIGITS && all_digits(number) => {
                if *long {
                    "nl"
                } else {
                    "n"
                }
            }
            Some((whole, fraction)) if all_digits(whole) && all_digits(fraction) => {
                if *long {
                    "dl"
                } else {
                    "d"
                }
            }
            _ => return None,
        },
        Token::SingleQuotedString(_) => "s",
        Token::EscapedStringLiteral(_) => "e",
        Token::NationalStringLiteral(_) => "N",
        Token::UnicodeStringLiteral(_) => "u",
        Token::HexStringLiteral(_) => "x",
        Token::SingleQuotedByteStringLiteral(_) => "b",
        Token::DollarQuotedString(_) => "$",
        _ => return None,
    })
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// True when the analysis of `statements` holds for every text of `shape`: each erased literal
/// became a value node spanning exactly its token (so its value cannot have become a name, a type
/// length or an option), and no `EXPLAIN` option carries an argument (`ANALYZE 0`/`ANALYZE 'off'`
/// decide whether the statement runs: the analysis reads those values).
pub(crate) fn literal_independent(statements: &[Statement], shape: &Shape) -> bool {
    let mut probe = Probe::default();
    for statement in statements {
        if statement.visit(&mut probe).is_break() {
            return false;
        }
    }
    probe.values.sort_unstable();
    shape
        .literals
        .iter()
        .all(|span| probe.values.binary_search(span).is_ok())
}

#[derive(Default)]
struct Probe {
    values: Vec<Span>,
}

impl Visitor for Probe {
    type Break = ();

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
        self.values.push(value.span);
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        if let Statement::Explain {
            options: Some(options),
            ..
        } = statement
            && options.iter().any(|option| option.arg.is_some())
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::lex::tokenize;
    use super::*;

    fn key(sql: &str) -> String {
        of(&tokenize(sql).unwrap(), 1 << 20).unwrap().key
    }

    #[test]
    fn literal_values_do_not_change_the_key() {
        let same = [
            (
                "SELECT a FROM t WHERE id = 1",
                "SELECT a FROM t WHERE id = 987654",
            ),
            ("SELECT 'a'", "SELECT 'it''s'"),
            ("SELECT E'a\\'b'", "SELECT E'x'"),
            ("SELECT $$a$$", "SELECT $$b ; DROP TABLE x$$"),
            ("SELECT $q$a$q$", "SELECT $q$b$q$"),
            ("SELECT N'a', X'1F', B'01'", "SELECT N'b', X'2E', B'10'"),
            ("SELECT 1.5", "SELECT 22.05"),
            // Comments that cannot be hints: only their place counts.
            ("SELECT 1 -- a\n", "SELECT 1 -- b\n"),
            ("SELECT 1/*a*/2", "SELECT 1/*bb*/2"),
            ("SELECT 1 /* a /* b */ c */", "SELECT 1 /* d */"),
            (
                "SELECT * FROM t WHERE id = 1 /*traceparent='00-4bf9-00f0-01'*/",
                "SELECT * FROM t WHERE id = 7 /*traceparent='00-a3ce-5e1b-01'*/",
            ),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a} / {b}");
        }
    }

    #[test]
    fn anything_but_literal_values_changes_the_key() {
        let different = [
            // With standard_conforming_strings the backslash is plain: two statements.
            ("SELECT 'a\\' ; DROP TABLE x; --'", "SELECT 'b'"),
            ("SELECT E'a\\'b'", "SELECT 'a'"),
            ("SELECT 'a'", "SELECT E'a'"),
            ("SELECT 1", "SELECT '1'"),
            ("SELECT $1", "SELECT 1"),
            ("SELECT $a$x$a$", "SELECT $b$x$b$"),
            ("SELECT $a$x$a$", "SELECT $$x$$"),
            ("SELECT * FROM \"Users\"", "SELECT * FROM users"),
            ("SELECT * FROM \"users\"", "SELECT * FROM users"),
            ("SELECT 1 /* ; DROP TABLE x */", "SELECT 1"),
            ("SELECT /*+ SeqScan(t) */ 1", "SELECT /*+ IndexScan(t) */ 1"),
            ("SELECT 1 /* a */", "SELECT 1 -- a\n"),
            ("SELECT 1 -- a\rDROP TABLE t", "SELECT 1 -- a\r"),
            ("SELECT 1 /* a */", "SELECT 1 /* a */ /* a */"),
            ("SELECT /*+ a */ 1", "SELECT /* a */ 1"),
            ("SELECT --+ SeqScan(t)\n 1", "SELECT --+ IndexScan(t)\n 1"),
            (
                "SELECT /* a */ 1 ; DROP TABLE t",
                "SELECT /* a ; DROP TABLE t */ 1",
            ),
            ("SELECT 1", "SELECT  1"),
            ("SELECT 1.", "SELECT 1.5"),
            ("SELECT 1e5", "SELECT 1e6"),
            ("SELECT 12345678901234567890", "SELECT 12345678901234567891"),
            ("SELECT 1", "SELECT 1.0"),
            ("SELECT true", "SELECT false"),
        ];
        for (a, b) in different {
            assert_ne!(key(a), key(b), "{a} / {b}");
        }
    }

    #[test]
    fn long_keys_are_refused() {
        let tokens = tokenize("SELECT a_rather_long_column_name FROM t").unwrap();
        assert!(of(&tokens, 16).is_none());
        assert!(of(&tokens, 1024).is_some());
    }
}
