//! The operator's reconcile errors.

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// An object arrived without a namespace, though its kind is namespaced.
    #[error("{kind} {name} has no namespace")]
    MissingNamespace {
        /// The resource kind.
        kind: &'static str,
        /// The object's name.
        name: String,
    },
}

impl Error {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_unreachable",
            Error::MissingNamespace { .. } => "missing_namespace",
        }
    }
}
