//! Deterministic, thread-safe parameter initialisation.
//!
//! libtorch's global generator is shared by every thread of the process, so seeding it
//! would make two models built concurrently (tests, validator + miner) interfere. Instead
//! each tensor is filled from its own ChaCha20 stream keyed by
//! `SHA-256("worker-model/init/v1" || seed (u64 LE) || tensor name)`, which gives the same
//! values on every machine and device. Matrices are N(0, initializer_range) (Box-Muller
//! over the stream), 1-D tensors (RMSNorm weights) are ones, as in Hugging Face LLaMA.

use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use crate::error::Result;

/// Initial value of the parameter `name` with `shape`, as an fp32 CPU tensor.
pub fn initial_tensor(seed: u64, name: &str, shape: &[i64], std: f64) -> Result<Tensor> {
    if shape.len() < 2 {
        return Ok(Tensor::f_ones(shape, (Kind::Float, tch::Device::Cpu))?);
    }
    let numel = shape.iter().product::<i64>().max(0) as usize;
    let mut rng = ChaCha20Rng::from_seed(stream_seed(seed, name));
    let mut values = Vec::with_capacity(numel);
    while values.len() < numel {
        let (a, b) = standard_normal_pair(&mut rng);
        values.push((a * std) as f32);
        if values.len() < numel {
            values.push((b * std) as f32);
        }
    }
    Ok(Tensor::f_from_slice(&values)?.f_reshape(shape)?)
}

fn stream_seed(seed: u64, name: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"worker-model/init/v1");
    hasher.update(seed.to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.finalize().into()
}

/// Two independent N(0, 1) draws (Box-Muller on two 53-bit uniforms in (0, 1]).
fn standard_normal_pair(rng: &mut ChaCha20Rng) -> (f64, f64) {
    let unit = |x: u64| ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u1 = unit(rng.next_u64());
    let u2 = unit(rng.next_u64());
    let radius = (-2.0 * u1.ln()).sqrt();
    let angle = std::f64::consts::TAU * u2;
    (radius * angle.cos(), radius * angle.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_deterministic_per_name_and_has_the_requested_std() {
        let a = initial_tensor(7, "w", &[64, 64], 0.02).unwrap();
        let b = initial_tensor(7, "w", &[64, 64], 0.02).unwrap();
        let c = initial_tensor(7, "v", &[64, 64], 0.02).unwrap();
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        let std = a.std(true).double_value(&[]);
        assert!((std - 0.02).abs() < 0.002, "std {std}");
        let mean = a.mean(Kind::Float).double_value(&[]);
        assert!(mean.abs() < 0.002, "mean {mean}");
        let ones = initial_tensor(7, "norm", &[8], 0.02).unwrap();
        assert!(ones.equal(&Tensor::ones([8], (Kind::Float, tch::Device::Cpu))));
    }
}
