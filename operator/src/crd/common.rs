//! Spec fragments shared by `TrainingRun` and `ValidatorSet`.

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When the kubelet pulls the worker image (mirrors `core/v1` `imagePullPolicy`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// S3-compatible bucket the workers write to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.bucket.size() > 0", "message": "storage.bucket must not be empty"},
    {"rule": "self.endpoint.size() > 0", "message": "storage.endpoint must not be empty"}
]))]
pub struct StorageSpec {
    /// Endpoint URL, e.g. `https://<account>.r2.cloudflarestorage.com`.
    #[schemars(length(max = 2048))]
    pub endpoint: String,
    /// Bucket name (3-63 characters).
    #[schemars(length(max = 63))]
    pub bucket: String,
    /// Region passed to the S3 client.
    #[serde(default = "default_region")]
    #[schemars(length(max = 64))]
    pub region: String,
    /// Secret holding the write credentials (mounted as env via `secretKeyRef`).
    pub credentials_secret: CredentialsSecretRef,
    /// Optional read-only credentials the worker publishes on chain so peers can read its bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_credentials_secret: Option<CredentialsSecretRef>,
}

fn default_region() -> String {
    "auto".to_owned()
}

/// Reference to a Secret holding an S3 access key pair.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Secret name (same namespace as the custom resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the access key id inside the Secret.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key inside the Secret.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "accessKeyId".to_owned()
}

fn default_secret_access_key_key() -> String {
    "secretAccessKey".to_owned()
}

/// Where each replica's Bittensor keys come from.
///
/// Exactly one of `hotkeySecrets` (one Secret per replica, in index order) or
/// `hotkeySecretTemplate` (a name with `{index}`, e.g. `miner-hotkey-{index}`) is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.hotkeySecrets) != has(self.hotkeySecretTemplate)",
     "message": "set exactly one of wallet.hotkeySecrets or wallet.hotkeySecretTemplate"},
    {"rule": "!has(self.hotkeySecretTemplate) || self.hotkeySecretTemplate.contains('{index}')",
     "message": "wallet.hotkeySecretTemplate must contain the {index} placeholder"}
]))]
pub struct WalletSpec {
    /// Secret holding the coldkey, mounted only when set (needed for registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub coldkey_secret: Option<String>,
    /// Key of the coldkey file inside `coldkeySecret`.
    #[serde(default = "default_coldkey_key")]
    pub coldkey_key: String,
    /// One hotkey Secret name per replica, in index order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub hotkey_secrets: Option<Vec<String>>,
    /// Hotkey Secret name template; `{index}` is replaced by the replica index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub hotkey_secret_template: Option<String>,
    /// Key of the hotkey wallet file inside each hotkey Secret.
    #[serde(default = "default_hotkey_key")]
    pub hotkey_key: String,
}

fn default_coldkey_key() -> String {
    "coldkey".to_owned()
}

fn default_hotkey_key() -> String {
    "hotkey".to_owned()
}

/// Persistent checkpoint volume mounted into every replica.
///
/// Either an existing claim shared by all replicas, or a claim template from which the
/// operator creates one PersistentVolumeClaim per replica (`{name}-checkpoint-{index}`),
/// kept across pod restarts and scale-downs and garbage-collected with the custom resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.existingClaim) && has(self.claimTemplate))",
     "message": "checkpoint.existingClaim and checkpoint.claimTemplate are mutually exclusive"}
]))]
pub struct CheckpointSpec {
    /// Name of an existing PersistentVolumeClaim (must allow ReadWriteMany for replicas > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub existing_claim: Option<String>,
    /// Template for one PersistentVolumeClaim per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_template: Option<PersistentVolumeClaimSpec>,
    /// Mount path inside the worker container.
    #[serde(default = "default_checkpoint_mount_path")]
    pub mount_path: String,
}

/// Default checkpoint mount path.
pub fn default_checkpoint_mount_path() -> String {
    "/checkpoints".to_owned()
}

/// LLaMA-style model shape: a named preset, or explicit fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.preset) || (has(self.hiddenSize) && has(self.numLayers) && has(self.numHeads) && has(self.intermediateSize) && has(self.vocabSize))",
     "message": "set model.preset or all of hiddenSize, numLayers, numHeads, intermediateSize and vocabSize"},
    {"rule": "!has(self.preset) || !(has(self.hiddenSize) || has(self.numLayers) || has(self.numHeads) || has(self.numKvHeads) || has(self.intermediateSize) || has(self.vocabSize))",
     "message": "model.preset and explicit model dimensions are mutually exclusive"}
]))]
pub struct ModelSpec {
    /// Named preset understood by the worker (e.g. `tiny`, `llama-1b`, `llama-8b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub preset: Option<String>,
    /// Hidden size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<u32>,
    /// Number of transformer layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<u32>,
    /// Number of attention heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<u32>,
    /// Number of key/value heads (grouped-query attention); defaults to `numHeads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_kv_heads: Option<u32>,
    /// MLP intermediate size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<u32>,
    /// Vocabulary size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<u32>,
    /// Training sequence length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seq_len: Option<u32>,
}
