//! The dataset manifest (`dataset.json`): every shard with its size and SHA-256, the
//! tokenizer, and how documents are separated. Its canonical SHA-256 is what a run manifest
//! pins (`data.dataset.sha256`).

use std::collections::HashSet;

use run_manifest::data_source::is_sha256_hex;
use run_manifest::{FieldError, LlamaConfig, ManifestHash, canonical_json};
use serde::{Deserialize, Serialize};
use worker_model::TokenWidth;

use crate::error::{DataError, Result};

/// The format version this crate reads and writes.
pub const DATASET_FORMAT_VERSION: u32 = 1;
/// File (or object key, under the dataset prefix) of the dataset manifest.
pub const DATASET_MANIFEST_FILE: &str = "dataset.json";

/// How a shard stores its tokens: flat little-endian integers, no header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardWidth {
    /// uint16 little-endian (vocabularies up to 65 536).
    U16,
    /// uint32 little-endian.
    U32,
}

impl ShardWidth {
    /// Bytes per token.
    pub fn bytes(self) -> u64 {
        match self {
            ShardWidth::U16 => 2,
            ShardWidth::U32 => 4,
        }
    }

    /// The narrowest width holding ids `< vocab_size`.
    pub fn for_vocab(vocab_size: u32) -> Self {
        if vocab_size <= 1 << 16 {
            ShardWidth::U16
        } else {
            ShardWidth::U32
        }
    }

    /// The model crate's equivalent.
    pub fn token_width(self) -> TokenWidth {
        match self {
            ShardWidth::U16 => TokenWidth::U16,
            ShardWidth::U32 => TokenWidth::U32,
        }
    }
}

/// How documents are delimited inside the token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DocumentBoundary {
    /// `eosId` follows every document; labels after an EOS are masked.
    EosAfterEachDocument,
}

/// One shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardEntry {
    /// Object key (or path) relative to the dataset's prefix (directory).
    pub key: String,
    /// Tokens in the shard.
    pub tokens: u64,
    /// Token width.
    pub width: ShardWidth,
    /// SHA-256 (hex) of the shard's bytes.
    pub sha256: String,
}

impl ShardEntry {
    /// Size of the shard file in bytes.
    pub fn bytes(&self) -> u64 {
        self.tokens.saturating_mul(self.width.bytes())
    }
}

/// The tokenizer the shards were produced with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenizerEntry {
    /// Key of a Hugging Face `tokenizer.json`, relative to the dataset prefix.
    pub file: String,
    /// SHA-256 (hex) of that file.
    pub sha256: String,
}

/// A pre-tokenized dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetManifest {
    /// [`DATASET_FORMAT_VERSION`].
    pub format_version: u32,
    /// Human-readable name.
    pub name: String,
    /// Tokenizer.
    pub tokenizer: TokenizerEntry,
    /// Token ids are `< vocabSize`.
    pub vocab_size: u32,
    /// End-of-document token.
    pub eos_id: u32,
    /// How documents are separated.
    pub document_boundary: DocumentBoundary,
    /// Training shards, in sample-id order.
    pub shards: Vec<ShardEntry>,
    /// Held-out shards (never assigned; for evaluation).
    pub held_out: Vec<ShardEntry>,
}

impl DatasetManifest {
    /// Parses and validates `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let manifest: DatasetManifest = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|err| DataError::Parse {
                origin: origin.to_owned(),
                path: err.path().to_string(),
                message: err.inner().to_string(),
            })?;
        deserializer.end().map_err(|err| DataError::Parse {
            origin: origin.to_owned(),
            path: ".".into(),
            message: err.to_string(),
        })?;
        let errors = manifest.validate();
        if !errors.is_empty() {
            return Err(DataError::Invalid {
                origin: origin.to_owned(),
                errors,
            });
        }
        Ok(manifest)
    }

    /// Canonical JSON (sorted keys, no whitespace): what the hash is taken over.
    pub fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).unwrap_or_default())
    }

    /// SHA-256 of the canonical JSON.
    pub fn hash(&self) -> ManifestHash {
        ManifestHash::of(self.canonical().as_bytes())
    }

    /// Pretty JSON, as written to `dataset.json`.
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Every rule the manifest breaks, with its field path.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut fail = |path: String, message: String| errors.push(FieldError { path, message });
        if self.format_version != DATASET_FORMAT_VERSION {
            fail(
                "formatVersion".into(),
                format!(
                    "this worker reads version {DATASET_FORMAT_VERSION}, got {}",
                    self.format_version
                ),
            );
        }
        if self.name.trim().is_empty() {
            fail("name".into(), "must not be empty".into());
        }
        if let Err(reason) = check_key(&self.tokenizer.file) {
            fail("tokenizer.file".into(), reason.into());
        }
        if !is_sha256_hex(&self.tokenizer.sha256) {
            fail(
                "tokenizer.sha256".into(),
                "must be 64 lower-case hex digits".into(),
            );
        }
        if self.vocab_size == 0 {
            fail("vocabSize".into(), "must be > 0".into());
        }
        if self.eos_id >= self.vocab_size {
            fail(
                "eosId".into(),
                format!(
                    "{} is outside the vocabulary of {}",
                    self.eos_id, self.vocab_size
                ),
            );
        }
        if self.shards.is_empty() {
            fail("shards".into(), "a dataset needs at least one shard".into());
        }
        let mut keys = HashSet::new();
        for (list, entries) in [("shards", &self.shards), ("heldOut", &self.held_out)] {
            for (i, shard) in entries.iter().enumerate() {
                let at = |field: &str| format!("{list}[{i}].{field}");
                if let Err(reason) = check_key(&shard.key) {
                    fail(at("key"), reason.into());
                } else if shard.key == DATASET_MANIFEST_FILE || shard.key == self.tokenizer.file {
                    fail(at("key"), "collides with the manifest or tokenizer".into());
                } else if !keys.insert(shard.key.as_str()) {
                    fail(at("key"), format!("{:?} is listed twice", shard.key));
                }
                if shard.tokens < 2 {
                    fail(at("tokens"), "a shard needs at least 2 tokens".into());
                }
                if shard.width == ShardWidth::U16 && self.vocab_size > 1 << 16 {
                    fail(
                        at("width"),
                        format!("u16 cannot hold ids of a {} vocabulary", self.vocab_size),
                    );
                }
                if !is_sha256_hex(&shard.sha256) {
                    fail(at("sha256"), "must be 64 lower-case hex digits".into());
                }
            }
        }
        errors
    }

    /// Refuses a dataset the model cannot train on: token ids beyond its embedding, or a
    /// different end-of-document token. Names the field that disagrees.
    pub fn check_model(&self, model: &LlamaConfig) -> Result<()> {
        if i64::from(self.vocab_size) > model.vocab_size {
            return Err(DataError::ModelMismatch {
                field: "vocabSize",
                message: format!(
                    "the dataset's tokenizer has {} tokens, the model's vocab_size is {}",
                    self.vocab_size, model.vocab_size
                ),
            });
        }
        if i64::from(self.eos_id) != model.eos_token_id {
            return Err(DataError::ModelMismatch {
                field: "eosId",
                message: format!(
                    "the dataset separates documents with token {}, the model's eos_token_id is {}",
                    self.eos_id, model.eos_token_id
                ),
            });
        }
        Ok(())
    }

    /// Total training tokens.
    pub fn total_tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.tokens).sum()
    }
}

/// A relative key of `/`-separated segments, none empty, `.` or `..`.
pub fn check_key(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        return Err("must not be empty");
    }
    if key.starts_with('/') || key.contains('\\') {
        return Err("must be a relative key with '/' separators");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("must not hold empty, '.' or '..' segments");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(key: &str, tokens: u64) -> ShardEntry {
        ShardEntry {
            key: key.into(),
            tokens,
            width: ShardWidth::U16,
            sha256: "0".repeat(64),
        }
    }

    pub(crate) fn sample() -> DatasetManifest {
        DatasetManifest {
            format_version: DATASET_FORMAT_VERSION,
            name: "t".into(),
            tokenizer: TokenizerEntry {
                file: "tokenizer.json".into(),
                sha256: "1".repeat(64),
            },
            vocab_size: 2048,
            eos_id: 0,
            document_boundary: DocumentBoundary::EosAfterEachDocument,
            shards: vec![shard("a.bin", 100), shard("b.bin", 100)],
            held_out: vec![],
        }
    }

    #[test]
    fn round_trips_and_hashes_canonically() {
        let m = sample();
        let text = m.to_json_pretty();
        let back = DatasetManifest::parse(&text, "t").unwrap();
        assert_eq!(back, m);
        assert_eq!(back.hash(), m.hash());
        assert!(text.contains("\"eosAfterEachDocument\""), "{text}");
        assert!(text.contains("\"width\": \"u16\""), "{text}");
        let mut other = m.clone();
        other.shards[1].tokens += 1;
        assert_ne!(other.hash(), m.hash());
    }

    #[test]
    fn rules_name_their_field() {
        let mut m = sample();
        m.eos_id = 5000;
        m.shards[1].key = "a.bin".into();
        m.shards[0].sha256 = "xyz".into();
        m.held_out.push(shard("../escape", 1));
        let paths: Vec<String> = m.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "eosId",
                "shards[0].sha256",
                "shards[1].key",
                "heldOut[0].key",
                "heldOut[0].tokens"
            ]
        );
        let mut m = sample();
        m.vocab_size = 100_000;
        let paths: Vec<String> = m.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["shards[0].width", "shards[1].width"]);
        let err = DatasetManifest::parse("{\"formatVersion\": 1}", "x.json").unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
        let mut value = serde_json::to_value(sample()).unwrap();
        value["shards"][0]["extra"] = 1.into();
        let err = DatasetManifest::parse(&value.to_string(), "x.json").unwrap_err();
        assert!(
            matches!(&err, DataError::Parse { path, .. } if path == "shards[0].extra"),
            "{err}"
        );
    }

    #[test]
    fn a_dataset_the_model_cannot_embed_is_refused_naming_the_field() {
        let mut model = LlamaConfig::tiny();
        assert!(sample().check_model(&model).is_ok());
        model.vocab_size = 1024;
        let err = sample().check_model(&model).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::ModelMismatch {
                    field: "vocabSize",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("2048") && err.to_string().contains("1024"));
        let mut model = LlamaConfig::tiny();
        model.eos_token_id = 2;
        let err = sample().check_model(&model).unwrap_err();
        assert!(
            matches!(err, DataError::ModelMismatch { field: "eosId", .. }),
            "{err}"
        );
    }
}
