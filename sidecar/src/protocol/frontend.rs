//! Messages a client sends after startup.
//!
//! Text fields arrive in the client's encoding, so names and SQL are kept as bytes; the
//! statement hook decides what to do with text that is not UTF-8.

use super::codec::Reader;
use super::{ProtocolError, tag_char};

/// Which kind of object a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A prepared statement (`'S'`).
    Statement,
    /// A portal (`'P'`).
    Portal,
}

/// A decoded frontend message, borrowing from the frame it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    /// Simple query: one or more statements.
    Query {
        /// The SQL text.
        sql: &'a [u8],
    },
    /// Extended protocol: prepare a statement.
    Parse {
        /// Statement name; empty for the unnamed statement.
        name: &'a [u8],
        /// The SQL text.
        sql: &'a [u8],
        /// How many parameter types the client specified.
        param_types: usize,
    },
    /// Extended protocol: bind parameters into a portal.
    Bind {
        /// Portal name; empty for the unnamed portal.
        portal: &'a [u8],
        /// Statement name.
        statement: &'a [u8],
        /// How many parameter values follow.
        params: usize,
    },
    /// Extended protocol: describe a statement or portal.
    Describe {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: &'a [u8],
    },
    /// Extended protocol: run a portal.
    Execute {
        /// Portal name.
        portal: &'a [u8],
        /// Row limit, 0 for all.
        max_rows: i32,
    },
    /// Extended protocol: close a statement or portal.
    Close {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: &'a [u8],
    },
    /// End of an extended-protocol batch.
    Sync,
    /// Ask the server to send what it has.
    Flush,
    /// COPY FROM STDIN payload.
    CopyData(&'a [u8]),
    /// COPY FROM STDIN finished.
    CopyDone,
    /// COPY FROM STDIN aborted by the client.
    CopyFail {
        /// The client's reason.
        message: &'a [u8],
    },
    /// The fast-path function call interface.
    FunctionCall {
        /// The function's OID.
        oid: u32,
        /// How many arguments follow.
        args: usize,
    },
    /// Password, SASL or GSSAPI response (the same type byte carries all of them).
    Password(&'a [u8]),
    /// The client closes the session.
    Terminate,
}

impl<'a> FrontendMessage<'a> {
    /// Decodes and fully validates the body of a message whose type byte is `tag`.
    pub fn decode(tag: u8, body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(tag, body);
        let message = match tag {
            b'Q' => Self::Query {
                sql: r.cbytes("query string")?,
            },
            b'P' => {
                let name = r.name("statement name")?;
                let sql = r.cbytes("query string")?;
                let param_types = r.count16("parameter type count")?;
                r.bytes(param_types * 4, "parameter types")?;
                Self::Parse {
                    name,
                    sql,
                    param_types,
                }
            }
            b'B' => {
                let portal = r.name("portal name")?;
                let statement = r.name("statement name")?;
                let formats = r.count16("parameter format count")?;
                r.bytes(formats * 2, "parameter formats")?;
                let params = r.count16("parameter count")?;
                for _ in 0..params {
                    r.value("parameter value")?;
                }
                let results = r.count16("result format count")?;
                r.bytes(results * 2, "result formats")?;
                Self::Bind {
                    portal,
                    statement,
                    params,
                }
            }
            b'D' | b'C' => {
                let target = match r.u8("target kind")? {
                    b'S' => Target::Statement,
                    b'P' => Target::Portal,
                    _ => return Err(r.invalid("target kind: must be 'S' or 'P'")),
                };
                let name = r.name("name")?;
                if tag == b'D' {
                    Self::Describe { target, name }
                } else {
                    Self::Close { target, name }
                }
            }
            b'E' => Self::Execute {
                portal: r.name("portal name")?,
                max_rows: r.i32("row limit")?,
            },
            b'S' => Self::Sync,
            b'H' => Self::Flush,
            b'c' => Self::CopyDone,
            b'X' => Self::Terminate,
            b'd' => Self::CopyData(r.rest()),
            b'f' => Self::CopyFail {
                message: r.cbytes("error message")?,
            },
            b'F' => {
                let oid = r.u32("function oid")?;
                let formats = r.count16("argument format count")?;
                r.bytes(formats * 2, "argument formats")?;
                let args = r.count16("argument count")?;
                for _ in 0..args {
                    r.value("argument value")?;
                }
                r.i16("result format")?;
                Self::FunctionCall { oid, args }
            }
            b'p' => Self::Password(r.rest()),
            other => {
                return Err(ProtocolError::UnexpectedMessage {
                    tag: tag_char(other),
                    context: "from a client: not a frontend message type",
                });
            }
        };
        r.finish()?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_extended_messages() {
        let parse = FrontendMessage::decode(b'P', b"s1\0SELECT $1\0\0\x01\0\0\0\x17").unwrap();
        assert_eq!(
            parse,
            FrontendMessage::Parse {
                name: b"s1",
                sql: b"SELECT $1",
                param_types: 1
            }
        );
        let bind =
            FrontendMessage::decode(b'B', b"\0s1\0\0\0\0\x02\0\0\0\x011\xff\xff\xff\xff\0\0")
                .unwrap();
        assert_eq!(
            bind,
            FrontendMessage::Bind {
                portal: b"",
                statement: b"s1",
                params: 2
            }
        );
        let exec = FrontendMessage::decode(b'E', b"\0\0\0\0\x05").unwrap();
        assert_eq!(
            exec,
            FrontendMessage::Execute {
                portal: b"",
                max_rows: 5
            }
        );
        let close = FrontendMessage::decode(b'C', b"Ss1\0").unwrap();
        assert_eq!(
            close,
            FrontendMessage::Close {
                target: Target::Statement,
                name: b"s1"
            }
        );
    }

    #[test]
    fn rejects_malformed_messages() {
        for (tag, body) in [
            (b'Q', &b"no terminator"[..]),
            (b'Q', b"SELECT 1\0extra"),
            (b'P', b"s\0SELECT\0\0\x02\0\0\0\x17"),
            (b'B', b"\0\0\0\0\0\x01\0\0\0\x09abc"),
            (b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xf0"),
            (b'D', b"Xname\0"),
            (b'E', b"\0\0\0"),
            (b'S', b"x"),
            (b'Y', b""),
            (b'P', b"s\0SELECT\0\xff\xff"),
        ] {
            assert!(
                FrontendMessage::decode(tag, body).is_err(),
                "{} {:?}",
                tag as char,
                body
            );
        }
    }
}
