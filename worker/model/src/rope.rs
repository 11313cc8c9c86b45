//! Rotary position embeddings (Hugging Face LLaMA "rotate_half" convention).

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Precomputed cos/sin tables, `[max_positions, head_dim]` in fp32.
#[derive(Debug)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    head_dim: i64,
}

impl Rope {
    /// Tables for positions `0..max_positions` with base frequency `theta`.
    pub fn new(head_dim: i64, max_positions: i64, theta: f64, device: Device) -> Result<Rope> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
            .collect();
        let inv_freq = Tensor::f_from_slice(&inv_freq)?;
        let positions = Tensor::f_arange(max_positions, (Kind::Float, Device::Cpu))?;
        let freqs = positions.f_outer(&inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok(Rope {
            cos: emb.f_cos()?.f_to_device(device)?,
            sin: emb.f_sin()?.f_to_device(device)?,
            head_dim,
        })
    }

    /// Rotates `x` of shape `[batch, heads, seq, head_dim]` by its positions `0..seq`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let seq = x.size().get(2).copied().unwrap_or(0);
        let kind = x.kind();
        let cos = self.cos.f_narrow(0, 0, seq)?.f_to_kind(kind)?;
        let sin = self.sin.f_narrow(0, 0, seq)?.f_to_kind(kind)?;
        let half = self.head_dim / 2;
        let x1 = x.f_narrow(-1, 0, half)?;
        let x2 = x.f_narrow(-1, half, half)?;
        let rotated = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
        Ok(x.f_mul(&cos)?.f_add(&rotated.f_mul(&sin)?)?)
    }
}
