//! Status shared by `TrainingRun` and `ValidatorSet`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a workload (written by the operator with server-side apply).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Coarse lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Standard conditions: `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist and are not terminating (scale subresource `statusReplicasPath`).
    #[serde(default)]
    pub replicas: i32,
    /// Pods running and Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods whose config hash matches the current spec.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Label selector of the pods (scale subresource `labelSelectorPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Per-replica state, keyed by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["index"]))]
    pub replica_statuses: Vec<ReplicaStatus>,
}

impl WorkloadStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The status entry of replica `index`, if present.
    pub fn replica(&self, index: i32) -> Option<&ReplicaStatus> {
        self.replica_statuses.iter().find(|r| r.index == index)
    }
}

/// Lifecycle phase of a whole workload.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Phase {
    /// Pods are being created and none is ready yet.
    Pending,
    /// Scaling or rolling out a new spec.
    Progressing,
    /// Every replica is up to date and ready.
    Running,
    /// At least one replica failed and is backing off.
    Degraded,
    /// `spec.suspend` is set: no pods.
    Suspended,
    /// The spec was rejected; see the `Ready` condition.
    Invalid,
    /// Being deleted.
    Terminating,
}

impl Phase {
    /// Name as shown in `kubectl get`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Running => "Running",
            Phase::Degraded => "Degraded",
            Phase::Suspended => "Suspended",
            Phase::Invalid => "Invalid",
            Phase::Terminating => "Terminating",
        }
    }
}

/// Lifecycle phase of one replica.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ReplicaPhase {
    /// The pod was just created.
    #[default]
    Creating,
    /// The pod exists but is not running yet.
    Pending,
    /// The pod is running.
    Running,
    /// The pod is being replaced by one with the current spec.
    Updating,
    /// The pod exited; it is being removed.
    Failed,
    /// Waiting for `nextRetry` before recreating the pod.
    BackOff,
    /// Waiting for the one-shot registration Job of its hotkey before creating the pod.
    Registering,
    /// The registration Job failed; `lastFailure` says why (delete the Job to retry).
    RegistrationFailed,
    /// The pod is terminating.
    Terminating,
    /// The workload is suspended.
    Suspended,
}

/// State of one replica (one pod, one hotkey).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Replica index (list-map key).
    pub index: i32,
    /// Current pod name, if a pod exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Replica phase.
    #[serde(default)]
    pub phase: ReplicaPhase,
    /// Whether the pod is Ready.
    #[serde(default)]
    pub ready: bool,
    /// Config hash of the current pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Hotkey Secret mounted into this replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotkey_secret: Option<String>,
    /// UID on the subnet's metagraph, as reported by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u16>,
    /// Last window the worker completed, as reported by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window: Option<u64>,
    /// Last score (miner: the validator's score of it; validator: mean score it gave), as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_score: Option<f64>,
    /// Times this replica's pod was recreated after exiting.
    #[serde(default)]
    pub restarts: i32,
    /// Exits since the replica last ran stably; drives the backoff.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// Earliest time the pod is recreated after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<Time>,
    /// Why the last pod exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// UID of the last failed pod already counted in `restarts` (keeps counting idempotent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_pod_uid: Option<String>,
}
