//! One abstraction over `TrainingRun` and `ValidatorSet`: everything the reconciler needs.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{
    CheckpointSpec, ModelSpec, PullPolicy, StorageSpec, TrainingRun, ValidatorSet, WalletSpec,
    WorkloadStatus,
};
use crate::validation::{self, SpecError};

/// What a workload's pods do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// SparseLoCo miner (`worker miner`).
    Miner,
    /// Gauntlet validator (`worker validator`).
    Validator,
}

impl Role {
    /// Sub-command of the worker binary and infix of pod names.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Miner => "miner",
            Role::Validator => "validator",
        }
    }
}

/// Borrowed view of the spec fields both kinds share.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadParams<'a> {
    /// Subnet id.
    pub netuid: u16,
    /// Subtensor endpoint.
    pub chain_endpoint: &'a str,
    /// Worker image.
    pub image: &'a str,
    /// Image pull policy.
    pub image_pull_policy: PullPolicy,
    /// Image pull Secrets.
    pub image_pull_secrets: &'a [String],
    /// Desired replicas.
    pub replicas: i32,
    /// GPUs per pod.
    pub gpus_per_replica: i32,
    /// Container resources (without GPUs).
    pub resources: Option<&'a ResourceRequirements>,
    /// Model shape.
    pub model: &'a ModelSpec,
    /// Bucket settings.
    pub storage: &'a StorageSpec,
    /// Keys.
    pub wallet: &'a WalletSpec,
    /// Checkpoint volume.
    pub checkpoint: Option<&'a CheckpointSpec>,
    /// Node selector.
    pub node_selector: &'a BTreeMap<String, String>,
    /// Tolerations.
    pub tolerations: &'a [Toleration],
    /// Affinity.
    pub affinity: Option<&'a Affinity>,
    /// PriorityClass.
    pub priority_class_name: Option<&'a str>,
    /// ServiceAccount of the pods.
    pub service_account_name: Option<&'a str>,
    /// Extra env of the worker.
    pub extra_env: &'a [EnvVar],
    /// Extra args of the worker.
    pub extra_args: &'a [String],
    /// Whether pods are suspended.
    pub suspend: bool,
}

/// A namespaced custom resource reconciled into one pod per replica.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Role of the pods.
    const ROLE: Role;
    /// Label carrying the owner's name on its pods, e.g. `subnet.templar.dev/trainingrun`.
    const OWNER_LABEL: &'static str;
    /// Spec field holding the keys (`wallet` or `hotkeys`), for error messages.
    const WALLET_FIELD: &'static str;

    /// Shared spec fields.
    fn params(&self) -> WorkloadParams<'_>;
    /// Role-specific worker environment (name, value), in a stable order.
    fn role_env(&self) -> Vec<(&'static str, String)>;
    /// Role-specific spec checks.
    fn role_errors(&self) -> Vec<SpecError>;
    /// Current status.
    fn workload_status(&self) -> Option<&WorkloadStatus>;
}

fn model_env(model: &ModelSpec) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(preset) = &model.preset {
        env.push(("MODEL_PRESET", preset.clone()));
    }
    let dims = [
        ("MODEL_HIDDEN_SIZE", model.hidden_size),
        ("MODEL_NUM_LAYERS", model.num_layers),
        ("MODEL_NUM_HEADS", model.num_heads),
        ("MODEL_NUM_KV_HEADS", model.num_kv_heads),
        ("MODEL_INTERMEDIATE_SIZE", model.intermediate_size),
        ("MODEL_VOCAB_SIZE", model.vocab_size),
        ("MODEL_MAX_SEQ_LEN", model.max_seq_len),
    ];
    env.extend(
        dims.into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v.to_string()))),
    );
    env
}

impl Workload for TrainingRun {
    const ROLE: Role = Role::Miner;
    const OWNER_LABEL: &'static str = "subnet.templar.dev/trainingrun";
    const WALLET_FIELD: &'static str = "wallet";

    fn params(&self) -> WorkloadParams<'_> {
        let s = &self.spec;
        WorkloadParams {
            netuid: s.netuid,
            chain_endpoint: &s.chain_endpoint,
            image: &s.image,
            image_pull_policy: s.image_pull_policy,
            image_pull_secrets: &s.image_pull_secrets,
            replicas: s.replicas,
            gpus_per_replica: s.gpus_per_replica,
            resources: s.resources.as_ref(),
            model: &s.model,
            storage: &s.storage,
            wallet: &s.wallet,
            checkpoint: s.checkpoint.as_ref(),
            node_selector: &s.node_selector,
            tolerations: &s.tolerations,
            affinity: s.affinity.as_ref(),
            priority_class_name: s.priority_class_name.as_deref(),
            service_account_name: s.service_account_name.as_deref(),
            extra_env: &s.extra_env,
            extra_args: &s.extra_args,
            suspend: s.suspend,
        }
    }

    fn role_env(&self) -> Vec<(&'static str, String)> {
        let h = &self.spec.hyperparameters;
        let mut env = model_env(&self.spec.model);
        env.extend([
            ("INNER_STEPS", h.inner_steps.to_string()),
            ("TOPK", h.topk.to_string()),
            ("CHUNK", h.chunk.to_string()),
            ("OUTER_LR", h.outer_lr.to_string()),
            ("INNER_LR", h.inner_lr.to_string()),
            ("ERROR_FEEDBACK_DECAY", h.error_feedback_decay.to_string()),
            ("WEIGHT_DECAY", h.weight_decay.to_string()),
            ("GRAD_CLIP", h.grad_clip.to_string()),
            ("WARMUP_STEPS", h.warmup_steps.to_string()),
            ("MICRO_BATCH_SIZE", h.micro_batch_size.to_string()),
            ("BATCH_SIZE", h.batch_size.to_string()),
            ("QUANTIZATION_BITS", h.quantization_bits.to_string()),
        ]);
        env
    }

    fn role_errors(&self) -> Vec<SpecError> {
        validation::hyperparameter_errors(&self.spec.hyperparameters)
    }

    fn workload_status(&self) -> Option<&WorkloadStatus> {
        self.status.as_ref()
    }
}

impl Workload for ValidatorSet {
    const ROLE: Role = Role::Validator;
    const OWNER_LABEL: &'static str = "subnet.templar.dev/validatorset";
    const WALLET_FIELD: &'static str = "hotkeys";

    fn params(&self) -> WorkloadParams<'_> {
        let s = &self.spec;
        WorkloadParams {
            netuid: s.netuid,
            chain_endpoint: &s.chain_endpoint,
            image: &s.image,
            image_pull_policy: s.image_pull_policy,
            image_pull_secrets: &s.image_pull_secrets,
            replicas: s.replicas,
            gpus_per_replica: s.gpus_per_replica,
            resources: s.resources.as_ref(),
            model: &s.model,
            storage: &s.storage,
            wallet: &s.hotkeys,
            checkpoint: s.checkpoint.as_ref(),
            node_selector: &s.node_selector,
            tolerations: &s.tolerations,
            affinity: s.affinity.as_ref(),
            priority_class_name: s.priority_class_name.as_deref(),
            service_account_name: s.service_account_name.as_deref(),
            extra_env: &s.extra_env,
            extra_args: &s.extra_args,
            suspend: s.suspend,
        }
    }

    fn role_env(&self) -> Vec<(&'static str, String)> {
        let e = &self.spec.evaluation;
        let mut env = model_env(&self.spec.model);
        env.extend([
            ("PEERS_PER_WINDOW", e.peers_per_window.to_string()),
            ("EVAL_BATCHES", e.eval_batches.to_string()),
            ("EVAL_LR_FACTOR", e.lr_factor.to_string()),
            ("BINARY_SCORE_ALPHA", e.binary_score_alpha.to_string()),
            ("SYNC_MAX_STEPS_BEHIND", e.sync_max_steps_behind.to_string()),
            ("TOP_PEERS", e.top_peers.to_string()),
            ("RESERVE_PEERS", e.reserve_peers.to_string()),
            (
                "WEIGHT_INTERVAL_WINDOWS",
                self.spec.weight_interval_windows.to_string(),
            ),
        ]);
        env
    }

    fn role_errors(&self) -> Vec<SpecError> {
        validation::evaluation_errors(&self.spec.evaluation, self.spec.weight_interval_windows)
    }

    fn workload_status(&self) -> Option<&WorkloadStatus> {
        self.status.as_ref()
    }
}
