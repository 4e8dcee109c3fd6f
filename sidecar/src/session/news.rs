//! What of the database's errors and notices reaches the client while a refused result is
//! discarded.
//!
//! A refusal withholds the exchange's results, errors and notices included: any of them
//! could quote what was refused. The session's own news still reaches the client: the
//! database ending it (FATAL, PANIC) or warning that it will (a notice of class 57P,
//! operator intervention). Even then only what the server says of itself passes:
//!
//! - a FATAL of the server's own classes (08 connection, 53 resources, 57 operator
//!   intervention) passes as its severity, SQLSTATE and message; its detail, hint and
//!   context, which can quote values or statements, are left out;
//! - any other FATAL (an extension's) is reworded, keeping its SQLSTATE;
//! - a 57P notice is reworded too: PL/pgSQL can raise one with any code and any text.

use bytes::BytesMut;

use crate::protocol::backend::{self, ErrorFields, Severity};

/// What the client gets in place of one database error or notice (`tag` `'E'` or `'N'`,
/// `body` its fields) seen while a result is discarded: appended to `out`. False when it is
/// withheld (or malformed) and nothing was appended.
pub(super) fn while_discarding(tag: u8, body: &[u8], out: &mut BytesMut) -> bool {
    let Ok(fields) = ErrorFields::decode(tag, body) else {
        return false;
    };
    match News::of(tag, &fields) {
        News::Withhold => return false,
        News::Summary => backend::encode_summary(out, tag, &fields),
        News::EndReworded(code) => backend::encode_error(
            out,
            Severity::Fatal,
            code,
            "the database ended the session while dbwarden withheld a result; its message is \
             withheld with the result",
            None,
        ),
        News::WarningReworded(code) => backend::encode_warning(
            out,
            code,
            "the database warns that it may end the session; its message is withheld with the \
             result dbwarden withheld",
        ),
    }
    true
}

/// True for an ErrorResponse body of severity FATAL or PANIC.
pub(super) fn ends_session(body: &[u8]) -> bool {
    ErrorFields::decode(b'E', body).is_ok_and(|e| e.ends_session())
}

/// The kind of news one error or notice is (see the module's documentation).
#[derive(Debug, PartialEq, Eq)]
enum News<'a> {
    /// The server's own FATAL: severity, SQLSTATE and message.
    Summary,
    /// Part of the withheld exchange.
    Withhold,
    /// A FATAL with this SQLSTATE and the sidecar's own message.
    EndReworded(&'a str),
    /// A WARNING notice with this SQLSTATE and the sidecar's own message.
    WarningReworded(&'a str),
}

impl<'a> News<'a> {
    fn of(tag: u8, fields: &ErrorFields<'a>) -> Self {
        let code = fields.field(b'C').unwrap_or("XX000");
        match tag {
            b'N' if code.starts_with("57P") => Self::WarningReworded(code),
            b'E' if fields.ends_session() => {
                if ["08", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
                {
                    Self::Summary
                } else {
                    Self::EndReworded(code)
                }
            }
            _ => Self::Withhold,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_the_database_ending_the_session_passes_a_refusal() {
        let cases: [(u8, &[u8], News<'_>); 7] = [
            // The server's own reasons.
            (
                b'E',
                b"SFATAL\0VFATAL\0C08P01\0Mprotocol\0\0",
                News::Summary,
            ),
            (
                b'E',
                b"SFATAL\0VFATAL\0C57P01\0Mshutdown\0\0",
                News::Summary,
            ),
            // Text that could be anyone's keeps only its code.
            (
                b'N',
                b"SWARNING\0VWARNING\0C57P02\0Mcrash\0\0",
                News::WarningReworded("57P02"),
            ),
            (
                b'E',
                b"SFATAL\0VFATAL\0CP0001\0Msecret\0\0",
                News::EndReworded("P0001"),
            ),
            (b'E', b"SPANIC\0Msecret\0\0", News::EndReworded("XX000")),
            // What belongs to the withheld exchange stays withheld.
            (b'E', b"SERROR\0VERROR\0C23505\0Mdup\0\0", News::Withhold),
            (
                b'N',
                b"SNOTICE\0VNOTICE\0C00000\0Mvalue\0\0",
                News::Withhold,
            ),
        ];
        for (tag, body, expected) in cases {
            let fields = ErrorFields::decode(tag, body).unwrap();
            assert_eq!(News::of(tag, &fields), expected, "{body:?}");
        }
    }

    #[test]
    fn a_passing_fatal_loses_everything_but_severity_code_and_message() {
        let body = b"SFATAL\0VFATAL\0C57P01\0Mterminating\0DKey (ssn)=(123)\0Hhint\0\
            WPL/pgSQL function f() line 3\0ttable\0ccolumn\0Fpostgres.c\0L3200\0\0";
        let mut out = BytesMut::new();
        assert!(while_discarding(b'E', body, &mut out));
        let expected = b"SFATAL\0VFATAL\0C57P01\0Mterminating\0\0";
        assert_eq!(out[0], b'E');
        assert_eq!(&out[5..], expected);
        assert_eq!(
            u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
            4 + expected.len()
        );
    }

    #[test]
    fn reworded_news_keeps_its_kind_and_code_but_not_its_text() {
        let mut out = BytesMut::new();
        assert!(while_discarding(
            b'N',
            b"SWARNING\0VWARNING\0C57P01\0Mssn is 123-45-6789\0\0",
            &mut out
        ));
        let fields = ErrorFields::decode(b'N', &out[5..]).unwrap();
        assert_eq!(out[0], b'N');
        assert_eq!(fields.field(b'C'), Some("57P01"));
        assert_eq!(fields.field(b'V'), Some("WARNING"));
        assert!(!fields.field(b'M').unwrap().contains("123"));

        out.clear();
        assert!(while_discarding(
            b'E',
            b"SFATAL\0VFATAL\0CXX000\0Mssn is 123-45-6789\0\0",
            &mut out
        ));
        let fields = ErrorFields::decode(b'E', &out[5..]).unwrap();
        assert!(fields.ends_session());
        assert_eq!(fields.field(b'C'), Some("XX000"));
        assert!(!fields.field(b'M').unwrap().contains("123"));
    }

    #[test]
    fn malformed_or_ordinary_news_is_withheld() {
        let mut out = BytesMut::new();
        assert!(!while_discarding(b'E', b"SFATAL\0VFATAL", &mut out));
        assert!(!while_discarding(
            b'E',
            b"SERROR\0VERROR\0C22012\0Mdivision by zero\0\0",
            &mut out
        ));
        assert!(out.is_empty());
    }
}
