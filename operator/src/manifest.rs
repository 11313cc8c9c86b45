//! A workload's run manifest: found inline or in a ConfigMap, then parsed, validated, hashed
//! and checked against its pin by the `run-manifest` crate, so the operator refuses exactly
//! what the worker would refuse, naming the same field. Pure: the caller fetches the ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;
use run_manifest::{ManifestError, ManifestHash, VerifiedManifest};

use crate::crd::{ManifestConfigMapRef, ManifestSource};
use crate::validation::SpecError;

/// Why a workload's manifest cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestProblem {
    /// The manifest (or its pin) is wrong: every broken rule, with its field path.
    Invalid(Vec<SpecError>),
    /// The referenced ConfigMap or key does not exist (yet).
    NotFound(String),
}

/// Path of the inline manifest in the spec, the prefix of its field errors.
pub const INLINE_FIELD: &str = "spec.manifest.inline";
/// Path of the pin in the spec.
pub const PIN_FIELD: &str = "spec.manifest.sha256";
/// Path of the ConfigMap reference in the spec.
pub const CONFIG_MAP_FIELD: &str = "spec.manifest.configMapRef";

/// Where a manifest's text came from; names its field errors.
enum Origin {
    Inline,
    ConfigMap(String),
}

impl Origin {
    fn label(&self) -> String {
        match self {
            Origin::Inline => INLINE_FIELD.to_owned(),
            Origin::ConfigMap(label) => label.clone(),
        }
    }

    /// `spec.manifest.inline.sparseloco.chunk: ...` or `ConfigMap ns/name key k: sparseloco.chunk: ...`.
    fn error(&self, path: &str, message: &str) -> SpecError {
        let at_root = path.is_empty() || path == ".";
        match self {
            Origin::Inline if at_root => SpecError::new(INLINE_FIELD, message),
            Origin::Inline => SpecError::new(format!("{INLINE_FIELD}.{path}"), message),
            Origin::ConfigMap(label) if at_root => SpecError::new(label.clone(), message),
            Origin::ConfigMap(label) => SpecError::new(label.clone(), format!("{path}: {message}")),
        }
    }
}

/// The ConfigMap a manifest source reads, if it reads one.
pub fn referenced_config_map(source: &ManifestSource) -> Option<&ManifestConfigMapRef> {
    source.config_map_ref.as_ref()
}

/// Whether `source` (of a workload in `namespace`) reads the ConfigMap `namespace/name`.
pub fn references(
    source: &ManifestSource,
    namespace: &str,
    cm_namespace: &str,
    name: &str,
) -> bool {
    namespace == cm_namespace && referenced_config_map(source).is_some_and(|r| r.name == name)
}

/// Resolves and verifies the manifest of a workload in `namespace`; `config_map` is the
/// referenced ConfigMap as read from the API (`None` when it does not exist).
pub fn resolve(
    source: &ManifestSource,
    namespace: &str,
    config_map: Option<&ConfigMap>,
) -> Result<VerifiedManifest, ManifestProblem> {
    let pin = source
        .sha256
        .as_deref()
        .map(str::parse::<ManifestHash>)
        .transpose()
        .map_err(|err| {
            ManifestProblem::Invalid(vec![SpecError::new(PIN_FIELD, err.to_string())])
        })?;
    let (text, origin) = match (&source.config_map_ref, &source.inline) {
        (None, Some(inline)) => (inline.to_string(), Origin::Inline),
        (Some(reference), None) => (config_map_text(reference, namespace, config_map)?, {
            Origin::ConfigMap(format!(
                "ConfigMap {namespace}/{} key {}",
                reference.name, reference.key
            ))
        }),
        _ => {
            return Err(ManifestProblem::Invalid(vec![SpecError::new(
                "spec.manifest",
                "set exactly one of configMapRef or inline",
            )]));
        }
    };
    run_manifest::parse(&text, &origin.label(), pin.as_ref())
        .map_err(|err| ManifestProblem::Invalid(field_errors(&origin, &err)))
}

fn config_map_text(
    reference: &ManifestConfigMapRef,
    namespace: &str,
    config_map: Option<&ConfigMap>,
) -> Result<String, ManifestProblem> {
    let name = format!("ConfigMap {namespace}/{}", reference.name);
    let Some(config_map) = config_map else {
        return Err(ManifestProblem::NotFound(format!("{name} not found")));
    };
    config_map
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .cloned()
        .ok_or_else(|| ManifestProblem::NotFound(format!("{name} has no key {}", reference.key)))
}

fn field_errors(origin: &Origin, err: &ManifestError) -> Vec<SpecError> {
    match err {
        ManifestError::Parse { path, message, .. } => vec![origin.error(path, message)],
        ManifestError::Invalid { errors, .. } => errors
            .iter()
            .map(|e| origin.error(&e.path, &e.message))
            .collect(),
        ManifestError::HashMismatch {
            expected, actual, ..
        } => vec![SpecError::new(
            PIN_FIELD,
            format!(
                "pins {expected}, but the manifest in {} has SHA-256 {actual}",
                origin.label()
            ),
        )],
        ManifestError::BadPin(bad) => vec![SpecError::new(PIN_FIELD, bad.to_string())],
        other => vec![origin.error(".", &other.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_manifest::RunManifest;
    use std::collections::BTreeMap;

    fn inline(manifest: &RunManifest) -> ManifestSource {
        ManifestSource {
            inline: Some(serde_json::to_value(manifest).unwrap()),
            ..ManifestSource::default()
        }
    }

    fn config_map(key: &str, text: &str) -> ConfigMap {
        ConfigMap {
            data: Some(BTreeMap::from([(key.to_owned(), text.to_owned())])),
            ..ConfigMap::default()
        }
    }

    fn invalid(problem: ManifestProblem) -> String {
        match problem {
            ManifestProblem::Invalid(errors) => crate::validation::describe(&errors),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn inline_errors_are_located_under_the_inline_field() {
        let mut manifest = RunManifest::reference("run", "tiny");
        manifest.sparseloco.chunk = 128;
        let msg = invalid(resolve(&inline(&manifest), "ns", None).unwrap_err());
        assert_eq!(
            msg,
            "spec.manifest.inline.sparseloco.chunk: must be in 1..=64, got 128"
        );
    }

    #[test]
    fn config_map_errors_name_the_config_map_and_key() {
        let mut manifest = RunManifest::reference("run", "tiny");
        manifest.sparseloco.chunk = 128;
        let source = ManifestSource {
            config_map_ref: Some(ManifestConfigMapRef {
                name: "run".into(),
                key: "manifest.json".into(),
            }),
            ..ManifestSource::default()
        };
        let cm = config_map("manifest.json", &manifest.to_json_pretty());
        let msg = invalid(resolve(&source, "default", Some(&cm)).unwrap_err());
        assert_eq!(
            msg,
            "ConfigMap default/run key manifest.json: sparseloco.chunk: must be in 1..=64, got 128"
        );
        assert_eq!(
            resolve(&source, "default", None).unwrap_err(),
            ManifestProblem::NotFound("ConfigMap default/run not found".into())
        );
        let other_key = config_map("other.json", "{}");
        assert_eq!(
            resolve(&source, "default", Some(&other_key)).unwrap_err(),
            ManifestProblem::NotFound("ConfigMap default/run has no key manifest.json".into())
        );
    }

    #[test]
    fn pins_are_checked() {
        let manifest = RunManifest::reference("run", "tiny");
        let mut source = inline(&manifest);
        let verified = resolve(&source, "ns", None).unwrap();
        source.sha256 = Some(format!("sha256:{}", verified.hash()));
        assert_eq!(
            resolve(&source, "ns", None).unwrap().hash(),
            verified.hash()
        );
        source.sha256 = Some("0".repeat(64));
        let msg = invalid(resolve(&source, "ns", None).unwrap_err());
        assert!(msg.starts_with("spec.manifest.sha256: pins 0000"), "{msg}");
        assert!(msg.contains(&verified.hash().to_hex()), "{msg}");
        source.sha256 = Some("abc".into());
        let msg = invalid(resolve(&source, "ns", None).unwrap_err());
        assert!(
            msg.starts_with("spec.manifest.sha256: \"abc\" is not a SHA-256"),
            "{msg}"
        );
    }

    #[test]
    fn exactly_one_source() {
        let both = ManifestSource {
            config_map_ref: Some(ManifestConfigMapRef::default()),
            ..inline(&RunManifest::reference("run", "tiny"))
        };
        for source in [both, ManifestSource::default()] {
            assert_eq!(
                invalid(resolve(&source, "ns", None).unwrap_err()),
                "spec.manifest: set exactly one of configMapRef or inline"
            );
        }
    }
}
