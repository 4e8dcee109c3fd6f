//! Messages a server sends: decoders for the ones the proxy inspects and encoders for the
//! ones it speaks itself.

use bytes::{BufMut, BytesMut};

use super::ProtocolError;
use super::codec::{Reader, put_cstr, put_message};

/// An Authentication request from the server (type `'R'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// Authentication succeeded.
    Ok,
    /// Send the password in clear.
    CleartextPassword,
    /// Send the md5 of the password with this salt.
    Md5Password {
        /// The salt.
        salt: [u8; 4],
    },
    /// Start SASL with one of these mechanisms (NUL-separated list, raw).
    Sasl {
        /// The mechanism list as sent: NUL-terminated names, then an empty one.
        mechanisms: &'a [u8],
    },
    /// A SASL challenge.
    SaslContinue(&'a [u8]),
    /// The SASL outcome.
    SaslFinal(&'a [u8]),
    /// A method the proxy does not implement (Kerberos, GSSAPI, SSPI).
    Unsupported(i32),
}

impl<'a> Authentication<'a> {
    /// Decodes the body of an `'R'` message.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(b'R', body);
        let auth = match r.i32("authentication code")? {
            0 => Self::Ok,
            3 => Self::CleartextPassword,
            5 => {
                let s = r.bytes(4, "md5 salt")?;
                Self::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => Self::Sasl {
                mechanisms: r.rest(),
            },
            11 => Self::SaslContinue(r.rest()),
            12 => Self::SaslFinal(r.rest()),
            other => {
                r.rest();
                Self::Unsupported(other)
            }
        };
        r.finish()?;
        Ok(auth)
    }
}

/// Iterates the names in a SASL mechanism list.
pub fn sasl_mechanisms(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).take_while(|m| !m.is_empty())
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    body: &'a [u8],
}

impl<'a> ErrorFields<'a> {
    /// Validates an `'E'` or `'N'` body.
    pub fn decode(tag: u8, body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(tag, body);
        loop {
            if r.u8("field type")? == 0 {
                break;
            }
            r.cbytes("field value")?;
        }
        r.finish()?;
        Ok(Self { body })
    }

    /// The value of field `code` (`b'C'` SQLSTATE, `b'M'` message, `b'S'` severity...).
    pub fn field(&self, code: u8) -> Option<&'a str> {
        std::str::from_utf8(self.field_bytes(code)?).ok()
    }

    /// The SQLSTATE (field `C`), when it is one: five digits or upper-case letters.
    pub fn sqlstate(&self) -> Option<&'a str> {
        self.field(b'C').filter(|code| {
            code.len() == 5
                && code
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        })
    }

    /// True for FATAL and PANIC: the database ends the session (see [`Self::severity`]).
    pub fn ends_session(&self) -> bool {
        matches!(self.severity(), Some(b"FATAL" | b"PANIC"))
    }

    /// The untranslated severity (`V`, sent since PostgreSQL 9.6), else the localized one.
    pub fn severity(&self) -> Option<&'a [u8]> {
        self.field_bytes(b'V').or_else(|| self.field_bytes(b'S'))
    }

    /// The raw value of field `code`, in the connection's encoding (which may not be UTF-8).
    pub fn field_bytes(&self, code: u8) -> Option<&'a [u8]> {
        let mut r = Reader::new(b'E', self.body);
        while let Ok(c) = r.u8("field type") {
            let value = r.cbytes("field value").ok()?;
            if c == code {
                return Some(value);
            }
        }
        None
    }
}

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// Column name (in the client encoding).
    pub name: &'a [u8],
    /// OID of the source table, 0 if none.
    pub table_oid: u32,
    /// Attribute number in the source table, 0 if none.
    pub column: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// A validated RowDescription (type `'T'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDescription<'a> {
    count: usize,
    fields: &'a [u8],
}

impl<'a> RowDescription<'a> {
    /// Validates a `'T'` body.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(b'T', body);
        let count = r.count16("field count")?;
        let fields = r.clone().rest();
        for _ in 0..count {
            r.cbytes("field name")?;
            r.bytes(18, "field attributes")?;
        }
        r.finish()?;
        Ok(Self { count, fields })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the result has no columns.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded column descriptions (everything after the count): two descriptions with
    /// equal counts and equal bytes describe the same result.
    pub fn encoded(&self) -> &'a [u8] {
        self.fields
    }

    /// The columns, in order.
    pub fn fields(&self) -> impl Iterator<Item = FieldDescription<'a>> + 'a {
        let mut r = Reader::new(b'T', self.fields);
        (0..self.count).map_while(move |_| {
            let name = r.cbytes("field name").ok()?;
            let table_oid = r.u32("table oid").ok()?;
            let column = r.i16("column").ok()?;
            let type_oid = r.u32("type oid").ok()?;
            r.bytes(6, "type size and modifier").ok()?;
            let format = r.i16("format").ok()?;
            Some(FieldDescription {
                name,
                table_oid,
                column,
                type_oid,
                format,
            })
        })
    }
}

/// A validated DataRow (type `'D'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow<'a> {
    count: usize,
    values: &'a [u8],
}

impl<'a> DataRow<'a> {
    /// Validates a `'D'` body.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(b'D', body);
        let count = r.count16("column count")?;
        let values = r.clone().rest();
        for _ in 0..count {
            r.value("column value")?;
        }
        r.finish()?;
        Ok(Self { count, values })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The column values in order; `None` is SQL NULL.
    pub fn values(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let mut r = Reader::new(b'D', self.values);
        (0..self.count).map_while(move |_| r.value("column value").ok())
    }
}

/// Appends a DataRow with `values` to `out` (for row hooks that rewrite a row).
pub fn encode_data_row<'v>(out: &mut BytesMut, values: impl IntoIterator<Item = Option<&'v [u8]>>) {
    put_message(out, b'D', |b| {
        let at = b.len();
        b.put_i16(0);
        let mut n: i16 = 0;
        for v in values {
            n = n.saturating_add(1);
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                    b.put_slice(v);
                }
            }
        }
        b[at..at + 2].copy_from_slice(&n.to_be_bytes());
    });
}

/// Reads the transaction status of a ReadyForQuery body (`I`, `T` or `E`).
pub fn ready_status(body: &[u8]) -> Result<u8, ProtocolError> {
    let mut r = Reader::new(b'Z', body);
    let status = r.u8("transaction status")?;
    r.finish()?;
    match status {
        b'I' | b'T' | b'E' => Ok(status),
        _ => Err(r.invalid("transaction status")),
    }
}

/// Reads a BackendKeyData body: process id and secret key.
pub fn backend_key(body: &[u8]) -> Result<(u32, u32), ProtocolError> {
    let mut r = Reader::new(b'K', body);
    let pid = r.u32("process id")?;
    let secret = r.u32("secret key")?;
    r.finish()?;
    Ok((pid, secret))
}

/// Severity of an error the proxy raises itself, or rewords from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement fails; the session goes on.
    Error,
    /// The session ends.
    Fatal,
    /// The server ends every session (only ever relayed from the database).
    Panic,
}

impl Severity {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Error => b"ERROR",
            Self::Fatal => b"FATAL",
            Self::Panic => b"PANIC",
        }
    }
}

/// SQLSTATE 42501: insufficient_privilege, for policy denials.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE 08P01: protocol_violation.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE 28000: invalid_authorization_specification.
pub const INVALID_AUTHORIZATION: &str = "28000";
/// SQLSTATE 28P01: invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE 08006: connection_failure.
pub const CONNECTION_FAILURE: &str = "08006";
/// SQLSTATE 57P01: admin_shutdown.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// SQLSTATE 57P05: idle_session_timeout.
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
/// SQLSTATE 0A000: feature_not_supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";

/// Appends an ErrorResponse the proxy raises itself.
pub fn encode_error(
    out: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    encode_report(out, b'E', severity.as_bytes(), code, message, detail);
}

/// Appends a NoticeResponse of severity WARNING the proxy raises itself.
pub fn encode_warning(out: &mut BytesMut, code: &str, message: &str) {
    encode_report(out, b'N', b"WARNING", code, message, None);
}

fn encode_report(
    out: &mut BytesMut,
    tag: u8,
    severity: &[u8],
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    put_message(out, tag, |b| {
        for field in [b'S', b'V'] {
            b.put_u8(field);
            put_cstr(b, severity);
        }
        b.put_u8(b'C');
        put_cstr(b, code.as_bytes());
        b.put_u8(b'M');
        put_cstr(b, message.as_bytes());
        if let Some(detail) = detail {
            b.put_u8(b'D');
            put_cstr(b, detail.as_bytes());
        }
        b.put_u8(0);
    });
}

/// Appends a ReadyForQuery with transaction status `status`.
pub fn encode_ready(out: &mut BytesMut, status: u8) {
    put_message(out, b'Z', |b| b.put_u8(status));
}

/// Appends an Authentication request with `code` (0 ok, 3 cleartext password).
pub fn encode_auth(out: &mut BytesMut, code: i32) {
    put_message(out, b'R', |b| b.put_i32(code));
}

/// Appends a BackendKeyData.
pub fn encode_backend_key(out: &mut BytesMut, pid: u32, secret: u32) {
    put_message(out, b'K', |b| {
        b.put_u32(pid);
        b.put_u32(secret);
    });
}

/// Appends a NegotiateProtocolVersion offering 3.0 and naming the options not understood.
pub fn encode_negotiate_version(out: &mut BytesMut, unsupported: &[&str]) {
    put_message(out, b'v', |b| {
        b.put_i32(0);
        b.put_i32(i32::try_from(unsupported.len()).unwrap_or(0));
        for option in unsupported {
            put_cstr(b, option.as_bytes());
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::codec::split_frame;

    #[test]
    fn only_a_well_formed_sqlstate_is_one() {
        for (body, code) in [
            (&b"C57P01\0\0"[..], Some("57P01")),
            (b"C57p01\0\0", None),
            (b"C57P0\0\0", None),
            (b"C57P01X\0\0", None),
            (b"C\xc357P0\0\0", None),
            (b"Mno code\0\0", None),
        ] {
            let fields = ErrorFields::decode(b'E', body).unwrap();
            assert_eq!(fields.sqlstate(), code, "{body:?}");
        }
    }

    #[test]
    fn error_round_trip() {
        let mut out = BytesMut::new();
        encode_error(&mut out, Severity::Error, "42501", "denied", Some("rule x"));
        let frame = split_frame(&mut out, 1000).unwrap().unwrap();
        let fields = ErrorFields::decode(frame.tag(), frame.body()).unwrap();
        assert_eq!(fields.field(b'C'), Some("42501"));
        assert_eq!(fields.field(b'M'), Some("denied"));
        assert_eq!(fields.field(b'D'), Some("rule x"));
        assert_eq!(fields.field(b'S'), Some("ERROR"));
        assert!(!fields.ends_session());
    }

    #[test]
    fn fatal_is_read_from_the_untranslated_severity() {
        let ends = |body: &[u8]| ErrorFields::decode(b'E', body).unwrap().ends_session();
        assert!(ends(b"SFATAL\0VFATAL\0C57P01\0\0"));
        assert!(ends(b"SSCHWERWIEGEND\0VFATAL\0\0"));
        assert!(ends(b"SPANIC\0\0"));
        assert!(!ends(b"SFATAL\0VERROR\0\0"));
        assert!(!ends(b"C08P01\0\0"));
    }

    #[test]
    fn data_row_round_trip() {
        let mut out = BytesMut::new();
        encode_data_row(&mut out, [Some(&b"a"[..]), None, Some(b"")]);
        let frame = split_frame(&mut out, 1000).unwrap().unwrap();
        let row = DataRow::decode(frame.body()).unwrap();
        assert_eq!(
            row.values().collect::<Vec<_>>(),
            vec![Some(&b"a"[..]), None, Some(&b""[..])]
        );
        assert!(DataRow::decode(b"\0\x01\0\0\0\x05ab").is_err());
    }

    #[test]
    fn row_description_fields() {
        let mut body = vec![0, 1];
        body.extend_from_slice(b"id\0");
        body.extend_from_slice(&[
            0, 0, 0, 9, 0, 1, 0, 0, 0, 23, 0, 4, 255, 255, 255, 255, 0, 1,
        ]);
        let desc = RowDescription::decode(&body).unwrap();
        let f = desc.fields().next().unwrap();
        assert_eq!(
            (f.name, f.table_oid, f.column, f.type_oid, f.format),
            (&b"id"[..], 9, 1, 23, 1)
        );
        assert!(RowDescription::decode(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn authentication_requests() {
        assert_eq!(
            Authentication::decode(b"\0\0\0\0").unwrap(),
            Authentication::Ok
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x05abcd").unwrap(),
            Authentication::Md5Password { salt: *b"abcd" }
        );
        let Authentication::Sasl { mechanisms } =
            Authentication::decode(b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").unwrap()
        else {
            panic!("not sasl")
        };
        assert_eq!(sasl_mechanisms(mechanisms).count(), 2);
        assert!(Authentication::decode(b"\0\0\0\x05ab").is_err());
    }
}
