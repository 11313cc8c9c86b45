//! Spec checks run before any pod is touched. A failing spec gets `Ready=False`,
//! reason `InvalidSpec`, a Warning event, and no pods.
//!
//! The CRD's CEL rules reject most of these at admission; this module repeats them (the CRD
//! may be installed without validation, or an old object may predate a rule) and adds the
//! checks CEL cannot express.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::contract::RESERVED_ENV;
use crate::crd::{
    CheckpointSpec, EvaluationSpec, Hyperparameters, ModelSpec, StorageSpec, WalletSpec,
};
use crate::naming::{INDEX_PLACEHOLDER, hotkey_secret};
use crate::workload::{Workload, WorkloadParams};

/// Most replicas one workload may have.
pub const MAX_REPLICAS: i32 = 1024;
/// Most GPUs one pod may request.
pub const MAX_GPUS_PER_REPLICA: i32 = 16;
/// Longest workload name (it becomes a label value).
pub const MAX_NAME_LEN: usize = 63;
/// Extended resource name of NVIDIA GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// One problem in a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// JSON path of the offending field, e.g. `spec.storage.bucket`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl SpecError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins errors into one condition / event message.
pub fn describe(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every problem of a workload (its name and spec).
pub fn validate<K: Workload>(obj: &K) -> Result<(), Vec<SpecError>> {
    let name = obj.meta().name.as_deref().unwrap_or_default();
    let mut errors = name_errors(name);
    errors.extend(common_errors(&obj.params(), K::WALLET_FIELD));
    errors.extend(obj.role_errors());
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn name_errors(name: &str) -> Vec<SpecError> {
    if name.len() > MAX_NAME_LEN {
        vec![SpecError::new(
            "metadata.name",
            format!(
                "must be at most {MAX_NAME_LEN} characters (it is used as a label value), got {}",
                name.len()
            ),
        )]
    } else {
        Vec::new()
    }
}

/// Checks of the fields shared by both kinds; `wallet_field` is `wallet` or `hotkeys`.
pub fn common_errors(p: &WorkloadParams<'_>, wallet_field: &str) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if p.image.trim().is_empty() || p.image.chars().any(char::is_whitespace) {
        errors.push(SpecError::new(
            "spec.image",
            "must be a non-empty image reference without spaces",
        ));
    }
    if !has_scheme(
        p.chain_endpoint,
        &["ws://", "wss://", "http://", "https://"],
    ) {
        errors.push(SpecError::new(
            "spec.chainEndpoint",
            format!(
                "must start with ws://, wss://, http:// or https://, got {:?}",
                p.chain_endpoint
            ),
        ));
    }
    if !(0..=MAX_REPLICAS).contains(&p.replicas) {
        errors.push(SpecError::new(
            "spec.replicas",
            format!("must be in 0..={MAX_REPLICAS}, got {}", p.replicas),
        ));
    }
    if !(0..=MAX_GPUS_PER_REPLICA).contains(&p.gpus_per_replica) {
        errors.push(SpecError::new(
            "spec.gpusPerReplica",
            format!(
                "must be in 0..={MAX_GPUS_PER_REPLICA}, got {}",
                p.gpus_per_replica
            ),
        ));
    }
    if let Some(resources) = p.resources {
        errors.extend(resource_errors(resources));
    }
    errors.extend(storage_errors(p.storage));
    errors.extend(wallet_errors(p.wallet, p.replicas, wallet_field));
    errors.extend(model_errors(p.model));
    if let Some(checkpoint) = p.checkpoint {
        errors.extend(checkpoint_errors(checkpoint));
    }
    for (i, env) in p.extra_env.iter().enumerate() {
        if RESERVED_ENV.contains(&env.name.as_str()) {
            errors.push(SpecError::new(
                format!("spec.extraEnv[{i}]"),
                format!(
                    "{} is set by the operator and cannot be overridden",
                    env.name
                ),
            ));
        }
    }
    for (i, secret) in p.image_pull_secrets.iter().enumerate() {
        if !is_dns_subdomain(secret) {
            errors.push(SpecError::new(
                format!("spec.imagePullSecrets[{i}]"),
                format!("{secret:?} is not a valid Secret name"),
            ));
        }
    }
    errors
}

fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|s| url.len() > s.len() && url.starts_with(s))
}

fn resource_errors(resources: &ResourceRequirements) -> Vec<SpecError> {
    let mut errors = Vec::new();
    for (field, map) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        if map.as_ref().is_some_and(|m| m.contains_key(GPU_RESOURCE)) {
            errors.push(SpecError::new(
                format!("spec.resources.{field}"),
                format!("must not set {GPU_RESOURCE}; use spec.gpusPerReplica"),
            ));
        }
    }
    errors
}

fn storage_errors(s: &StorageSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if s.bucket.is_empty() {
        errors.push(SpecError::new("spec.storage.bucket", "must not be empty"));
    } else if !is_bucket_name(&s.bucket) {
        errors.push(SpecError::new(
            "spec.storage.bucket",
            format!(
                "{:?} is not a valid bucket name (3-63 lowercase letters, digits, '.', '-')",
                s.bucket
            ),
        ));
    }
    if !has_scheme(&s.endpoint, &["http://", "https://"]) {
        errors.push(SpecError::new(
            "spec.storage.endpoint",
            format!("must be an http:// or https:// URL, got {:?}", s.endpoint),
        ));
    }
    let refs = std::iter::once(("credentialsSecret", &s.credentials_secret)).chain(
        s.read_credentials_secret
            .iter()
            .map(|r| ("readCredentialsSecret", r)),
    );
    for (field, secret) in refs {
        if !is_dns_subdomain(&secret.name) {
            errors.push(SpecError::new(
                format!("spec.storage.{field}.name"),
                format!("{:?} is not a valid Secret name", secret.name),
            ));
        }
        for key in [&secret.access_key_id_key, &secret.secret_access_key_key] {
            if !is_secret_key(key) {
                errors.push(SpecError::new(
                    format!("spec.storage.{field}"),
                    format!("{key:?} is not a valid Secret key"),
                ));
            }
        }
    }
    errors
}

fn wallet_errors(w: &WalletSpec, replicas: i32, field: &str) -> Vec<SpecError> {
    let mut errors = Vec::new();
    match (&w.hotkey_secrets, &w.hotkey_secret_template) {
        (Some(_), Some(_)) | (None, None) => errors.push(SpecError::new(
            format!("spec.{field}"),
            "set exactly one of hotkeySecrets or hotkeySecretTemplate",
        )),
        (Some(list), None) => {
            if i32::try_from(list.len()).ok() != Some(replicas) {
                errors.push(SpecError::new(
                    format!("spec.{field}.hotkeySecrets"),
                    format!(
                        "lists {} Secrets but replicas is {replicas}; give exactly one per replica",
                        list.len()
                    ),
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, name) in list.iter().enumerate() {
                if !is_dns_subdomain(name) {
                    errors.push(SpecError::new(
                        format!("spec.{field}.hotkeySecrets[{i}]"),
                        format!("{name:?} is not a valid Secret name"),
                    ));
                } else if !seen.insert(name.as_str()) {
                    errors.push(SpecError::new(
                        format!("spec.{field}.hotkeySecrets[{i}]"),
                        format!(
                            "{name:?} is used by two replicas; each replica needs its own hotkey"
                        ),
                    ));
                }
            }
        }
        (None, Some(template)) => {
            if !template.contains(INDEX_PLACEHOLDER) {
                errors.push(SpecError::new(
                    format!("spec.{field}.hotkeySecretTemplate"),
                    format!("{template:?} must contain {INDEX_PLACEHOLDER}"),
                ));
            } else {
                let last = replicas.max(1) - 1;
                let probe = hotkey_secret(w, last).unwrap_or_default();
                if !is_dns_subdomain(&probe) {
                    errors.push(SpecError::new(
                        format!("spec.{field}.hotkeySecretTemplate"),
                        format!("renders {probe:?}, which is not a valid Secret name"),
                    ));
                }
            }
        }
    }
    if !is_secret_key(&w.hotkey_key) {
        errors.push(SpecError::new(
            format!("spec.{field}.hotkeyKey"),
            format!("{:?} is not a valid Secret key", w.hotkey_key),
        ));
    }
    if let Some(coldkey) = &w.coldkey_secret {
        if !is_dns_subdomain(coldkey) {
            errors.push(SpecError::new(
                format!("spec.{field}.coldkeySecret"),
                format!("{coldkey:?} is not a valid Secret name"),
            ));
        }
        if !is_secret_key(&w.coldkey_key) {
            errors.push(SpecError::new(
                format!("spec.{field}.coldkeyKey"),
                format!("{:?} is not a valid Secret key", w.coldkey_key),
            ));
        }
    }
    errors
}

fn model_errors(m: &ModelSpec) -> Vec<SpecError> {
    let dims = [
        m.hidden_size,
        m.num_layers,
        m.num_heads,
        m.num_kv_heads,
        m.intermediate_size,
        m.vocab_size,
    ];
    let any_dim = dims.iter().any(Option::is_some);
    if let Some(preset) = &m.preset {
        let mut errors = Vec::new();
        if any_dim {
            errors.push(SpecError::new(
                "spec.model",
                "preset and explicit dimensions are mutually exclusive",
            ));
        }
        if preset.trim().is_empty() {
            errors.push(SpecError::new("spec.model.preset", "must not be empty"));
        }
        return errors;
    }
    let (Some(hidden), Some(layers), Some(heads), Some(inter), Some(vocab)) = (
        m.hidden_size,
        m.num_layers,
        m.num_heads,
        m.intermediate_size,
        m.vocab_size,
    ) else {
        return vec![SpecError::new(
            "spec.model",
            "set preset, or all of hiddenSize, numLayers, numHeads, intermediateSize and vocabSize",
        )];
    };
    let mut errors = Vec::new();
    for (field, v) in [
        ("hiddenSize", hidden),
        ("numLayers", layers),
        ("numHeads", heads),
        ("intermediateSize", inter),
        ("vocabSize", vocab),
    ] {
        if v == 0 {
            errors.push(SpecError::new(format!("spec.model.{field}"), "must be > 0"));
        }
    }
    if heads > 0 && hidden % heads != 0 {
        errors.push(SpecError::new(
            "spec.model.hiddenSize",
            format!("{hidden} is not divisible by numHeads {heads}"),
        ));
    }
    if let Some(kv) = m.num_kv_heads
        && (kv == 0 || heads % kv != 0)
    {
        errors.push(SpecError::new(
            "spec.model.numKvHeads",
            format!("{kv} must be > 0 and divide numHeads {heads}"),
        ));
    }
    errors
}

fn checkpoint_errors(c: &CheckpointSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if c.existing_claim.is_some() && c.claim_template.is_some() {
        errors.push(SpecError::new(
            "spec.checkpoint",
            "existingClaim and claimTemplate are mutually exclusive",
        ));
    }
    if let Some(claim) = &c.existing_claim
        && !is_dns_subdomain(claim)
    {
        errors.push(SpecError::new(
            "spec.checkpoint.existingClaim",
            format!("{claim:?} is not a valid claim name"),
        ));
    }
    if let Some(template) = &c.claim_template {
        let has_size = template
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| r.contains_key("storage"));
        if !has_size {
            errors.push(SpecError::new(
                "spec.checkpoint.claimTemplate.resources.requests.storage",
                "is required",
            ));
        }
    }
    let reserved = ["/", crate::contract::TMP_DIR, crate::contract::SHM_DIR];
    if !c.mount_path.starts_with('/')
        || reserved.contains(&c.mount_path.trim_end_matches('/'))
        || c.mount_path == "/"
    {
        errors.push(SpecError::new(
            "spec.checkpoint.mountPath",
            format!(
                "{:?} must be an absolute path other than /, /tmp and /dev/shm",
                c.mount_path
            ),
        ));
    }
    errors
}

/// Checks of the miners' hyperparameters.
pub fn hyperparameter_errors(h: &Hyperparameters) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, field: &str, message: String| {
        if !ok {
            errors.push(SpecError::new(
                format!("spec.hyperparameters.{field}"),
                message,
            ));
        }
    };
    check(h.inner_steps > 0, "innerSteps", "must be > 0".into());
    check(h.chunk > 0, "chunk", "must be > 0".into());
    let max_topk = u64::from(h.chunk) * u64::from(h.chunk);
    check(
        h.topk > 0 && u64::from(h.topk) <= max_topk,
        "topk",
        format!("{} must be in 1..={max_topk} (chunk*chunk)", h.topk),
    );
    check(
        is_positive(h.outer_lr),
        "outerLr",
        format!("{} must be > 0", h.outer_lr),
    );
    check(
        is_positive(h.inner_lr),
        "innerLr",
        format!("{} must be > 0", h.inner_lr),
    );
    check(
        (0.0..=1.0).contains(&h.error_feedback_decay),
        "errorFeedbackDecay",
        format!("{} must be in [0, 1]", h.error_feedback_decay),
    );
    check(
        h.weight_decay.is_finite() && h.weight_decay >= 0.0,
        "weightDecay",
        format!("{} must be >= 0", h.weight_decay),
    );
    check(
        is_positive(h.grad_clip),
        "gradClip",
        format!("{} must be > 0", h.grad_clip),
    );
    check(
        (1..=8).contains(&h.quantization_bits),
        "quantizationBits",
        format!("{} must be in 1..=8", h.quantization_bits),
    );
    check(
        h.micro_batch_size > 0,
        "microBatchSize",
        "must be > 0".into(),
    );
    check(
        h.micro_batch_size > 0
            && h.batch_size >= h.micro_batch_size
            && h.batch_size.is_multiple_of(h.micro_batch_size),
        "batchSize",
        format!(
            "{} must be a positive multiple of microBatchSize {}",
            h.batch_size, h.micro_batch_size
        ),
    );
    errors
}

/// Checks of the validators' evaluation settings.
pub fn evaluation_errors(e: &EvaluationSpec, weight_interval_windows: u32) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, field: &str, message: String| {
        if !ok {
            errors.push(SpecError::new(format!("spec.{field}"), message));
        }
    };
    check(
        e.peers_per_window > 0,
        "evaluation.peersPerWindow",
        "must be > 0".into(),
    );
    check(
        e.eval_batches > 0,
        "evaluation.evalBatches",
        "must be > 0".into(),
    );
    check(
        is_positive(e.lr_factor),
        "evaluation.lrFactor",
        format!("{} must be > 0", e.lr_factor),
    );
    check(
        e.binary_score_alpha > 0.0 && e.binary_score_alpha <= 1.0,
        "evaluation.binaryScoreAlpha",
        format!("{} must be in (0, 1]", e.binary_score_alpha),
    );
    check(e.top_peers > 0, "evaluation.topPeers", "must be > 0".into());
    check(
        weight_interval_windows > 0,
        "weightIntervalWindows",
        "must be > 0".into(),
    );
    errors
}

fn is_positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// RFC 1123 DNS subdomain (names of Secrets, claims, ...).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, validators};
    use k8s_openapi::api::core::v1::EnvVar;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn messages<K: Workload>(obj: &K) -> String {
        validate(obj).map_or_else(|e| describe(&e), |()| String::new())
    }

    #[test]
    fn valid_fixtures_pass() {
        assert_eq!(messages(&run(4)), "");
        assert_eq!(messages(&validators(2)), "");
        assert_eq!(messages(&run(0)), "");
    }

    #[test]
    fn each_broken_field_is_named_with_a_clear_message() {
        type Edit = Box<dyn Fn(&mut crate::crd::TrainingRun)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "spec.replicas: must be in 0..=1024, got -1",
                Box::new(|r| r.spec.replicas = -1),
            ),
            (
                "spec.gpusPerReplica: must be in 0..=16, got 17",
                Box::new(|r| r.spec.gpus_per_replica = 17),
            ),
            (
                "spec.image: must be a non-empty image reference",
                Box::new(|r| r.spec.image = " ".into()),
            ),
            (
                "spec.chainEndpoint: must start with ws://",
                Box::new(|r| r.spec.chain_endpoint = "subtensor:9944".into()),
            ),
            (
                "spec.storage.bucket: must not be empty",
                Box::new(|r| r.spec.storage.bucket.clear()),
            ),
            (
                "spec.storage.bucket: \"Bad_Bucket\" is not a valid bucket name",
                Box::new(|r| r.spec.storage.bucket = "Bad_Bucket".into()),
            ),
            (
                "spec.storage.endpoint: must be an http:// or https:// URL",
                Box::new(|r| r.spec.storage.endpoint = "s3.example.com".into()),
            ),
            (
                "spec.storage.credentialsSecret.name: \"\" is not a valid Secret name",
                Box::new(|r| r.spec.storage.credentials_secret.name.clear()),
            ),
            (
                "spec.wallet: set exactly one of hotkeySecrets or hotkeySecretTemplate",
                Box::new(|r| r.spec.wallet.hotkey_secret_template = None),
            ),
            (
                "spec.wallet.hotkeySecretTemplate: \"miner\" must contain {index}",
                Box::new(|r| r.spec.wallet.hotkey_secret_template = Some("miner".into())),
            ),
            (
                "renders \"Miner-3\", which is not a valid Secret name",
                Box::new(|r| r.spec.wallet.hotkey_secret_template = Some("Miner-{index}".into())),
            ),
            (
                "spec.model: set preset, or all of",
                Box::new(|r| r.spec.model.preset = None),
            ),
            (
                "spec.model: preset and explicit dimensions are mutually exclusive",
                Box::new(|r| r.spec.model.num_layers = Some(2)),
            ),
            (
                "spec.hyperparameters.topk: 5000 must be in 1..=4096",
                Box::new(|r| r.spec.hyperparameters.topk = 5000),
            ),
            (
                "spec.hyperparameters.outerLr: -1 must be > 0",
                Box::new(|r| r.spec.hyperparameters.outer_lr = -1.0),
            ),
            (
                "spec.hyperparameters.batchSize: 10 must be a positive multiple of microBatchSize 4",
                Box::new(|r| {
                    r.spec.hyperparameters.batch_size = 10;
                    r.spec.hyperparameters.micro_batch_size = 4;
                }),
            ),
            (
                "spec.extraEnv[0]: NETUID is set by the operator",
                Box::new(|r| {
                    r.spec.extra_env = vec![EnvVar {
                        name: "NETUID".into(),
                        value: Some("1".into()),
                        ..EnvVar::default()
                    }]
                }),
            ),
            (
                "metadata.name: must be at most 63 characters",
                Box::new(|r| r.metadata.name = Some("x".repeat(64))),
            ),
        ];
        for (expected, edit) in cases {
            let mut r = run(4);
            edit(&mut r);
            let msg = messages(&r);
            assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
        }
    }

    #[test]
    fn hotkey_lists_must_match_replicas_and_be_unique() {
        let mut r = run(3);
        r.spec.wallet.hotkey_secret_template = None;
        r.spec.wallet.hotkey_secrets = Some(vec!["a".into(), "b".into(), "a".into()]);
        let msg = messages(&r);
        assert!(
            msg.contains("spec.wallet.hotkeySecrets[2]: \"a\" is used by two replicas"),
            "{msg}"
        );
        r.spec.wallet.hotkey_secrets = Some(vec!["a".into(), "b".into()]);
        let msg = messages(&r);
        assert!(msg.contains("lists 2 Secrets but replicas is 3"), "{msg}");
        let mut v = validators(2);
        v.spec.hotkeys.hotkey_secrets = Some(vec!["only".into()]);
        assert!(
            messages(&v).contains("spec.hotkeys.hotkeySecrets: lists 1 Secrets but replicas is 2")
        );
    }

    #[test]
    fn gpus_must_come_from_gpus_per_replica() {
        let mut r = run(1);
        let mut limits = std::collections::BTreeMap::new();
        limits.insert(GPU_RESOURCE.to_owned(), Quantity("2".into()));
        r.spec.resources = Some(ResourceRequirements {
            limits: Some(limits),
            ..Default::default()
        });
        assert!(messages(&r).contains(
            "spec.resources.limits: must not set nvidia.com/gpu; use spec.gpusPerReplica"
        ));
    }

    #[test]
    fn explicit_model_dimensions_are_checked() {
        let mut r = run(1);
        r.spec.model = ModelSpec {
            hidden_size: Some(1000),
            num_layers: Some(4),
            num_heads: Some(16),
            num_kv_heads: Some(5),
            intermediate_size: Some(4096),
            vocab_size: Some(32000),
            ..ModelSpec::default()
        };
        let msg = messages(&r);
        assert!(
            msg.contains("spec.model.hiddenSize: 1000 is not divisible by numHeads 16"),
            "{msg}"
        );
        assert!(
            msg.contains("spec.model.numKvHeads: 5 must be > 0 and divide numHeads 16"),
            "{msg}"
        );
        r.spec.model.hidden_size = Some(1024);
        r.spec.model.num_kv_heads = Some(4);
        assert_eq!(messages(&r), "");
    }

    #[test]
    fn validator_settings_are_checked() {
        let mut v = validators(1);
        v.spec.evaluation.binary_score_alpha = 0.0;
        v.spec.weight_interval_windows = 0;
        v.spec.evaluation.peers_per_window = 0;
        let msg = messages(&v);
        for expected in [
            "spec.evaluation.binaryScoreAlpha: 0 must be in (0, 1]",
            "spec.weightIntervalWindows: must be > 0",
            "spec.evaluation.peersPerWindow: must be > 0",
        ] {
            assert!(msg.contains(expected), "{expected} in {msg}");
        }
    }

    #[test]
    fn checkpoint_sources_and_paths_are_checked() {
        let mut r = run(1);
        r.spec.checkpoint = Some(CheckpointSpec {
            existing_claim: Some("shared".into()),
            claim_template: Some(Default::default()),
            mount_path: "/tmp".into(),
        });
        let msg = messages(&r);
        assert!(
            msg.contains("existingClaim and claimTemplate are mutually exclusive"),
            "{msg}"
        );
        assert!(
            msg.contains("claimTemplate.resources.requests.storage: is required"),
            "{msg}"
        );
        assert!(
            msg.contains("spec.checkpoint.mountPath: \"/tmp\" must be an absolute path"),
            "{msg}"
        );
    }

    #[test]
    fn dns_subdomain_rules() {
        assert!(is_dns_subdomain("miner-hotkey-0"));
        assert!(is_dns_subdomain("a.b-c"));
        for bad in ["", "-a", "a-", "A", "a_b", "a..b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
