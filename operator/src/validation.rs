//! Spec checks run before any pod is touched. A failing spec gets `Ready=False`,
//! reason `InvalidSpec`, a Warning event, and no pods.
//!
//! The CRD's CEL rules reject most of these at admission; this module repeats them (the CRD
//! may be installed without validation, or an old object may predate a rule) and adds the
//! checks CEL cannot express. The run manifest and the chain endpoint are checked by the
//! `run-manifest` crate (the worker's own rules), never re-implemented here.

use crate::data_access::data_errors;
use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, ResourceRequirements};
use run_manifest::VerifiedManifest;
use run_manifest::deployment::check_chain_endpoint;

use crate::conditions::{REASON_INVALID_SPEC, REASON_MANIFEST_NOT_FOUND};
use crate::contract::RESERVED_ENV;
use crate::crd::{CheckpointSpec, StorageSpec, WalletSpec, WorkloadSpec};
use crate::manifest::{self, CONFIG_MAP_FIELD, ManifestProblem};
use crate::naming::{INDEX_PLACEHOLDER, hotkey_secret};
use crate::workload::Workload;

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
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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

/// Why a workload gets no pods: the `Ready=False` reason and every problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `InvalidSpec`, or `ManifestNotFound` when the only problem is a missing ConfigMap / key.
    pub reason: &'static str,
    /// Every problem, with its field.
    pub errors: Vec<SpecError>,
}

impl Rejection {
    /// The condition / event message.
    pub fn message(&self) -> String {
        describe(&self.errors)
    }
}

/// Every problem of a workload's name and spec fields (the manifest aside).
pub fn validate<K: Workload>(obj: &K) -> Result<(), Vec<SpecError>> {
    let name = obj.meta().name.as_deref().unwrap_or_default();
    let mut errors = name_errors(name);
    errors.extend(common_errors(obj.workload()));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks the spec and resolves its run manifest; `config_map` is the ConfigMap
/// `spec.manifest.configMapRef` names, as read from the API (`None`: absent or not referenced).
pub fn admit<K: Workload>(
    obj: &K,
    config_map: Option<&ConfigMap>,
) -> Result<VerifiedManifest, Rejection> {
    let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
    let mut errors = validate(obj).err().unwrap_or_default();
    let resolved = manifest::resolve(&obj.workload().manifest, namespace, config_map);
    if let Ok(verified) = &resolved {
        errors.extend(data_errors(
            obj.workload().data.as_ref(),
            &verified.manifest().data.access(),
        ));
    }
    let reason = match resolved {
        Ok(verified) if errors.is_empty() => return Ok(verified),
        Ok(_) => REASON_INVALID_SPEC,
        Err(ManifestProblem::Invalid(manifest_errors)) => {
            errors.extend(manifest_errors);
            REASON_INVALID_SPEC
        }
        Err(ManifestProblem::NotFound(message)) => {
            let reason = if errors.is_empty() {
                REASON_MANIFEST_NOT_FOUND
            } else {
                REASON_INVALID_SPEC
            };
            errors.push(SpecError::new(CONFIG_MAP_FIELD, message));
            reason
        }
    };
    Err(Rejection { reason, errors })
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

/// Checks of the spec fields (both kinds share them all).
pub fn common_errors(p: &WorkloadSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if p.image.trim().is_empty() || p.image.chars().any(char::is_whitespace) {
        errors.push(SpecError::new(
            "spec.image",
            "must be a non-empty image reference without spaces",
        ));
    }
    if let Err(message) = check_chain_endpoint(&p.chain_endpoint) {
        errors.push(SpecError::new("spec.chainEndpoint", message));
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
    if let Some(resources) = &p.resources {
        errors.extend(resource_errors(resources));
    }
    errors.extend(storage_errors(&p.storage));
    errors.extend(wallet_errors(&p.wallet, p.replicas));
    if let Some(checkpoint) = &p.checkpoint {
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
    // The read credentials are published on chain in clear: the very Secret keys holding the
    // write credentials must never be handed out as them. (The operator cannot read Secrets,
    // so two different Secrets with the same values are the user's responsibility.)
    if s.read_credentials_secret.as_ref() == Some(&s.credentials_secret) {
        errors.push(SpecError::new(
            "spec.storage.readCredentialsSecret",
            "names the same Secret and keys as credentialsSecret; the read credentials are \
             published on chain, so they must be a separate read-only key pair",
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

fn wallet_errors(w: &WalletSpec, replicas: i32) -> Vec<SpecError> {
    let field = "wallet";
    let mut errors = Vec::new();
    match (&w.hotkey_secrets, &w.hotkey_secret_template) {
        (Some(_), Some(_)) | (None, None) => errors.push(SpecError::new(
            format!("spec.{field}"),
            "set exactly one of hotkeySecrets or hotkeySecretTemplate",
        )),
        (Some(list), None) => {
            // More Secrets than replicas is fine (the first `replicas` are used), so that
            // `kubectl scale` down works with a list; fewer leaves a replica without a hotkey.
            if i32::try_from(list.len()).is_ok_and(|n| n < replicas) {
                errors.push(SpecError::new(
                    format!("spec.{field}.hotkeySecrets"),
                    format!(
                        "lists {} Secrets but replicas is {replicas}; give at least one per replica",
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
    fn read_credentials_equal_to_the_write_credentials_are_refused() {
        let mut r = run(1);
        r.spec.workload.storage.read_credentials_secret =
            Some(r.spec.workload.storage.credentials_secret.clone());
        assert!(
            messages(&r).contains("spec.storage.readCredentialsSecret: names the same Secret"),
            "{}",
            messages(&r)
        );
        // Same Secret, other keys: a separate pair stored next to the write pair.
        let mut other_keys = r.spec.workload.storage.credentials_secret.clone();
        other_keys.access_key_id_key = "readAccessKeyId".into();
        other_keys.secret_access_key_key = "readSecretAccessKey".into();
        r.spec.workload.storage.read_credentials_secret = Some(other_keys);
        assert_eq!(messages(&r), "");
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
                Box::new(|r| r.spec.workload.replicas = -1),
            ),
            (
                "spec.gpusPerReplica: must be in 0..=16, got 17",
                Box::new(|r| r.spec.workload.gpus_per_replica = 17),
            ),
            (
                "spec.image: must be a non-empty image reference",
                Box::new(|r| r.spec.workload.image = " ".into()),
            ),
            (
                "spec.chainEndpoint: unknown network \"subtensor:9944\"",
                Box::new(|r| r.spec.workload.chain_endpoint = "subtensor:9944".into()),
            ),
            (
                "spec.chainEndpoint: unknown network \"https://chain:443\"",
                Box::new(|r| r.spec.workload.chain_endpoint = "https://chain:443".into()),
            ),
            (
                "spec.storage.bucket: must not be empty",
                Box::new(|r| r.spec.workload.storage.bucket.clear()),
            ),
            (
                "spec.storage.bucket: \"Bad_Bucket\" is not a valid bucket name",
                Box::new(|r| r.spec.workload.storage.bucket = "Bad_Bucket".into()),
            ),
            (
                "spec.storage.endpoint: must be an http:// or https:// URL",
                Box::new(|r| r.spec.workload.storage.endpoint = "s3.example.com".into()),
            ),
            (
                "spec.storage.credentialsSecret.name: \"\" is not a valid Secret name",
                Box::new(|r| r.spec.workload.storage.credentials_secret.name.clear()),
            ),
            (
                "spec.wallet: set exactly one of hotkeySecrets or hotkeySecretTemplate",
                Box::new(|r| r.spec.workload.wallet.hotkey_secret_template = None),
            ),
            (
                "spec.wallet.hotkeySecretTemplate: \"miner\" must contain {index}",
                Box::new(|r| r.spec.workload.wallet.hotkey_secret_template = Some("miner".into())),
            ),
            (
                "renders \"Miner-3\", which is not a valid Secret name",
                Box::new(|r| {
                    r.spec.workload.wallet.hotkey_secret_template = Some("Miner-{index}".into())
                }),
            ),
            (
                "spec.extraEnv[0]: NETUID is set by the operator",
                Box::new(|r| {
                    r.spec.workload.extra_env = vec![EnvVar {
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
    fn hotkey_lists_must_cover_the_replicas_and_be_unique() {
        let mut r = run(3);
        r.spec.workload.wallet.hotkey_secret_template = None;
        r.spec.workload.wallet.hotkey_secrets = Some(vec!["a".into(), "b".into(), "a".into()]);
        let msg = messages(&r);
        assert!(
            msg.contains("spec.wallet.hotkeySecrets[2]: \"a\" is used by two replicas"),
            "{msg}"
        );
        r.spec.workload.wallet.hotkey_secrets = Some(vec!["a".into(), "b".into()]);
        let msg = messages(&r);
        assert!(msg.contains("lists 2 Secrets but replicas is 3"), "{msg}");
        let mut v = validators(2);
        v.spec.workload.wallet.hotkey_secrets = Some(vec!["only".into()]);
        assert!(
            messages(&v).contains("spec.wallet.hotkeySecrets: lists 1 Secrets but replicas is 2")
        );
        // A longer list is fine: `kubectl scale` down keeps the first `replicas`.
        r.spec.workload.wallet.hotkey_secrets =
            Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]);
        assert!(!messages(&r).contains("hotkeySecrets"), "{}", messages(&r));
    }

    #[test]
    fn gpus_must_come_from_gpus_per_replica() {
        let mut r = run(1);
        let mut limits = std::collections::BTreeMap::new();
        limits.insert(GPU_RESOURCE.to_owned(), Quantity("2".into()));
        r.spec.workload.resources = Some(ResourceRequirements {
            limits: Some(limits),
            ..Default::default()
        });
        assert!(messages(&r).contains(
            "spec.resources.limits: must not set nvidia.com/gpu; use spec.gpusPerReplica"
        ));
    }

    #[test]
    fn checkpoint_sources_and_paths_are_checked() {
        let mut r = run(1);
        r.spec.workload.checkpoint = Some(CheckpointSpec {
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
    fn admit_reports_spec_and_manifest_problems_together() {
        use crate::conditions::{REASON_INVALID_SPEC, REASON_MANIFEST_NOT_FOUND};
        use crate::crd::ManifestConfigMapRef;
        let r = run(1);
        assert_eq!(
            admit(&r, None).unwrap().hash(),
            crate::testing::verified().hash()
        );
        let mut bad = run(1);
        let mut manifest = crate::testing::reference_manifest();
        manifest.sparseloco.quantization_bits = 4;
        bad.spec.workload.manifest = crate::testing::inline_manifest(&manifest);
        bad.spec.workload.storage.bucket.clear();
        let rejection = admit(&bad, None).unwrap_err();
        assert_eq!(rejection.reason, REASON_INVALID_SPEC);
        assert_eq!(
            rejection.message(),
            "spec.storage.bucket: must not be empty; spec.manifest.inline.sparseloco.quantizationBits: \
             the wire format encodes 2-bit codes only, got 4"
        );
        let mut missing = run(1);
        missing.spec.workload.manifest = crate::crd::ManifestSource {
            config_map_ref: Some(ManifestConfigMapRef {
                name: "shared".into(),
                key: "manifest.json".into(),
            }),
            ..Default::default()
        };
        let rejection = admit(&missing, None).unwrap_err();
        assert_eq!(rejection.reason, REASON_MANIFEST_NOT_FOUND);
        assert_eq!(
            rejection.message(),
            "spec.manifest.configMapRef: ConfigMap subnet/shared not found"
        );
        missing.spec.workload.replicas = -1;
        assert_eq!(
            admit(&missing, None).unwrap_err().reason,
            REASON_INVALID_SPEC
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
