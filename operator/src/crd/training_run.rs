//! `TrainingRun`: a set of SparseLoCo miners on one subnet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CheckpointSpec, ModelSpec, PullPolicy, StorageSpec, WalletSpec};
use super::status::WorkloadStatus;

/// Desired state of a group of miners training one model on one subnet.
// Every printcolumn repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "subnet.templar.dev",
    version = "v1alpha1",
    kind = "TrainingRun",
    namespaced,
    status = "WorkloadStatus",
    derive = "PartialEq",
    shortname = "tr",
    category = "subnet",
    doc = "A group of SparseLoCo miners (one GPU pod per hotkey) on a Bittensor subnet",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Netuid", type_ = "integer", json_path = ".spec.netuid"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.replicas >= 0", "message": "replicas must be >= 0"},
    {"rule": "self.gpusPerReplica >= 0", "message": "gpusPerReplica must be >= 0"},
    {"rule": "!has(self.wallet.hotkeySecrets) || size(self.wallet.hotkeySecrets) == self.replicas",
     "message": "wallet.hotkeySecrets must list exactly one Secret per replica"},
    {"rule": "self.image.size() > 0", "message": "image must not be empty"}
]))]
pub struct TrainingRunSpec {
    /// Subnet id.
    pub netuid: u16,
    /// Subtensor WebSocket endpoint, e.g. `wss://entrypoint-finney.opentensor.ai:443`.
    #[schemars(length(max = 2048))]
    pub chain_endpoint: String,
    /// Worker image.
    #[schemars(length(max = 1024))]
    pub image: String,
    /// Image pull policy.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Number of miners (one pod and one hotkey each).
    pub replicas: i32,
    /// `nvidia.com/gpu` requested and limited per pod.
    #[serde(default = "default_gpus")]
    pub gpus_per_replica: i32,
    /// CPU / memory requests and limits of the worker container (GPUs come from `gpusPerReplica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Model shape.
    pub model: ModelSpec,
    /// SparseLoCo hyperparameters.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    /// Bucket the miners upload compressed pseudo-gradients to.
    pub storage: StorageSpec,
    /// Coldkey and per-replica hotkeys.
    pub wallet: WalletSpec,
    /// Checkpoint volume; an emptyDir when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSpec>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods (a `nvidia.com/gpu` toleration is added when GPUs are requested).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// ServiceAccount of the pods; when unset no API token is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra environment variables for the worker (cannot override operator-managed ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_env: Vec<EnvVar>,
    /// Extra arguments appended to `worker miner`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Delete all pods (status is kept) while true.
    #[serde(default)]
    pub suspend: bool,
}

fn default_gpus() -> i32 {
    1
}

/// SparseLoCo hyperparameters (defaults follow the Covenant-72B / SparseLoCo papers).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.innerSteps > 0", "message": "hyperparameters.innerSteps must be > 0"},
    {"rule": "self.chunk > 0 && self.topk > 0 && self.topk <= self.chunk * self.chunk",
     "message": "hyperparameters.topk must be in 1..=chunk*chunk"},
    {"rule": "self.outerLr > 0.0 && self.innerLr > 0.0", "message": "learning rates must be > 0"},
    {"rule": "self.errorFeedbackDecay >= 0.0 && self.errorFeedbackDecay <= 1.0",
     "message": "hyperparameters.errorFeedbackDecay must be in [0, 1]"}
]))]
pub struct Hyperparameters {
    /// Inner AdamW steps per window (H).
    #[serde(default = "default_inner_steps")]
    pub inner_steps: u32,
    /// Values kept per chunk by top-k compression.
    #[serde(default = "default_topk")]
    pub topk: u32,
    /// Chunk edge length (2-D tensors use chunk x chunk blocks).
    #[serde(default = "default_chunk")]
    pub chunk: u32,
    /// Outer SGD learning rate.
    #[serde(default = "default_outer_lr")]
    pub outer_lr: f64,
    /// Inner AdamW peak learning rate.
    #[serde(default = "default_inner_lr")]
    pub inner_lr: f64,
    /// Error-feedback decay.
    #[serde(default = "default_error_feedback_decay")]
    pub error_feedback_decay: f64,
    /// AdamW weight decay.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Gradient clipping norm.
    #[serde(default = "default_grad_clip")]
    pub grad_clip: f64,
    /// Linear warmup steps of the inner schedule.
    #[serde(default)]
    pub warmup_steps: u32,
    /// Sequences per micro-batch.
    #[serde(default = "default_micro_batch_size")]
    pub micro_batch_size: u32,
    /// Sequences per inner step (gradient accumulation = batchSize / microBatchSize).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Quantization bits of the uploaded values.
    #[serde(default = "default_quantization_bits")]
    pub quantization_bits: u32,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            inner_steps: default_inner_steps(),
            topk: default_topk(),
            chunk: default_chunk(),
            outer_lr: default_outer_lr(),
            inner_lr: default_inner_lr(),
            error_feedback_decay: default_error_feedback_decay(),
            weight_decay: default_weight_decay(),
            grad_clip: default_grad_clip(),
            warmup_steps: 0,
            micro_batch_size: default_micro_batch_size(),
            batch_size: default_batch_size(),
            quantization_bits: default_quantization_bits(),
        }
    }
}

fn default_inner_steps() -> u32 {
    30
}
fn default_topk() -> u32 {
    64
}
fn default_chunk() -> u32 {
    64
}
fn default_outer_lr() -> f64 {
    0.4
}
fn default_inner_lr() -> f64 {
    1.17e-4
}
fn default_error_feedback_decay() -> f64 {
    0.95
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_grad_clip() -> f64 {
    1.0
}
fn default_micro_batch_size() -> u32 {
    1
}
fn default_batch_size() -> u32 {
    8
}
fn default_quantization_bits() -> u32 {
    2
}
