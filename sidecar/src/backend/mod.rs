//! The database side: TCP, TLS, startup and authentication with the configured credentials.

mod auth;
pub mod tls;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{Config, ConfigError, Credentials, TlsMode};
use crate::net::{Stream, fill};
use crate::protocol::backend::ErrorFields;
use crate::protocol::startup::{CancelRequest, encode_cancel, encode_ssl_request};
use crate::protocol::{Frame, ProtocolError};
use tls::UpstreamTls;

/// Why the database could not be reached or refused the session.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect failed.
    #[error("connecting to {addr}")]
    Connect {
        /// host:port.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the database socket failed.
    #[error("database i/o during {stage}")]
    Io {
        /// What the sidecar was doing.
        stage: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database closed the connection.
    #[error("database closed the connection during {stage}")]
    Closed {
        /// What the sidecar was doing.
        stage: &'static str,
    },
    /// TLS is required but the server does not offer it.
    #[error("the database refused TLS, which tls.mode requires")]
    TlsRefused,
    /// The TLS handshake failed (certificate not trusted, wrong name...).
    #[error("TLS handshake with the database")]
    Tls(#[source] std::io::Error),
    /// The database sent an ErrorResponse during startup; relayed to the client as is.
    #[error("the database refused the session: {}", describe(.0))]
    Server(Frame),
    /// The database broke the protocol.
    #[error("database protocol violation during {stage}")]
    Protocol {
        /// What the sidecar was doing.
        stage: &'static str,
        /// The violation.
        #[source]
        source: ProtocolError,
    },
    /// The database asked for an authentication method the sidecar does not implement.
    #[error("unsupported authentication method {0}")]
    UnsupportedAuth(String),
    /// SCRAM failed (bad server proof, malformed challenge).
    #[error("SCRAM authentication")]
    Scram(#[source] std::io::Error),
    /// Connecting took longer than the connect timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

fn describe(frame: &Frame) -> String {
    let fields = ErrorFields::decode(frame.tag(), frame.body()).ok();
    let get = |c| fields.and_then(|f| f.field(c)).unwrap_or("?");
    format!("{} {}: {}", get(b'S'), get(b'C'), get(b'M'))
}

impl BackendError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Io { .. } | Self::Closed { .. } => "io",
            Self::TlsRefused | Self::Tls(_) => "tls",
            Self::Server(_) => "server",
            Self::Protocol { .. } => "protocol",
            Self::UnsupportedAuth(_) | Self::Scram(_) => "auth",
            Self::Timeout(_) => "timeout",
        }
    }
}

/// Where and how to reach one database.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// TLS mode.
    pub mode: TlsMode,
    /// The TLS connector unless mode is disable.
    pub tls: Option<UpstreamTls>,
    /// Role and password.
    pub credentials: Credentials,
    /// Budget for connect + TLS + authentication.
    pub connect_timeout: Duration,
}

/// Why a listener's upstream target could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The listener's upstream TLS settings are unusable.
    #[error("listener {listener}: upstream TLS")]
    Tls {
        /// The listener.
        listener: String,
        /// The cause.
        #[source]
        source: tls::UpstreamTlsError,
    },
    /// The credentials could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl UpstreamTarget {
    /// The target of listener `index` of `config`: address, TLS connector and credentials (read
    /// now from their files or environment).
    pub fn for_listener(config: &Config, index: usize) -> Result<Self, TargetError> {
        let listener = &config.listeners[index];
        let up = &listener.upstream;
        let tls = tls::connector(up).map_err(|source| TargetError::Tls {
            listener: listener.name.clone(),
            source,
        })?;
        let credentials = up
            .credentials
            .resolve(&format!("listeners[{index}].upstream.credentials"))?;
        Ok(Self {
            host: up.host.clone(),
            port: up.port,
            database: up.database.clone(),
            mode: up.tls.mode,
            tls,
            credentials,
            connect_timeout: config.limits.connect_timeout(),
        })
    }
}

/// How the sidecar proved itself to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The server asked for nothing.
    Trust,
    /// Cleartext password.
    Cleartext,
    /// md5 password hash.
    Md5,
    /// SCRAM-SHA-256 without channel binding.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS, bound to the TLS channel (tls-server-end-point).
    ScramSha256Plus,
}

impl AuthMethod {
    /// A bounded label for logs and audit.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Trust => "trust",
            Self::Cleartext => "password",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
            Self::ScramSha256Plus => "scram-sha-256-plus",
        }
    }
}

/// An authenticated database session, at its first ReadyForQuery.
#[derive(Debug)]
pub struct Upstream {
    /// The connection.
    pub stream: Stream,
    /// The server's cancel key.
    pub key: CancelRequest,
    /// ParameterStatus and NoticeResponse frames to relay to the client, in order.
    pub greeting: BytesMut,
    /// Transaction status of the first ReadyForQuery.
    pub status: u8,
    /// The authentication method the server asked for.
    pub auth: AuthMethod,
    /// Bytes read past the first ReadyForQuery (normally none).
    pub buf: BytesMut,
}

impl UpstreamTarget {
    /// Connects and authenticates, passing the client's startup parameters on.
    pub async fn connect(&self, params: &[(String, String)]) -> Result<Upstream, BackendError> {
        tokio::time::timeout(self.connect_timeout, async {
            let stream = self.open().await?;
            auth::startup(stream, self, params).await
        })
        .await
        .map_err(|_| BackendError::Timeout(self.connect_timeout))?
    }

    /// Passes a cancel request on, over a new connection.
    pub async fn cancel(&self, key: CancelRequest) -> Result<(), BackendError> {
        tokio::time::timeout(self.connect_timeout, async {
            let mut stream = self.open().await?;
            let mut out = BytesMut::new();
            encode_cancel(&mut out, key);
            stream
                .write_all(&out)
                .await
                .map_err(|source| BackendError::Io {
                    stage: "cancel",
                    source,
                })?;
            // The server closes without answering; wait for that so the request is delivered.
            let mut sink = BytesMut::new();
            while fill(&mut stream, &mut sink).await.unwrap_or(false) {
                sink.clear();
            }
            Ok(())
        })
        .await
        .map_err(|_| BackendError::Timeout(self.connect_timeout))?
    }

    /// TCP, then TLS per the mode.
    async fn open(&self) -> Result<Stream, BackendError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| BackendError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let mut tcp = tcp;
        let mut out = BytesMut::new();
        encode_ssl_request(&mut out);
        tcp.write_all(&out)
            .await
            .map_err(|source| BackendError::Io {
                stage: "tls negotiation",
                source,
            })?;
        let mut answer = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut answer)
            .await
            .map_err(|source| BackendError::Io {
                stage: "tls negotiation",
                source,
            })?;
        match answer[0] {
            b'S' => {}
            b'N' => return Err(BackendError::TlsRefused),
            other => {
                return Err(BackendError::Protocol {
                    stage: "tls negotiation",
                    source: ProtocolError::UnexpectedMessage {
                        tag: crate::protocol::tag_char(other),
                        context: "in answer to SSLRequest",
                    },
                });
            }
        }
        let connector = TlsConnector::from(tls.config.clone());
        let stream = connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(BackendError::Tls)?;
        Ok(Stream::ClientTls(Box::new(stream)))
    }
}
