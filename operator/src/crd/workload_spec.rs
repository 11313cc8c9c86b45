//! The per-deployment settings both kinds share (`TrainingRun` and `ValidatorSet` embed it).
//!
//! Run-wide protocol settings (model, hyperparameters, evaluation, weights, seeds) are not
//! here: they live in the run manifest that `manifest` points at.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CheckpointSpec, DataSpec, ManifestSource, PullPolicy, StorageSpec, WalletSpec,
};

/// Desired state of a group of workers (miners or validators) on one subnet.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.replicas >= 0", "message": "replicas must be >= 0"},
    {"rule": "self.gpusPerReplica >= 0", "message": "gpusPerReplica must be >= 0"},
    {"rule": "!has(self.wallet.hotkeySecrets) || size(self.wallet.hotkeySecrets) >= self.replicas",
     "message": "wallet.hotkeySecrets must list at least one Secret per replica"},
    {"rule": "self.image.size() > 0", "message": "image must not be empty"}
]))]
pub struct WorkloadSpec {
    /// Subnet id.
    pub netuid: u16,
    /// Subtensor endpoint: `finney`, `test`, `local` or a `ws://` / `wss://` URL,
    /// e.g. `wss://entrypoint-finney.opentensor.ai:443`.
    #[schemars(length(max = 2048))]
    pub chain_endpoint: String,
    /// The run manifest every miner and validator of the run shares: run id, seeds, model
    /// (preset `tiny`, `150m`, `1b`, `8b` or `70b`, or every dimension), data, window timing,
    /// training, SparseLoCo, Gauntlet and weight settings. Exactly one of `configMapRef` or
    /// `inline`, optionally pinned by `sha256`; the operator validates it with the worker's own
    /// rules and mounts its canonical JSON read-only into every pod.
    pub manifest: ManifestSource,
    /// Worker image.
    #[schemars(length(max = 1024))]
    pub image: String,
    /// Image pull policy.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Number of workers (one pod and one hotkey each).
    pub replicas: i32,
    /// `nvidia.com/gpu` requested and limited per pod.
    #[serde(default = "default_gpus")]
    pub gpus_per_replica: i32,
    /// CPU / memory requests and limits of the worker container (GPUs come from `gpusPerReplica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Bucket the workers write to (gradients, peer lists, aggregates, checkpoints).
    pub storage: StorageSpec,
    /// Coldkey and per-replica hotkeys.
    pub wallet: WalletSpec,
    /// Access to the run's training data and the shard cache; defaults: no credentials, a
    /// 20 GiB emptyDir cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSpec>,
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
    /// Extra arguments appended to `worker miner` / `worker validator`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Delete all pods (status is kept) while true.
    #[serde(default)]
    pub suspend: bool,
}

fn default_gpus() -> i32 {
    1
}
