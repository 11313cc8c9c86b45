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
    /// Secret holding the coldkey. When set, each replica's hotkey is burn-registered by a
    /// one-shot Job (`{name}-register-{i}`, `worker register`) that alone mounts it; the
    /// long-running miner or validator pods never see the coldkey and start once their Job
    /// has completed. Unset: the hotkeys must be registered out of band.
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

/// How the workers reach the run's training data (the run manifest's `data` says which
/// dataset): read credentials for an `s3://` dataset, the claim holding a directory dataset,
/// and each replica's bounded shard cache.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.cacheGib >= 1", "message": "data.cacheGib must be at least 1"}
]))]
pub struct DataSpec {
    /// Secret with read credentials of an `s3://` dataset (required for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecretRef>,
    /// PersistentVolumeClaim holding a directory dataset (required for one), mounted
    /// read-only at the directory the run manifest names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub volume_claim: Option<String>,
    /// Bound of each replica's shard cache in GiB (least recently used shards go first).
    #[serde(default = "default_data_cache_gib")]
    pub cache_gib: u32,
    /// Existing PersistentVolumeClaim for the shard caches, each replica in its own
    /// directory (`data-cache-{index}`), so a restarted pod finds its shards; an emptyDir
    /// sized to the bound when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cache_claim: Option<String>,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            credentials_secret: None,
            volume_claim: None,
            cache_gib: default_data_cache_gib(),
            cache_claim: None,
        }
    }
}

/// Default shard cache bound (GiB).
pub fn default_data_cache_gib() -> u32 {
    20
}

/// Where the run manifest comes from: exactly one of a ConfigMap key or an inline document,
/// optionally pinned to its SHA-256.
///
/// It is validated by the `run-manifest` crate, exactly as the worker validates it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.configMapRef) != has(self.inline)",
     "message": "set exactly one of manifest.configMapRef or manifest.inline"},
    {"rule": "!has(self.sha256) || self.sha256.matches('^(sha256:)?[0-9a-fA-F]{64}$')",
     "message": "manifest.sha256 must be 64 hex digits, optionally prefixed with sha256:"}
]))]
pub struct ManifestSource {
    /// A key of a ConfigMap in the namespace of the custom resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ManifestConfigMapRef>,
    /// The manifest document itself (JSON object, camelCase, as `worker manifest template` writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "inline_manifest_schema")]
    pub inline: Option<serde_json::Value>,
    /// Expected SHA-256 of the manifest's canonical encoding (hex, optionally `sha256:`-prefixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 71))]
    pub sha256: Option<String>,
}

fn inline_manifest_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The run manifest document (validated by the operator, not by the API server).",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A key of a ConfigMap holding the run manifest.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestConfigMapRef {
    /// ConfigMap name (same namespace as the custom resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the manifest inside the ConfigMap.
    #[serde(default = "default_manifest_key")]
    #[schemars(length(max = 253))]
    pub key: String,
}

/// Default ConfigMap key of a run manifest.
pub fn default_manifest_key() -> String {
    "manifest.json".to_owned()
}
