//! The LLaMA decoder: parameters in an `nn::VarStore`, forward pass, loss, and the
//! parameter-level operations the miner and validator need (snapshot, restore, outer step).

use tch::{Device, Kind, Reduction, Tensor, nn};

use crate::batch::{Batch, IGNORE_INDEX};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::init::initial_tensor;
use crate::rope::Rope;

/// Numeric precision of the forward/backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// fp32 everywhere (CPU default).
    Fp32,
    /// bf16 compute weights with fp32 master weights (CUDA default). Pseudo-gradients,
    /// snapshots, checkpoints and outer updates all use the fp32 master copy, so every
    /// peer holds bit-identical canonical parameters.
    Bf16,
}

impl Precision {
    /// bf16 on CUDA, fp32 elsewhere.
    pub fn for_device(device: Device) -> Precision {
        if device.is_cuda() {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }

    /// Kind of the compute weights.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// Deep copy of the canonical (fp32) parameters, in parameter order.
#[derive(Debug)]
pub struct ParamSnapshot {
    tensors: Vec<Tensor>,
}

impl ParamSnapshot {
    /// The copied tensors in parameter order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// True when both snapshots hold bit-identical tensors.
    pub fn bit_equal(&self, other: &ParamSnapshot) -> bool {
        self.tensors.len() == other.tensors.len()
            && self
                .tensors
                .iter()
                .zip(&other.tensors)
                .all(|(a, b)| a.equal(b))
    }
}

/// Offsets of one decoder layer's tensors inside the parameter list.
const PER_LAYER: usize = 9;

/// A LLaMA-style causal decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU).
#[derive(Debug)]
pub struct Llama {
    config: LlamaConfig,
    device: Device,
    precision: Precision,
    var_store: nn::VarStore,
    names: Vec<String>,
    /// Trainable compute weights (in the var store), parameter order.
    weights: Vec<Tensor>,
    /// fp32 master copies when the compute weights are not fp32.
    master: Option<Vec<Tensor>>,
    rope: Rope,
}

impl Llama {
    /// Builds a model with deterministic initial weights (see [`crate::init`]) in the
    /// precision [`Precision::for_device`] picks.
    pub fn new(config: LlamaConfig, device: Device, seed: u64) -> Result<Llama> {
        Self::with_precision(config, device, seed, Precision::for_device(device))
    }

    /// Builds a model with an explicit precision.
    pub fn with_precision(
        config: LlamaConfig,
        device: Device,
        seed: u64,
        precision: Precision,
    ) -> Result<Llama> {
        config.validate()?;
        let var_store = nn::VarStore::new(device);
        let mut names = Vec::new();
        let mut weights = Vec::new();
        let mut master = (precision != Precision::Fp32).then(Vec::new);
        for (name, shape) in config.param_specs() {
            let init = initial_tensor(seed, &name, &shape, config.initializer_range)?
                .f_to_device(device)?;
            let mut path = var_store.root();
            let mut parts: Vec<&str> = name.split('.').collect();
            let leaf = parts.pop().unwrap_or("weight");
            for part in parts {
                path = path.sub(part);
            }
            let weight = path.add(leaf, init.f_to_kind(precision.kind())?, true);
            if let Some(master) = master.as_mut() {
                master.push(init);
            }
            names.push(name);
            weights.push(weight);
        }
        let rope = Rope::new(
            config.head_dim,
            config.max_position_embeddings,
            config.rope_theta,
            device,
        )?;
        Ok(Llama {
            config,
            device,
            precision,
            var_store,
            names,
            weights,
            master,
            rope,
        })
    }

    /// Shape of the model.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Device holding the weights.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Compute precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The var store holding the compute weights (names are the Hugging Face names).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.var_store
    }

    /// Parameter names in canonical order.
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// (name, shape) of every parameter in canonical order.
    pub fn param_specs(&self) -> Vec<(String, Vec<i64>)> {
        self.config.param_specs()
    }

    /// The canonical fp32 parameters in order (shallow handles: they alias the model's
    /// storage, so treat them as read-only and change weights through
    /// [`Llama::apply_update`], [`Llama::set_parameters`] or [`Llama::restore`]).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.canonical().iter().map(Tensor::shallow_clone).collect()
    }

    pub(crate) fn canonical(&self) -> &[Tensor] {
        self.master.as_deref().unwrap_or(&self.weights)
    }

    pub(crate) fn compute_weights(&self) -> &[Tensor] {
        &self.weights
    }

    /// Copies the fp32 master weights into the bf16 compute weights (no-op in fp32).
    pub(crate) fn sync_compute_weights(&mut self) -> Result<()> {
        if let Some(master) = &self.master {
            tch::no_grad(|| -> Result<()> {
                for (weight, value) in self.weights.iter_mut().zip(master) {
                    weight.f_copy_(value)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Bit-exact copy of the canonical parameters.
    pub fn snapshot(&self) -> Result<ParamSnapshot> {
        let tensors = tch::no_grad(|| -> Result<Vec<Tensor>> {
            self.canonical()
                .iter()
                .map(|t| {
                    let mut copy = t.f_empty_like()?;
                    copy.f_copy_(t)?;
                    Ok(copy)
                })
                .collect()
        })?;
        Ok(ParamSnapshot { tensors })
    }

    /// Puts the parameters back to `snapshot` exactly.
    pub fn restore(&mut self, snapshot: &ParamSnapshot) -> Result<()> {
        self.set_parameters(&snapshot.tensors)
    }

    /// Overwrites the parameters with `values` (parameter order, shapes must match; values
    /// are converted to the model's device and fp32).
    pub fn set_parameters(&mut self, values: &[Tensor]) -> Result<()> {
        self.check_shapes(values, "set_parameters")?;
        tch::no_grad(|| -> Result<()> {
            for (param, value) in self.canonical().iter().zip(values) {
                param.shallow_clone().f_copy_(value)?;
            }
            Ok(())
        })?;
        self.sync_compute_weights()
    }

    /// Outer step `theta <- theta - lr * update` with `update` in parameter order
    /// (e.g. the aggregated SparseLoCo pseudo-gradient). Rejects non-finite updates.
    pub fn apply_update(&mut self, update: &[Tensor], lr: f64) -> Result<()> {
        self.check_shapes(update, "apply_update")?;
        let mut converted = Vec::with_capacity(update.len());
        for (name, u) in self.names.iter().zip(update) {
            let u = u.f_to_device(self.device)?.f_to_kind(Kind::Float)?;
            if u.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
                return Err(ModelError::Shape(format!("update for {name} has NaN/Inf")));
            }
            converted.push(u);
        }
        tch::no_grad(|| -> Result<()> {
            for (param, u) in self.canonical().iter().zip(&converted) {
                let _ = param.shallow_clone().f_sub_(&u.f_mul_scalar(lr)?)?;
            }
            Ok(())
        })?;
        self.sync_compute_weights()
    }

    /// A deterministic sample of `per_tensor` values from every parameter (fp32, parameter
    /// order), e.g. what a miner publishes after its outer step for the validator's sync
    /// check. Positions: for each parameter, `per_tensor` flat indices drawn uniformly (with
    /// replacement) from a ChaCha20 stream seeded by
    /// `SHA-256("templar/param-sample/v1" || seed (u64 LE) || name)`.
    pub fn parameter_sample(&self, seed: u64, per_tensor: usize) -> Result<Vec<f32>> {
        use rand::RngCore;
        use rand_chacha::rand_core::SeedableRng;
        use sha2::{Digest, Sha256};
        let mut values = Vec::with_capacity(per_tensor * self.names.len());
        for (name, param) in self.names.iter().zip(self.canonical()) {
            let mut hasher = Sha256::new();
            hasher.update(b"templar/param-sample/v1");
            hasher.update(seed.to_le_bytes());
            hasher.update(name.as_bytes());
            let mut rng = rand_chacha::ChaCha20Rng::from_seed(hasher.finalize().into());
            let numel = param.numel() as u64;
            let index: Vec<i64> = (0..per_tensor)
                .map(|_| (rng.next_u64() % numel.max(1)) as i64)
                .collect();
            let index = Tensor::f_from_slice(&index)?.f_to_device(self.device)?;
            let picked = param
                .f_detach()?
                .f_flatten(0, -1)?
                .f_index_select(0, &index)?;
            values.extend(Vec::<f32>::try_from(
                picked.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?,
            )?);
        }
        Ok(values)
    }

    fn check_shapes(&self, tensors: &[Tensor], what: &str) -> Result<()> {
        if tensors.len() != self.weights.len() {
            return Err(ModelError::Shape(format!(
                "{what}: expected {} tensors, got {}",
                self.weights.len(),
                tensors.len()
            )));
        }
        for ((name, param), t) in self.names.iter().zip(&self.weights).zip(tensors) {
            if param.size() != t.size() {
                return Err(ModelError::Shape(format!(
                    "{what}: {name} expects {:?}, got {:?}",
                    param.size(),
                    t.size()
                )));
            }
        }
        Ok(())
    }

    /// Logits `[batch, seq, vocab]` (compute precision) for `input_ids` `[batch, seq]`.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let size = input_ids.size();
        let (batch, seq) = match size.as_slice() {
            [b, t] => (*b, *t),
            other => {
                return Err(ModelError::Shape(format!(
                    "input_ids must be 2-D, got {other:?}"
                )));
            }
        };
        if seq > self.config.max_position_embeddings {
            return Err(ModelError::Shape(format!(
                "sequence of {seq} exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            )));
        }
        let ids = input_ids.f_to_device(self.device)?;
        let w = &self.weights;
        let mut x = Tensor::f_embedding(&w[0], &ids, -1, false, false)?;
        for layer in 0..self.config.num_hidden_layers as usize {
            let base = 1 + layer * PER_LAYER;
            let lw = &w[base..base + PER_LAYER];
            let h = self.rms_norm(&x, &lw[7])?;
            x = x.f_add(&self.attention(&h, lw, batch, seq)?)?;
            let h = self.rms_norm(&x, &lw[8])?;
            let gate = h.f_linear::<Tensor>(&lw[4], None)?.f_silu()?;
            let up = h.f_linear::<Tensor>(&lw[5], None)?;
            x = x.f_add(&gate.f_mul(&up)?.f_linear::<Tensor>(&lw[6], None)?)?;
        }
        let norm_index = 1 + self.config.num_hidden_layers as usize * PER_LAYER;
        let x = self.rms_norm(&x, &w[norm_index])?;
        let head = if self.config.tie_word_embeddings {
            &w[0]
        } else {
            &w[norm_index + 1]
        };
        Ok(x.f_linear::<Tensor>(head, None)?)
    }

    fn attention(&self, h: &Tensor, lw: &[Tensor], batch: i64, seq: i64) -> Result<Tensor> {
        let c = &self.config;
        let heads = |t: Tensor, n: i64| -> Result<Tensor> {
            Ok(t.f_view([batch, seq, n, c.head_dim])?.f_transpose(1, 2)?)
        };
        let q = heads(h.f_linear::<Tensor>(&lw[0], None)?, c.num_attention_heads)?;
        let k = heads(h.f_linear::<Tensor>(&lw[1], None)?, c.num_key_value_heads)?;
        let v = heads(h.f_linear::<Tensor>(&lw[2], None)?, c.num_key_value_heads)?;
        let q = self.rope.apply(&q)?;
        let k = self.rope.apply(&k)?;
        let gqa = c.num_key_value_heads != c.num_attention_heads;
        let out = Tensor::f_scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, true, None, gqa,
        )?;
        let out = out.f_transpose(1, 2)?.f_contiguous()?.f_view([
            batch,
            seq,
            c.num_attention_heads * c.head_dim,
        ])?;
        Ok(out.f_linear::<Tensor>(&lw[3], None)?)
    }

    /// RMSNorm computed in fp32 (as Hugging Face does), scaled by `weight`.
    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps;
        let h = self.config.hidden_size;
        if x.kind() == Kind::Float {
            return Ok(x.f_rms_norm(&[h][..], Some(weight), eps)?);
        }
        let normed = x
            .f_to_kind(Kind::Float)?
            .f_rms_norm::<Tensor>(&[h][..], None, eps)?;
        Ok(normed.f_to_kind(x.kind())?.f_mul(weight)?)
    }

    /// Summed cross-entropy (fp32) over the batch's unmasked labels and their number.
    pub(crate) fn loss_sum(&self, batch: &Batch) -> Result<(Tensor, i64)> {
        let logits = self.forward(&batch.input_ids)?;
        let vocab = self.config.vocab_size;
        let labels = batch.labels.f_to_device(self.device)?.f_view([-1])?;
        let count = labels
            .f_ne(IGNORE_INDEX)?
            .f_sum(Kind::Int64)?
            .f_int64_value(&[])?;
        let loss = logits
            .f_to_kind(Kind::Float)?
            .f_view([-1, vocab])?
            .f_cross_entropy_loss::<Tensor>(&labels, None, Reduction::Sum, IGNORE_INDEX, 0.0)?;
        Ok((loss, count))
    }

    /// Mean next-token loss over the unmasked labels of `batch`, without gradients.
    /// Token ids outside the vocabulary are rejected.
    pub fn loss_on(&self, batch: &Batch) -> Result<f64> {
        self.loss_on_batches(std::slice::from_ref(batch))
    }

    /// Token-weighted mean loss over several batches, without gradients.
    pub fn loss_on_batches(&self, batches: &[Batch]) -> Result<f64> {
        let mut total = 0.0;
        let mut count = 0i64;
        for batch in batches {
            self.check_tokens(batch)?;
            let (sum, n) = tch::no_grad(|| self.loss_sum(batch))?;
            total += sum.f_double_value(&[])?;
            count += n;
        }
        if count == 0 {
            return Err(ModelError::Data("no unmasked labels to evaluate".into()));
        }
        Ok(total / count as f64)
    }

    /// Rejects token ids outside `[0, vocab)` (labels may also be [`IGNORE_INDEX`]).
    pub(crate) fn check_tokens(&self, batch: &Batch) -> Result<()> {
        let vocab = self.config.vocab_size;
        if batch.input_ids.size() != batch.labels.size() || batch.input_ids.dim() != 2 {
            return Err(ModelError::Shape(format!(
                "input_ids {:?} and labels {:?} must be equal 2-D shapes",
                batch.input_ids.size(),
                batch.labels.size()
            )));
        }
        let out_of_range = |t: &Tensor, lowest: i64| -> Result<bool> {
            if t.numel() == 0 {
                return Ok(false);
            }
            let min = t.f_min()?.f_int64_value(&[])?;
            let max = t.f_max()?.f_int64_value(&[])?;
            Ok(min < lowest || max >= vocab)
        };
        if out_of_range(&batch.input_ids, 0)? {
            return Err(ModelError::Data(format!(
                "input token outside vocabulary {vocab}"
            )));
        }
        let labels = batch
            .labels
            .f_where_scalarother(&batch.labels.f_ne(IGNORE_INDEX)?, 0)?;
        if out_of_range(&labels, 0)? || out_of_range(&batch.labels, IGNORE_INDEX)? {
            return Err(ModelError::Data(format!(
                "label outside vocabulary {vocab}"
            )));
        }
        Ok(())
    }
}
