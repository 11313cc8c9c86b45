//! What a worker container of a desired pod sees: command, arguments, environment and the
//! files mounted from objects the operator renders. For contract tests that run the worker's
//! own CLI and manifest loader on exactly what the operator would deploy. Pure: no API calls.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Volume};
use kube::ResourceExt;

use crate::contract::CONTAINER_NAME;
use crate::manifest::referenced_config_map;
use crate::pod_builder::{BuildError, desired_manifest_config_map, desired_pod};
use crate::registration_job::{REGISTER_CONTAINER_NAME, desired_registration_job};
use crate::validation::{self, Rejection};
use crate::workload::Workload;

/// UID given to an object that has none (an example read from a file, not from the API).
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";
/// Namespace given to an object that has none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The worker container of replica `index`, as the kubelet would start it.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedPod {
    /// The desired pod (config-hash annotation included).
    pub pod: Pod,
    /// `command` of the worker container.
    pub command: Vec<String>,
    /// `args` of the worker container.
    pub args: Vec<String>,
    /// Environment, name -> value: Secret references become [`secret_placeholder`], the
    /// downward-API `metadata.name` / `metadata.namespace` the pod's name / namespace.
    pub env: BTreeMap<String, String>,
    /// Mounted files, absolute container path -> contents: the run manifest (the exact
    /// canonical JSON of the rendered ConfigMap) and, as [`secret_placeholder`]s, the
    /// mounted Secret keys (hotkey, coldkey).
    pub files: BTreeMap<String, String>,
}

/// Why no pod can be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The operator rejects the object (its `Ready` reason and message).
    #[error("{}: {}", .0.reason, .0.message())]
    Rejected(Rejection),
    /// The pod could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Stand-in for a value the kubelet takes from a Secret.
pub fn secret_placeholder(secret: &str, key: &str) -> String {
    format!("<secret {secret}/{key}>")
}

/// `obj` with the placeholder uid and namespace when it has none (read from a file).
fn as_if_read_from_the_api<K: Workload>(obj: &K) -> K {
    let mut obj = obj.clone();
    let meta = obj.meta_mut();
    meta.uid.get_or_insert_with(|| PLACEHOLDER_UID.to_owned());
    meta.namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
    obj
}

/// Renders replica `index` of `obj`; `config_maps` are the ConfigMaps of the cluster (the one
/// `spec.manifest.configMapRef` names is looked up among them by namespace and name).
pub fn rendered_files<K: Workload>(
    obj: &K,
    index: i32,
    config_maps: &[ConfigMap],
) -> Result<RenderedPod, RenderError> {
    let obj = as_if_read_from_the_api(obj);
    let namespace = obj.namespace().unwrap_or_default();
    let referenced = referenced_config_map(&obj.workload().manifest).and_then(|r| {
        config_maps.iter().find(|cm| {
            cm.name_any() == r.name
                && cm.namespace().as_deref().unwrap_or(DEFAULT_NAMESPACE) == namespace
        })
    });
    let manifest = validation::admit(&obj, referenced).map_err(RenderError::Rejected)?;
    let rendered_map = desired_manifest_config_map(&obj, &manifest)?;
    let pod = desired_pod(&obj, index, &manifest)?.pod;
    Ok(render_container(pod, CONTAINER_NAME, Some(&rendered_map)))
}

/// Renders the registration Job of replica `index` as its pod would start (`None` without a
/// coldkey): the `register` container's command, args, env and mounted Secret files.
pub fn rendered_registration<K: Workload>(
    obj: &K,
    index: i32,
) -> Result<Option<RenderedPod>, RenderError> {
    let obj = as_if_read_from_the_api(obj);
    validation::validate(&obj).map_err(|errors| {
        RenderError::Rejected(Rejection {
            reason: crate::conditions::REASON_INVALID_SPEC,
            errors,
        })
    })?;
    let Some(job) = desired_registration_job(&obj, index)? else {
        return Ok(None);
    };
    let template = job.spec.map(|s| s.template).unwrap_or_default();
    let mut pod_meta = template.metadata.unwrap_or_default();
    pod_meta.name = Some(format!("{}-pod", job.metadata.name.unwrap_or_default()));
    pod_meta.namespace = job.metadata.namespace;
    let pod = Pod {
        metadata: pod_meta,
        spec: template.spec,
        status: None,
    };
    Ok(Some(render_container(pod, REGISTER_CONTAINER_NAME, None)))
}

/// The kubelet's view of container `name` of `pod`.
fn render_container(pod: Pod, name: &str, rendered_map: Option<&ConfigMap>) -> RenderedPod {
    let spec = pod.spec.clone().unwrap_or_default();
    let container = spec
        .containers
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .unwrap_or_default();
    let volumes = spec.volumes.unwrap_or_default();
    let env = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), env_value(e, &pod)))
        .collect();
    RenderedPod {
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        env,
        files: mounted_files(&container, &volumes, rendered_map),
        pod,
    }
}

fn env_value(var: &EnvVar, pod: &Pod) -> String {
    if let Some(value) = &var.value {
        return value.clone();
    }
    let Some(source) = &var.value_from else {
        return String::new();
    };
    if let Some(secret) = &source.secret_key_ref {
        return secret_placeholder(&secret.name, &secret.key);
    }
    match source.field_ref.as_ref().map(|f| f.field_path.as_str()) {
        Some("metadata.name") => pod.name_any(),
        Some("metadata.namespace") => pod.namespace().unwrap_or_default(),
        Some(other) => format!("<field {other}>"),
        None => String::new(),
    }
}

fn mounted_files(
    container: &Container,
    volumes: &[Volume],
    rendered_map: Option<&ConfigMap>,
) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let rendered_name = rendered_map.map(|m| m.name_any());
    let data = rendered_map
        .and_then(|m| m.data.clone())
        .unwrap_or_default();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            continue;
        };
        let dir = mount.mount_path.trim_end_matches('/');
        if let Some(cm) = volume
            .config_map
            .as_ref()
            .filter(|c| Some(&c.name) == rendered_name.as_ref())
        {
            for item in cm.items.iter().flatten() {
                if let Some(text) = data.get(&item.key) {
                    files.insert(format!("{dir}/{}", item.path), text.clone());
                }
            }
        }
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            for item in secret.items.iter().flatten() {
                files.insert(
                    format!("{dir}/{}", item.path),
                    secret_placeholder(&name, &item.key),
                );
            }
        }
    }
    files
}
