//! Export to a Hugging Face `LlamaForCausalLM` directory (`model.safetensors` + `config.json`).

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;

use tch::Kind;

use crate::error::{ModelError, Result};
use crate::model::Llama;
use crate::tensor_io::StagedTensor;

/// Writes `dir/model.safetensors` (HF names and shapes, tensors in `kind`, e.g.
/// `Kind::BFloat16` or `Kind::Float`) and `dir/config.json`. With tied embeddings
/// `lm_head.weight` is omitted, as HF does. Both files are written to a temporary name
/// and renamed.
pub fn export_hf(model: &Llama, dir: &Path, kind: Kind) -> Result<()> {
    let torch_dtype = match kind {
        Kind::Float => "float32",
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        other => {
            return Err(ModelError::Config(format!(
                "cannot export weights as {other:?}"
            )));
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let failed = Cell::new(false);
    let staged = model
        .param_names()
        .iter()
        .zip(model.parameters())
        .map(|(name, t)| Ok((name.clone(), StagedTensor::new(&t, Some(kind), &failed)?)))
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = dir.join("model.safetensors");
    safetensors::serialize_to_file(
        staged.iter().map(|(n, t)| (n.as_str(), t)),
        Some(metadata),
        &weights,
    )?;
    if failed.get() {
        let _ = std::fs::remove_file(&weights);
        return Err(ModelError::Shape(
            "copying a tensor out of libtorch failed".into(),
        ));
    }
    let config = serde_json::to_vec_pretty(&model.config().hf_config_json(torch_dtype))?;
    let tmp = dir.join("config.json.tmp");
    std::fs::write(&tmp, config).map_err(|e| ModelError::io(&tmp, e))?;
    let path = dir.join("config.json");
    std::fs::rename(&tmp, &path).map_err(|e| ModelError::io(&path, e))?;
    Ok(())
}
