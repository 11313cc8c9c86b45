//! Kubernetes operator for a Bittensor training subnet.
//!
//! `TrainingRun` (miners) and `ValidatorSet` (validators) custom resources are reconciled into
//! one GPU pod per replica with stable names, exponential-backoff recreation of exited pods,
//! one-at-a-time rolling updates, suspend, owner-reference clean-up, events, server-side-applied
//! status, Prometheus metrics and optional Lease-based leader election.
//!
//! Pure building blocks (`validation`, `pod_builder`, `rollout`, `backoff`, `conditions`,
//! `events`) hold the logic; `reconciler` executes their decisions against the API.

pub mod backoff;
pub mod clock;
pub mod conditions;
pub mod contract;
pub mod controller;
pub mod crd;
pub mod data_access;
pub mod error;
pub mod error_backoff;
pub mod events;
pub mod http_server;
pub mod leader;
pub mod manifest;
pub mod metrics;
pub mod naming;
pub mod observed;
pub mod owned_object;
pub mod pod_builder;
pub mod reconciler;
pub mod registration;
pub mod registration_job;
pub mod rendered;
pub mod rollout;
pub mod validation;
pub mod worker_identity;
pub mod workload;

pub use error::Error;
pub use reconciler::{
    Context, FIELD_MANAGER, FINALIZER, ReconcilerConfig, error_policy, reconcile,
};
pub use workload::{Role, Workload};

#[cfg(test)]
mod testing;
