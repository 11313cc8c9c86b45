//! Golomb-Rice coding of the sorted local indices of every chunk (wire format v2).
//!
//! Inside a chunk of `n` elements with `k` kept, strictly increasing indices
//! `i_0 < i_1 < ...`, the gaps are `g_0 = i_0` and `g_j = i_j - i_{j-1} - 1` (all >= 0).
//! Gap `g` is written with parameter `r` as `g >> r` zero bits, a one bit, then the low
//! `r` bits of `g` (LSB-first, see [`crate::bitio`]). One parameter per tensor, the
//! smallest `r` in `0..=MAX_RICE_PARAM` that minimizes the tensor's total bit count; the
//! chunks of a tensor form one bit stream, zero-padded to a byte at its end. When
//! `k == n` the indices are forced (`0..n`): no bits, parameter 0.

use crate::bitio::{BitSlice, BitWriter};
use crate::geometry::ChunkGeometry;

/// Largest Rice parameter (gaps are below 4096 = 2^12).
pub const MAX_RICE_PARAM: u8 = 12;

/// Why a Rice stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RiceError {
    /// The stream ended inside a gap.
    Truncated,
    /// A gap leads to an index at or past the chunk size (`index` saturates at `u16::MAX`).
    OutOfRange { chunk: usize, index: u16 },
    /// Whole bytes remain after the last gap.
    Trailing,
    /// The padding bits of the last byte are not zero.
    Padding,
    /// The parameter is not the canonical (smallest optimal) one, or above the maximum.
    Parameter,
}

/// True when every element of each chunk is kept, so the indices carry no information.
pub(crate) fn forced(geom: &ChunkGeometry) -> bool {
    geom.k() == geom.chunk_elems()
}

/// Gap histogram of one tensor (one counter per possible gap value).
struct GapHistogram {
    counts: Vec<u32>,
    gaps: u64,
}

impl GapHistogram {
    fn new(chunk_elems: usize) -> Self {
        Self {
            counts: vec![0; chunk_elems.max(1)],
            gaps: 0,
        }
    }

    /// Smallest parameter with the fewest bits, and that bit count. With `C(t)` the number
    /// of gaps `>= t`, the quotients sum to `S(r) = sum_{j >= 1} C(j * 2^r)`.
    fn best(&self) -> (u8, u64) {
        let mut at_least = vec![0u64; self.counts.len() + 1];
        for t in (0..self.counts.len()).rev() {
            at_least[t] = at_least[t + 1] + u64::from(self.counts[t]);
        }
        (0..=MAX_RICE_PARAM)
            .map(|r| {
                let quotients: u64 = at_least.iter().skip(1 << r).step_by(1 << r).sum();
                (r, self.gaps * (u64::from(r) + 1) + quotients)
            })
            .fold(
                (0, u64::MAX),
                |best, cur| if cur.1 < best.1 { cur } else { best },
            )
    }
}

/// Bit counts of the decoded gaps with the parameter used and its two neighbours, from
/// sums accumulated while decoding: the quotients `q = g >> r` and bit `r - 1` of each gap. The bit count
/// is convex in the parameter (`S(r) - S(r + 1)` never grows with `r`), so `r` is the
/// smallest optimum exactly when it beats `r - 1` strictly and `r + 1` at least weakly.
#[derive(Default)]
struct NeighbourCosts {
    quotients: u64,
    half_quotients: u64,
    low_bits: u64,
}

impl NeighbourCosts {
    fn is_smallest_optimum(&self, gaps: u64, r: u8) -> bool {
        let bits = |r: u64, quotients: u64| gaps * (r + 1) + quotients;
        let r = u64::from(r);
        let here = bits(r, self.quotients);
        let above = bits(r + 1, self.half_quotients);
        let below_ok = r == 0 || bits(r - 1, 2 * self.quotients + self.low_bits) > here;
        let above_ok = r == u64::from(MAX_RICE_PARAM) || above >= here;
        below_ok && above_ok
    }
}

/// Canonical parameter and exact bit count of a tensor's indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RicePlan {
    pub(crate) param: u8,
    pub(crate) bits: u64,
}

impl RicePlan {
    /// Bytes of the padded stream.
    pub(crate) fn bytes(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }
}

/// Plans the coding of `indices` (chunk-major, `k` per chunk, strictly increasing inside
/// each chunk).
pub(crate) fn plan(indices: &[u16], geom: &ChunkGeometry) -> RicePlan {
    if forced(geom) {
        return RicePlan { param: 0, bits: 0 };
    }
    let mut hist = GapHistogram::new(geom.chunk_elems());
    for_each_gap(indices, geom.k(), |g| {
        if let Some(c) = hist.counts.get_mut(g) {
            *c += 1;
        }
    });
    hist.gaps = indices.len() as u64;
    let (param, bits) = hist.best();
    RicePlan { param, bits }
}

fn for_each_gap(indices: &[u16], k: usize, mut f: impl FnMut(usize)) {
    for chunk in indices.chunks(k.max(1)) {
        let mut next = 0usize;
        for &i in chunk {
            let i = usize::from(i);
            f(i.saturating_sub(next));
            next = i + 1;
        }
    }
}

/// Appends the Rice stream of `indices` with `plan.param` (as returned by [`plan`]).
pub(crate) fn write(indices: &[u16], geom: &ChunkGeometry, plan: RicePlan, out: &mut Vec<u8>) {
    if forced(geom) {
        return;
    }
    out.reserve(plan.bytes() + 8);
    let r = u32::from(plan.param);
    let mut w = BitWriter::new(out);
    for_each_gap(indices, geom.k(), |g| {
        let q = (g >> r) as u32;
        let rem = (g & ((1 << r) - 1)) as u64;
        if q + 1 + r <= 32 {
            w.put(((rem << 1) | 1) << q, q + 1 + r);
        } else {
            w.zeros(q as usize);
            w.put((rem << 1) | 1, 1 + r);
        }
    });
    w.finish();
}

/// Decodes the indices of a whole tensor from `bytes` into `out` (cleared first), and
/// checks the stream is canonical: every index below the chunk size, no bytes after the
/// last gap, zero padding, `param` the smallest optimal parameter.
#[cfg(test)]
pub(crate) fn read(
    bytes: &[u8],
    geom: &ChunkGeometry,
    param: u8,
    out: &mut Vec<u16>,
) -> Result<(), RiceError> {
    read_with(bytes, geom, param, out, |_| {})
}

/// [`read`], calling `per_entry(i)` after entry `i` is decoded (in order, `i` from 0),
/// so other per-entry work can share the loop.
#[inline(always)]
pub(crate) fn read_with(
    bytes: &[u8],
    geom: &ChunkGeometry,
    param: u8,
    out: &mut Vec<u16>,
    mut per_entry: impl FnMut(usize),
) -> Result<(), RiceError> {
    out.clear();
    out.reserve(geom.entries());
    let (n, k) = (geom.chunk_elems(), geom.k());
    if forced(geom) {
        if param != 0 {
            return Err(RiceError::Parameter);
        }
        if !bytes.is_empty() {
            return Err(RiceError::Trailing);
        }
        for _ in 0..geom.n_chunks() {
            out.extend(0..n as u16);
        }
        (0..out.len()).for_each(per_entry);
        return Ok(());
    }
    if param > MAX_RICE_PARAM {
        return Err(RiceError::Parameter);
    }
    let r = u32::from(param);
    let mask = (1u64 << r) - 1;
    let bits = BitSlice::new(bytes);
    let total = bits.len_bits();
    let mut buffer = BitBuffer::new(bytes);
    // Local sums (see NeighbourCosts); kept in registers in the hot loop.
    let (mut quotients, mut half_quotients, mut low_bits) = (0u64, 0u64, 0u64);
    let low_shift = r.saturating_sub(1);
    let low_mask = u64::from(r > 0);
    for chunk in 0..geom.n_chunks() {
        let mut next = 0usize;
        for _ in 0..k {
            let out_of_range = |index: usize| RiceError::OutOfRange {
                chunk,
                index: u16::try_from(index).unwrap_or(u16::MAX),
            };
            buffer.refill();
            let zeros = buffer.bits.trailing_zeros();
            let len = zeros + 1 + r;
            let g = if len <= buffer.avail {
                // Fast path: quotient, stop bit and remainder all buffered.
                let g = (u64::from(zeros) << r) | ((buffer.bits >> (zeros + 1)) & mask);
                buffer.consume(len);
                g as usize
            } else {
                let mut pos = buffer.position();
                let g = read_long_gap(&bits, &mut pos, r, n - next)
                    .map_err(|g| g.map_or(RiceError::Truncated, |g| out_of_range(next + g)))?;
                buffer.seek(pos);
                g
            };
            if g >= n - next {
                return Err(out_of_range(next + g));
            }
            let q = (g >> r) as u64;
            quotients = quotients.wrapping_add(q);
            half_quotients = half_quotients.wrapping_add(q >> 1);
            low_bits = low_bits.wrapping_add((g as u64 >> low_shift) & low_mask);
            // g < n - next, so the index is below n <= 4096.
            let index = next + g;
            per_entry(out.len());
            out.push(index as u16);
            next = index + 1;
        }
    }
    let pos = buffer.position();
    if pos > total {
        return Err(RiceError::Truncated);
    }
    if total - pos >= 8 {
        return Err(RiceError::Trailing);
    }
    if bits.peek(pos) != 0 {
        return Err(RiceError::Padding);
    }
    let costs = NeighbourCosts {
        quotients,
        half_quotients,
        low_bits,
    };
    if !costs.is_smallest_optimum(out.len() as u64, param) {
        return Err(RiceError::Parameter);
    }
    Ok(())
}

/// A 64-bit window on a bit stream: the low `avail` bits of `bits` are the next bits of
/// the stream (higher bits are later stream bits or zero); bits past the end are zero.
struct BitBuffer<'a> {
    bytes: &'a [u8],
    /// Next byte to load.
    next: usize,
    bits: u64,
    avail: u32,
}

impl<'a> BitBuffer<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: 0,
            bits: 0,
            avail: 0,
        }
    }

    /// Buffers at least 56 bits (fewer only at the end of the stream).
    #[inline(always)]
    fn refill(&mut self) {
        if self.avail >= 56 {
            return;
        }
        if let Some(word) = self.bytes.get(self.next..self.next + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            // Bits shifted past the top are loaded again by the next refill.
            self.bits |= u64::from_le_bytes(w) << self.avail;
            let take = (63 - self.avail) >> 3;
            self.next += take as usize;
            self.avail += take * 8;
        } else {
            while self.avail <= 56 {
                let Some(&b) = self.bytes.get(self.next) else {
                    break;
                };
                self.bits |= u64::from(b) << self.avail;
                self.next += 1;
                self.avail += 8;
            }
        }
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        // n <= avail <= 63.
        self.bits >>= n;
        self.avail -= n;
    }

    /// Bit position of the next unread bit.
    fn position(&self) -> usize {
        self.next * 8 - self.avail as usize
    }

    /// Restarts at bit `pos <= 8 * bytes.len()`.
    fn seek(&mut self, pos: usize) {
        self.next = pos >> 3;
        self.bits = 0;
        self.avail = 0;
        self.refill();
        // A position inside the stream has its byte buffered; the end position has no
        // bits to skip.
        self.consume((pos as u32 & 7).min(self.avail));
    }
}

/// Slow path of one gap (a quotient run longer than one word, or the end of the stream):
/// `Err(None)` when the stream ends first, `Err(Some(g))` when the gap reaches at least
/// `g >= limit`.
#[cold]
fn read_long_gap(
    bits: &BitSlice<'_>,
    pos: &mut usize,
    r: u32,
    limit: usize,
) -> Result<usize, Option<usize>> {
    let mut q = 0usize;
    loop {
        if *pos >= bits.len_bits() {
            return Err(None);
        }
        let w = bits.peek(*pos);
        if w == 0 {
            q += 57;
            *pos += 57;
        } else {
            let zeros = w.trailing_zeros() as usize;
            q += zeros;
            *pos += zeros + 1;
            break;
        }
        if q << r >= limit {
            return Err(Some(q << r));
        }
    }
    if q << r >= limit {
        return Err(Some(q << r));
    }
    let rem = (bits.peek(*pos) & ((1u64 << r) - 1)) as usize;
    *pos += r as usize;
    if *pos > bits.len_bits() {
        return Err(None);
    }
    Ok((q << r) | rem)
}

/// Most bytes a canonical stream of `geom` can take with parameter `param`: the gaps of
/// one chunk sum to at most `n - k`, so their quotients sum to at most `(n - k) >> r`.
pub(crate) fn max_bytes(geom: &ChunkGeometry, param: u8) -> usize {
    if forced(geom) {
        return 0;
    }
    let r = u32::from(param.min(MAX_RICE_PARAM));
    let spare = geom.chunk_elems() - geom.k();
    let bits =
        geom.entries() as u64 * (u64::from(r) + 1) + geom.n_chunks() as u64 * (spare as u64 >> r);
    bits.div_ceil(8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ParamSpec, SparseLocoConfig};

    fn geom(shape: &[i64]) -> ChunkGeometry {
        ChunkGeometry::new(&ParamSpec::new("p", shape), &SparseLocoConfig::default()).unwrap()
    }

    fn spread(g: &ChunkGeometry, step: usize) -> Vec<u16> {
        let mut v = Vec::new();
        for c in 0..g.n_chunks() {
            v.extend((0..g.k()).map(|j| ((j * step + c) % g.chunk_elems()) as u16));
            let start = v.len() - g.k();
            v[start..].sort_unstable();
        }
        v
    }

    #[test]
    fn round_trip_and_exact_length() {
        let g = geom(&[128, 192]);
        for step in [1, 7, 63, 64] {
            let idx = spread(&g, step);
            let p = plan(&idx, &g);
            let mut bytes = Vec::new();
            write(&idx, &g, p, &mut bytes);
            assert_eq!(bytes.len(), p.bytes());
            assert!(bytes.len() <= max_bytes(&g, p.param));
            let mut back = Vec::new();
            read(&bytes, &g, p.param, &mut back).unwrap();
            assert_eq!(back, idx);
        }
    }

    #[test]
    fn parameter_follows_the_gap_sizes() {
        let g = geom(&[64, 64]);
        // Dense prefix 0..64: all gaps zero, r = 0, one bit each.
        let dense: Vec<u16> = (0..64).collect();
        assert_eq!(plan(&dense, &g), RicePlan { param: 0, bits: 64 });
        // Evenly spread: gaps of 63 -> r = 5 or 6.
        let even: Vec<u16> = (0..64).map(|j| j * 64 + 63).collect();
        let p = plan(&even, &g);
        assert!(p.param == 5 || p.param == 6, "{p:?}");
        // Any other parameter is rejected.
        let mut bytes = Vec::new();
        write(&even, &g, p, &mut bytes);
        let mut out = Vec::new();
        let other = RicePlan {
            param: p.param + 1,
            bits: 0,
        };
        let mut other_bytes = Vec::new();
        write(&even, &g, other, &mut other_bytes);
        assert_eq!(
            read(&other_bytes, &g, other.param, &mut out),
            Err(RiceError::Parameter)
        );
    }

    #[test]
    fn neighbour_check_agrees_with_the_full_search() {
        // Gap sets from dense to sparse and mixed: the local (convexity) test accepts
        // exactly the parameter the exhaustive search picks.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for case in 0..200 {
            let max_gap = [1usize, 3, 20, 64, 300, 4095][case % 6];
            let count = 1 + case % 37;
            let gaps: Vec<usize> = (0..count)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state as usize) % (max_gap + 1)
                })
                .collect();
            let mut hist = GapHistogram::new(4096);
            for &g in &gaps {
                hist.counts[g] += 1;
            }
            hist.gaps = gaps.len() as u64;
            let best = hist.best().0;
            for r in 0..=MAX_RICE_PARAM {
                let mut costs = NeighbourCosts::default();
                let rr = u32::from(r);
                for &g in &gaps {
                    let q = (g >> rr) as u64;
                    costs.quotients += q;
                    costs.half_quotients += q >> 1;
                    costs.low_bits += if r > 0 { (g as u64 >> (rr - 1)) & 1 } else { 0 };
                }
                assert_eq!(
                    costs.is_smallest_optimum(gaps.len() as u64, r),
                    r == best,
                    "gaps {gaps:?} r {r} best {best}"
                );
            }
        }
    }

    #[test]
    fn forced_chunks_take_no_bytes() {
        let g = geom(&[2048]);
        assert!(forced(&g));
        let idx: Vec<u16> = (0..32).flat_map(|_| 0..64u16).collect();
        let p = plan(&idx, &g);
        assert_eq!(p.bytes(), 0);
        let mut out = Vec::new();
        read(&[], &g, 0, &mut out).unwrap();
        assert_eq!(out, idx);
        assert_eq!(read(&[0], &g, 0, &mut out), Err(RiceError::Trailing));
        assert_eq!(read(&[], &g, 1, &mut out), Err(RiceError::Parameter));
    }

    #[test]
    fn malformed_streams_are_rejected() {
        let g = geom(&[64, 64]);
        let idx: Vec<u16> = (0..64).map(|j| j * 64 + 63).collect();
        let p = plan(&idx, &g);
        let mut bytes = Vec::new();
        write(&idx, &g, p, &mut bytes);
        let mut out = Vec::new();
        for len in 0..bytes.len() {
            assert!(read(&bytes[..len], &g, p.param, &mut out).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            read(&extra, &g, p.param, &mut out),
            Err(RiceError::Trailing)
        );
        let used = (p.bits % 8) as u32;
        if used != 0 {
            let mut padded = bytes.clone();
            *padded.last_mut().unwrap() |= 1 << used;
            assert_eq!(
                read(&padded, &g, p.param, &mut out),
                Err(RiceError::Padding)
            );
        }
        // All-zero stream: the unary run never ends inside the chunk.
        let zeros = vec![0u8; bytes.len()];
        assert!(matches!(
            read(&zeros, &g, p.param, &mut out),
            Err(RiceError::OutOfRange { .. } | RiceError::Truncated)
        ));
    }
}
