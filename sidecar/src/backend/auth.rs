//! Startup and authentication towards the database: SCRAM-SHA-256(-PLUS), md5, cleartext.

use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramSha256,
};
use tokio::io::AsyncWriteExt;

use super::{AuthMethod, BackendError, Upstream, UpstreamTarget, tls};
use crate::net::{Stream, fill};
use crate::protocol::backend::{Authentication, backend_key, ready_status, sasl_mechanisms};
use crate::protocol::codec::{DEFAULT_MAX_STARTUP, put_cstr, put_message, split_frame};
use crate::protocol::startup::{CancelRequest, encode_startup};
use crate::protocol::{Frame, ProtocolError, tag_char};

/// Upper bound for one message during upstream startup (auth challenges, ParameterStatus).
const MAX_STARTUP_REPLY: usize = 64 * 1024;

struct Conn {
    stream: Stream,
    buf: BytesMut,
}

impl Conn {
    async fn send(&mut self, bytes: &[u8], stage: &'static str) -> Result<(), BackendError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| BackendError::Io { stage, source })
    }

    async fn next(&mut self, stage: &'static str) -> Result<Frame, BackendError> {
        loop {
            match split_frame(&mut self.buf, MAX_STARTUP_REPLY) {
                Ok(Some(frame)) if frame.tag() == b'E' => return Err(BackendError::Server(frame)),
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(source) => return Err(BackendError::Protocol { stage, source }),
            }
            match fill(&mut self.stream, &mut self.buf).await {
                Ok(true) => {}
                Ok(false) => return Err(BackendError::Closed { stage }),
                Err(source) => return Err(BackendError::Io { stage, source }),
            }
        }
    }
}

fn unexpected(stage: &'static str, tag: u8) -> BackendError {
    BackendError::Protocol {
        stage,
        source: ProtocolError::UnexpectedMessage {
            tag: tag_char(tag),
            context: "during startup",
        },
    }
}

fn protocol(stage: &'static str) -> impl Fn(ProtocolError) -> BackendError {
    move |source| BackendError::Protocol { stage, source }
}

/// Sends the StartupMessage, authenticates, and reads up to the first ReadyForQuery.
pub(super) async fn startup(
    stream: Stream,
    target: &UpstreamTarget,
    params: &[(String, String)],
) -> Result<Upstream, BackendError> {
    let creds = &target.credentials;
    let mut out = BytesMut::with_capacity(256);
    let fixed = [
        ("user", creds.username.as_str()),
        ("database", target.database.as_str()),
    ];
    encode_startup(
        &mut out,
        fixed
            .into_iter()
            .chain(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    if out.len() > DEFAULT_MAX_STARTUP {
        return Err(protocol("startup")(ProtocolError::TooLarge {
            tag: '0',
            len: out.len(),
            max: DEFAULT_MAX_STARTUP,
        }));
    }
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(4096),
    };
    conn.send(&out, "startup").await?;

    let auth = authenticate(&mut conn, target).await?;

    const STAGE: &str = "session start";
    let mut greeting = BytesMut::new();
    let mut key = None;
    loop {
        let frame = conn.next(STAGE).await?;
        match frame.tag() {
            b'S' | b'N' => greeting.extend_from_slice(frame.as_bytes()),
            b'K' => {
                let (pid, secret) = backend_key(frame.body()).map_err(protocol(STAGE))?;
                key = Some(CancelRequest { pid, secret });
            }
            // NegotiateProtocolVersion: we asked for 3.0 without options, nothing to adapt.
            b'v' => {}
            b'Z' => {
                let status = ready_status(frame.body()).map_err(protocol(STAGE))?;
                // A server without BackendKeyData (some poolers) just cannot be cancelled.
                let key = key.unwrap_or(CancelRequest { pid: 0, secret: 0 });
                return Ok(Upstream {
                    stream: conn.stream,
                    key,
                    greeting,
                    status,
                    auth,
                    buf: conn.buf,
                });
            }
            other => return Err(unexpected(STAGE, other)),
        }
    }
}

async fn authenticate(
    conn: &mut Conn,
    target: &UpstreamTarget,
) -> Result<AuthMethod, BackendError> {
    const STAGE: &str = "authentication";
    let creds = &target.credentials;
    let password = creds.password.expose().as_bytes();
    let mut scram: Option<ScramSha256> = None;
    let mut method = AuthMethod::Trust;
    let mut out = BytesMut::new();
    loop {
        let frame = conn.next(STAGE).await?;
        if frame.tag() != b'R' {
            return Err(unexpected(STAGE, frame.tag()));
        }
        out.clear();
        match Authentication::decode(frame.body()).map_err(protocol(STAGE))? {
            Authentication::Ok => {
                if scram.is_some() {
                    // The server skipped SASLFinal: its proof was never checked.
                    return Err(BackendError::UnsupportedAuth(
                        "SCRAM without a server signature".into(),
                    ));
                }
                return Ok(method);
            }
            Authentication::CleartextPassword => {
                method = AuthMethod::Cleartext;
                put_message(&mut out, b'p', |b| put_cstr(b, password));
            }
            Authentication::Md5Password { salt } => {
                method = AuthMethod::Md5;
                let hash = md5_hash(creds.username.as_bytes(), password, salt);
                put_message(&mut out, b'p', |b| put_cstr(b, hash.as_bytes()));
            }
            Authentication::Sasl { mechanisms } => {
                let offered = |m: &str| sasl_mechanisms(mechanisms).any(|o| o == m.as_bytes());
                let peer_cert = match &conn.stream {
                    Stream::ClientTls(tls) => tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec()),
                    _ => None,
                };
                let (mechanism, binding) = match peer_cert {
                    Some(cert) if offered(SCRAM_SHA_256_PLUS) => (
                        SCRAM_SHA_256_PLUS,
                        ChannelBinding::tls_server_end_point(tls::server_end_point(&cert)),
                    ),
                    _ if offered(SCRAM_SHA_256) => (
                        SCRAM_SHA_256,
                        if conn.stream.is_tls() {
                            ChannelBinding::unsupported()
                        } else {
                            ChannelBinding::unrequested()
                        },
                    ),
                    _ => {
                        let list = String::from_utf8_lossy(mechanisms).replace('\0', " ");
                        return Err(BackendError::UnsupportedAuth(format!(
                            "SASL ({})",
                            list.trim()
                        )));
                    }
                };
                tracing::debug!(mechanism, "upstream SASL");
                method = if mechanism == SCRAM_SHA_256_PLUS {
                    AuthMethod::ScramSha256Plus
                } else {
                    AuthMethod::ScramSha256
                };
                let s = ScramSha256::new(password, binding);
                put_message(&mut out, b'p', |b| {
                    put_cstr(b, mechanism.as_bytes());
                    b.put_i32(i32::try_from(s.message().len()).unwrap_or(0));
                    b.put_slice(s.message());
                });
                scram = Some(s);
            }
            Authentication::SaslContinue(data) => {
                let s = scram.as_mut().ok_or_else(|| unexpected(STAGE, b'R'))?;
                s.update(data).map_err(BackendError::Scram)?;
                put_message(&mut out, b'p', |b| b.put_slice(s.message()));
            }
            Authentication::SaslFinal(data) => {
                let mut s = scram.take().ok_or_else(|| unexpected(STAGE, b'R'))?;
                s.finish(data).map_err(BackendError::Scram)?;
                // The server's proof checked out; AuthenticationOk follows.
                let next = conn.next(STAGE).await?;
                return match Authentication::decode(next.body()) {
                    Ok(Authentication::Ok) if next.tag() == b'R' => Ok(method),
                    _ => Err(unexpected(STAGE, next.tag())),
                };
            }
            Authentication::Unsupported(code) => {
                return Err(BackendError::UnsupportedAuth(format!(
                    "authentication code {code}"
                )));
            }
        }
        conn.send(&out, STAGE).await?;
    }
}
