//! Golomb-Rice coding of the sorted local indices of every chunk (wire format v2).
//!
//! Inside a chunk of `n` elements with `k` kept, strictly increasing indices
//! `i_0 < i_1 < ...`, the gaps are `g_0 = i_0` and `g_j = i_j - i_{j-1} - 1` (all >= 0).
//! Gap `g` is written with parameter `r` in two streams: its quotient `g >> r` in unary
//! (that many zero bits, then a one bit) in the *quotient stream*, and its low `r` bits
//! in the *remainder stream* (fixed width, least significant bit first). Bit `b` of a
//! stream is bit `b % 8` of byte `b / 8`. One parameter per tensor, the smallest `r` in
//! `0..=MAX_RICE_PARAM` that minimizes the tensor's total bit count; the chunks of a
//! tensor form one pair of streams, each zero-padded to a byte at its end. When `k == n`
//! the indices are forced (`0..n`): no bits, parameter 0.
//!
//! Split streams decode without per-bit work: quotients are the distances between set
//! bits of the quotient stream (a trailing-zero count and a clear of the lowest set bit
//! per gap over 64-bit words), the remainder of entry `e` sits at bit `e * r` of the
//! remainder stream (one unaligned 64-bit load, a shift and a mask, independent of the
//! other entries).

use crate::geometry::ChunkGeometry;

/// Largest Rice parameter (gaps are below 4096 = 2^12).
pub const MAX_RICE_PARAM: u8 = 12;

/// Why a Rice stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RiceError {
    /// The quotient stream ended inside a gap.
    Truncated,
    /// A gap leads to an index at or past the chunk size (`index` saturates at `u16::MAX`).
    OutOfRange { chunk: usize, index: u16 },
    /// Whole bytes remain after the last gap of the quotient stream.
    Trailing,
    /// The padding bits of the last byte of the quotient stream are not zero.
    Padding,
    /// The padding bits of the last byte of the remainder stream are not zero.
    RemainderPadding,
    /// The parameter is not the canonical (smallest optimal) one, or above the maximum.
    Parameter,
}

/// True when every element of each chunk is kept, so the indices carry no information.
pub(crate) fn forced(geom: &ChunkGeometry) -> bool {
    geom.k() == geom.chunk_elems()
}

/// Bytes of the remainder stream of `entries` gaps with parameter `param`.
pub(crate) fn remainder_bytes(entries: usize, param: u8) -> usize {
    (entries as u64 * u64::from(param)).div_ceil(8) as usize
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

/// Canonical parameter and exact sizes of a tensor's index streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RicePlan {
    pub(crate) param: u8,
    /// Bits of the quotient stream (one stop bit per gap plus the quotients).
    pub(crate) quotient_bits: u64,
    /// Number of gaps.
    pub(crate) entries: usize,
}

impl RicePlan {
    /// Bytes of the padded quotient stream.
    pub(crate) fn quotient_bytes(&self) -> usize {
        self.quotient_bits.div_ceil(8) as usize
    }

    /// Bytes of the padded remainder stream.
    pub(crate) fn remainder_bytes(&self) -> usize {
        remainder_bytes(self.entries, self.param)
    }

    /// Total bits of both streams (what the parameter minimizes).
    #[cfg(test)]
    pub(crate) fn bits(&self) -> u64 {
        self.quotient_bits + self.entries as u64 * u64::from(self.param)
    }
}

/// Plans the coding of `indices` (chunk-major, `k` per chunk, strictly increasing inside
/// each chunk).
pub(crate) fn plan(indices: &[u16], geom: &ChunkGeometry) -> RicePlan {
    if forced(geom) {
        return RicePlan {
            param: 0,
            quotient_bits: 0,
            entries: indices.len(),
        };
    }
    let mut hist = GapHistogram::new(geom.chunk_elems());
    for_each_gap(indices, geom.k(), |g| {
        if let Some(c) = hist.counts.get_mut(g) {
            *c += 1;
        }
    });
    hist.gaps = indices.len() as u64;
    let (param, bits) = hist.best();
    RicePlan {
        param,
        quotient_bits: bits - indices.len() as u64 * u64::from(param),
        entries: indices.len(),
    }
}

#[inline(always)]
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

/// Appends bits to a zero-filled byte slice, least significant bit first.
struct BitSink<'a> {
    out: &'a mut [u8],
    /// Next byte to write.
    pos: usize,
    acc: u64,
    used: u32,
}

impl<'a> BitSink<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Self {
            out,
            pos: 0,
            acc: 0,
            used: 0,
        }
    }

    /// Appends the low `bits <= 32` bits of `value` (higher bits zero).
    #[inline(always)]
    fn put(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.used;
        self.used += bits;
        if self.used >= 32 {
            if let Some(dst) = self.out.get_mut(self.pos..self.pos + 4) {
                dst.copy_from_slice(&(self.acc as u32).to_le_bytes());
            }
            self.pos += 4;
            self.acc >>= 32;
            self.used -= 32;
        }
    }

    /// Flushes the last partial word.
    fn finish(self) {
        let bytes = self.used.div_ceil(8) as usize;
        if let Some(dst) = self.out.get_mut(self.pos..self.pos + bytes) {
            dst.copy_from_slice(&self.acc.to_le_bytes()[..bytes]);
        }
    }
}

/// Appends the quotient stream, then the remainder stream of `indices` with
/// `plan.param` (as returned by [`plan`]): `plan.quotient_bytes() +
/// plan.remainder_bytes()` bytes.
pub(crate) fn write(indices: &[u16], geom: &ChunkGeometry, plan: RicePlan, out: &mut Vec<u8>) {
    if forced(geom) {
        return;
    }
    let start = out.len();
    out.resize(start + plan.quotient_bytes() + plan.remainder_bytes(), 0);
    let (quotients, remainders) = out[start..].split_at_mut(plan.quotient_bytes());
    let r = u32::from(plan.param);
    let mask = (1usize << r) - 1;
    let mut rems = BitSink::new(remainders);
    let mut bit = 0usize;
    for_each_gap(indices, geom.k(), |g| {
        // The stop bit of this gap; the zeros before it are already there.
        bit += g >> r;
        if let Some(b) = quotients.get_mut(bit >> 3) {
            *b |= 1 << (bit & 7);
        }
        bit += 1;
        rems.put((g & mask) as u64, r);
    });
    rems.finish();
}

/// Positions of the set bits of a byte stream, in order, 64 bits at a time.
struct SetBits<'a> {
    bytes: &'a [u8],
    /// Next byte to load.
    next: usize,
    /// Unvisited set bits of the loaded word.
    word: u64,
    /// Stream position of bit 0 of `word`.
    base: u64,
}

impl<'a> SetBits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: 0,
            word: 0,
            base: 0,
        }
    }

    /// Position of the next set bit; `None` when the stream has no more.
    #[inline(always)]
    fn next_one(&mut self) -> Option<u64> {
        while self.word == 0 {
            self.load()?;
        }
        let at = self.base + u64::from(self.word.trailing_zeros());
        self.word &= self.word - 1;
        Some(at)
    }

    fn load(&mut self) -> Option<()> {
        let rest = self.bytes.get(self.next..).filter(|r| !r.is_empty())?;
        let take = rest.len().min(8);
        let mut w = [0u8; 8];
        w[..take].copy_from_slice(&rest[..take]);
        self.word = u64::from_le_bytes(w);
        self.base = self.next as u64 * 8;
        self.next += take;
        Some(())
    }
}

/// Fixed-width fields of a byte stream: field `e` is bits `e * r ..` of the stream.
struct Fields<'a> {
    bytes: &'a [u8],
    r: u32,
    mask: u64,
}

impl Fields<'_> {
    /// Field `e` (zero bits past the end of the stream).
    #[inline(always)]
    fn get(&self, e: usize) -> u64 {
        let bit = e * self.r as usize;
        let byte = bit >> 3;
        let mut w = [0u8; 8];
        match self.bytes.get(byte..byte + 8) {
            Some(word) => w.copy_from_slice(word),
            None => {
                let tail = self.bytes.get(byte..).unwrap_or(&[]);
                let len = tail.len().min(8);
                w[..len].copy_from_slice(&tail[..len]);
            }
        }
        (u64::from_le_bytes(w) >> (bit & 7)) & self.mask
    }
}

/// Decodes the indices of a whole tensor from its quotient and remainder streams into
/// `out` (replaced), and checks both streams are canonical: every index below the chunk
/// size, no bytes after the last gap, zero padding, `param` the smallest optimal
/// parameter. `remainders` must be [`remainder_bytes`] long (the framing takes exactly
/// that many).
pub(crate) fn read(
    quotients: &[u8],
    remainders: &[u8],
    geom: &ChunkGeometry,
    param: u8,
    out: &mut Vec<u16>,
) -> Result<(), RiceError> {
    out.clear();
    let (n, k) = (geom.chunk_elems(), geom.k());
    if forced(geom) {
        if param != 0 {
            return Err(RiceError::Parameter);
        }
        if !quotients.is_empty() || !remainders.is_empty() {
            return Err(RiceError::Trailing);
        }
        out.reserve(geom.entries());
        for _ in 0..geom.n_chunks() {
            out.extend(0..n as u16);
        }
        return Ok(());
    }
    if param > MAX_RICE_PARAM {
        return Err(RiceError::Parameter);
    }
    let r = u32::from(param);
    let fields = Fields {
        bytes: remainders,
        r,
        mask: (1u64 << r) - 1,
    };
    let mut ones = SetBits::new(quotients);
    // Bit after the previous stop bit.
    let mut start = 0u64;
    // Local sums (see NeighbourCosts) besides the quotients, which follow from `start`.
    let (mut half_quotients, mut low_bits) = (0u64, 0u64);
    let low_shift = r.saturating_sub(1);
    let low_mask = u64::from(r > 0);
    out.resize(geom.entries(), 0);
    let mut entry = 0usize;
    for (chunk, dst) in out.chunks_exact_mut(k.max(1)).enumerate() {
        let mut next = 0u64;
        for slot in dst {
            let out_of_range = |index: u64| RiceError::OutOfRange {
                chunk,
                index: u16::try_from(index).unwrap_or(u16::MAX),
            };
            let Some(stop) = ones.next_one() else {
                // The run of zeros reaches the end: past the chunk already, or truncated.
                let zeros = (quotients.len() as u64 * 8).saturating_sub(start);
                let reach = zeros << r;
                return Err(if reach >= n as u64 - next {
                    out_of_range(next.saturating_add(reach))
                } else {
                    RiceError::Truncated
                });
            };
            let q = stop - start;
            start = stop + 1;
            let rem = fields.get(entry);
            entry += 1;
            // q < 2^36 (the stream is below 2^32 bytes) and r <= 12: no overflow.
            let g = (q << r) | rem;
            if g >= n as u64 - next {
                return Err(out_of_range(next.saturating_add(g)));
            }
            half_quotients = half_quotients.wrapping_add(q >> 1);
            low_bits = low_bits.wrapping_add((rem >> low_shift) & low_mask);
            // g < n - next, so the index is below n <= 4096.
            let index = next + g;
            *slot = index as u16;
            next = index + 1;
        }
    }
    let used = start.div_ceil(8) as usize;
    if quotients.len() > used {
        return Err(RiceError::Trailing);
    }
    if start % 8 != 0
        && quotients
            .get(used.wrapping_sub(1))
            .is_some_and(|&b| b >> (start % 8) != 0)
    {
        return Err(RiceError::Padding);
    }
    let rem_bits = out.len() as u64 * u64::from(r);
    if rem_bits % 8 != 0 && remainders.last().is_some_and(|&b| b >> (rem_bits % 8) != 0) {
        return Err(RiceError::RemainderPadding);
    }
    let gaps = out.len() as u64;
    let costs = NeighbourCosts {
        quotients: start - gaps,
        half_quotients,
        low_bits,
    };
    if !costs.is_smallest_optimum(gaps, param) {
        return Err(RiceError::Parameter);
    }
    Ok(())
}

/// Most bytes a canonical quotient stream of `geom` can take with parameter `param`: one
/// stop bit per gap, and the gaps of one chunk sum to at most `n - k`, so their quotients
/// sum to at most `(n - k) >> r`.
pub(crate) fn max_quotient_bytes(geom: &ChunkGeometry, param: u8) -> usize {
    if forced(geom) {
        return 0;
    }
    let r = u32::from(param.min(MAX_RICE_PARAM));
    let spare = geom.chunk_elems() - geom.k();
    let bits = geom.entries() as u64 + geom.n_chunks() as u64 * (spare as u64 >> r);
    bits.div_ceil(8) as usize
}

/// Most bytes both streams of `geom` can take with their canonical parameter (no more
/// than with `r = 12`, where every quotient is 0: 13 bits per gap), plus padding.
pub(crate) fn plan_bound(geom: &ChunkGeometry) -> usize {
    if forced(geom) {
        0
    } else {
        (geom.entries() * 13).div_ceil(8) + 2
    }
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

    /// Both streams of `idx` with `plan`, split.
    fn streams(idx: &[u16], g: &ChunkGeometry, p: RicePlan) -> (Vec<u8>, Vec<u8>) {
        let mut bytes = Vec::new();
        write(idx, g, p, &mut bytes);
        assert_eq!(bytes.len(), p.quotient_bytes() + p.remainder_bytes());
        let rem = bytes.split_off(p.quotient_bytes());
        (bytes, rem)
    }

    fn read_both(
        q: &[u8],
        rem: &[u8],
        g: &ChunkGeometry,
        param: u8,
    ) -> Result<Vec<u16>, RiceError> {
        let mut out = Vec::new();
        read(q, rem, g, param, &mut out).map(|()| out)
    }

    #[test]
    fn round_trip_and_exact_length() {
        let g = geom(&[128, 192]);
        for step in [1, 7, 63, 64] {
            let idx = spread(&g, step);
            let p = plan(&idx, &g);
            let (q, rem) = streams(&idx, &g, p);
            assert!(q.len() <= max_quotient_bytes(&g, p.param));
            assert_eq!(read_both(&q, &rem, &g, p.param).unwrap(), idx);
        }
    }

    #[test]
    fn long_quotients_cross_words() {
        // One index per chunk at the end of a 4096-element chunk with r = 0 would be a
        // 4095-bit run; with k = 64 and a cluster at the end, gaps of ~4000 then zeros.
        let g = geom(&[64, 64]);
        let idx: Vec<u16> = (0..64).map(|j| 4032 + j).collect();
        let p = plan(&idx, &g);
        let (q, rem) = streams(&idx, &g, p);
        assert_eq!(read_both(&q, &rem, &g, p.param).unwrap(), idx);
        for r in 0..=MAX_RICE_PARAM {
            let other = RicePlan {
                param: r,
                quotient_bits: 0,
                entries: idx.len(),
            };
            let other = RicePlan {
                quotient_bits: plan_bits(&idx, &g, r),
                ..other
            };
            let (q, rem) = streams(&idx, &g, other);
            let back = read_both(&q, &rem, &g, r);
            if r == p.param {
                assert_eq!(back.unwrap(), idx);
            } else {
                assert_eq!(back, Err(RiceError::Parameter), "r {r}");
            }
        }
    }

    fn plan_bits(idx: &[u16], g: &ChunkGeometry, r: u8) -> u64 {
        let mut bits = 0u64;
        for_each_gap(idx, g.k(), |gap| bits += (gap as u64 >> r) + 1);
        bits
    }

    #[test]
    fn parameter_follows_the_gap_sizes() {
        let g = geom(&[64, 64]);
        // Dense prefix 0..64: all gaps zero, r = 0, one bit each.
        let dense: Vec<u16> = (0..64).collect();
        assert_eq!(
            plan(&dense, &g),
            RicePlan {
                param: 0,
                quotient_bits: 64,
                entries: 64
            }
        );
        // Evenly spread: gaps of 63 -> r = 5 or 6.
        let even: Vec<u16> = (0..64).map(|j| j * 64 + 63).collect();
        let p = plan(&even, &g);
        assert!(p.param == 5 || p.param == 6, "{p:?}");
        assert_eq!(
            p.bits(),
            plan_bits(&even, &g, p.param) + 64 * u64::from(p.param)
        );
        // Any other parameter is rejected.
        let other = RicePlan {
            param: p.param + 1,
            quotient_bits: plan_bits(&even, &g, p.param + 1),
            entries: 64,
        };
        let (q, rem) = streams(&even, &g, other);
        assert_eq!(
            read_both(&q, &rem, &g, other.param),
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
    fn remainder_padding_is_rejected() {
        // 17 of 64 per 8 x 8 chunk: 17 * r remainder bits end inside a byte.
        let config = SparseLocoConfig {
            topk: 17,
            chunk: 8,
            ..Default::default()
        };
        let g = ChunkGeometry::new(&ParamSpec::new("p", [8, 8]), &config).unwrap();
        // Gaps of 3 then 2: r = 1 is the smallest optimum, 17 remainder bits.
        let idx: Vec<u16> = (0..17u16)
            .scan(0u16, |next, j| {
                let i = *next + if j < 5 { 3 } else { 2 };
                *next = i + 1;
                Some(i)
            })
            .collect();
        let p = plan(&idx, &g);
        assert!(p.param > 0 && (17 * u32::from(p.param)) % 8 != 0, "{p:?}");
        let (q, rem) = streams(&idx, &g, p);
        assert_eq!(read_both(&q, &rem, &g, p.param).unwrap(), idx);
        let mut padded = rem.clone();
        *padded.last_mut().unwrap() |= 0x80;
        assert_eq!(
            read_both(&q, &padded, &g, p.param),
            Err(RiceError::RemainderPadding)
        );
    }

    #[test]
    fn forced_chunks_take_no_bytes() {
        let g = geom(&[2048]);
        assert!(forced(&g));
        let idx: Vec<u16> = (0..32).flat_map(|_| 0..64u16).collect();
        let p = plan(&idx, &g);
        assert_eq!(p.quotient_bytes() + p.remainder_bytes(), 0);
        assert_eq!(read_both(&[], &[], &g, 0).unwrap(), idx);
        assert_eq!(read_both(&[0], &[], &g, 0), Err(RiceError::Trailing));
        assert_eq!(read_both(&[], &[], &g, 1), Err(RiceError::Parameter));
    }

    #[test]
    fn malformed_streams_are_rejected() {
        let g = geom(&[64, 64]);
        let idx: Vec<u16> = (0..64).map(|j| j * 64 + 63).collect();
        let p = plan(&idx, &g);
        let (q, rem) = streams(&idx, &g, p);
        for len in 0..q.len() {
            assert!(read_both(&q[..len], &rem, &g, p.param).is_err());
        }
        let mut extra = q.clone();
        extra.push(0);
        assert_eq!(
            read_both(&extra, &rem, &g, p.param),
            Err(RiceError::Trailing)
        );
        let used = (p.quotient_bits % 8) as u32;
        if used != 0 {
            let mut padded = q.clone();
            *padded.last_mut().unwrap() |= 1 << used;
            assert_eq!(
                read_both(&padded, &rem, &g, p.param),
                Err(RiceError::Padding)
            );
        }
        // All-zero quotient stream: the unary run never ends inside the chunk.
        let zeros = vec![0u8; q.len()];
        assert!(matches!(
            read_both(&zeros, &rem, &g, p.param),
            Err(RiceError::OutOfRange { .. } | RiceError::Truncated)
        ));
        // A stop bit too far: the gap runs past the chunk.
        let mut far = vec![0u8; 600];
        far[599] = 0x80;
        assert!(matches!(
            read_both(&far, &rem, &g, p.param),
            Err(RiceError::OutOfRange { chunk: 0, .. })
        ));
    }
}
