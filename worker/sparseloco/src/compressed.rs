//! Compressed tensors and peer payloads, with the statistics the validator needs.

use crate::bitpack::{code_at, code_histogram};
use crate::error::WireError;
use crate::geometry::ChunkGeometry;
use crate::quant::{NUM_BINS, QuantParams};

/// One compressed parameter: `k` entries per chunk (chunk-major, local indices strictly
/// increasing inside a chunk), their 2-bit codes packed four per byte, and the
/// per-tensor quantization parameters.
///
/// Only [`crate::ErrorFeedback::compress`] and [`crate::decode`] create these, so the
/// entries always match the geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedTensor {
    pub(crate) name: String,
    pub(crate) shape: Vec<i64>,
    pub(crate) geometry: ChunkGeometry,
    pub(crate) indices: Vec<u16>,
    pub(crate) codes: Vec<u8>,
    pub(crate) quant: QuantParams,
}

impl CompressedTensor {
    /// Parameter name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parameter shape.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// Chunk layout.
    pub fn geometry(&self) -> &ChunkGeometry {
        &self.geometry
    }

    /// Local indices, `k` per chunk, chunk-major.
    pub fn indices(&self) -> &[u16] {
        &self.indices
    }

    /// Packed 2-bit codes (four per byte), one per index.
    pub fn packed_codes(&self) -> &[u8] {
        &self.codes
    }

    /// Quantization parameters.
    pub fn quant(&self) -> &QuantParams {
        &self.quant
    }

    /// Number of transmitted entries.
    pub fn entries(&self) -> usize {
        self.indices.len()
    }

    /// Code of entry `i` (0..=3).
    pub fn code(&self, i: usize) -> u8 {
        code_at(&self.codes, i)
    }

    /// Dequantized values in entry order.
    pub fn dequantized_values(&self) -> Vec<f32> {
        let table = self.quant.dequant_table();
        (0..self.entries())
            .map(|i| table[usize::from(self.code(i))])
            .collect()
    }

    /// Row-major flat position of every entry in the dense tensor.
    pub fn flat_indices(&self) -> Vec<i64> {
        let k = self.geometry.k().max(1);
        self.indices
            .iter()
            .enumerate()
            .map(|(i, &l)| self.geometry.flat_index(i / k, usize::from(l)) as i64)
            .collect()
    }

    /// How many entries use each code.
    pub fn code_histogram(&self) -> [u64; NUM_BINS] {
        code_histogram(&self.codes, self.entries())
    }

    /// L2 norm of the dequantized sparse tensor.
    pub fn norm(&self) -> f64 {
        let table = self.quant.dequant_table();
        self.code_histogram()
            .iter()
            .zip(table)
            .map(|(&count, v)| count as f64 * f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt()
    }
}

/// What one peer uploads for one window: its compressed pseudo-gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientPayload {
    /// Window the gradient was computed in.
    pub window: u64,
    /// Uid of the peer that produced it.
    pub uid: u16,
    /// Compressed parameters, in the order of the parameter specs.
    pub tensors: Vec<CompressedTensor>,
}

impl GradientPayload {
    /// L2 norm of every tensor (dequantized), in tensor order.
    pub fn tensor_norms(&self) -> Vec<f64> {
        self.tensors.iter().map(CompressedTensor::norm).collect()
    }

    /// L2 norm over all tensors.
    pub fn norm(&self) -> f64 {
        self.tensor_norms()
            .iter()
            .map(|n| n * n)
            .sum::<f64>()
            .sqrt()
    }

    /// Total transmitted entries.
    pub fn entries(&self) -> usize {
        self.tensors.iter().map(CompressedTensor::entries).sum()
    }

    /// Checks the payload was produced for `window` by `uid`.
    pub fn check_origin(&self, window: u64, uid: u16) -> Result<(), WireError> {
        if self.window == window && self.uid == uid {
            Ok(())
        } else {
            Err(WireError::WrongOrigin {
                window: self.window,
                uid: self.uid,
                expected_window: window,
                expected_uid: uid,
            })
        }
    }
}

/// Fraction (0..=1) of `(tensor, chunk, index)` entries that two payloads share: the
/// copy-detection signal. Both must describe the same parameters (as after decoding with
/// the same specs); the denominator is the larger entry count.
pub fn index_overlap(a: &GradientPayload, b: &GradientPayload) -> Result<f64, WireError> {
    if a.tensors.len() != b.tensors.len() {
        return Err(WireError::TensorCount {
            expected: a.tensors.len(),
            actual: b.tensors.len(),
        });
    }
    let mut shared = 0usize;
    for (ta, tb) in a.tensors.iter().zip(&b.tensors) {
        if ta.name != tb.name || ta.geometry != tb.geometry {
            return Err(WireError::MissingTensor(ta.name.clone()));
        }
        let k = ta.geometry.k().max(1);
        for (ca, cb) in ta.indices.chunks(k).zip(tb.indices.chunks(k)) {
            shared += sorted_intersection(ca, cb);
        }
    }
    let total = a.entries().max(b.entries());
    Ok(if total == 0 {
        0.0
    } else {
        shared as f64 / total as f64
    })
}

/// Size of the intersection of two strictly increasing lists.
fn sorted_intersection(a: &[u16], b: &[u16]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersection_of_sorted_lists() {
        assert_eq!(sorted_intersection(&[1, 3, 5, 7], &[0, 3, 4, 7, 9]), 2);
        assert_eq!(sorted_intersection(&[], &[1]), 0);
    }
}
