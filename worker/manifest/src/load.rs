//! Reading a manifest from text or a file: parse, validate, resolve, hash, check a pin.

use std::path::Path;

use crate::identity::{BadHash, ManifestHash};
use crate::rules::FieldError;
use crate::{RunManifest, VerifiedManifest};

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("reading run manifest {origin}: {source}")]
    Read {
        /// Where the manifest came from.
        origin: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Not a manifest document (syntax, unknown or missing field, wrong type).
    #[error("run manifest {origin}: at `{path}`: {message}")]
    Parse {
        /// Where the manifest came from.
        origin: String,
        /// Dotted path of the offending field (`.` for the document itself).
        path: String,
        /// What serde reported.
        message: String,
    },
    /// A well-formed manifest that breaks validation rules.
    #[error("run manifest {origin} is invalid: {}", join(.errors))]
    Invalid {
        /// Where the manifest came from.
        origin: String,
        /// Every rule broken, with its field path.
        errors: Vec<FieldError>,
    },
    /// The manifest is not the one that was pinned.
    #[error("run manifest {origin} has SHA-256 {actual}, but {expected} was pinned")]
    HashMismatch {
        /// Where the manifest came from.
        origin: String,
        /// The pinned hash.
        expected: ManifestHash,
        /// The manifest's own hash.
        actual: ManifestHash,
    },
    /// The pin itself is malformed.
    #[error("pinned run manifest hash: {0}")]
    BadPin(#[from] BadHash),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ManifestError {
    /// The field paths at fault, for callers that report them (the operator's conditions).
    pub fn field_paths(&self) -> Vec<String> {
        match self {
            ManifestError::Parse { path, .. } => vec![path.clone()],
            ManifestError::Invalid { errors, .. } => {
                errors.iter().map(|e| e.path.clone()).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Parses, validates and hashes a manifest; `origin` names it in errors.
pub fn parse(
    text: &str,
    origin: &str,
    pin: Option<&ManifestHash>,
) -> Result<VerifiedManifest, ManifestError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let manifest: RunManifest =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
            ManifestError::Parse {
                origin: origin.to_owned(),
                path: err.path().to_string(),
                message: err.inner().to_string(),
            }
        })?;
    deserializer.end().map_err(|err| ManifestError::Parse {
        origin: origin.to_owned(),
        path: ".".into(),
        message: err.to_string(),
    })?;
    verify(manifest, origin, pin)
}

/// Validates and hashes a manifest held in memory.
pub fn verify(
    manifest: RunManifest,
    origin: &str,
    pin: Option<&ManifestHash>,
) -> Result<VerifiedManifest, ManifestError> {
    let errors = crate::rules::validate(&manifest);
    let model = match manifest.model.resolve() {
        Some(model) if errors.is_empty() => model,
        _ => {
            return Err(ManifestError::Invalid {
                origin: origin.to_owned(),
                errors,
            });
        }
    };
    let verified = VerifiedManifest::new(manifest, model);
    if let Some(expected) = pin
        && *expected != verified.hash()
    {
        return Err(ManifestError::HashMismatch {
            origin: origin.to_owned(),
            expected: *expected,
            actual: verified.hash(),
        });
    }
    Ok(verified)
}

/// Reads a manifest file; `pin` is an optional expected SHA-256 (hex).
pub fn load_file(path: &Path, pin: Option<&str>) -> Result<VerifiedManifest, ManifestError> {
    let pin = pin.map(str::parse::<ManifestHash>).transpose()?;
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        origin: origin.clone(),
        source,
    })?;
    parse(&text, &origin, pin.as_ref())
}
