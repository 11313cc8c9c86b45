//! Errors of the reconciler.

use crate::pod_builder::BuildError;

/// A reconcile failure (the controller retries it after `error_policy`'s delay).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace (the kinds are namespaced, so the API never sends this).
    #[error("object has no namespace")]
    MissingNamespace,
    /// The desired pod could not be built.
    #[error("building pod: {0}")]
    Build(#[from] BuildError),
}

impl Error {
    /// Short, low-cardinality class for the failure metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(status)) => format!("api_{}", status.code),
            Error::Kube(_) => "kube".to_owned(),
            Error::MissingNamespace => "missing_namespace".to_owned(),
            Error::Build(_) => "build".to_owned(),
        }
    }
}
