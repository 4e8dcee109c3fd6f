//! Startup packets: StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.
//!
//! These arrive before any message type byte exists, framed by a length word alone (see
//! [`super::codec::split_startup`]); the decoders here read the body after the length word.

use bytes::{BufMut, BytesMut};

use super::ProtocolError;
use super::codec::{Reader, put_cstr};

/// Request code of an SSLRequest.
pub const SSL_REQUEST: i32 = 80_877_103;
/// Request code of a GSSENCRequest.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// Request code of a CancelRequest.
pub const CANCEL_REQUEST: i32 = 80_877_102;
/// Protocol 3.0, the version the sidecar speaks on both sides.
pub const PROTOCOL_3_0: i32 = 196_608;

/// A decoded startup packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket<'a> {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// The client asks to cancel a running query of another connection.
    Cancel(CancelRequest),
    /// The client opens a session.
    Startup(StartupMessage<'a>),
}

/// A CancelRequest: the backend key the client was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelRequest {
    /// The process id from BackendKeyData.
    pub pid: u32,
    /// The secret from BackendKeyData.
    pub secret: u32,
}

/// A StartupMessage: protocol version and connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage<'a> {
    /// The requested minor version of protocol 3 (0 for 3.0, 2 for 3.2).
    pub minor: u16,
    /// Parameters in the order sent, `user` and `database` included.
    pub params: Vec<(&'a str, &'a str)>,
}

impl<'a> StartupMessage<'a> {
    /// The value of parameter `name`, if sent.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

/// Most parameters a startup message may carry; PostgreSQL has no limit but the packet
/// size bounds it anyway. This keeps the per-connection vector small.
const MAX_PARAMS: usize = 64;

impl<'a> StartupPacket<'a> {
    /// Decodes the body of a startup packet (after its length word).
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(b'0', body);
        let code = r.i32("protocol version")?;
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                r.finish()?;
                Ok(if code == SSL_REQUEST {
                    Self::SslRequest
                } else {
                    Self::GssEncRequest
                })
            }
            CANCEL_REQUEST => {
                let pid = r.u32("process id")?;
                // Protocol 3.2 allows keys up to 256 bytes; the sidecar hands out 4-byte keys,
                // so anything else cannot match and is refused as malformed.
                let secret = r.u32("secret key")?;
                r.finish()?;
                Ok(Self::Cancel(CancelRequest { pid, secret }))
            }
            _ => {
                let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
                if major != 3 {
                    return Err(ProtocolError::UnsupportedVersion { major, minor });
                }
                let mut params = Vec::new();
                loop {
                    let key = r.cstr("parameter name")?;
                    if key.is_empty() {
                        break;
                    }
                    let value = r.cstr("parameter value")?;
                    if params.len() == MAX_PARAMS {
                        return Err(r.invalid("parameter list: too many parameters"));
                    }
                    params.push((key, value));
                }
                r.finish()?;
                Ok(Self::Startup(StartupMessage { minor, params }))
            }
        }
    }
}

/// Appends a complete StartupMessage (protocol 3.0) with `params` to `out`.
pub fn encode_startup<'p>(
    out: &mut BytesMut,
    params: impl IntoIterator<Item = (&'p str, &'p str)>,
) {
    let at = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(out, k.as_bytes());
        put_cstr(out, v.as_bytes());
    }
    out.put_u8(0);
    let len = i32::try_from(out.len() - at).unwrap_or(i32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a complete SSLRequest to `out`.
pub fn encode_ssl_request(out: &mut BytesMut) {
    out.put_i32(8);
    out.put_i32(SSL_REQUEST);
}

/// Appends a complete CancelRequest to `out`.
pub fn encode_cancel(out: &mut BytesMut, key: CancelRequest) {
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST);
    out.put_u32(key.pid);
    out.put_u32(key.secret);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::codec::split_startup;
    use super::*;

    fn decode_packet(bytes: &[u8]) -> Result<StartupPacket<'static>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let body = split_startup(&mut buf, 10_000)?.unwrap();
        let leaked: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
        StartupPacket::decode(leaked)
    }

    #[test]
    fn round_trips_startup() {
        let mut out = BytesMut::new();
        encode_startup(&mut out, [("user", "app"), ("database", "db")]);
        let StartupPacket::Startup(m) = decode_packet(&out).unwrap() else {
            panic!("not startup")
        };
        assert_eq!(m.minor, 0);
        assert_eq!(m.param("user"), Some("app"));
        assert_eq!(m.param("database"), Some("db"));
    }

    #[test]
    fn decodes_requests() {
        let mut out = BytesMut::new();
        encode_ssl_request(&mut out);
        assert_eq!(decode_packet(&out).unwrap(), StartupPacket::SslRequest);
        let mut out = BytesMut::new();
        encode_cancel(&mut out, CancelRequest { pid: 7, secret: 9 });
        assert_eq!(
            decode_packet(&out).unwrap(),
            StartupPacket::Cancel(CancelRequest { pid: 7, secret: 9 })
        );
    }

    #[test]
    fn rejects_bad_packets() {
        // Protocol 2.0.
        assert!(matches!(
            decode_packet(b"\0\0\0\x09\0\x02\0\0\0"),
            Err(ProtocolError::UnsupportedVersion { major: 2, .. })
        ));
        // Parameter without a value.
        assert!(decode_packet(b"\0\0\0\x0d\0\x03\0\0user\0").is_err());
        // Missing final terminator.
        assert!(decode_packet(b"\0\0\0\x0c\0\x03\0\0u\0v\0").is_err());
        // SSLRequest with trailing bytes.
        assert!(decode_packet(b"\0\0\0\x09\x04\xd2\x16\x2f\0").is_err());
    }
}
