//! Atomic, checksummed checkpoints of model + optimizer + caller tensors + window.
//!
//! File layout: a safetensors payload followed by a 48-byte trailer
//! `b"WMCKPT\0\x01" || payload_len (u64 LE) || SHA-256(payload)`. Tensor names in the
//! payload: `param/<hf name>`, `adam/exp_avg/<hf name>`, `adam/exp_avg_sq/<hf name>`,
//! `extra/<caller name>`; its `__metadata__` holds the format tag, the window, the
//! optimizer step and the model config (JSON). Writing goes to `<path>.tmp`, is fsynced,
//! then renamed over `path`, so a crash leaves either the old or the new checkpoint.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::model::Llama;
use crate::optim::AdamW;
use crate::tensor_io::{StagedTensor, tensor_from_view};

const MAGIC: &[u8; 8] = b"WMCKPT\0\x01";
const TRAILER: usize = 8 + 8 + 32;
const FORMAT: &str = "worker-model-checkpoint/v1";

/// What [`load_checkpoint`] read besides the model and optimizer.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// The window stored with the checkpoint (the last completed one, by convention).
    pub window: u64,
    /// Optimizer step count, when the checkpoint has optimizer state.
    pub optimizer_step: Option<u64>,
    /// The caller's extra tensors (e.g. error feedback), on the model's device.
    pub extra: Vec<(String, Tensor)>,
}

/// Saves `model` (canonical fp32 parameters), optionally `optimizer`, the named `extra`
/// tensors and `window` to `path` atomically.
pub fn save_checkpoint(
    path: &Path,
    window: u64,
    model: &Llama,
    optimizer: Option<&AdamW>,
    extra: &[(&str, &Tensor)],
) -> Result<()> {
    let failed = Cell::new(false);
    let mut staged: Vec<(String, StagedTensor<'_>)> = Vec::new();
    for (name, t) in model.param_names().iter().zip(model.parameters()) {
        staged.push((
            format!("param/{name}"),
            StagedTensor::new(&t, None, &failed)?,
        ));
    }
    if let Some(optimizer) = optimizer {
        if optimizer.shard().is_some() {
            return Err(ModelError::Config(
                "a ZeRO-1 sharded optimizer holds only this rank's moments; checkpoint it per rank or unsharded".into(),
            ));
        }
        for (name, (m, v)) in model
            .param_names()
            .iter()
            .zip(optimizer.exp_avg().iter().zip(optimizer.exp_avg_sq()))
        {
            staged.push((
                format!("adam/exp_avg/{name}"),
                StagedTensor::new(m, None, &failed)?,
            ));
            staged.push((
                format!("adam/exp_avg_sq/{name}"),
                StagedTensor::new(v, None, &failed)?,
            ));
        }
    }
    for (name, t) in extra {
        staged.push((
            format!("extra/{name}"),
            StagedTensor::new(t, None, &failed)?,
        ));
    }
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("window".to_string(), window.to_string()),
        ("config".to_string(), serde_json::to_string(model.config())?),
    ]);
    if let Some(optimizer) = optimizer {
        metadata.insert(
            "optimizer_step".to_string(),
            optimizer.step_count().to_string(),
        );
    }

    let tmp = tmp_path(path);
    safetensors::serialize_to_file(
        staged.iter().map(|(n, t)| (n.as_str(), t)),
        Some(metadata),
        &tmp,
    )?;
    drop(staged);
    if failed.get() {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::Shape(
            "copying a tensor out of libtorch failed".into(),
        ));
    }
    append_trailer(&tmp).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Persist the rename; not all platforms can open directories, so ignore failures.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    tracing::info!(path = %path.display(), window, "checkpoint saved");
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn append_trailer(path: &Path) -> Result<()> {
    let io = |e| ModelError::io(path, e);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut file = File::open(path).map_err(io)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
    let mut file = OpenOptions::new().append(true).open(path).map_err(io)?;
    file.write_all(MAGIC).map_err(io)?;
    file.write_all(&len.to_le_bytes()).map_err(io)?;
    file.write_all(&hasher.finalize()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Loads a checkpoint written by [`save_checkpoint`] into `model` (and `optimizer` when
/// given; it is an error to ask for optimizer state the file does not have). Verifies the
/// checksum, the model config and every name and shape before changing anything.
pub fn load_checkpoint(
    path: &Path,
    model: &mut Llama,
    optimizer: Option<&mut AdamW>,
) -> Result<LoadedCheckpoint> {
    let bad = |reason: String| ModelError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: read-only mapping of a file this process treats as immutable while loading.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
    let payload = verified_payload(&map).map_err(bad)?;
    let tensors = SafeTensors::deserialize(payload).map_err(|e| bad(format!("payload: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(payload).map_err(|e| bad(format!("header: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad("not a worker-model checkpoint".into()));
    }
    let window = meta
        .get("window")
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or_else(|| bad("missing window".into()))?;
    let config: LlamaConfig = meta
        .get("config")
        .ok_or_else(|| bad("missing config".into()))
        .and_then(|c| serde_json::from_str(c).map_err(|e| bad(format!("config: {e}"))))?;
    if &config != model.config() {
        return Err(bad(
            "checkpoint was written for a different model config".into()
        ));
    }
    let optimizer_step = match meta.get("optimizer_step") {
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| bad("bad optimizer_step".into()))?,
        ),
        None => None,
    };

    let device = model.device();
    let get = |name: &str, shape: &[i64]| -> Result<Tensor> {
        let view = tensors
            .tensor(name)
            .map_err(|_| bad(format!("missing tensor {name}")))?;
        let t = tensor_from_view(&view, device)?;
        if t.size() != shape {
            return Err(bad(format!(
                "{name} has shape {:?}, expected {shape:?}",
                t.size()
            )));
        }
        Ok(t)
    };
    let specs = model.param_specs();
    let params = specs
        .iter()
        .map(|(n, s)| get(&format!("param/{n}"), s))
        .collect::<Result<Vec<_>>>()?;
    let moments = match &optimizer {
        None => None,
        Some(_) => {
            let step =
                optimizer_step.ok_or_else(|| bad("checkpoint has no optimizer state".into()))?;
            let m = specs
                .iter()
                .map(|(n, s)| get(&format!("adam/exp_avg/{n}"), s))
                .collect::<Result<Vec<_>>>()?;
            let v = specs
                .iter()
                .map(|(n, s)| get(&format!("adam/exp_avg_sq/{n}"), s))
                .collect::<Result<Vec<_>>>()?;
            Some((step, m, v))
        }
    };
    let mut extra = Vec::new();
    for (name, view) in tensors.iter() {
        if let Some(short) = name.strip_prefix("extra/") {
            extra.push((short.to_string(), tensor_from_view(&view, device)?));
        }
    }
    extra.sort_by(|a, b| a.0.cmp(&b.0));

    model.set_parameters(&params)?;
    if let (Some(optimizer), Some((step, m, v))) = (optimizer, moments) {
        optimizer.load_state(step, m, v)?;
    }
    tracing::info!(path = %path.display(), window, "checkpoint loaded");
    Ok(LoadedCheckpoint {
        window,
        optimizer_step,
        extra,
    })
}

/// The payload of a checkpoint file after checking its trailer and checksum.
fn verified_payload(bytes: &[u8]) -> Result<&[u8], String> {
    let Some(split) = bytes.len().checked_sub(TRAILER) else {
        return Err(format!("{} bytes is too short", bytes.len()));
    };
    let (payload, trailer) = bytes.split_at(split);
    if &trailer[..8] != MAGIC {
        return Err("missing trailer (truncated or not a checkpoint)".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&trailer[8..16]);
    if u64::from_le_bytes(len) != payload.len() as u64 {
        return Err("payload length does not match the trailer".into());
    }
    if Sha256::digest(payload).as_slice() != &trailer[16..] {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}
