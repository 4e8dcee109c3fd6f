//! PostgreSQL v3 wire messages: framing, decoding into borrowed slices, and the few encoders
//! the proxy needs to speak for itself.
//!
//! Decoders never allocate per message and never panic on hostile bytes: every read goes
//! through [`codec::Reader`], which returns [`ProtocolError`] on a short or malformed body.
//! Messages the proxy does not inspect are never decoded at all; they travel as raw frames.

pub mod backend;
pub mod codec;
pub mod frontend;
#[doc(hidden)]
pub mod fuzz;
pub mod startup;

pub use codec::{Frame, Limits, Reader};

/// Why a byte stream is not a valid PostgreSQL protocol stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A length word below the minimum for its message.
    #[error("message '{tag}' declares length {len}, below the minimum of 4")]
    LengthTooSmall {
        /// The message type byte, printable.
        tag: char,
        /// The declared length.
        len: i64,
    },
    /// A length word above the configured limit.
    #[error("message '{tag}' declares length {len}, above the limit of {max} bytes")]
    TooLarge {
        /// The message type byte, printable.
        tag: char,
        /// The declared length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A message body ended before a field it must contain.
    #[error("message '{tag}' is truncated: missing {what}")]
    Truncated {
        /// The message type byte, printable.
        tag: char,
        /// The field that could not be read.
        what: &'static str,
    },
    /// A message body holds bytes after its last field.
    #[error("message '{tag}' has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// The message type byte, printable.
        tag: char,
        /// How many bytes were left.
        extra: usize,
    },
    /// A field holds a value outside its domain.
    #[error("message '{tag}' has an invalid {what}")]
    Invalid {
        /// The message type byte, printable.
        tag: char,
        /// The field and what is wrong with it.
        what: &'static str,
    },
    /// More messages awaiting the database's answer than a session may have.
    #[error(
        "more than {max} messages are waiting for the database's answer: send a Sync (the \
         database skips everything after an error until one)"
    )]
    TooManyInFlight {
        /// The limit.
        max: usize,
    },
    /// A message type the receiving side does not accept.
    #[error("unexpected message type '{tag}' {context}")]
    UnexpectedMessage {
        /// The message type byte, printable.
        tag: char,
        /// Where it arrived.
        context: &'static str,
    },
    /// A startup packet with an unsupported protocol version.
    #[error("unsupported frontend protocol {major}.{minor}: the sidecar supports 3.0")]
    UnsupportedVersion {
        /// Requested major version.
        major: u16,
        /// Requested minor version.
        minor: u16,
    },
}

/// Renders a message type byte for messages and logs (never more than one char).
pub fn tag_char(tag: u8) -> char {
    if tag.is_ascii_graphic() {
        tag as char
    } else {
        '?'
    }
}
