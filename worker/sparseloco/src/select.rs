//! CPU kernel: fused error-feedback update and per-chunk top-k selection.

use crate::geometry::ChunkGeometry;

/// Entries chosen from a group of chunks: chunk-major, `k` per chunk, local indices
/// strictly increasing inside each chunk.
#[derive(Debug, Default)]
pub(crate) struct Selected {
    pub(crate) indices: Vec<u16>,
    pub(crate) values: Vec<f32>,
}

/// Sort key that orders elements by `|value|` (NaN above infinity, as torch does), ties
/// going to the lower local index. Non-negative floats order like their bit patterns.
#[inline]
fn magnitude_key(value: f32, local: usize) -> u64 {
    (u64::from(value.to_bits() & 0x7fff_ffff) << 32) | (0xffff - local as u64)
}

#[inline]
fn local_of(key: u64) -> u16 {
    (0xffff - (key & 0xffff)) as u16
}

/// Updates `residual <- decay * residual + delta` over whole bands and selects the `k`
/// largest-magnitude entries of every chunk, returning their indices and updated values.
///
/// `residual` and `delta` cover the same whole bands of the row-major tensor.
pub(crate) fn decay_add_select(
    geom: &ChunkGeometry,
    decay: f32,
    residual: &mut [f32],
    delta: &[f32],
) -> Selected {
    let (bc, br, cols, k) = (geom.block_cols(), geom.block_rows(), geom.cols(), geom.k());
    let chunk_elems = geom.chunk_elems();
    let band_elems = geom.band_elems();
    let chunks = residual.len() / band_elems.max(1) * geom.chunks_per_band();
    let mut out = Selected {
        indices: Vec::with_capacity(chunks * k),
        values: Vec::with_capacity(chunks * k),
    };
    let mut keys: Vec<u64> = Vec::with_capacity(chunk_elems);
    let mut top: Vec<u16> = Vec::with_capacity(k);
    for (band, band_delta) in residual
        .chunks_exact_mut(band_elems)
        .zip(delta.chunks_exact(band_elems))
    {
        for j in 0..geom.chunks_per_band() {
            keys.clear();
            for r in 0..br {
                let start = r * cols + j * bc;
                let (Some(row), Some(drow)) = (
                    band.get_mut(start..start + bc),
                    band_delta.get(start..start + bc),
                ) else {
                    continue;
                };
                for (c, (e, &d)) in row.iter_mut().zip(drow).enumerate() {
                    *e = decay * *e + d;
                    keys.push(magnitude_key(*e, r * bc + c));
                }
            }
            if k < keys.len() {
                let pivot = keys.len() - k;
                keys.select_nth_unstable(pivot);
                keys.drain(..pivot);
            }
            top.clear();
            top.extend(keys.iter().map(|&key| local_of(key)));
            top.sort_unstable();
            for &local in &top {
                out.indices.push(local);
                out.values.push(
                    band.get(geom.offset_in_band(j, usize::from(local)))
                        .copied()
                        .unwrap_or(0.0),
                );
            }
        }
    }
    out
}

/// Sets the transmitted entries of the residual to `value - dequantized`, so the residual
/// keeps exactly what the receivers did not get. `indices`/`values`/`dequantized` are
/// chunk-major for the bands of `residual` (`k` per chunk).
pub(crate) fn subtract_transmitted(
    geom: &ChunkGeometry,
    residual: &mut [f32],
    indices: &[u16],
    values: &[f32],
    dequantized: impl Fn(usize) -> f32,
    first_entry: usize,
) {
    let per_band = geom.chunks_per_band();
    let k = geom.k();
    let mut entry = 0usize;
    for band in residual.chunks_exact_mut(geom.band_elems()) {
        for j in 0..per_band {
            for _ in 0..k {
                let (Some(&local), Some(&v)) = (indices.get(entry), values.get(entry)) else {
                    return;
                };
                if let Some(e) = band.get_mut(geom.offset_in_band(j, usize::from(local))) {
                    *e = v - dequantized(first_entry + entry);
                }
                entry += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ParamSpec, SparseLocoConfig};

    #[test]
    fn selects_the_largest_magnitudes_per_chunk() {
        let spec = ParamSpec::new("w", [128, 100]);
        let geom = ChunkGeometry::new(&spec, &SparseLocoConfig::default()).unwrap();
        assert_eq!((geom.block_rows(), geom.block_cols()), (64, 50));
        let n = geom.numel();
        let delta: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 10007) as f32 - 5000.0) / 100.0)
            .collect();
        let mut residual: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.5).collect();
        let before = residual.clone();
        let sel = decay_add_select(&geom, 0.95, &mut residual, &delta);
        for i in 0..n {
            assert_eq!(residual[i], 0.95 * before[i] + delta[i]);
        }
        assert_eq!(sel.indices.len(), geom.entries());
        for chunk in 0..geom.n_chunks() {
            let mut mags: Vec<(f32, usize)> = (0..geom.chunk_elems())
                .map(|l| (residual[geom.flat_index(chunk, l)].abs(), l))
                .collect();
            mags.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut expected: Vec<u16> = mags[..64].iter().map(|&(_, l)| l as u16).collect();
            expected.sort_unstable();
            let got = &sel.indices[chunk * 64..(chunk + 1) * 64];
            assert_eq!(got, &expected[..]);
            for (e, &l) in got.iter().enumerate() {
                assert_eq!(
                    sel.values[chunk * 64 + e],
                    residual[geom.flat_index(chunk, l as usize)]
                );
            }
        }
    }
}
