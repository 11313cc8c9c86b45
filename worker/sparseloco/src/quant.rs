//! Per-tensor 2-bit quantization of the selected values.
//!
//! `shift = mean(v)`, `c = v - shift`, `scale = 1.5 * std(c)` (unbiased; 1.0 when that is
//! zero or not finite), `code = clamp(round_half_even(c / scale + 2), 0, 3)`. Centroid `b`
//! is the mean of the `c` in bin `b` (an empty bin keeps its nominal `(b - 2) * scale`);
//! the dequantized value is `centroid[code] + shift`.

use crate::bitpack::pack_codes2;

/// Number of quantization bins (2 bits).
pub const NUM_BINS: usize = 4;

/// Scale factor applied to the standard deviation.
pub const SCALE_IN_SIGMAS: f64 = 1.5;

/// Per-tensor quantization parameters, sent in the clear.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    /// Mean of the selected values.
    pub shift: f32,
    /// Mean of the centred values in each bin.
    pub centroids: [f32; NUM_BINS],
}

impl QuantParams {
    /// Value each code decodes to (`centroid + shift`).
    pub fn dequant_table(&self) -> [f32; NUM_BINS] {
        self.centroids.map(|c| c + self.shift)
    }

    /// True when shift and centroids are finite.
    pub fn is_finite(&self) -> bool {
        self.shift.is_finite() && self.centroids.iter().all(|c| c.is_finite())
    }

    /// True when centroids are in non-decreasing order (always so for honest payloads).
    pub fn is_ordered(&self) -> bool {
        self.centroids.windows(2).all(|w| w[0] <= w[1])
    }
}

/// Quantizes `values`; returns the packed codes and the parameters.
///
/// The caller guarantees every value is finite.
pub fn quantize(values: &[f32]) -> (Vec<u8>, QuantParams) {
    let n = values.len();
    let shift = if n == 0 {
        0.0
    } else {
        (values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64) as f32
    };
    let sum_sq: f64 = values.iter().map(|&v| f64::from(v - shift).powi(2)).sum();
    let std = if n > 1 {
        (sum_sq / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let mut scale = (SCALE_IN_SIGMAS * std) as f32;
    if !(scale.is_finite() && scale > 0.0) {
        scale = 1.0;
    }
    let mut sums = [0f64; NUM_BINS];
    let mut counts = [0u64; NUM_BINS];
    let codes: Vec<u8> = values
        .iter()
        .map(|&v| {
            let c = v - shift;
            let code = (c / scale + 2.0).round_ties_even().clamp(0.0, 3.0) as u8;
            sums[usize::from(code)] += f64::from(c);
            counts[usize::from(code)] += 1;
            code
        })
        .collect();
    let centroids = std::array::from_fn(|b| {
        if counts[b] == 0 {
            (b as f32 - 2.0) * scale
        } else {
            (sums[b] / counts[b] as f64) as f32
        }
    });
    (pack_codes2(&codes), QuantParams { shift, centroids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitpack::code_at;

    #[test]
    fn codes_follow_the_scaled_bins_and_centroids_are_bin_means() {
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01 + 0.3)
            .collect();
        let (packed, q) = quantize(&values);
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / 1000.0;
        assert!((f64::from(q.shift) - mean).abs() < 1e-6);
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 999.0;
        let scale = 1.5 * var.sqrt();
        let mut sums = [0f64; 4];
        let mut counts = [0f64; 4];
        for (i, &v) in values.iter().enumerate() {
            let c = f64::from(v) - mean;
            let expected = (c / scale + 2.0).round().clamp(0.0, 3.0) as u8;
            let code = code_at(&packed, i);
            // Exact ties may round differently in f32 vs f64; none exist in this data.
            assert_eq!(code, expected, "value {v}");
            sums[code as usize] += c;
            counts[code as usize] += 1.0;
        }
        for b in 0..4 {
            if counts[b] > 0.0 {
                assert!((f64::from(q.centroids[b]) - sums[b] / counts[b]).abs() < 1e-5);
            }
        }
        assert!(q.is_ordered() && q.is_finite());
    }

    #[test]
    fn empty_bins_keep_nominal_values_and_constant_input_is_exact() {
        let (packed, q) = quantize(&[2.5; 10]);
        assert_eq!(q.shift, 2.5);
        // scale falls back to 1: bins 0, 1, 3 are empty and nominal.
        assert_eq!(q.centroids, [-2.0, -1.0, 0.0, 1.0]);
        assert!((0..10).all(|i| code_at(&packed, i) == 2));
        assert_eq!(q.dequant_table()[2], 2.5);
    }
}
