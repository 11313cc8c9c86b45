//! Builds the desired Pod (and checkpoint claim) of one replica. Pure: no API calls.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, LocalObjectReference, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use run_manifest::VerifiedManifest;
use sha2::{Digest, Sha256};

use crate::contract::*;
use crate::crd::CredentialsSecretRef;
use crate::crd::common::default_checkpoint_mount_path;
use crate::data_access::data_mounts;
use crate::naming::{
    CONFIG_HASH_ANNOTATION, MANIFEST_HASH_ANNOTATION, REPLICA_INDEX_LABEL, checkpoint_claim_name,
    hotkey_secret, manifest_config_map_name, pod_labels, pod_name, selector_labels,
};
use crate::validation::GPU_RESOURCE;
use crate::worker_identity::pod_service_account;
use crate::workload::{Role, Workload};

pub use crate::rendered::{RenderError, RenderedPod, rendered_files};

/// Why a desired pod could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The object has no name, namespace or uid (not read from the API).
    #[error("object lacks metadata.{0}")]
    MissingMetadata(&'static str),
    /// No hotkey Secret for this replica.
    #[error("no hotkey Secret for replica {0}")]
    MissingHotkey(i32),
    /// The run manifest's dataset URI does not parse (the manifest's validation refuses it).
    #[error("run manifest data: {0}")]
    Dataset(#[from] run_manifest::BadUri),
    /// The pod could not be serialized for hashing.
    #[error("cannot hash pod: {0}")]
    Hash(#[from] serde_json::Error),
}

/// The pod one replica should run, with the hash of its configuration.
#[derive(Clone, Debug)]
pub struct DesiredPod {
    /// Replica index.
    pub index: i32,
    /// Full pod object (hash annotation included).
    pub pod: Pod,
    /// Hash of labels and spec; changes exactly when the pod must be replaced.
    pub config_hash: String,
    /// Hotkey Secret mounted into the pod.
    pub hotkey_secret: String,
}

const VOLUME_TMP: &str = "tmp";
const VOLUME_SHM: &str = "dshm";
pub(crate) const VOLUME_HOTKEY: &str = "hotkey";
const VOLUME_CHECKPOINTS: &str = "checkpoints";
const VOLUME_MANIFEST: &str = "run-manifest";
/// Owner-and-group readable Secret files (the pod's fsGroup owns them).
pub(crate) const SECRET_FILE_MODE: i32 = 0o440;
/// World-readable manifest file (it holds no secret).
const MANIFEST_FILE_MODE: i32 = 0o444;
/// Seconds the worker gets to finish an upload on shutdown.
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// The object's name and namespace (an object read from the API has both).
pub(crate) fn name_and_namespace<K: Workload>(obj: &K) -> Result<(String, String), BuildError> {
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(BuildError::MissingMetadata("name"))?;
    let namespace = obj
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    Ok((name, namespace))
}

/// What every pod the operator creates for a workload shares: never restarted in place,
/// restricted security, no service links, no API token unless the caller mounts one, and
/// the workload's image pull secrets, node selector, tolerations, affinity and priority.
pub(crate) fn restricted_pod_spec(p: &crate::crd::WorkloadSpec) -> PodSpec {
    let tolerations = worker_tolerations(p);
    PodSpec {
        restart_policy: Some("Never".to_owned()),
        security_context: Some(pod_security()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        image_pull_secrets: (!p.image_pull_secrets.is_empty()).then(|| {
            p.image_pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        node_selector: (!p.node_selector.is_empty()).then(|| p.node_selector.clone()),
        tolerations: (!tolerations.is_empty()).then_some(tolerations),
        affinity: p.affinity.clone(),
        priority_class_name: p.priority_class_name.clone(),
        ..PodSpec::default()
    }
}

/// The workload's tolerations, plus the `nvidia.com/gpu` taint's when it asks for GPUs.
pub(crate) fn worker_tolerations(p: &crate::crd::WorkloadSpec) -> Vec<Toleration> {
    let mut tolerations = p.tolerations.to_vec();
    if p.gpus_per_replica > 0
        && !tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some(GPU_RESOURCE))
    {
        tolerations.push(Toleration {
            key: Some(GPU_RESOURCE.to_owned()),
            operator: Some("Exists".to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        });
    }
    tolerations
}

pub(crate) fn owner_reference<K: Workload>(obj: &K) -> Result<OwnerReference, BuildError> {
    obj.controller_owner_ref(&())
        .ok_or(BuildError::MissingMetadata("uid"))
}

/// Name of the worker container's health and metrics port.
pub const HEALTH_PORT_NAME: &str = "health";

/// An HTTP probe of the worker's health server. The worker itself allows for slow windows and
/// start-up (its `/healthz` turns 503 only after several missed windows), so the probe needs
/// no long initial delay; three failures in a row act.
fn health_probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(HEALTH_PORT_NAME.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

pub(crate) fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(crate) fn credentials_env(
    id_env: &str,
    secret_env_name: &str,
    r: &CredentialsSecretRef,
) -> [EnvVar; 2] {
    [
        secret_env(id_env, &r.name, &r.access_key_id_key),
        secret_env(secret_env_name, &r.name, &r.secret_access_key_key),
    ]
}

pub(crate) fn secret_volume(name: &str, secret: &str, key: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: key.to_owned(),
                ..KeyToPath::default()
            }]),
            default_mode: Some(SECRET_FILE_MODE),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn manifest_volume(config_map: &str) -> Volume {
    Volume {
        name: VOLUME_MANIFEST.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            items: Some(vec![KeyToPath {
                key: MANIFEST_CONFIG_MAP_KEY.to_owned(),
                path: MANIFEST_FILE_NAME.to_owned(),
                ..KeyToPath::default()
            }]),
            default_mode: Some(MANIFEST_FILE_MODE),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(crate) fn empty_dir(name: &str, medium: Option<&str>) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_owned),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// How a miner trains: one rank per GPU (at least one), with the NCCL settings when there
/// are several, and overlapped windows when asked. Validators evaluate on one device.
fn miner_env(role: Role, gpus: i32, overlap: bool) -> Vec<EnvVar> {
    if role != Role::Miner {
        return Vec::new();
    }
    let mut env = vec![plain_env(ENV_WORLD_SIZE, gpus.max(1).to_string())];
    if gpus > 1 {
        env.extend(NCCL_ENV.iter().map(|(name, value)| plain_env(name, *value)));
    }
    if overlap {
        env.push(plain_env(ENV_OVERLAP, "true"));
    }
    env
}

/// `/dev/shm`: memory-backed, [`SHM_GIB_PER_GPU`] per GPU (bounded, since it counts
/// against the pod's memory).
fn shm_volume(gpus: i32) -> Volume {
    let mut volume = empty_dir(VOLUME_SHM, Some("Memory"));
    if let Some(dir) = volume.empty_dir.as_mut() {
        dir.size_limit = Some(Quantity(format!("{}Gi", SHM_GIB_PER_GPU * gpus.max(1))));
    }
    volume
}

/// Directory of replica `index` inside a shared `existingClaim`.
pub fn checkpoint_sub_path(index: i32) -> String {
    format!("replica-{index}")
}

pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn container_resources(
    base: Option<&ResourceRequirements>,
    gpus: i32,
) -> Option<ResourceRequirements> {
    let mut resources = base.cloned().unwrap_or_default();
    if gpus > 0 {
        let gpu = Quantity(gpus.to_string());
        for map in [&mut resources.requests, &mut resources.limits] {
            map.get_or_insert_with(BTreeMap::new)
                .insert(GPU_RESOURCE.to_owned(), gpu.clone());
        }
    }
    (resources != ResourceRequirements::default()).then_some(resources)
}

pub(crate) fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        fs_group: Some(WORKER_UID),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

/// Hash of the parts of a pod that require replacing it when they change (the manifest hash is
/// part of the container env, so a manifest change rolls the pods).
pub fn config_hash(pod: &Pod) -> Result<String, BuildError> {
    let bytes = serde_json::to_vec(&(&pod.metadata.labels, &pod.spec))?;
    let digest = Sha256::digest(&bytes);
    Ok(hex::encode(&digest[..8]))
}

/// The ConfigMap holding `manifest`'s canonical JSON, mounted by every pod of `obj`.
pub fn desired_manifest_config_map<K: Workload>(
    obj: &K,
    manifest: &VerifiedManifest,
) -> Result<ConfigMap, BuildError> {
    let (owner, namespace) = name_and_namespace(obj)?;
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(manifest_config_map_name(&owner)),
            namespace: Some(namespace),
            labels: Some(selector_labels(K::OWNER_LABEL, &owner)),
            annotations: Some(BTreeMap::from([(
                MANIFEST_HASH_ANNOTATION.to_owned(),
                manifest.hash().to_hex(),
            )])),
            owner_references: Some(vec![owner_reference(obj)?]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            MANIFEST_CONFIG_MAP_KEY.to_owned(),
            manifest.canonical().to_owned(),
        )])),
        ..ConfigMap::default()
    })
}

/// The pod replica `index` of `obj` should run with the verified run `manifest`.
pub fn desired_pod<K: Workload>(
    obj: &K,
    index: i32,
    manifest: &VerifiedManifest,
) -> Result<DesiredPod, BuildError> {
    let (owner, namespace) = name_and_namespace(obj)?;
    let owner_ref = owner_reference(obj)?;
    let p = obj.workload();
    let hotkey = hotkey_secret(&p.wallet, index).ok_or(BuildError::MissingHotkey(index))?;

    let checkpoint_dir = p
        .checkpoint
        .as_ref()
        .map(|c| c.mount_path.clone())
        .unwrap_or_else(default_checkpoint_mount_path);

    let mut env = vec![
        plain_env(ENV_ROLE, K::ROLE.as_str()),
        plain_env(ENV_NETUID, p.netuid.to_string()),
        plain_env(ENV_CHAIN_ENDPOINT, p.chain_endpoint.as_str()),
        plain_env(ENV_RUN_MANIFEST, MANIFEST_FILE),
        plain_env(ENV_RUN_MANIFEST_SHA256, manifest.hash().to_hex()),
        plain_env(ENV_STORAGE_ENDPOINT, p.storage.endpoint.as_str()),
        plain_env(ENV_STORAGE_BUCKET, p.storage.bucket.as_str()),
        plain_env(ENV_STORAGE_REGION, p.storage.region.as_str()),
    ];
    env.extend(credentials_env(
        ENV_STORAGE_ACCESS_KEY_ID,
        ENV_STORAGE_SECRET_ACCESS_KEY,
        &p.storage.credentials_secret,
    ));
    if let Some(read) = &p.storage.read_credentials_secret {
        env.extend(credentials_env(
            ENV_STORAGE_READ_ACCESS_KEY_ID,
            ENV_STORAGE_READ_SECRET_ACCESS_KEY,
            read,
        ));
    }
    env.push(plain_env(
        ENV_HOTKEY_FILE,
        format!("{HOTKEY_DIR}/{}", p.wallet.hotkey_key),
    ));
    env.push(plain_env(ENV_CHECKPOINT_DIR, checkpoint_dir.as_str()));
    let data = data_mounts(p.data.as_ref(), &manifest.manifest().data.access()?, index);
    env.extend(data.env);
    env.push(plain_env(ENV_REPLICA_INDEX, index.to_string()));
    env.extend(miner_env(K::ROLE, p.gpus_per_replica, obj.overlap()));
    env.push(field_env(ENV_POD_NAME, "metadata.name"));
    env.push(field_env(ENV_POD_NAMESPACE, "metadata.namespace"));
    env.push(plain_env(
        ENV_HEALTH_ADDR,
        format!("0.0.0.0:{WORKER_HEALTH_PORT}"),
    ));
    env.push(plain_env(ENV_HOME, TMP_DIR));
    env.push(plain_env(ENV_XDG_CACHE_HOME, format!("{TMP_DIR}/.cache")));
    env.extend(p.extra_env.iter().cloned());

    let mut volumes = vec![
        empty_dir(VOLUME_TMP, None),
        shm_volume(p.gpus_per_replica),
        manifest_volume(&manifest_config_map_name(&owner)),
        secret_volume(VOLUME_HOTKEY, &hotkey, &p.wallet.hotkey_key),
    ];
    let mut mounts = vec![
        mount(VOLUME_TMP, TMP_DIR, false),
        mount(VOLUME_SHM, SHM_DIR, false),
        mount(VOLUME_MANIFEST, MANIFEST_DIR, true),
        mount(VOLUME_HOTKEY, HOTKEY_DIR, true),
    ];
    // The coldkey never reaches this long-running pod: the one-shot registration Job
    // (`registration_job`) is the only place it is mounted.
    let claim = p.checkpoint.as_ref().and_then(|c| {
        c.existing_claim.clone().or_else(|| {
            c.claim_template
                .as_ref()
                .map(|_| checkpoint_claim_name(&owner, index))
        })
    });
    volumes.push(match claim {
        Some(claim_name) => Volume {
            name: VOLUME_CHECKPOINTS.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Volume::default()
        },
        None => empty_dir(VOLUME_CHECKPOINTS, None),
    });
    let mut checkpoint_mount = mount(VOLUME_CHECKPOINTS, &checkpoint_dir, false);
    if p.checkpoint
        .as_ref()
        .is_some_and(|c| c.existing_claim.is_some())
    {
        // A claim shared by every replica: each gets its own directory in it, so replicas
        // never overwrite each other's checkpoints.
        checkpoint_mount.sub_path = Some(checkpoint_sub_path(index));
    }
    mounts.push(checkpoint_mount);
    volumes.extend(data.volumes);
    mounts.extend(data.mounts);

    let mut args = vec![K::ROLE.as_str().to_owned()];
    args.extend(p.extra_args.iter().cloned());

    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(p.image.clone()),
        image_pull_policy: Some(p.image_pull_policy.as_str().to_owned()),
        command: Some(vec![WORKER_COMMAND.to_owned()]),
        args: Some(args),
        env: Some(env),
        resources: container_resources(p.resources.as_ref(), p.gpus_per_replica),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ports: Some(vec![ContainerPort {
            name: Some(HEALTH_PORT_NAME.to_owned()),
            container_port: i32::from(WORKER_HEALTH_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(health_probe(READYZ_PATH, 10)),
        liveness_probe: Some(health_probe(HEALTHZ_PATH, 30)),
        ..Container::default()
    };

    let spec = PodSpec {
        containers: vec![container],
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        // The token lets the worker report on its own pod (the Role of `worker_identity`
        // allows get and patch on the workload's pods by name, nothing else).
        automount_service_account_token: Some(true),
        service_account_name: Some(pod_service_account(obj)),
        volumes: Some(volumes),
        ..restricted_pod_spec(p)
    };

    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&owner, K::ROLE, index)),
            namespace: Some(namespace),
            labels: Some(pod_labels(K::OWNER_LABEL, &owner, K::ROLE, index)),
            owner_references: Some(vec![owner_ref]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    let config_hash = config_hash(&pod)?;
    pod.metadata.annotations = Some(BTreeMap::from([
        (CONFIG_HASH_ANNOTATION.to_owned(), config_hash.clone()),
        (
            "kubectl.kubernetes.io/default-container".to_owned(),
            CONTAINER_NAME.to_owned(),
        ),
    ]));
    Ok(DesiredPod {
        index,
        pod,
        config_hash,
        hotkey_secret: hotkey,
    })
}

/// The checkpoint claim replica `index` needs, when the spec has a claim template.
pub fn desired_claim<K: Workload>(
    obj: &K,
    index: i32,
) -> Result<Option<PersistentVolumeClaim>, BuildError> {
    let Some(template) = obj
        .workload()
        .checkpoint
        .as_ref()
        .and_then(|c| c.claim_template.as_ref())
    else {
        return Ok(None);
    };
    let (owner, namespace) = name_and_namespace(obj)?;
    let mut labels = selector_labels(K::OWNER_LABEL, &owner);
    labels.insert(REPLICA_INDEX_LABEL.to_owned(), index.to_string());
    Ok(Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(checkpoint_claim_name(&owner, index)),
            namespace: Some(namespace),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(obj)?]),
            ..ObjectMeta::default()
        },
        spec: Some(template.clone()),
        status: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inline_manifest, reference_manifest, run, validators, verified};

    fn env<'a>(pod: &'a Pod, name: &str) -> Option<&'a EnvVar> {
        pod.spec.as_ref()?.containers[0]
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)
    }

    #[test]
    fn hash_is_stable_and_tracks_spec_changes() {
        let r = run(2);
        let a = desired_pod(&r, 0, &verified()).unwrap();
        assert_eq!(
            a.config_hash,
            desired_pod(&r, 0, &verified()).unwrap().config_hash
        );
        assert_ne!(
            a.config_hash,
            desired_pod(&r, 1, &verified()).unwrap().config_hash,
            "per replica"
        );
        assert_eq!(a.config_hash.len(), 16);
        let mut changed = r.clone();
        changed.spec.workload.image = "worker:2".into();
        assert_ne!(
            a.config_hash,
            desired_pod(&changed, 0, &verified()).unwrap().config_hash
        );
        let mut status_only = r.clone();
        status_only.status = Some(Default::default());
        status_only.metadata.generation = Some(9);
        assert_eq!(
            a.config_hash,
            desired_pod(&status_only, 0, &verified())
                .unwrap()
                .config_hash
        );
        assert_eq!(
            a.pod.metadata.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
            a.config_hash
        );
    }

    #[test]
    fn gpu_requests_limits_and_toleration() {
        let pod = desired_pod(&run(1), 0, &verified()).unwrap().pod;
        let spec = pod.spec.as_ref().unwrap();
        let res = spec.containers[0].resources.as_ref().unwrap();
        assert_eq!(res.requests.as_ref().unwrap()[GPU_RESOURCE].0, "8");
        assert_eq!(res.limits.as_ref().unwrap()[GPU_RESOURCE].0, "8");
        let tol = spec.tolerations.as_ref().unwrap();
        assert_eq!(tol.len(), 1);
        assert_eq!(tol[0].key.as_deref(), Some(GPU_RESOURCE));

        let env_of = |spec: &PodSpec, name: &str| {
            spec.containers[0]
                .env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        // One rank per GPU, with the NCCL settings.
        assert_eq!(env_of(spec, ENV_WORLD_SIZE).as_deref(), Some("8"));
        for (name, value) in NCCL_ENV {
            assert_eq!(env_of(spec, name).as_deref(), Some(value), "{name}");
        }
        assert_eq!(env_of(spec, ENV_OVERLAP), None, "sequential unless asked");
        let mut overlapped = run(1);
        overlapped.spec.overlap = true;
        let pod = desired_pod(&overlapped, 0, &verified()).unwrap().pod;
        let spec_overlapped = pod.spec.unwrap();
        assert_eq!(
            env_of(&spec_overlapped, ENV_OVERLAP).as_deref(),
            Some("true")
        );

        let mut cpu = run(1);
        cpu.spec.workload.gpus_per_replica = 0;
        let spec = desired_pod(&cpu, 0, &verified()).unwrap().pod.spec.unwrap();
        assert!(spec.containers[0].resources.is_none());
        assert!(spec.tolerations.is_none());
        assert_eq!(env_of(&spec, ENV_WORLD_SIZE).as_deref(), Some("1"));
        assert_eq!(env_of(&spec, NCCL_ENV[0].0), None, "no NCCL on one device");

        // Validators evaluate on one device: no rank settings.
        let validator = desired_pod(&validators(1), 0, &verified()).unwrap().pod;
        let spec = validator.spec.unwrap();
        assert_eq!(env_of(&spec, ENV_WORLD_SIZE), None);

        let mut own = run(1);
        own.spec.workload.tolerations = vec![Toleration {
            key: Some(GPU_RESOURCE.into()),
            operator: Some("Equal".into()),
            value: Some("present".into()),
            ..Toleration::default()
        }];
        let spec = desired_pod(&own, 0, &verified()).unwrap().pod.spec.unwrap();
        assert_eq!(
            spec.tolerations.unwrap().len(),
            1,
            "user toleration kept, not duplicated"
        );
    }

    #[test]
    fn secrets_are_mounted_and_referenced_never_inlined() {
        let mut r = run(2);
        r.spec.workload.wallet.coldkey_secret = Some("cold".into());
        r.spec.workload.storage.read_credentials_secret = Some(CredentialsSecretRef {
            name: "s3-read".into(),
            access_key_id_key: "id".into(),
            secret_access_key_key: "secret".into(),
        });
        let pod = desired_pod(&r, 1, &verified()).unwrap().pod;
        let spec = pod.spec.as_ref().unwrap();
        let vols = spec.volumes.as_ref().unwrap();
        let secret_of = |n: &str| {
            vols.iter()
                .find(|v| v.name == n)
                .and_then(|v| v.secret.clone())
                .unwrap()
        };
        let hotkey = secret_of(VOLUME_HOTKEY);
        assert_eq!(hotkey.secret_name.as_deref(), Some("miner-hotkey-1"));
        assert_eq!(hotkey.default_mode, Some(0o440));
        assert!(
            vols.iter()
                .all(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) != Some("cold")),
            "the coldkey Secret is never mounted into a long-running pod"
        );
        let mounts = spec.containers[0].volume_mounts.as_ref().unwrap();
        for m in mounts.iter().filter(|m| m.name == VOLUME_HOTKEY) {
            assert_eq!(m.read_only, Some(true), "{}", m.name);
        }
        let read_secret = env(&pod, ENV_STORAGE_READ_SECRET_ACCESS_KEY).unwrap();
        let sel = read_secret
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("s3-read", "secret"));
        assert!(env(&pod, ENV_COLDKEY_FILE).is_none());
        // The token is the workload's own ServiceAccount (get + patch on its pods only).
        assert_eq!(spec.automount_service_account_token, Some(true));
        assert_eq!(spec.service_account_name.as_deref(), Some("run-worker"));
        assert_eq!(spec.enable_service_links, Some(false));
    }

    #[test]
    fn probes_target_the_workers_health_server() {
        let pod = desired_pod(&run(1), 0, &verified()).unwrap().pod;
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let port = &container.ports.as_ref().unwrap()[0];
        assert_eq!(port.container_port, i32::from(WORKER_HEALTH_PORT));
        assert_eq!(port.name.as_deref(), Some(HEALTH_PORT_NAME));
        let path = |probe: &Option<Probe>| {
            let get = probe.as_ref().unwrap().http_get.clone().unwrap();
            assert_eq!(get.port, IntOrString::String(HEALTH_PORT_NAME.into()));
            get.path.unwrap()
        };
        assert_eq!(path(&container.readiness_probe), READYZ_PATH);
        assert_eq!(path(&container.liveness_probe), HEALTHZ_PATH);
        assert_eq!(
            env(&pod, ENV_HEALTH_ADDR).unwrap().value.as_deref(),
            Some("0.0.0.0:9090")
        );
    }

    #[test]
    fn restricted_security_context() {
        let pod = desired_pod(&run(1), 0, &verified()).unwrap().pod;
        let spec = pod.spec.as_ref().unwrap();
        let psc = spec.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.fs_group, Some(WORKER_UID));
        let sc = spec.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let vols = spec.volumes.as_ref().unwrap();
        let shm = vols.iter().find(|v| v.name == VOLUME_SHM).unwrap();
        assert_eq!(
            shm.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
        // The example run's 8 GPUs: 2 GiB each.
        assert_eq!(
            shm.empty_dir.as_ref().unwrap().size_limit,
            Some(Quantity("16Gi".into()))
        );
        let ckpt = vols.iter().find(|v| v.name == VOLUME_CHECKPOINTS).unwrap();
        assert!(
            ckpt.empty_dir.is_some(),
            "emptyDir checkpoints without a volume spec"
        );
    }

    #[test]
    fn extra_env_args_and_scheduling_are_passed_through() {
        let mut r = run(1);
        r.spec.workload.extra_env = vec![EnvVar {
            name: "RUST_LOG".into(),
            value: Some("debug".into()),
            ..EnvVar::default()
        }];
        r.spec.workload.extra_args = vec!["--dry-run".into()];
        r.spec.workload.service_account_name = Some("worker".into());
        r.spec.workload.priority_class_name = Some("training".into());
        r.spec
            .workload
            .node_selector
            .insert("gpu".into(), "h100".into());
        r.spec.workload.image_pull_secrets = vec!["regcred".into()];
        let pod = desired_pod(&r, 0, &verified()).unwrap().pod;
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.containers[0].args.as_deref(),
            Some(&["miner".to_owned(), "--dry-run".to_owned()][..])
        );
        assert_eq!(
            env(&pod, "RUST_LOG").unwrap().value.as_deref(),
            Some("debug")
        );
        assert_eq!(spec.service_account_name.as_deref(), Some("worker"));
        assert_eq!(spec.automount_service_account_token, Some(true));
        assert_eq!(spec.priority_class_name.as_deref(), Some("training"));
        assert_eq!(spec.node_selector.as_ref().unwrap()["gpu"], "h100");
        assert_eq!(spec.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    }

    #[test]
    fn validator_pods_use_listed_hotkeys_and_the_manifest() {
        let v = validators(2);
        let d = desired_pod(&v, 1, &verified()).unwrap();
        assert_eq!(d.pod.metadata.name.as_deref(), Some("vs-validator-1"));
        assert_eq!(d.hotkey_secret, "vhk-1");
        assert_eq!(
            env(&d.pod, ENV_RUN_MANIFEST_SHA256).unwrap().value,
            Some(verified().hash().to_hex())
        );
        assert!(matches!(
            desired_pod(&v, 2, &verified()),
            Err(BuildError::MissingHotkey(2))
        ));
    }

    #[test]
    fn pods_mount_the_rendered_manifest_and_carry_its_hash() {
        let r = run(1);
        let manifest = verified();
        let pod = desired_pod(&r, 0, &manifest).unwrap().pod;
        assert_eq!(
            env(&pod, ENV_RUN_MANIFEST).unwrap().value.as_deref(),
            Some("/etc/subnet/run-manifest.json")
        );
        let spec = pod.spec.as_ref().unwrap();
        let volume = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == VOLUME_MANIFEST)
            .unwrap();
        let source = volume.config_map.as_ref().unwrap();
        assert_eq!(source.name, "run-run-manifest");
        let item = &source.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("manifest.json", "run-manifest.json")
        );
        let m = spec.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == VOLUME_MANIFEST)
            .unwrap();
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            ("/etc/subnet", Some(true))
        );

        let cm = desired_manifest_config_map(&r, &manifest).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("run-run-manifest"));
        assert_eq!(cm.metadata.owner_references.unwrap()[0].uid, "1111-2222");
        let text = &cm.data.unwrap()["manifest.json"];
        let reparsed = run_manifest::parse(text, "rendered", Some(&manifest.hash())).unwrap();
        assert_eq!(reparsed.hash(), manifest.hash());

        // No hyperparameter reaches the pod outside the manifest.
        let names: Vec<&str> = spec.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for gone in [
            "INNER_STEPS",
            "TOPK",
            "CHUNK",
            "MODEL_PRESET",
            "PEERS_PER_WINDOW",
            "RUN_ID",
        ] {
            assert!(!names.contains(&gone), "{gone} in {names:?}");
        }
    }

    #[test]
    fn a_protocol_change_changes_the_config_hash() {
        let r = run(1);
        let mut manifest = reference_manifest();
        let before = desired_pod(&r, 0, &verified()).unwrap().config_hash;
        manifest.training.outer_lr = 0.5;
        let changed = run_manifest::verify(manifest.clone(), "t", None).unwrap();
        assert_ne!(desired_pod(&r, 0, &changed).unwrap().config_hash, before);
        let mut inline = r.clone();
        inline.spec.workload.manifest = inline_manifest(&manifest);
        assert_eq!(
            desired_pod(&inline, 0, &changed).unwrap().config_hash,
            desired_pod(&r, 0, &changed).unwrap().config_hash,
            "only the verified manifest matters, not how the spec spells it"
        );
    }

    #[test]
    fn checkpoint_claims() {
        let mut r = run(2);
        assert!(desired_claim(&r, 0).unwrap().is_none());
        r.spec.workload.checkpoint = Some(crate::crd::CheckpointSpec {
            existing_claim: Some("shared".into()),
            claim_template: None,
            mount_path: "/ckpt".into(),
        });
        let pod = desired_pod(&r, 1, &verified()).unwrap().pod;
        let spec = pod.spec.unwrap();
        let vol = spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == VOLUME_CHECKPOINTS)
            .unwrap();
        assert_eq!(vol.persistent_volume_claim.unwrap().claim_name, "shared");
        let sub_paths: Vec<_> = [0, 1]
            .iter()
            .map(|&i| {
                let pod = desired_pod(&r, i, &verified()).unwrap().pod;
                pod.spec.unwrap().containers[0]
                    .volume_mounts
                    .as_ref()
                    .unwrap()
                    .iter()
                    .find(|m| m.name == VOLUME_CHECKPOINTS)
                    .unwrap()
                    .sub_path
                    .clone()
            })
            .collect();
        // Each replica writes into its own directory of the shared claim.
        assert_eq!(
            sub_paths,
            [Some("replica-0".to_owned()), Some("replica-1".to_owned())]
        );
        assert!(
            spec.containers[0]
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == VOLUME_CHECKPOINTS && m.mount_path == "/ckpt")
        );
        r.spec.workload.checkpoint = Some(crate::crd::CheckpointSpec {
            existing_claim: None,
            claim_template: Some(Default::default()),
            mount_path: "/ckpt".into(),
        });
        let claim = desired_claim(&r, 1).unwrap().unwrap();
        assert_eq!(claim.metadata.name.as_deref(), Some("run-checkpoint-1"));
        assert_eq!(claim.metadata.owner_references.unwrap()[0].uid, "1111-2222");
    }

    #[test]
    fn objects_without_uid_cannot_own_pods() {
        let mut r = run(1);
        r.metadata.uid = None;
        assert!(matches!(
            desired_pod(&r, 0, &verified()),
            Err(BuildError::MissingMetadata("uid"))
        ));
    }
}
