//! Framing: splitting a byte buffer into messages under size limits, and a bounds-checked
//! reader for message bodies.

use bytes::{Buf, BufMut, BytesMut};

use super::{ProtocolError, tag_char};

/// Default ceiling for a startup packet (StartupMessage, SSLRequest, CancelRequest).
///
/// PostgreSQL itself allows 10,000 bytes; a startup packet is read before anyone is
/// authenticated, so it stays small.
pub const DEFAULT_MAX_STARTUP: usize = 10_000;
/// Default ceiling for one regular message in either direction: 64 MiB.
///
/// A single message (one DataRow, one CopyData, one Bind) is held whole in memory while it
/// passes; results as a whole are streamed message by message and never held.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Size ceilings for the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted startup packet, length word included.
    pub max_startup: usize,
    /// Largest accepted regular message, type byte and length word included.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_startup: DEFAULT_MAX_STARTUP,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// One complete regular message: type byte, length word and body, as received.
///
/// Forwarding a frame writes [`Frame::as_bytes`] unchanged, so uninspected messages are
/// never re-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    raw: BytesMut,
}

impl Frame {
    /// The message type byte.
    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The body after the length word.
    pub fn body(&self) -> &[u8] {
        &self.raw[5..]
    }

    /// The whole frame as it travels on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
}

/// Reads the header of the regular message at the start of `buf`, if all five header bytes
/// are there: the type byte and the frame's total length (type byte included).
pub fn peek_header(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, ProtocolError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let tag = header[0];
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(ProtocolError::LengthTooSmall {
            tag: tag_char(tag),
            len: len.into(),
        });
    }
    // `len` is positive and at most i32::MAX, so this cannot overflow.
    let total = len as usize + 1;
    if total > max {
        return Err(ProtocolError::TooLarge {
            tag: tag_char(tag),
            len: total,
            max,
        });
    }
    Ok(Some((tag, total)))
}

/// Splits the first complete regular message off `buf`; `Ok(None)` when more bytes are needed.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, ProtocolError> {
    match peek_header(buf, max)? {
        Some((_, total)) if buf.len() >= total => Ok(Some(Frame {
            raw: buf.split_to(total),
        })),
        _ => Ok(None),
    }
}

/// Splits the first complete startup packet (no type byte) off `buf` and returns its body
/// after the length word; `Ok(None)` when more bytes are needed.
pub fn split_startup(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ProtocolError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    // The smallest startup packet is 8 bytes: length and version/request code.
    if len < 8 {
        return Err(ProtocolError::LengthTooSmall {
            tag: '0',
            len: len.into(),
        });
    }
    let len = len as usize;
    if len > max {
        return Err(ProtocolError::TooLarge { tag: '0', len, max });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    Ok(Some(packet))
}

/// Longest statement or portal name: NAMEDATALEN - 1, the bytes PostgreSQL compares.
pub const MAX_NAME_LEN: usize = 63;

/// A bounds-checked cursor over a message body.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    tag: char,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads the body of a message whose type byte is `tag` (for error messages).
    pub fn new(tag: u8, buf: &'a [u8]) -> Self {
        Self {
            tag: tag_char(tag),
            buf,
        }
    }

    fn truncated(&self, what: &'static str) -> ProtocolError {
        ProtocolError::Truncated {
            tag: self.tag,
            what,
        }
    }

    /// An error about this message's field `what`.
    pub fn invalid(&self, what: &'static str) -> ProtocolError {
        ProtocolError::Invalid {
            tag: self.tag,
            what,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes `n` raw bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Takes one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1, what)?[0])
    }

    /// Takes a big-endian i16.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, ProtocolError> {
        let b = self.bytes(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// Takes a big-endian i16 that must not be negative (a count).
    pub fn count16(&mut self, what: &'static str) -> Result<usize, ProtocolError> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| self.invalid(what))
    }

    /// Takes a big-endian i32.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, ProtocolError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Takes a big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Takes a NUL-terminated string, which must be UTF-8.
    pub fn cstr(&mut self, what: &'static str) -> Result<&'a str, ProtocolError> {
        let raw = self.cbytes(what)?;
        std::str::from_utf8(raw).map_err(|_| self.invalid(what))
    }

    /// Takes a NUL-terminated byte string (any encoding).
    pub fn cbytes(&mut self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.truncated(what))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Takes a statement or portal name (NUL-terminated) as PostgreSQL tells names apart: by
    /// their first [`MAX_NAME_LEN`] bytes (a cut inside a UTF-8 character keeps the whole
    /// characters before it). Two names the server holds as one are one here too, and a hostile
    /// name of any length is kept in memory as at most 63 bytes.
    pub fn name(&mut self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let mut name = self.cbytes(what)?;
        if name.len() > MAX_NAME_LEN {
            name = &name[..MAX_NAME_LEN];
            if let Err(e) = std::str::from_utf8(name)
                && e.error_len().is_none()
            {
                name = &name[..e.valid_up_to()];
            }
        }
        Ok(name)
    }

    /// Takes a length-prefixed value (-1 is NULL).
    pub fn value(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, ProtocolError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(self.invalid(what)),
            n => self.bytes(n as usize, what).map(Some),
        }
    }

    /// Fails unless the body has been read to its end.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes {
                tag: self.tag,
                extra: self.buf.len(),
            })
        }
    }
}

/// Appends one regular message to `out`, writing the length word after `body` has run.
pub fn put_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = i32::try_from(out.len() - at).unwrap_or(i32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends `s` and its NUL terminator.
pub fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_cut_to_what_postgresql_compares() {
        let take = |body: &[u8]| Reader::new(b'P', body).name("name").unwrap().to_vec();
        let long = [&[b'n'; 70][..], b"\0"].concat();
        assert_eq!(take(&long), vec![b'n'; 63]);
        // 62 bytes and a two-byte character: the cut at 63 would split it.
        let split = [&[b'n'; 62][..], "é\0".as_bytes()].concat();
        assert_eq!(take(&split), vec![b'n'; 62]);
        assert_eq!(take(b"s1\0"), b"s1");
    }

    #[test]
    fn splits_frames_and_waits_for_more() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x09SEL"[..]);
        assert_eq!(split_frame(&mut buf, 100).unwrap(), None);
        buf.extend_from_slice(b"1\0Z\0\0\0\x05I");
        let f = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!((f.tag(), f.body()), (b'Q', &b"SEL1\0"[..]));
        let f = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!((f.tag(), f.body()), (b'Z', &b"I"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut small = BytesMut::from(&b"Q\0\0\0\x03"[..]);
        assert!(matches!(
            split_frame(&mut small, 100),
            Err(ProtocolError::LengthTooSmall { .. })
        ));
        let mut negative = BytesMut::from(&b"Q\xff\xff\xff\xff"[..]);
        assert!(matches!(
            split_frame(&mut negative, 100),
            Err(ProtocolError::LengthTooSmall { .. })
        ));
        let mut big = BytesMut::from(&b"Q\0\0\x10\0"[..]);
        assert!(matches!(
            split_frame(&mut big, 100),
            Err(ProtocolError::TooLarge { .. })
        ));
        let mut startup = BytesMut::from(&b"\0\0\0\x04"[..]);
        assert!(split_startup(&mut startup, 100).is_err());
        let mut startup = BytesMut::from(&b"\0\x01\0\0"[..]);
        assert!(matches!(
            split_startup(&mut startup, 100),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn reader_is_bounds_checked() {
        let mut r = Reader::new(b'P', b"ab\0\0\x01");
        assert_eq!(r.cstr("name").unwrap(), "ab");
        assert!(r.i32("oid").is_err());
        let mut r = Reader::new(b'P', b"no-nul");
        assert!(r.cstr("name").is_err());
        let mut r = Reader::new(b'D', b"\xff\xff\xff\xfe");
        assert!(r.value("column").is_err());
    }

    #[test]
    fn put_message_writes_length() {
        let mut out = BytesMut::new();
        put_message(&mut out, b'Z', |b| b.put_u8(b'I'));
        assert_eq!(&out[..], b"Z\0\0\0\x05I");
    }
}
