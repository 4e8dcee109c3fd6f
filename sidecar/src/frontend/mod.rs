//! The client side: TLS negotiation, the startup packet and client authentication.

pub mod handshake;
pub mod tls;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

pub use handshake::{ClientStartup, Handshake, HandshakeContext, handshake};

use crate::hook::{Denial, Identity};
use crate::protocol::ProtocolError;

/// Why a client's startup did not become a session.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// Reading or writing the client socket failed.
    #[error("client i/o during {stage}")]
    Io {
        /// What the sidecar was doing.
        stage: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The client broke the protocol.
    #[error("client protocol violation during {stage}")]
    Protocol {
        /// What the sidecar was doing.
        stage: &'static str,
        /// The violation.
        #[source]
        source: ProtocolError,
    },
    /// The client left before finishing startup.
    #[error("client closed the connection during {stage}")]
    Closed {
        /// What the sidecar was doing.
        stage: &'static str,
    },
    /// The TLS handshake with the client failed.
    #[error("TLS handshake with the client")]
    Tls(#[source] std::io::Error),
    /// The startup was well-formed but refused (no user, replication, bad token).
    #[error("client refused: {0}")]
    Refused(String),
}

impl FrontendError {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Protocol { .. } => "protocol",
            Self::Closed { .. } => "closed",
            Self::Tls(_) => "tls",
            Self::Refused(_) => "refused",
        }
    }
}

/// What an [`IdentityHook`] gets to decide who the client is (its `Debug` hides the token).
#[derive(Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The listener's name.
    pub listener: &'a str,
    /// The `user` the client sent (informational: the database role comes from config).
    pub user: &'a str,
    /// The password the client sent, if any: an end-user token. Never log it.
    pub token: Option<&'a str>,
    /// The client's address.
    pub peer: SocketAddr,
}

impl fmt::Debug for AuthRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("listener", &self.listener)
            .field("user", &self.user)
            .field("token", &self.token.map(|_| "***"))
            .field("peer", &self.peer)
            .finish()
    }
}

/// A boxed future, so identity hooks can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides who a client is, once per connection, before the database is contacted.
pub trait IdentityHook: Send + Sync + fmt::Debug + 'static {
    /// Verifies the optional token and returns the identity, or refuses the client
    /// (it gets FATAL 28P01 with the denial's message).
    fn authenticate<'a>(
        &'a self,
        request: AuthRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Denial>>;

    /// Whether clients of `listener` are asked for a password (an end-user token) at all, with
    /// `client_auth: password`. When no token could be accepted there, not asking lets drivers
    /// without a password (libpq cannot send an empty one) connect as the workload.
    fn wants_token(&self, _listener: &str) -> bool {
        true
    }
}

/// The default: every client is the workload; a token, if sent, is ignored.
#[derive(Debug, Clone)]
pub struct WorkloadIdentity {
    /// The workload's name (its ServiceAccount in a cluster).
    pub workload: String,
}

impl IdentityHook for WorkloadIdentity {
    fn authenticate<'a>(
        &'a self,
        _request: AuthRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Denial>> {
        Box::pin(async move { Ok(Identity::workload(self.workload.clone())) })
    }
}
