//! From accepted socket to authenticated client: SSLRequest/GSSENCRequest, StartupMessage,
//! cleartext password, identity.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;

use super::{AuthRequest, FrontendError, IdentityHook};
use crate::config::ClientAuth;
use crate::hook::Identity;
use crate::net::{Stream, fill};
use crate::protocol::backend::{
    self, INVALID_AUTHORIZATION, INVALID_PASSWORD, PROTOCOL_VIOLATION, Severity,
};
use crate::protocol::codec::{split_frame, split_startup};
use crate::protocol::frontend::FrontendMessage;
use crate::protocol::startup::{CancelRequest, StartupPacket};
use crate::protocol::{Limits, ProtocolError, tag_char};

/// Largest password message accepted: room for a generous JWT.
const MAX_PASSWORD_MESSAGE: usize = 64 * 1024;

/// Everything the handshake needs from the listener.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeContext<'a> {
    /// The listener's name.
    pub listener: &'a str,
    /// TLS towards clients, if configured.
    pub tls: Option<&'a Arc<ServerConfig>>,
    /// Size limits.
    pub limits: Limits,
    /// Whether to ask for a password.
    pub client_auth: ClientAuth,
    /// Who decides the identity.
    pub identity: &'a dyn IdentityHook,
    /// The client's address.
    pub peer: SocketAddr,
}

/// An authenticated client, ready for the database connection.
#[derive(Debug)]
pub struct ClientStartup {
    /// The client connection.
    pub stream: Stream,
    /// Bytes the client already sent after its password (pipelined queries).
    pub buf: BytesMut,
    /// Startup parameters to pass on (`user`, `database` and protocol options removed).
    pub params: Vec<(String, String)>,
    /// The `user` the client sent.
    pub user: String,
    /// The identity the hook decided.
    pub identity: Identity,
}

/// How a handshake ended.
#[derive(Debug)]
pub enum Handshake {
    /// A client session to relay.
    Session(Box<ClientStartup>),
    /// A cancel request to pass on.
    Cancel(CancelRequest),
}

/// Runs the client side of startup. On failure the client has been sent a FATAL
/// ErrorResponse where the protocol allows one, and the connection should be dropped.
pub async fn handshake(
    stream: Stream,
    ctx: HandshakeContext<'_>,
) -> Result<Handshake, FrontendError> {
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(1024),
    };
    loop {
        let request = match read_request(&mut conn, ctx.limits).await {
            Ok(r) => r,
            Err(e) => return Err(conn.fail(e).await),
        };
        match request {
            Request::Cancel(key) => return Ok(Handshake::Cancel(key)),
            Request::Encrypt { ssl } => {
                // Bytes behind an encryption request would bypass the encryption (CVE-2021-23214).
                if !conn.buf.is_empty() || conn.stream.is_tls() {
                    let e = violation("encryption negotiation")(ProtocolError::UnexpectedMessage {
                        tag: '0',
                        context: "after an encryption request or inside TLS",
                    });
                    return Err(conn.fail(e).await);
                }
                conn = conn.encrypt(if ssl { ctx.tls } else { None }).await?;
            }
            Request::Startup { minor, params } => {
                return match authenticate(&mut conn, ctx, minor, params).await {
                    Ok((params, user, identity)) => {
                        Ok(Handshake::Session(Box::new(ClientStartup {
                            stream: conn.stream,
                            buf: conn.buf,
                            params,
                            user,
                            identity,
                        })))
                    }
                    Err(e) => Err(conn.fail(e).await),
                };
            }
        }
    }
}

enum Request {
    Encrypt {
        ssl: bool,
    },
    Cancel(CancelRequest),
    Startup {
        minor: u16,
        params: Vec<(String, String)>,
    },
}

struct Conn {
    stream: Stream,
    buf: BytesMut,
}

impl Conn {
    /// Tells the client why (for errors the protocol can carry) and hands the error back.
    async fn fail(&mut self, e: FrontendError) -> FrontendError {
        let (code, message) = match &e {
            FrontendError::Protocol { source, .. } => (PROTOCOL_VIOLATION, source.to_string()),
            FrontendError::Refused(m) if m.starts_with("password") => (INVALID_PASSWORD, m.clone()),
            FrontendError::Refused(m) => (INVALID_AUTHORIZATION, m.clone()),
            _ => return e,
        };
        let mut out = BytesMut::new();
        backend::encode_error(&mut out, Severity::Fatal, code, &message, None);
        // Best effort: the client may already be gone.
        let _ = self.stream.write_all(&out).await;
        let _ = self.stream.shutdown().await;
        e
    }

    /// Answers an encryption request: TLS when offered an acceptor, else 'N'.
    async fn encrypt(mut self, tls: Option<&Arc<ServerConfig>>) -> Result<Self, FrontendError> {
        const STAGE: &str = "encryption negotiation";
        match (tls, self.stream) {
            (Some(tls), Stream::Plain(mut tcp)) => {
                tcp.write_all(b"S")
                    .await
                    .map_err(|source| FrontendError::Io {
                        stage: STAGE,
                        source,
                    })?;
                let tls = TlsAcceptor::from(tls.clone())
                    .accept(tcp)
                    .await
                    .map_err(FrontendError::Tls)?;
                self.stream = Stream::ServerTls(Box::new(tls));
            }
            (_, stream) => {
                self.stream = stream;
                self.write(b"N", STAGE).await?;
            }
        }
        Ok(self)
    }

    async fn write(&mut self, bytes: &[u8], stage: &'static str) -> Result<(), FrontendError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| FrontendError::Io { stage, source })
    }

    async fn read_more(&mut self, stage: &'static str) -> Result<(), FrontendError> {
        match fill(&mut self.stream, &mut self.buf).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(FrontendError::Closed { stage }),
            Err(source) => Err(FrontendError::Io { stage, source }),
        }
    }
}

fn violation(stage: &'static str) -> impl Fn(ProtocolError) -> FrontendError {
    move |source| FrontendError::Protocol { stage, source }
}

async fn read_request(conn: &mut Conn, limits: Limits) -> Result<Request, FrontendError> {
    const STAGE: &str = "startup";
    let body = loop {
        if let Some(body) =
            split_startup(&mut conn.buf, limits.max_startup).map_err(violation(STAGE))?
        {
            break body;
        }
        conn.read_more(STAGE).await?;
    };
    Ok(
        match StartupPacket::decode(&body).map_err(violation(STAGE))? {
            StartupPacket::SslRequest => Request::Encrypt { ssl: true },
            StartupPacket::GssEncRequest => Request::Encrypt { ssl: false },
            StartupPacket::Cancel(key) => Request::Cancel(key),
            StartupPacket::Startup(m) => Request::Startup {
                minor: m.minor,
                params: m
                    .params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            },
        },
    )
}

type Authenticated = (Vec<(String, String)>, String, Identity);

async fn authenticate(
    conn: &mut Conn,
    ctx: HandshakeContext<'_>,
    minor: u16,
    all_params: Vec<(String, String)>,
) -> Result<Authenticated, FrontendError> {
    let mut out = BytesMut::new();
    let unsupported: Vec<&str> = all_params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if minor > 0 || !unsupported.is_empty() {
        backend::encode_negotiate_version(&mut out, &unsupported);
    }
    let user = match all_params.iter().find(|(k, _)| k == "user") {
        Some((_, u)) if !u.is_empty() => u.clone(),
        _ => {
            return Err(FrontendError::Refused(
                "no PostgreSQL user name specified in startup packet".into(),
            ));
        }
    };
    if all_params
        .iter()
        .any(|(k, v)| k == "replication" && !matches!(v.as_str(), "false" | "0" | "off" | "no"))
    {
        return Err(FrontendError::Refused(
            "replication connections are not allowed through dbwarden".into(),
        ));
    }
    let params = all_params
        .into_iter()
        .filter(|(k, _)| {
            k != "user" && k != "database" && k != "replication" && !k.starts_with("_pq_.")
        })
        .collect();

    let ask = ctx.client_auth == ClientAuth::Password && ctx.identity.wants_token(ctx.listener);
    let token = match if ask {
        ClientAuth::Password
    } else {
        ClientAuth::Trust
    } {
        ClientAuth::Trust => {
            if !out.is_empty() {
                conn.write(&out, "startup").await?;
            }
            None
        }
        ClientAuth::Password => {
            backend::encode_auth(&mut out, 3);
            conn.write(&out, "authentication").await?;
            read_password(conn).await?
        }
    };
    let request = AuthRequest {
        listener: ctx.listener,
        user: &user,
        token: token.as_deref(),
        peer: ctx.peer,
    };
    let identity = ctx.identity.authenticate(request).await.map_err(|d| {
        FrontendError::Refused(format!("password authentication failed: {}", d.message))
    })?;
    Ok((params, user, identity))
}

/// Reads the PasswordMessage; an empty password means no token.
async fn read_password(conn: &mut Conn) -> Result<Option<String>, FrontendError> {
    const STAGE: &str = "authentication";
    let frame = loop {
        if let Some(f) =
            split_frame(&mut conn.buf, MAX_PASSWORD_MESSAGE).map_err(violation(STAGE))?
        {
            break f;
        }
        conn.read_more(STAGE).await?;
    };
    if frame.tag() != b'p' {
        return Err(violation(STAGE)(ProtocolError::UnexpectedMessage {
            tag: tag_char(frame.tag()),
            context: "instead of a password message",
        }));
    }
    let FrontendMessage::Password(raw) =
        FrontendMessage::decode(b'p', frame.body()).map_err(violation(STAGE))?
    else {
        return Err(FrontendError::Closed { stage: STAGE });
    };
    let password = raw.strip_suffix(&[0]).unwrap_or(raw);
    if password.contains(&0) {
        return Err(violation(STAGE)(ProtocolError::Invalid {
            tag: 'p',
            what: "password: embedded NUL",
        }));
    }
    let password = std::str::from_utf8(password).map_err(|_| {
        violation(STAGE)(ProtocolError::Invalid {
            tag: 'p',
            what: "password: not UTF-8",
        })
    })?;
    Ok((!password.is_empty()).then(|| password.to_owned()))
}
