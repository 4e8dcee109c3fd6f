//! Token-level work done before (and instead of) parsing: the complexity budget, and classifying
//! the statements sqlparser cannot parse but whose first words say enough (`DO`, `ALTER SYSTEM`).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::AnalyzeError;
use super::fingerprint::Fingerprint;
use super::operation::{ObjectKind, Operation};

/// Tokenizes the whole input once; the parser then works on these tokens.
pub(crate) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, AnalyzeError> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| AnalyzeError::Unparseable {
            reason: e.to_string(),
        })
}

/// How much a token can deepen the tree. sqlparser builds binary-operator chains (`1+1+...`,
/// `a OR b OR ...`, `x::a::b`) and set-operation chains (`... UNION SELECT ...`) iteratively, so
/// the parser's recursion limit does not bound their depth, yet cloning, printing, comparing and
/// dropping the tree recurse: a long enough chain overflows the stack and aborts the process.
/// Weighting these tokens bounds that depth; a set operation weighs more because each level holds a
/// whole `SELECT` (the frames that clone or drop it are large).
fn weight(token: &Token) -> usize {
    match token {
        Token::Word(word) => match word.keyword {
            Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT => SET_OPERATION_WEIGHT,
            Keyword::AND
            | Keyword::OR
            | Keyword::NOT
            | Keyword::IS
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::SIMILAR
            | Keyword::BETWEEN
            | Keyword::COLLATE
            | Keyword::AT
            | Keyword::IN
            | Keyword::OPERATOR
            // Infix keywords of other dialects, in case the PostgreSQL dialect accepts them.
            | Keyword::XOR
            | Keyword::DIV
            | Keyword::GLOB
            | Keyword::MATCH
            | Keyword::MEMBER
            | Keyword::NOTNULL
            | Keyword::OVERLAPS
            | Keyword::REGEXP
            | Keyword::RLIKE => 1,
            _ => 0,
        },
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::SemiColon
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace
        | Token::Placeholder(_) => 0,
        other => usize::from(!is_literal(other)),
    }
}

/// The weight of one `UNION`/`INTERSECT`/`EXCEPT`, in operators.
const SET_OPERATION_WEIGHT: usize = 8;

fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
    )
}

/// Sums the operator weight of the input; fails when it is over `limit`.
pub(crate) fn check_operators(
    tokens: &[TokenWithSpan],
    limit: usize,
) -> Result<usize, AnalyzeError> {
    let operators = tokens.iter().map(|t| weight(&t.token)).sum();
    if operators > limit {
        return Err(AnalyzeError::TooComplex { operators, limit });
    }
    Ok(operators)
}

/// Splits tokens into statements at top-level `;` (semicolons inside strings, dollar quotes and
/// comments are inside their token already). Segments holding only whitespace are dropped.
pub(crate) fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for token in tokens {
        if token.token == Token::SemiColon {
            segments.push(std::mem::take(&mut current));
        } else if token.token != Token::EOF {
            current.push(token);
        }
    }
    segments.push(current);
    segments.retain(|segment| segment.iter().any(|t| !is_blank(&t.token)));
    segments
}

fn is_blank(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_) | Token::EOF)
}

/// The statement kinds recognised from their first words when sqlparser cannot parse them.
/// Both are classified so that policies can name them; both count as writes.
pub(crate) fn recognize_unparsed(segment: &[TokenWithSpan]) -> Option<(Operation, Fingerprint)> {
    let mut words = segment.iter().filter(|t| !is_blank(&t.token));
    let first = keyword(words.next())?;
    let operation = match first {
        Keyword::DO => Operation::Do,
        Keyword::ALTER if keyword(words.next()) == Some(Keyword::SYSTEM) => {
            Operation::Alter(ObjectKind::System)
        }
        _ => return None,
    };
    Some((
        operation,
        fingerprint_tokens(segment, operation != Operation::Do),
    ))
}

fn keyword(token: Option<&TokenWithSpan>) -> Option<Keyword> {
    match token.map(|t| &t.token) {
        Some(Token::Word(word)) if word.quote_style.is_none() => Some(word.keyword),
        _ => None,
    }
}

/// Normalises a token stream the way the tree normaliser does: comments and whitespace collapse,
/// keywords upper-case, unquoted identifiers lowercase. `redact` replaces literals with `?`; a `DO`
/// block keeps its body, which is code rather than data.
fn fingerprint_tokens(segment: &[TokenWithSpan], redact: bool) -> Fingerprint {
    let mut parts: Vec<String> = Vec::with_capacity(segment.len());
    for token in segment {
        let part = match &token.token {
            Token::Whitespace(
                Whitespace::Space
                | Whitespace::Newline
                | Whitespace::Tab
                | Whitespace::SingleLineComment { .. }
                | Whitespace::MultiLineComment(_),
            ) => continue,
            Token::Word(word) if word.quote_style.is_none() => {
                if word.keyword == Keyword::NoKeyword {
                    word.value.to_ascii_lowercase()
                } else {
                    word.value.to_ascii_uppercase()
                }
            }
            Token::Number(..) | Token::Placeholder(_) if redact => "?".to_owned(),
            other if redact && is_literal(other) => "?".to_owned(),
            other => other.to_string(),
        };
        parts.push(part);
    }
    Fingerprint::of_text(parts.join(" "))
}

/// sqlparser errors quote the offending token (`Expected: ..., found: 'secret' at Line: 1, ...`).
/// The reason ends up in audit events and client errors, so a literal there is replaced by its kind.
pub(crate) fn redact_reason(reason: &str) -> String {
    let Some(start) = reason.find("found: ").map(|i| i + "found: ".len()) else {
        return reason.to_owned();
    };
    let end = reason[start..]
        .find(" at Line:")
        .map_or(reason.len(), |i| start + i);
    let token = &reason[start..end];
    let parameter =
        token.len() > 1 && token.starts_with('$') && token[1..].bytes().all(|b| b.is_ascii_digit());
    let literal = token.starts_with(['\'', '$', '"'])
        || token.starts_with(|c: char| c.is_ascii_digit())
        || ["E'", "e'", "X'", "x'", "N'", "n'", "B'", "b'", "U&'", "u&'"]
            .iter()
            .any(|prefix| token.starts_with(prefix));
    if literal && !parameter {
        format!("{}a literal{}", &reason[..start], &reason[end..])
    } else {
        reason.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_inside_quotes_do_not_split() {
        let tokens = tokenize("SELECT ';'; DO $$ BEGIN; END $$ ; -- x; y\n").unwrap();
        assert_eq!(split_statements(tokens).len(), 2);
    }

    #[test]
    fn do_and_alter_system_are_recognised() {
        let tokens = tokenize("/* c */ alter system set work_mem = '1GB'").unwrap();
        let (op, fp) = recognize_unparsed(&tokens).unwrap();
        assert_eq!(op, Operation::Alter(ObjectKind::System));
        assert_eq!(fp.normalized, "ALTER SYSTEM SET work_mem = ?");
        let tokens = tokenize("DO $$ BEGIN PERFORM 1; END $$").unwrap();
        assert_eq!(recognize_unparsed(&tokens).unwrap().0, Operation::Do);
        let tokens = tokenize("REINDEX TABLE t").unwrap();
        assert!(recognize_unparsed(&tokens).is_none());
    }

    #[test]
    fn operator_budget() {
        let sql = format!("SELECT {}", vec!["1"; 20].join(" + "));
        let tokens = tokenize(&sql).unwrap();
        assert!(check_operators(&tokens, 19).is_ok());
        assert!(matches!(
            check_operators(&tokens, 18),
            Err(AnalyzeError::TooComplex {
                operators: 19,
                limit: 18
            })
        ));
    }

    #[test]
    fn reasons_do_not_echo_literals() {
        let redacted =
            redact_reason("Expected: end of statement, found: 'hunter2' at Line: 1, Column: 9");
        assert_eq!(
            redacted,
            "Expected: end of statement, found: a literal at Line: 1, Column: 9"
        );
        let redacted = redact_reason("Expected: x, found: $$body$$ at Line: 1, Column: 9");
        assert!(!redacted.contains("body"));
        let redacted = redact_reason("Expected: x, found: 4111111111111111 at Line: 1, Column: 2");
        assert!(!redacted.contains("4111"));
        // Parameters ($1) and keywords stay: they help and they leak nothing.
        let kept = "Expected: x, found: $1 at Line: 1, Column: 2";
        assert_eq!(redact_reason(kept), kept);
        let kept = "Expected: x, found: PASSWORD at Line: 1, Column: 2";
        assert_eq!(redact_reason(kept), kept);
    }
}
