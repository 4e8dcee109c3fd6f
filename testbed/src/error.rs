use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What can go wrong while starting or driving the test bed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program the test bed needs is not installed; `install` is the command that installs it.
    #[error("{tool} not found (looked in {looked}); install it with: {install}")]
    ToolMissing {
        tool: &'static str,
        looked: String,
        install: &'static str,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A server process ended on its own; `tail` is the end of its log.
    #[error("{name} exited ({status}) before it was ready; end of {log}:\n{tail}")]
    Exited {
        name: &'static str,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },

    #[error("{name} was not ready after {waited:?}; end of {log}:\n{tail}")]
    NotReady {
        name: &'static str,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },

    /// A command run to completion failed.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    #[error("generating test certificates: {0}")]
    Certificate(#[from] rcgen::Error),

    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),

    #[error("reading a test kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),

    /// The kubelet stand-in cannot run `container` (`namespace/pod/container`) as a kubelet
    /// would; `problem` says what it does not support or what is missing.
    #[error("kubelet stand-in, container {container}: {problem}")]
    Kubelet { container: String, problem: String },

    #[error("looking up system user {user:?}: {reason}")]
    SystemUser { user: &'static str, reason: String },
}

/// Result with the test bed's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
