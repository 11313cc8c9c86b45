//! Uploading a prepared dataset to S3, and `worker data inspect`.

use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::manifest::{DATASET_MANIFEST_FILE, DatasetManifest};
use crate::open::read_manifest;
use crate::source::{DirSource, S3Source, ShardSource};

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Every object was uploaded (`dataset.json` last).
    Uploaded {
        /// Objects written.
        objects: usize,
        /// Bytes written.
        bytes: u64,
    },
    /// The same dataset was already there.
    AlreadyThere,
}

/// Uploads the dataset prepared in `dir` to `target`. The manifest goes last, so a reader
/// never sees a manifest whose shards are not all there; a different dataset already at
/// the prefix is refused.
pub fn upload(dir: &Path, target: &S3Source) -> Result<UploadOutcome> {
    let local = DirSource::new(dir);
    let manifest = read_manifest(&local, None)?;
    match read_manifest(target, None) {
        Ok(remote) if remote.hash() == manifest.hash() => return Ok(UploadOutcome::AlreadyThere),
        Ok(remote) => {
            return Err(DataError::Prepare(format!(
                "{} already holds dataset {} ({}); refusing to overwrite it with {}",
                target.uri(),
                remote.name,
                remote.hash(),
                manifest.hash()
            )));
        }
        Err(DataError::MissingShard { .. }) => {}
        Err(err) => {
            return Err(DataError::Prepare(format!(
                "{} holds something that is not this dataset ({err}); refusing to overwrite it",
                target.uri()
            )));
        }
    }
    let mut keys = vec![manifest.tokenizer.file.clone()];
    keys.extend(
        manifest
            .shards
            .iter()
            .chain(&manifest.held_out)
            .map(|s| s.key.clone()),
    );
    keys.push(DATASET_MANIFEST_FILE.to_owned());
    let mut bytes = 0;
    for key in &keys {
        let path = dir.join(key);
        let body = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        bytes += body.len() as u64;
        target.put(key, body)?;
        tracing::info!(%key, "uploaded");
    }
    Ok(UploadOutcome::Uploaded {
        objects: keys.len(),
        bytes,
    })
}

/// A human-readable summary of a dataset: shards, tokens, hashes, tokenizer, and the first
/// `sample_tokens` tokens of the first shard decoded. Reads the manifest, the tokenizer and
/// one shard only.
pub fn inspect(source: &dyn ShardSource, sample_tokens: usize) -> Result<String> {
    let manifest = read_manifest(source, None)?;
    let mut out = String::new();
    let _ = writeln!(out, "dataset     {} ({})", manifest.name, source.uri());
    let _ = writeln!(out, "sha256      {}", manifest.hash());
    let _ = writeln!(
        out,
        "tokenizer   {} sha256 {}",
        manifest.tokenizer.file, manifest.tokenizer.sha256
    );
    let _ = writeln!(
        out,
        "vocabulary  {} tokens, EOS id {}, {:?}",
        manifest.vocab_size, manifest.eos_id, manifest.document_boundary
    );
    let _ = writeln!(
        out,
        "training    {} shards, {} tokens",
        manifest.shards.len(),
        manifest.total_tokens()
    );
    let held: u64 = manifest.held_out.iter().map(|s| s.tokens).sum();
    let _ = writeln!(
        out,
        "held out    {} shards, {held} tokens",
        manifest.held_out.len()
    );
    const LISTED: usize = 5;
    for shard in manifest.shards.iter().take(LISTED) {
        let _ = writeln!(
            out,
            "  {:<24} {:>12} tokens  {:?}  {}",
            shard.key, shard.tokens, shard.width, shard.sha256
        );
    }
    if manifest.shards.len() > LISTED {
        let _ = writeln!(out, "  ... {} more", manifest.shards.len() - LISTED);
    }
    let _ = writeln!(
        out,
        "sample      {}",
        decoded_sample(source, &manifest, sample_tokens)?
    );
    Ok(out)
}

fn decoded_sample(
    source: &dyn ShardSource,
    manifest: &DatasetManifest,
    count: usize,
) -> Result<String> {
    let tokenizer_bytes = source.read(&manifest.tokenizer.file, 1 << 30)?;
    let digest = hex::encode(Sha256::digest(&tokenizer_bytes));
    if digest != manifest.tokenizer.sha256 {
        return Err(DataError::CorruptShard {
            key: manifest.tokenizer.file.clone(),
            source_name: source.uri(),
            reason: format!(
                "sha256 {digest}, the manifest says {}",
                manifest.tokenizer.sha256
            ),
        });
    }
    let tokenizer = tokenizers::Tokenizer::from_bytes(&tokenizer_bytes)
        .map_err(|e| DataError::Prepare(format!("tokenizer: {e}")))?;
    let Some(shard) = manifest.shards.first() else {
        return Ok(String::new());
    };
    let body = source.read(&shard.key, shard.bytes())?;
    let ids: Vec<u32> = match shard.width {
        crate::manifest::ShardWidth::U16 => body
            .chunks_exact(2)
            .take(count)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        crate::manifest::ShardWidth::U32 => body
            .chunks_exact(4)
            .take(count)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    };
    let text = tokenizer
        .decode(&ids, false)
        .map_err(|e| DataError::Prepare(format!("decoding: {e}")))?;
    Ok(format!("{:?}", text))
}
