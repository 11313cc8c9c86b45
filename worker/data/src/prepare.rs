//! `worker data prepare`: text in, a dataset out. Documents are tokenized with a Hugging Face
//! `tokenizer.json` (in parallel batches), each followed by the EOS token, and cut into shards
//! of exactly `shard_tokens` tokens (the last one shorter), flat little-endian.
//!
//! * **Inputs.** `.jsonl` / `.ndjson`: one JSON object per line, the document in
//!   `text_field`; `.parquet`: one document per row, in the string column `text_field`.
//!   Anything else: the whole file is one UTF-8 document. Inputs are read in the order given
//!   (`documents.rs`).
//! * **Deterministic.** Same inputs, tokenizer and options give byte-identical shards and
//!   manifest.
//! * **Resumable.** After every shard, `.prepare-state.json` records the shards written and
//!   where the next one starts (document number, tokens of it already written). A rerun
//!   with the same inputs and options continues from there.
//! * **Never overwrites another dataset.** An output directory holding a dataset from other
//!   inputs or options is refused.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::documents::Documents;
use crate::error::{DataError, Result};
use crate::manifest::{
    DATASET_FORMAT_VERSION, DATASET_MANIFEST_FILE, DatasetManifest, DocumentBoundary, ShardEntry,
    ShardWidth, TokenizerEntry,
};

/// State file of an unfinished (or finished) prepare run, in the output directory.
pub const STATE_FILE: &str = ".prepare-state.json";
/// Where the tokenizer is copied in the dataset.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Documents tokenized per parallel batch.
const BATCH_DOCS: usize = 256;

/// What to prepare.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Dataset name (recorded in the manifest).
    pub name: String,
    /// Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// The token appended after every document.
    pub eos_token: String,
    /// Training inputs.
    pub train: Vec<PathBuf>,
    /// Held-out inputs (may be empty).
    pub held_out: Vec<PathBuf>,
    /// Field of a JSONL object / column of a Parquet file holding the text.
    pub text_field: String,
    /// Tokens per shard.
    pub shard_tokens: u64,
    /// Output directory.
    pub out: PathBuf,
}

/// Progress after one shard.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Tokens written so far (both splits, this run and earlier ones).
    pub tokens: u64,
    /// Tokens this run tokenized per second.
    pub tokens_per_sec: f64,
    /// Shards written so far.
    pub shards: usize,
}

/// How a prepare run ended.
#[derive(Debug, Clone)]
pub enum PrepareOutcome {
    /// The dataset is complete.
    Done {
        /// Its manifest (also written to `dataset.json`).
        manifest: Box<DatasetManifest>,
        /// Shards found already written by an earlier, interrupted run.
        resumed_shards: usize,
    },
    /// The progress callback asked to stop; a rerun resumes.
    Stopped,
}

/// The resumable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    /// SHA-256 over the options and the inputs' contents.
    fingerprint: String,
    train: SplitState,
    held_out: SplitState,
    done: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SplitState {
    shards: Vec<ShardEntry>,
    /// First document not wholly written, and how many of its tokens are.
    next_document: u64,
    next_offset: u64,
    finished: bool,
}

/// Prepares (or resumes preparing) a dataset. `progress` is called after every shard and
/// may stop the run (`ControlFlow::Break`), which a rerun resumes.
pub fn prepare(
    options: &PrepareOptions,
    mut progress: impl FnMut(Progress) -> ControlFlow<()>,
) -> Result<PrepareOutcome> {
    if options.shard_tokens < 2 {
        return Err(DataError::Prepare(
            "--shard-tokens must be at least 2".into(),
        ));
    }
    if options.train.is_empty() {
        return Err(DataError::Prepare("no training input".into()));
    }
    let tokenizer_bytes =
        std::fs::read(&options.tokenizer).map_err(|e| DataError::io(&options.tokenizer, e))?;
    let tokenizer = Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| {
        DataError::Prepare(format!("tokenizer {}: {e}", options.tokenizer.display()))
    })?;
    let eos_id = tokenizer.token_to_id(&options.eos_token).ok_or_else(|| {
        DataError::Prepare(format!(
            "the tokenizer has no token {:?} (set --eos-token)",
            options.eos_token
        ))
    })?;
    let vocab_size = u32::try_from(tokenizer.get_vocab_size(true))
        .map_err(|_| DataError::Prepare("vocabulary larger than 2^32".into()))?;
    let width = ShardWidth::for_vocab(vocab_size);
    let fingerprint = fingerprint(options, &tokenizer_bytes)?;

    std::fs::create_dir_all(&options.out).map_err(|e| DataError::io(&options.out, e))?;
    let mut state = load_state(&options.out, &fingerprint)?;
    let resumed_shards = state.train.shards.len() + state.held_out.shards.len();
    write_file(&options.out.join(TOKENIZER_FILE), &tokenizer_bytes)?;

    let mut run = Run {
        tokenizer: &tokenizer,
        eos_id,
        width,
        options,
        started: Instant::now(),
        tokens_this_run: 0,
    };
    for split in [Split::Train, Split::HeldOut] {
        if run.split(split, &mut state, &mut progress)?.is_break() {
            return Ok(PrepareOutcome::Stopped);
        }
    }

    let manifest = DatasetManifest {
        format_version: DATASET_FORMAT_VERSION,
        name: options.name.clone(),
        tokenizer: TokenizerEntry {
            file: TOKENIZER_FILE.into(),
            sha256: hex::encode(Sha256::digest(&tokenizer_bytes)),
        },
        vocab_size,
        eos_id,
        document_boundary: DocumentBoundary::EosAfterEachDocument,
        shards: state.train.shards.clone(),
        held_out: state.held_out.shards.clone(),
    };
    let errors = manifest.validate();
    if !errors.is_empty() {
        return Err(DataError::Invalid {
            origin: options.out.display().to_string(),
            errors,
        });
    }
    write_file(
        &options.out.join(DATASET_MANIFEST_FILE),
        manifest.to_json_pretty().as_bytes(),
    )?;
    state.done = true;
    save_state(&options.out, &state)?;
    Ok(PrepareOutcome::Done {
        manifest: Box::new(manifest),
        resumed_shards,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    HeldOut,
}

struct Run<'a> {
    tokenizer: &'a Tokenizer,
    eos_id: u32,
    width: ShardWidth,
    options: &'a PrepareOptions,
    started: Instant,
    tokens_this_run: u64,
}

impl Run<'_> {
    fn split(
        &mut self,
        split: Split,
        state: &mut State,
        progress: &mut impl FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let options = self.options;
        let (inputs, key_prefix) = match split {
            Split::Train => (&options.train, "train"),
            Split::HeldOut => (&options.held_out, "val"),
        };
        let current = match split {
            Split::Train => &state.train,
            Split::HeldOut => &state.held_out,
        };
        if current.finished || inputs.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let shard_tokens = options.shard_tokens as usize;
        let mut split_state = current.clone();
        // Tokens not yet in a shard, with the (document, count) runs they came from.
        let mut buffer: Vec<u32> = Vec::with_capacity(shard_tokens * 2);
        let mut runs: VecDeque<(u64, u64, u64)> = VecDeque::new(); // (doc, first offset, count)
        let mut documents = Documents::open(inputs, &options.text_field);
        let skip_to = split_state.next_document;
        let mut batch: Vec<(u64, String)> = Vec::new();
        loop {
            let next = documents.next_document()?;
            let exhausted = next.is_none();
            if let Some((index, text)) = next
                && index >= skip_to
            {
                batch.push((index, text));
            }
            if batch.len() < BATCH_DOCS && !exhausted {
                continue;
            }
            let texts: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
            let encodings = self
                .tokenizer
                .encode_batch(texts, false)
                .map_err(|e| DataError::Prepare(format!("tokenizing: {e}")))?;
            for ((index, _), encoding) in batch.drain(..).zip(encodings) {
                let mut ids = encoding.get_ids().to_vec();
                ids.push(self.eos_id);
                let skip = if index == skip_to {
                    split_state.next_offset as usize
                } else {
                    0
                };
                let kept = ids.get(skip..).unwrap_or(&[]);
                self.tokens_this_run += kept.len() as u64;
                runs.push_back((index, skip as u64, kept.len() as u64));
                buffer.extend_from_slice(kept);
                while buffer.len() >= shard_tokens {
                    let rest = buffer.split_off(shard_tokens);
                    let shard = std::mem::replace(&mut buffer, rest);
                    self.write_shard(key_prefix, &shard, &mut split_state, &mut runs)?;
                    self.save(split, state, &split_state)?;
                    if progress(self.progress(state)).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        if buffer.len() >= 2 {
            let shard = std::mem::take(&mut buffer);
            self.write_shard(key_prefix, &shard, &mut split_state, &mut runs)?;
        }
        split_state.finished = true;
        self.save(split, state, &split_state)?;
        let _ = progress(self.progress(state));
        Ok(ControlFlow::Continue(()))
    }

    /// Writes one shard and advances the cursor past its tokens.
    fn write_shard(
        &self,
        key_prefix: &str,
        tokens: &[u32],
        split_state: &mut SplitState,
        runs: &mut VecDeque<(u64, u64, u64)>,
    ) -> Result<()> {
        let key = format!("{key_prefix}-{:05}.bin", split_state.shards.len());
        let bytes: Vec<u8> = match self.width {
            ShardWidth::U16 => tokens
                .iter()
                .flat_map(|&t| (t as u16).to_le_bytes())
                .collect(),
            ShardWidth::U32 => tokens.iter().flat_map(|&t| t.to_le_bytes()).collect(),
        };
        write_file(&self.options.out.join(&key), &bytes)?;
        split_state.shards.push(ShardEntry {
            key,
            tokens: tokens.len() as u64,
            width: self.width,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
        // Consume `tokens.len()` tokens from the runs; the cursor is where the rest starts.
        let mut left = tokens.len() as u64;
        let mut last_doc = None;
        while left > 0 {
            let Some((doc, first, count)) = runs.pop_front() else {
                break;
            };
            last_doc = Some(doc);
            if count > left {
                runs.push_front((doc, first + left, count - left));
                left = 0;
            } else {
                left -= count;
            }
        }
        match runs.front() {
            Some(&(doc, first, _)) => {
                split_state.next_document = doc;
                split_state.next_offset = first;
            }
            None => {
                // Everything tokenized so far is written: the next document starts afresh.
                split_state.next_offset = 0;
                if let Some(doc) = last_doc {
                    split_state.next_document = doc + 1;
                }
            }
        }
        Ok(())
    }

    fn save(&self, split: Split, state: &mut State, split_state: &SplitState) -> Result<()> {
        match split {
            Split::Train => state.train = split_state.clone(),
            Split::HeldOut => state.held_out = split_state.clone(),
        }
        save_state(&self.options.out, state)
    }

    fn progress(&self, state: &State) -> Progress {
        let shards: Vec<&ShardEntry> = state
            .train
            .shards
            .iter()
            .chain(&state.held_out.shards)
            .collect();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        Progress {
            tokens: shards.iter().map(|s| s.tokens).sum(),
            tokens_per_sec: self.tokens_this_run as f64 / secs,
            shards: shards.len(),
        }
    }
}

/// SHA-256 over the options that shape the output and the inputs' contents.
fn fingerprint(options: &PrepareOptions, tokenizer: &[u8]) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(b"templar/prepare/v1\0");
    let shard_tokens = options.shard_tokens.to_le_bytes();
    let tokenizer_digest = Sha256::digest(tokenizer);
    let parts: [&[u8]; 5] = [
        options.name.as_bytes(),
        options.eos_token.as_bytes(),
        options.text_field.as_bytes(),
        &shard_tokens,
        &tokenizer_digest,
    ];
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    for (label, inputs) in [("train", &options.train), ("heldOut", &options.held_out)] {
        hasher.update(label.as_bytes());
        hasher.update((inputs.len() as u64).to_le_bytes());
        for input in inputs {
            hasher.update(file_sha256(input)?);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    worker_storage::file_sha256(path).map_err(|e| DataError::io(path, e))
}

/// The state to continue from: a fresh one, or the recorded one when it belongs to the same
/// inputs and options and its shards are intact. Refuses a directory holding another dataset.
fn load_state(out: &Path, fingerprint: &str) -> Result<State> {
    let fresh = State {
        fingerprint: fingerprint.to_owned(),
        train: SplitState::default(),
        held_out: SplitState::default(),
        done: false,
    };
    let path = out.join(STATE_FILE);
    let recorded: Option<State> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).ok(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(DataError::io(&path, err)),
    };
    let has_dataset = out.join(DATASET_MANIFEST_FILE).exists();
    match recorded {
        Some(state) if state.fingerprint == fingerprint => {
            for shard in state.train.shards.iter().chain(&state.held_out.shards) {
                if crate::cache::file_matches(&out.join(&shard.key), shard).is_err() {
                    tracing::warn!(shard = %shard.key, "a shard of the interrupted run is damaged; starting over");
                    return Ok(fresh);
                }
            }
            Ok(state)
        }
        Some(_) => Err(refusal(out)),
        None if has_dataset => Err(refusal(out)),
        None => Ok(fresh),
    }
}

fn refusal(out: &Path) -> DataError {
    DataError::Prepare(format!(
        "{} holds a dataset prepared from other inputs or options; choose another output \
         or delete it",
        out.display()
    ))
}

fn save_state(out: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| DataError::Prepare(format!("state: {e}")))?;
    write_file(&out.join(STATE_FILE), text.as_bytes())
}

/// Writes `bytes` to `path` atomically (temp file, rename).
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".partial-{name}"));
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}
