//! The one-shot registration Job of a replica. Pure: no API calls.
//!
//! With `wallet.coldkeySecret` set, each replica's hotkey is burn-registered by a Job running
//! `worker register` (idempotent: an already registered hotkey succeeds without burning). The
//! coldkey is mounted into that Job's pod only; the long-running miner or validator pod is
//! created once the Job has completed and never sees the coldkey.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use run_manifest::deployment::REGISTER_PERMANENT_FAILURE_EXIT_CODE;
use sha2::{Digest, Sha256};

use crate::contract::*;
use crate::naming::{
    CONFIG_HASH_ANNOTATION, MANAGER, REGISTRATION_COMPONENT, REPLICA_INDEX_LABEL, hotkey_secret,
    registration_job_name, selector_labels,
};
use crate::pod_builder::{
    BuildError, VOLUME_HOTKEY, empty_dir, mount, name_and_namespace, owner_reference, plain_env,
    restricted_container_security, restricted_pod_spec, secret_volume,
};
use crate::rollout::Registration;
use crate::workload::Workload;

/// Name of the registration container.
pub const REGISTER_CONTAINER_NAME: &str = "register";
/// Pod retries of one registration Job before it is reported failed.
pub const REGISTRATION_BACKOFF_LIMIT: i32 = 3;
/// Longest a registration Job may run (a chain that never answers fails it).
pub const REGISTRATION_DEADLINE_SECONDS: i64 = 900;

const VOLUME_COLDKEY: &str = "coldkey";
const VOLUME_TMP: &str = "tmp";

/// Labels of a workload's registration Jobs and their pods (`app.kubernetes.io/component` is
/// [`REGISTRATION_COMPONENT`], so the pod watch of the workers never sees them).
pub fn registration_labels(owner_label: &str, owner: &str, index: i32) -> BTreeMap<String, String> {
    let mut labels = selector_labels(owner_label, owner);
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        REGISTRATION_COMPONENT.to_owned(),
    );
    labels.insert(REPLICA_INDEX_LABEL.to_owned(), index.to_string());
    labels
}

/// Label selector of every registration Job of the operator (its Job watch).
pub fn registration_job_selector() -> String {
    format!(
        "app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/component={REGISTRATION_COMPONENT}"
    )
}

/// The Job that registers replica `index`'s hotkey, or `None` when the workload has no
/// coldkey (the hotkeys are registered out of band).
pub fn desired_registration_job<K: Workload>(
    obj: &K,
    index: i32,
) -> Result<Option<Job>, BuildError> {
    let p = obj.workload();
    let Some(coldkey) = &p.wallet.coldkey_secret else {
        return Ok(None);
    };
    let (owner, namespace) = name_and_namespace(obj)?;
    let hotkey = hotkey_secret(&p.wallet, index).ok_or(BuildError::MissingHotkey(index))?;

    let mut env = vec![
        plain_env(ENV_NETUID, p.netuid.to_string()),
        plain_env(ENV_CHAIN_ENDPOINT, p.chain_endpoint.as_str()),
        plain_env(
            ENV_HOTKEY_FILE,
            format!("{HOTKEY_DIR}/{}", p.wallet.hotkey_key),
        ),
        plain_env(
            ENV_COLDKEY_FILE,
            format!("{COLDKEY_DIR}/{}", p.wallet.coldkey_key),
        ),
        plain_env(ENV_HOME, TMP_DIR),
    ];
    // extraEnv may carry the wallet password (a secretKeyRef) the coldkey file needs.
    env.extend(p.extra_env.iter().cloned());

    let container = Container {
        name: REGISTER_CONTAINER_NAME.to_owned(),
        image: Some(p.image.clone()),
        image_pull_policy: Some(p.image_pull_policy.as_str().to_owned()),
        command: Some(vec![WORKER_COMMAND.to_owned()]),
        args: Some(vec!["register".to_owned(), "--json".to_owned()]),
        env: Some(env),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![
            mount(VOLUME_TMP, TMP_DIR, false),
            mount(VOLUME_HOTKEY, HOTKEY_DIR, true),
            mount(VOLUME_COLDKEY, COLDKEY_DIR, true),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };

    let labels = registration_labels(K::OWNER_LABEL, &owner, index);
    let mut pod_labels = labels.clone();
    // The pods are the Job's, not the workload's: no owner label on them.
    pod_labels.remove(K::OWNER_LABEL);
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            ..ObjectMeta::default()
        }),
        // It runs where the workload may run (the same selector and tolerations), without
        // GPUs or an API token.
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(vec![
                empty_dir(VOLUME_TMP, None),
                secret_volume(VOLUME_HOTKEY, &hotkey, &p.wallet.hotkey_key),
                secret_volume(VOLUME_COLDKEY, coldkey, &p.wallet.coldkey_key),
            ]),
            ..restricted_pod_spec(p)
        }),
    };
    let spec = JobSpec {
        backoff_limit: Some(REGISTRATION_BACKOFF_LIMIT),
        active_deadline_seconds: Some(REGISTRATION_DEADLINE_SECONDS),
        // A refusal by the chain or an unreadable wallet fails the Job at once; only
        // transient failures (exit code 1) spend the retries.
        pod_failure_policy: Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "FailJob".to_owned(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(REGISTER_CONTAINER_NAME.to_owned()),
                    operator: "In".to_owned(),
                    values: vec![REGISTER_PERMANENT_FAILURE_EXIT_CODE],
                }),
                ..PodFailurePolicyRule::default()
            }],
        }),
        template,
        ..JobSpec::default()
    };
    let hash = hex::encode(&Sha256::digest(serde_json::to_vec(&spec)?)[..8]);
    Ok(Some(Job {
        metadata: ObjectMeta {
            name: Some(registration_job_name(&owner, index)),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash)])),
            owner_references: Some(vec![owner_reference(obj)?]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }))
}

/// The registration Job's hash annotation (changes with anything its pod runs).
pub fn job_hash(job: &Job) -> Option<&str> {
    job.annotations()
        .get(CONFIG_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Where an existing registration Job stands. A Job with another hash (spec changed) must be
/// replaced: [`Registration::Pending`] with `outdated`.
pub fn observe_job(job: &Job, desired: &Job) -> (Registration, bool) {
    if job_hash(job) != job_hash(desired) {
        return (Registration::Pending, true);
    }
    let condition = |type_: &str| {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    if condition("Complete").is_some() {
        return (Registration::Complete, false);
    }
    if let Some(failed) = condition("Failed") {
        let why = match (failed.reason.as_deref(), failed.message.as_deref()) {
            (Some(r), Some(m)) => format!("{r}: {m}"),
            (Some(r), None) => r.to_owned(),
            (None, Some(m)) => m.to_owned(),
            (None, None) => "failed".to_owned(),
        };
        return (
            Registration::Failed(format!(
                "registration Job {} failed ({why}); see `kubectl logs job/{}`, delete the Job to retry",
                job.name_any(),
                job.name_any()
            )),
            false,
        );
    }
    (Registration::Pending, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_builder::desired_pod;
    use crate::testing::{run, verified};
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn with_coldkey() -> crate::crd::TrainingRun {
        let mut r = run(2);
        r.spec.workload.wallet.coldkey_secret = Some("cold".into());
        r
    }

    fn secrets(spec: &PodSpec) -> Vec<String> {
        spec.volumes
            .iter()
            .flatten()
            .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
            .collect()
    }

    #[test]
    fn no_coldkey_no_job() {
        assert!(desired_registration_job(&run(1), 0).unwrap().is_none());
    }

    #[test]
    fn the_coldkey_is_mounted_into_the_job_only() {
        let r = with_coldkey();
        let job = desired_registration_job(&r, 1).unwrap().unwrap();
        assert_eq!(job.name_any(), "run-register-1");
        let spec = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(secrets(spec), ["miner-hotkey-1", "cold"]);
        let c = &spec.containers[0];
        assert_eq!(
            c.args.as_deref(),
            Some(&["register".to_owned(), "--json".to_owned()][..])
        );
        assert!(c.resources.is_none(), "registration needs no GPU");
        let env = |n: &str| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(
            env(ENV_COLDKEY_FILE).as_deref(),
            Some("/var/run/secrets/subnet/coldkey/coldkey")
        );
        assert_eq!(spec.automount_service_account_token, Some(false));
        let pod = desired_pod(&r, 1, &verified()).unwrap().pod;
        assert_eq!(secrets(pod.spec.as_ref().unwrap()), ["miner-hotkey-1"]);
    }

    #[test]
    fn job_state_follows_its_conditions_and_hash() {
        let r = with_coldkey();
        let desired = desired_registration_job(&r, 0).unwrap().unwrap();
        let mut job = desired.clone();
        assert_eq!(observe_job(&job, &desired), (Registration::Pending, false));
        let cond = |t: &str, reason: &str| JobCondition {
            type_: t.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some("Job has reached the specified backoff limit".into()),
            ..JobCondition::default()
        };
        job.status = Some(JobStatus {
            conditions: Some(vec![cond("Complete", "Completed")]),
            ..JobStatus::default()
        });
        assert_eq!(observe_job(&job, &desired), (Registration::Complete, false));
        job.status = Some(JobStatus {
            conditions: Some(vec![cond("Failed", "BackoffLimitExceeded")]),
            ..JobStatus::default()
        });
        match observe_job(&job, &desired) {
            (Registration::Failed(why), false) => {
                assert!(why.contains("BackoffLimitExceeded"), "{why}");
                assert!(why.contains("kubectl logs job/run-register-0"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let mut changed = with_coldkey();
        changed.spec.workload.image = "worker:v2".into();
        let desired2 = desired_registration_job(&changed, 0).unwrap().unwrap();
        assert_eq!(observe_job(&job, &desired2), (Registration::Pending, true));
    }
}
