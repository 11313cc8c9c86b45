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
fn magnitude_key(magnitude_bits: u32, local: usize) -> u64 {
    (u64::from(magnitude_bits) << 32) | (0xffff - local as u64)
}

#[inline]
fn local_of(key: u64) -> u16 {
    (0xffff - (key & 0xffff)) as u16
}

/// Magnitude bits are bucketed by their top bits (the sign bit is always 0): exponent
/// plus three mantissa bits, i.e. buckets 1/8 of an octave wide.
const BUCKET_SHIFT: u32 = 20;
const BUCKETS: usize = 1 << (31 - BUCKET_SHIFT);

/// How far below the previous chunk's k-th largest magnitude the next chunk's candidate
/// threshold starts (in buckets, i.e. a factor of about 0.84).
const GUESS_MARGIN: u32 = 2 << BUCKET_SHIFT;

/// Scratch space and threshold guess reused across the chunks of one band group.
struct Selector {
    k: usize,
    magnitudes: Vec<u32>,
    histogram: Vec<u32>,
    /// Candidate keys; only the first `n_candidates` are meaningful.
    candidates: Vec<u64>,
    n_candidates: usize,
    top: Vec<u16>,
    /// Candidate threshold from the previous chunk (neighbouring chunks of a tensor have
    /// similar magnitude distributions).
    guess: Option<u32>,
}

impl Selector {
    fn new(chunk_elems: usize, k: usize) -> Self {
        Self {
            k,
            magnitudes: vec![0; chunk_elems],
            histogram: vec![0; BUCKETS],
            candidates: vec![0; chunk_elems],
            n_candidates: 0,
            top: Vec::with_capacity(k),
            guess: None,
        }
    }

    /// Local indices (sorted) of the `k` largest entries of `self.magnitudes`.
    ///
    /// Every magnitude at or above a threshold becomes a candidate; an exact selection
    /// then runs on the candidates only. The threshold comes from the previous chunk when
    /// that yields at least `k` (and at most a quarter of the chunk) candidates, otherwise
    /// from a radix histogram (the lowest magnitude of the bucket holding the k-th
    /// largest).
    fn select_top(&mut self) {
        let k = self.k;
        let cap = (self.magnitudes.len() / 4).max(k);
        let guessed = self.guess.map(|guess| self.collect_candidates(guess));
        if !guessed.is_some_and(|n| n >= k && n <= cap) {
            let floor = self.histogram_floor();
            self.collect_candidates(floor);
        }
        let candidates = self
            .candidates
            .get_mut(..self.n_candidates)
            .unwrap_or_default();
        let chosen = if k < candidates.len() {
            let pivot = candidates.len() - k;
            candidates.select_nth_unstable(pivot);
            candidates.get(pivot..).unwrap_or_default()
        } else {
            candidates
        };
        let kth = chosen
            .iter()
            .map(|&key| (key >> 32) as u32)
            .min()
            .unwrap_or(0);
        self.guess = Some(kth.saturating_sub(GUESS_MARGIN));
        self.top.clear();
        self.top.extend(chosen.iter().map(|&key| local_of(key)));
        self.top.sort_unstable();
    }

    /// Keys of all magnitudes at or above `floor` into `self.candidates` (branch-free
    /// compaction); returns their number.
    fn collect_candidates(&mut self, floor: u32) -> usize {
        let mut n = 0usize;
        for (local, &m) in self.magnitudes.iter().enumerate() {
            if let Some(slot) = self.candidates.get_mut(n) {
                *slot = magnitude_key(m, local);
            }
            n += usize::from(m >= floor);
        }
        self.n_candidates = n.min(self.candidates.len());
        n
    }

    /// Lowest magnitude of the bucket that holds the k-th largest magnitude.
    fn histogram_floor(&mut self) -> u32 {
        let bucket_of = |m: u32| (m >> BUCKET_SHIFT) as usize & (BUCKETS - 1);
        let high = self.magnitudes.iter().copied().max().map_or(0, bucket_of);
        let low = self.magnitudes.iter().copied().min().map_or(0, bucket_of);
        for &m in &self.magnitudes {
            if let Some(h) = self.histogram.get_mut(bucket_of(m)) {
                *h = h.wrapping_add(1);
            }
        }
        let mut threshold = low;
        let mut above = 0usize;
        for bucket in (low..=high).rev() {
            above += self.histogram.get(bucket).copied().unwrap_or(0) as usize;
            if above >= self.k {
                threshold = bucket;
                break;
            }
        }
        if let Some(used) = self.histogram.get_mut(low..=high) {
            used.fill(0);
        }
        (threshold as u32) << BUCKET_SHIFT
    }
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
    let (bc, cols, k) = (geom.block_cols(), geom.cols(), geom.k());
    let band_elems = geom.band_elems();
    let chunks = residual.len() / band_elems.max(1) * geom.chunks_per_band();
    let mut out = Selected {
        indices: Vec::with_capacity(chunks * k),
        values: Vec::with_capacity(chunks * k),
    };
    let mut selector = Selector::new(geom.chunk_elems(), k);
    for (band, band_delta) in residual
        .chunks_exact_mut(band_elems)
        .zip(delta.chunks_exact(band_elems))
    {
        for j in 0..geom.chunks_per_band() {
            // Row r of the chunk: band[r * cols + j * bc ..][..bc].
            let rows = band.get_mut(j * bc..).unwrap_or_default().chunks_mut(cols);
            let delta_rows = band_delta.get(j * bc..).unwrap_or_default().chunks(cols);
            for ((row, drow), mags) in rows
                .zip(delta_rows)
                .zip(selector.magnitudes.chunks_exact_mut(bc))
            {
                for ((e, &d), m) in row.iter_mut().zip(drow).zip(mags) {
                    let v = decay * *e + d;
                    *e = v;
                    *m = v.to_bits() & 0x7fff_ffff;
                }
            }
            selector.select_top();
            for &local in &selector.top {
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

    /// Runs the kernel on `delta` (residual starting from `initial`) and compares every
    /// chunk with a full sort by (|value| desc, local index asc).
    fn check_against_sort(shape: &[i64], delta: &[f32], initial: &[f32], decay: f32) {
        let geom =
            ChunkGeometry::new(&ParamSpec::new("w", shape), &SparseLocoConfig::default()).unwrap();
        let mut residual = initial.to_vec();
        let sel = decay_add_select(&geom, decay, &mut residual, delta);
        for i in 0..geom.numel() {
            assert_eq!(
                residual[i].to_bits(),
                (decay * initial[i] + delta[i]).to_bits()
            );
        }
        let k = geom.k();
        assert_eq!(sel.indices.len(), geom.entries());
        for chunk in 0..geom.n_chunks() {
            let mut order: Vec<usize> = (0..geom.chunk_elems()).collect();
            let magnitude = |l: usize| residual[geom.flat_index(chunk, l)].to_bits() & 0x7fff_ffff;
            order.sort_by(|&a, &b| magnitude(b).cmp(&magnitude(a)).then(a.cmp(&b)));
            let mut expected: Vec<u16> = order[..k].iter().map(|&l| l as u16).collect();
            expected.sort_unstable();
            let got = &sel.indices[chunk * k..(chunk + 1) * k];
            assert_eq!(got, &expected[..], "chunk {chunk}");
            for (e, &l) in got.iter().enumerate() {
                assert_eq!(
                    sel.values[chunk * k + e].to_bits(),
                    residual[geom.flat_index(chunk, usize::from(l))].to_bits()
                );
            }
        }
    }

    fn pseudo_random(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919 % 10007) as f32 - 5000.0) / 100.0)
            .collect()
    }

    #[test]
    fn selects_the_largest_magnitudes_per_chunk() {
        let n = 128 * 100;
        let initial: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.5).collect();
        check_against_sort(&[128, 100], &pseudo_random(n, 0), &initial, 0.95);
    }

    #[test]
    fn ties_go_to_the_lowest_index() {
        let n = 64 * 192;
        // Every magnitude equal (with mixed signs and zeros of both signs).
        let delta: Vec<f32> = (0..n)
            .map(|i| if i % 3 == 0 { -1.5 } else { 1.5 })
            .collect();
        check_against_sort(&[64, 192], &delta, &vec![0.0; n], 1.0);
        let zeros: Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { 0.0 } else { -0.0 })
            .collect();
        check_against_sort(&[64, 192], &zeros, &vec![0.0; n], 1.0);
    }

    #[test]
    fn wide_dynamic_range_and_small_chunks() {
        let n = 64 * 128;
        let delta: Vec<f32> = (0..n)
            .map(|i| 2f32.powi((i * 37 % 250) as i32 - 125) * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        check_against_sort(&[64, 128], &delta, &vec![0.0; n], 0.95);
        // Few distinct values, many in the threshold bucket.
        let delta: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
        check_against_sort(&[64, 128], &delta, &vec![0.0; n], 0.95);
        // 1-D and chunks smaller than k.
        check_against_sort(&[130], &pseudo_random(130, 3), &[0.25; 130], 0.95);
        check_against_sort(&[3, 7], &pseudo_random(21, 4), &[0.0; 21], 0.95);
    }

    #[test]
    fn nan_and_infinity_are_selected_first() {
        let mut delta = pseudo_random(64 * 64, 5);
        delta[100] = f32::NAN;
        delta[200] = f32::NEG_INFINITY;
        let geom = ChunkGeometry::new(&ParamSpec::new("w", [64, 64]), &SparseLocoConfig::default())
            .unwrap();
        let mut residual = vec![0.0; 64 * 64];
        let sel = decay_add_select(&geom, 0.95, &mut residual, &delta);
        assert!(sel.indices.contains(&100) && sel.indices.contains(&200));
    }
}
