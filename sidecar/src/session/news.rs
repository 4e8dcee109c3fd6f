//! What of the database's errors and notices reaches the client while a refused result is
//! discarded.
//!
//! A refusal withholds the rest of the exchange, errors and notices included: any of them could
//! quote what was refused. News of the session itself still reaches the client, as its severity
//! and SQLSTATE under the sidecar's words: the database ending it (FATAL, PANIC), or warning that
//! it may (a WARNING 57P01 or 57P02, which the server sends before a shutdown or after a crash).
//! The database's text never passes: any user may set `exit_on_error`, which makes a FATAL of
//! every error, with the message PL/pgSQL chose. Nor does a code of its choosing (PL/pgSQL
//! raises any five capitals or digits, such as `'P' || pin`): a FATAL's code passes only when
//! it is one the server ends sessions with, else it becomes XX000; and one warning at most
//! passes per exchange. (ParameterStatus and NotificationResponse pass as they are: see
//! docs/masking.md.)

use bytes::BytesMut;

use crate::protocol::backend::{self, ErrorFields, Severity};

/// The codes the server ends a session with: shutdown, crash, timeouts, a dropped database, a
/// broken protocol or connection, exhausted resources, an internal error.
const SESSION_ENDS: [&str; 17] = [
    "57P01", "57P02", "57P03", "57P04", "57P05", "25P03", "25P04", "08P01", "08006", "08003",
    "53100", "53200", "53300", "53400", "XX000", "XX001", "XX002",
];

/// The warnings the server gives before it ends sessions (shutdown, crash).
const SESSION_WARNINGS: [&str; 2] = ["57P01", "57P02"];

/// What the client gets in place of one database error or notice (`tag` `'E'` or `'N'`,
/// `body` its fields) seen while a result is discarded: appended to `out`. False when it is
/// withheld (or malformed) and nothing was appended. `warned`: a warning passed already in this
/// exchange (set here; the caller clears it when the exchange ends).
pub(super) fn while_discarding(
    tag: u8,
    body: &[u8],
    out: &mut BytesMut,
    warned: &mut bool,
) -> bool {
    let Ok(fields) = ErrorFields::decode(tag, body) else {
        return false;
    };
    match News::of(tag, &fields) {
        News::Withhold => return false,
        News::Warning(_) if *warned => return false,
        News::End(severity, code) => backend::encode_error(
            out,
            severity,
            code,
            "the database ended the session while dbwarden withheld a result; its message is \
             withheld with the result",
            None,
        ),
        News::Warning(code) => {
            *warned = true;
            backend::encode_warning(
                out,
                code,
                "the database warns that it may end the session; its message is withheld with \
                 the result dbwarden withheld",
            );
        }
    }
    true
}

/// The kind of news one error or notice is (see the module's documentation).
#[derive(Debug, PartialEq, Eq)]
enum News {
    /// Part of the withheld exchange.
    Withhold,
    /// The database ends the session: a FATAL or PANIC with this SQLSTATE.
    End(Severity, &'static str),
    /// The database may end the session: a WARNING with this SQLSTATE.
    Warning(&'static str),
}

impl News {
    fn of(tag: u8, fields: &ErrorFields<'_>) -> Self {
        let code = fields.sqlstate();
        let known =
            |list: &[&'static str]| code.and_then(|c| list.iter().copied().find(|&k| k == c));
        let code = known(&SESSION_ENDS).unwrap_or("XX000");
        match (tag, fields.severity()) {
            (b'N', Some(b"WARNING")) => match known(&SESSION_WARNINGS) {
                Some(code) => Self::Warning(code),
                None => Self::Withhold,
            },
            (b'E', Some(b"FATAL")) => Self::End(Severity::Fatal, code),
            (b'E', Some(b"PANIC")) => Self::End(Severity::Panic, code),
            _ => Self::Withhold,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_news_of_the_session_passes_a_refusal_and_only_its_code() {
        let cases: [(u8, &[u8], News); 12] = [
            (
                b'E',
                b"SFATAL\0VFATAL\0C57P01\0Mshutdown\0\0",
                News::End(Severity::Fatal, "57P01"),
            ),
            // exit_on_error: any error, any code, any text; a code the server does not end
            // sessions with could be chosen to carry data.
            (
                b'E',
                b"SFATAL\0VFATAL\0CP1234\0Msecret\0\0",
                News::End(Severity::Fatal, "XX000"),
            ),
            (
                b'E',
                b"SFATAL\0VFATAL\0C22012\0Mdivision by zero\0\0",
                News::End(Severity::Fatal, "XX000"),
            ),
            // A server before 9.6 sends no `V`.
            (
                b'E',
                b"SFATAL\0C08P01\0Mprotocol\0\0",
                News::End(Severity::Fatal, "08P01"),
            ),
            (
                b'E',
                b"SPANIC\0VPANIC\0Msecret\0\0",
                News::End(Severity::Panic, "XX000"),
            ),
            // A code that is no SQLSTATE is not repeated.
            (
                b'E',
                b"SFATAL\0VFATAL\0C57P01 secret\0\0",
                News::End(Severity::Fatal, "XX000"),
            ),
            (
                b'N',
                b"SWARNING\0VWARNING\0C57P02\0Mcrash\0\0",
                News::Warning("57P02"),
            ),
            // What belongs to the withheld exchange stays withheld: errors, notices, and a
            // 57P notice below WARNING, which only a user's code raises.
            (b'E', b"SERROR\0VERROR\0C23505\0Mdup\0\0", News::Withhold),
            (
                b'N',
                b"SNOTICE\0VNOTICE\0C00000\0Mvalue\0\0",
                News::Withhold,
            ),
            (
                b'N',
                b"SNOTICE\0VNOTICE\0C57P01\0Mvalue\0\0",
                News::Withhold,
            ),
            (b'N', b"SLOG\0VLOG\0C57P01\0Mvalue\0\0", News::Withhold),
            // A warning with a code the server does not warn with.
            (
                b'N',
                b"SWARNING\0VWARNING\0C57P99\0Mvalue\0\0",
                News::Withhold,
            ),
        ];
        for (tag, body, expected) in cases {
            let fields = ErrorFields::decode(tag, body).unwrap();
            assert_eq!(News::of(tag, &fields), expected, "{body:?}");
        }
    }

    #[test]
    fn passing_news_keeps_its_kind_and_code_but_not_its_text() {
        let mut out = BytesMut::new();
        let mut warned = false;
        let warning = b"SWARNING\0VWARNING\0C57P01\0Mssn is 123-45-6789\0\0";
        assert!(while_discarding(b'N', warning, &mut out, &mut warned));
        let fields = ErrorFields::decode(b'N', &out[5..]).unwrap();
        assert_eq!(out[0], b'N');
        assert_eq!(fields.field(b'C'), Some("57P01"));
        assert_eq!(fields.field(b'V'), Some("WARNING"));
        assert!(!fields.field(b'M').unwrap().contains("123"));
        // One per exchange: which of two codes, repeated, could spell out a value.
        out.clear();
        assert!(!while_discarding(b'N', warning, &mut out, &mut warned));
        assert!(out.is_empty());

        for (body, severity, code) in [
            (
                &b"SFATAL\0VFATAL\0C57P01\0Mssn is 123-45-6789\0DKey (ssn)=(123)\0\0"[..],
                "FATAL",
                "57P01",
            ),
            (
                b"SPANIC\0VPANIC\0CXX000\0Mssn is 123-45-6789\0\0",
                "PANIC",
                "XX000",
            ),
        ] {
            out.clear();
            assert!(while_discarding(b'E', body, &mut out, &mut true));
            assert_eq!(out[0], b'E');
            assert_eq!(
                u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
                out.len() - 1
            );
            let fields = ErrorFields::decode(b'E', &out[5..]).unwrap();
            assert_eq!(fields.field(b'V'), Some(severity));
            assert_eq!(fields.field(b'C'), Some(code));
            assert!(!fields.field(b'M').unwrap().contains("123"));
            assert_eq!(fields.field(b'D'), None);
        }
    }

    #[test]
    fn malformed_or_ordinary_news_is_withheld() {
        let mut out = BytesMut::new();
        let mut warned = false;
        assert!(!while_discarding(
            b'E',
            b"SFATAL\0VFATAL",
            &mut out,
            &mut warned
        ));
        assert!(!while_discarding(
            b'E',
            b"SERROR\0VERROR\0C22012\0Mdivision by zero\0\0",
            &mut out,
            &mut warned
        ));
        assert!(out.is_empty());
    }
}
