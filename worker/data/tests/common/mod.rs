//! Helpers shared by the dataset tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use run_manifest::{DataSection, DatasetRef, RunManifest, Sampling, VerifiedManifest, verify};
use sha2::{Digest, Sha256};
use worker_data::{
    DATASET_FORMAT_VERSION, DATASET_MANIFEST_FILE, DataError, DatasetManifest, DocumentBoundary,
    ShardEntry, ShardSource, ShardWidth, TokenizerEntry,
};

/// The committed bundled dataset.
pub fn bundled_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundled")
}

/// A verified run manifest (tiny model) whose data is `data`.
pub fn run_with(data: DataSection) -> VerifiedManifest {
    let mut m = RunManifest::reference("data-test", "tiny");
    m.data = data;
    verify(m, "test", None).unwrap()
}

/// A `data` section naming a dataset.
pub fn dataset_section(uri: &str, sha256: &str, endpoint: Option<&str>) -> DataSection {
    DataSection::Dataset(DatasetRef {
        uri: uri.into(),
        sha256: sha256.into(),
        endpoint: endpoint.map(str::to_owned),
        region: endpoint.map(|_| "us-east-1".to_owned()),
        sampling: Sampling::WholeDataset {},
    })
}

/// The bytes of synthetic shard `index`: `tokens` u16 tokens derived from the index, the
/// first two spelling it (so no two shards share content: the cache is content-addressed).
pub fn synthetic_shard(index: usize, tokens: usize) -> Vec<u8> {
    (0..tokens)
        .map(|t| match t {
            0 => index % 2047 + 1,
            1 => index / 2047 % 2047 + 1,
            _ => (index * 7919 + t * 31) % 2047 + 1,
        })
        .flat_map(|t| (t as u16).to_le_bytes())
        .collect()
}

/// A dataset of `shards` synthetic shards generated on demand, counting every read.
pub struct SyntheticSource {
    pub manifest: DatasetManifest,
    pub tokens: usize,
    pub reads: Mutex<BTreeMap<String, usize>>,
}

impl SyntheticSource {
    pub fn new(shards: usize, tokens: usize) -> Self {
        let entries = (0..shards)
            .map(|i| ShardEntry {
                key: format!("shards/{i:06}.bin"),
                tokens: tokens as u64,
                width: ShardWidth::U16,
                sha256: hex::encode(Sha256::digest(synthetic_shard(i, tokens))),
            })
            .collect();
        let manifest = DatasetManifest {
            format_version: DATASET_FORMAT_VERSION,
            name: "synthetic".into(),
            tokenizer: TokenizerEntry {
                file: "tokenizer.json".into(),
                sha256: "0".repeat(64),
            },
            vocab_size: 2048,
            eos_id: 0,
            document_boundary: DocumentBoundary::EosAfterEachDocument,
            shards: entries,
            held_out: vec![],
        };
        Self {
            manifest,
            tokens,
            reads: Mutex::new(BTreeMap::new()),
        }
    }

    /// Keys read so far (the manifest included).
    pub fn keys_read(&self) -> Vec<String> {
        self.reads.lock().unwrap().keys().cloned().collect()
    }
}

impl ShardSource for SyntheticSource {
    fn uri(&self) -> String {
        "synthetic://".into()
    }

    fn read(&self, key: &str, _max_bytes: u64) -> Result<Vec<u8>, DataError> {
        *self
            .reads
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default() += 1;
        if key == DATASET_MANIFEST_FILE {
            return Ok(self.manifest.to_json_pretty().into_bytes());
        }
        let index = key
            .strip_prefix("shards/")
            .and_then(|k| k.strip_suffix(".bin"))
            .and_then(|k| k.parse::<usize>().ok())
            .ok_or_else(|| DataError::MissingShard {
                key: key.into(),
                source_name: self.uri(),
            })?;
        Ok(synthetic_shard(index, self.tokens))
    }
}
