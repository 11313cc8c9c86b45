//! Why the control plane could not be used.

use std::path::PathBuf;

/// A harness failure. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A binary is missing or was built for another version.
    #[error(
        "{path} is missing or not {want} (stamp: {found:?}); build the control plane with \
         scripts/setup-k8s.sh (make test runs it), or point SUBNET_K8S_BIN_DIR at its bin directory"
    )]
    MissingBinary {
        /// Expected path.
        path: PathBuf,
        /// Wanted version.
        want: String,
        /// Version in the stamp file.
        found: String,
    },
    /// A process could not be started or exited during start-up.
    #[error("{name} did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    Start {
        /// Component.
        name: String,
        /// What went wrong.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// Something did not become ready in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// File system.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation.
    #[error("generating certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A Kubernetes API call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Building a client.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A manifest could not be parsed.
    #[error("{file}: {reason}")]
    Manifest {
        /// File.
        file: PathBuf,
        /// Parse error.
        reason: String,
    },
    /// The shared control plane failed to start earlier in this process.
    #[error("the control plane of this test binary failed to start: {0}")]
    Shared(String),
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }
}
