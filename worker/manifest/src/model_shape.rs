//! Model shape ([`LlamaConfig`]), presets and the canonical parameter list.
//!
//! Tensor-free so the operator can check a manifest's model exactly as the worker builds it.

use serde::{Deserialize, Serialize};

/// A model shape the model cannot be built with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShapeError {
    /// The offending field of [`LlamaConfig`] (snake_case, as in the manifest).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

type Result<T> = std::result::Result<T, ShapeError>;

fn shape_error(field: &'static str, message: String) -> ShapeError {
    ShapeError { field, message }
}

/// Names [`LlamaConfig::preset`] accepts, as listed in error messages and the CRD docs.
pub const PRESET_NAMES: [&str; 5] = ["tiny", "150m", "1b", "8b", "70b"];

/// Shape of a LLaMA-style decoder. Field names follow Hugging Face's `LlamaConfig`
/// so [`LlamaConfig::hf_config_json`] is a direct mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of `embed_tokens` and `lm_head`).
    pub vocab_size: i64,
    /// Model width.
    pub hidden_size: i64,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: i64,
    /// Number of decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads (grouped-query attention when smaller than the query heads).
    pub num_key_value_heads: i64,
    /// Per-head width (usually `hidden_size / num_attention_heads`).
    pub head_dim: i64,
    /// Longest sequence the rotary cache covers.
    pub max_position_embeddings: i64,
    /// Training sequence length (tokens per sample, labels excluded).
    pub seq_len: i64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Whether `lm_head` shares `embed_tokens.weight`.
    pub tie_word_embeddings: bool,
    /// Standard deviation of the normal initialisation of matrices.
    pub initializer_range: f64,
    /// Beginning-of-sequence token, if the tokenizer has one.
    pub bos_token_id: Option<i64>,
    /// End-of-sequence / document separator token.
    pub eos_token_id: i64,
}

/// Vocabulary of the bundled tokenizer (`data/tokenizer.json`).
pub const BUNDLED_VOCAB_SIZE: i64 = 2048;
/// EOS id of the bundled tokenizer.
pub const BUNDLED_EOS_ID: i64 = 0;

impl LlamaConfig {
    /// A ~0.2 M parameter model over the bundled tokenizer: trains on 2 CPU cores in seconds.
    pub fn tiny() -> Self {
        LlamaConfig {
            vocab_size: BUNDLED_VOCAB_SIZE,
            hidden_size: 64,
            intermediate_size: 176,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            max_position_embeddings: 256,
            seq_len: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            tie_word_embeddings: true,
            initializer_range: 0.02,
            bos_token_id: None,
            eos_token_id: BUNDLED_EOS_ID,
        }
    }

    /// ~150 M parameters (12 x 768, LLaMA-2 style vocabulary of 32 000, untied head).
    pub fn m150() -> Self {
        LlamaConfig {
            vocab_size: 32_000,
            hidden_size: 768,
            intermediate_size: 2560,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_key_value_heads: 12,
            head_dim: 64,
            max_position_embeddings: 2048,
            seq_len: 2048,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            tie_word_embeddings: false,
            initializer_range: 0.02,
            bos_token_id: Some(1),
            eos_token_id: 2,
        }
    }

    /// LLaMA-3.2-1B shapes (1.24 B parameters, tied embeddings).
    pub fn b1() -> Self {
        LlamaConfig {
            vocab_size: 128_256,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_hidden_layers: 16,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 64,
            max_position_embeddings: 8192,
            seq_len: 2048,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            tie_word_embeddings: true,
            initializer_range: 0.02,
            bos_token_id: Some(128_000),
            eos_token_id: 128_001,
        }
    }

    /// LLaMA-3.1-8B shapes (8.03 B parameters).
    pub fn b8() -> Self {
        LlamaConfig {
            hidden_size: 4096,
            intermediate_size: 14_336,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 128,
            tie_word_embeddings: false,
            ..Self::b1()
        }
    }

    /// LLaMA-3.1-70B shapes (70.6 B parameters).
    pub fn b70() -> Self {
        LlamaConfig {
            hidden_size: 8192,
            intermediate_size: 28_672,
            num_hidden_layers: 80,
            num_attention_heads: 64,
            num_key_value_heads: 8,
            head_dim: 128,
            tie_word_embeddings: false,
            ..Self::b1()
        }
    }

    /// Looks a preset up by name (one of [`PRESET_NAMES`], exactly as written there).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "150m" => Some(Self::m150()),
            "1b" => Some(Self::b1()),
            "8b" => Some(Self::b8()),
            "70b" => Some(Self::b70()),
            _ => None,
        }
    }

    /// Rejects shapes the model cannot be built with.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
            ("seq_len", self.seq_len),
        ];
        for (name, value) in positive {
            if value <= 0 {
                return Err(shape_error(name, format!("must be > 0, got {value}")));
            }
        }
        if self.head_dim % 2 != 0 {
            return Err(shape_error(
                "head_dim",
                format!("must be even for RoPE, got {}", self.head_dim),
            ));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(shape_error(
                "num_key_value_heads",
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            ));
        }
        if self.seq_len > self.max_position_embeddings {
            return Err(shape_error(
                "seq_len",
                format!(
                    "{} exceeds max_position_embeddings {}",
                    self.seq_len, self.max_position_embeddings
                ),
            ));
        }
        if !(self.eos_token_id >= 0 && self.eos_token_id < self.vocab_size) {
            return Err(shape_error(
                "eos_token_id",
                format!("{} is outside the vocabulary", self.eos_token_id),
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0 && self.initializer_range > 0.0) {
            let positive = |v: f64| v > 0.0;
            let field = if !positive(self.rms_norm_eps) {
                "rms_norm_eps"
            } else if !positive(self.rope_theta) {
                "rope_theta"
            } else {
                "initializer_range"
            };
            return Err(shape_error(field, "must be > 0".into()));
        }
        Ok(())
    }

    /// Every trainable tensor as (Hugging Face name, shape), in the canonical order used by
    /// `worker_model::Llama::parameters`, pseudo-gradients and aggregated updates. With tied
    /// embeddings there is no `lm_head.weight` entry (as in HF checkpoints).
    pub fn param_specs(&self) -> Vec<(String, Vec<i64>)> {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let i = self.intermediate_size;
        let mut specs = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, h],
        )];
        for layer in 0..self.num_hidden_layers {
            let p = format!("model.layers.{layer}");
            specs.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
            specs.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            specs.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            specs.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            specs.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            specs.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            specs.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
            specs.push((format!("{p}.input_layernorm.weight"), vec![h]));
            specs.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        }
        specs.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            specs.push(("lm_head.weight".to_string(), vec![self.vocab_size, h]));
        }
        specs
    }

    /// Number of trainable parameters (tied embeddings counted once).
    pub fn param_count(&self) -> u64 {
        self.param_specs()
            .iter()
            .map(|(_, shape)| shape.iter().product::<i64>().max(0) as u64)
            .sum()
    }

    /// The `config.json` of a Hugging Face `LlamaForCausalLM` with these shapes.
    pub fn hf_config_json(&self, torch_dtype: &str) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "hidden_act": "silu",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "pretraining_tp": 1,
            "use_cache": true,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": torch_dtype,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_expected_sizes() {
        for config in [
            LlamaConfig::tiny(),
            LlamaConfig::m150(),
            LlamaConfig::b1(),
            LlamaConfig::b8(),
            LlamaConfig::b70(),
        ] {
            config.validate().unwrap();
        }
        let billions = |c: LlamaConfig| c.param_count() as f64 / 1e9;
        assert!(LlamaConfig::tiny().param_count() < 1_000_000);
        assert!((0.14..0.16).contains(&billions(LlamaConfig::m150())));
        // Published sizes: Llama-3.2-1B 1.236 B, Llama-3.1-8B 8.030 B, Llama-3.1-70B 70.554 B.
        assert!((billions(LlamaConfig::b1()) - 1.236).abs() < 0.01);
        assert!((billions(LlamaConfig::b8()) - 8.030).abs() < 0.01);
        assert!((billions(LlamaConfig::b70()) - 70.554).abs() < 0.01);
    }

    #[test]
    fn param_specs_follow_hf_order_and_tying() {
        let tied = LlamaConfig::tiny();
        let names: Vec<String> = tied.param_specs().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "model.embed_tokens.weight");
        assert_eq!(names[1], "model.layers.0.self_attn.q_proj.weight");
        assert_eq!(names[9], "model.layers.0.post_attention_layernorm.weight");
        assert_eq!(names.last().unwrap(), "model.norm.weight");
        assert_eq!(names.len(), 2 + 9 * 2);
        let untied = LlamaConfig {
            tie_word_embeddings: false,
            ..tied
        };
        assert_eq!(untied.param_specs().last().unwrap().0, "lm_head.weight");
    }

    #[test]
    fn validate_rejects_bad_shapes() {
        let bad_heads = LlamaConfig {
            num_key_value_heads: 3,
            ..LlamaConfig::tiny()
        };
        assert!(bad_heads.validate().is_err());
        let odd_head = LlamaConfig {
            head_dim: 15,
            ..LlamaConfig::tiny()
        };
        assert!(odd_head.validate().is_err());
        let long = LlamaConfig {
            seq_len: 1024,
            ..LlamaConfig::tiny()
        };
        assert!(long.validate().is_err());
        let json = serde_json::to_string(&LlamaConfig::m150()).unwrap();
        let back: LlamaConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, LlamaConfig::m150());
    }
}
