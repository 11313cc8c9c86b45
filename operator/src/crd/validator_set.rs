//! `ValidatorSet`: Gauntlet validators scoring miners and setting weights.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CheckpointSpec, ModelSpec, PullPolicy, StorageSpec, WalletSpec};
use super::status::WorkloadStatus;

/// Desired state of a group of validators on one subnet.
// Every printcolumn repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "subnet.templar.dev",
    version = "v1alpha1",
    kind = "ValidatorSet",
    namespaced,
    status = "WorkloadStatus",
    derive = "PartialEq",
    shortname = "vs",
    category = "subnet",
    doc = "A group of Gauntlet validators (one GPU pod per hotkey) on a Bittensor subnet",
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
    {"rule": "!has(self.hotkeys.hotkeySecrets) || size(self.hotkeys.hotkeySecrets) == self.replicas",
     "message": "hotkeys.hotkeySecrets must list exactly one Secret per replica"},
    {"rule": "self.weightIntervalWindows > 0", "message": "weightIntervalWindows must be > 0"},
    {"rule": "self.image.size() > 0", "message": "image must not be empty"}
]))]
pub struct ValidatorSetSpec {
    /// Subnet id.
    pub netuid: u16,
    /// Subtensor WebSocket endpoint.
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
    /// Number of validators (one pod and one hotkey each).
    pub replicas: i32,
    /// Validator hotkeys (and optional coldkey).
    pub hotkeys: WalletSpec,
    /// Gauntlet evaluation settings.
    #[serde(default)]
    pub evaluation: EvaluationSpec,
    /// Windows between two `set_weights` calls.
    #[serde(default = "default_weight_interval")]
    pub weight_interval_windows: u32,
    /// `nvidia.com/gpu` requested and limited per pod.
    #[serde(default = "default_gpus")]
    pub gpus_per_replica: i32,
    /// CPU / memory requests and limits of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Model the miners train (needed to evaluate their updates).
    pub model: ModelSpec,
    /// Bucket the validator writes peer lists, aggregates and checkpoints to.
    pub storage: StorageSpec,
    /// Checkpoint volume; an emptyDir when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSpec>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods.
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
    /// Extra environment variables for the worker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_env: Vec<EnvVar>,
    /// Extra arguments appended to `worker validator`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Delete all pods (status is kept) while true.
    #[serde(default)]
    pub suspend: bool,
}

fn default_gpus() -> i32 {
    1
}

fn default_weight_interval() -> u32 {
    3
}

/// How the Gauntlet validator evaluates miners each window.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.peersPerWindow > 0", "message": "evaluation.peersPerWindow must be > 0"},
    {"rule": "self.binaryScoreAlpha > 0.0 && self.binaryScoreAlpha <= 1.0",
     "message": "evaluation.binaryScoreAlpha must be in (0, 1]"},
    {"rule": "self.lrFactor > 0.0", "message": "evaluation.lrFactor must be > 0"}
]))]
pub struct EvaluationSpec {
    /// Peers evaluated per window.
    #[serde(default = "default_peers_per_window")]
    pub peers_per_window: u32,
    /// Batches of assigned and of random data per evaluated peer.
    #[serde(default = "default_eval_batches")]
    pub eval_batches: u32,
    /// Learning-rate factor applied to a single peer's update during evaluation.
    #[serde(default = "default_lr_factor")]
    pub lr_factor: f64,
    /// Moving-average factor of the binary indicator.
    #[serde(default = "default_binary_alpha")]
    pub binary_score_alpha: f64,
    /// Steps behind at which the sync score reaches zero.
    #[serde(default = "default_sync_max_steps_behind")]
    pub sync_max_steps_behind: u32,
    /// Peers placed in the next aggregation list.
    #[serde(default = "default_top_peers")]
    pub top_peers: u32,
    /// Reserve peers after `topPeers`.
    #[serde(default = "default_reserve_peers")]
    pub reserve_peers: u32,
}

impl Default for EvaluationSpec {
    fn default() -> Self {
        Self {
            peers_per_window: default_peers_per_window(),
            eval_batches: default_eval_batches(),
            lr_factor: default_lr_factor(),
            binary_score_alpha: default_binary_alpha(),
            sync_max_steps_behind: default_sync_max_steps_behind(),
            top_peers: default_top_peers(),
            reserve_peers: default_reserve_peers(),
        }
    }
}

fn default_peers_per_window() -> u32 {
    8
}
fn default_eval_batches() -> u32 {
    4
}
fn default_lr_factor() -> f64 {
    0.08
}
fn default_binary_alpha() -> f64 {
    0.05
}
fn default_sync_max_steps_behind() -> u32 {
    3
}
fn default_top_peers() -> u32 {
    20
}
fn default_reserve_peers() -> u32 {
    10
}
