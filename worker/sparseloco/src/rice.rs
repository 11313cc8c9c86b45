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

/// Gap histogram of one tensor (one counter per possible gap value): the exhaustive
/// parameter search the tests compare the planner with.
#[cfg(test)]
struct GapHistogram {
    counts: Vec<u32>,
    gaps: u64,
}

#[cfg(test)]
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
    Gaps::new(indices, geom).plan(geom)
}

/// Appends the quotient stream, then the remainder stream of `indices` with
/// `plan.param`: `plan.quotient_bytes() + plan.remainder_bytes()` bytes.
#[cfg(test)]
pub(crate) fn write(indices: &[u16], geom: &ChunkGeometry, plan: RicePlan, out: &mut Vec<u8>) {
    Gaps::new(indices, geom).write(geom, plan, out);
}

/// The gaps of a tensor's indices, chunk after chunk (empty for forced chunks), and
/// their sum.
pub(crate) struct Gaps {
    gaps: Vec<u16>,
    total: u64,
}

impl Gaps {
    pub(crate) fn new(indices: &[u16], geom: &ChunkGeometry) -> Self {
        if forced(geom) {
            return Self {
                gaps: Vec::new(),
                total: 0,
            };
        }
        let k = geom.k().max(1);
        let mut gaps = vec![0u16; indices.len()];
        let mut total = 0u64;
        for (dst, src) in gaps.chunks_mut(k).zip(indices.chunks(k)) {
            // Indices strictly increase inside a chunk: the gaps sum to last + 1 - len.
            if let Some(&last) = src.last() {
                total += (u64::from(last) + 1).saturating_sub(src.len() as u64);
            }
            if let (Some(d), Some(&s)) = (dst.first_mut(), src.first()) {
                *d = s;
            }
            for (d, pair) in dst.iter_mut().skip(1).zip(src.windows(2)) {
                *d = pair[1].wrapping_sub(pair[0]).wrapping_sub(1);
            }
        }
        Self { gaps, total }
    }

    /// Sums of the quotients with parameters `r`, `r + 1` and `r + 2`, in one pass.
    fn quotients3(&self, r: u32) -> [u64; 3] {
        let [a, b, c] = [r, r + 1, r + 2].map(|r| r.min(15));
        // Blocks of 2^16 gaps sum in u32 (each quotient is below 2^12), which vectorizes.
        self.gaps.chunks(1 << 16).fold([0u64; 3], |acc, block| {
            let sums = block.iter().fold([0u32; 3], |s, &g| {
                [
                    s[0].wrapping_add(u32::from(g >> a)),
                    s[1].wrapping_add(u32::from(g >> b)),
                    s[2].wrapping_add(u32::from(g >> c)),
                ]
            });
            [
                acc[0] + u64::from(sums[0]),
                acc[1] + u64::from(sums[1]),
                acc[2] + u64::from(sums[2]),
            ]
        })
    }

    /// The smallest parameter with the fewest bits. The bit count
    /// `B(r) = gaps * (r + 1) + S(r)` is convex in `r` (see [`NeighbourCosts`]), so a walk
    /// from a guess near `log2` of the mean gap finds it: left while not worse, right
    /// while strictly better. The mean needs no pass (the gaps of a chunk sum to its last
    /// index + 1 - k); one pass sums the guess and its neighbours, which is usually all.
    pub(crate) fn plan(&self, geom: &ChunkGeometry) -> RicePlan {
        let entries = self.gaps.len();
        if forced(geom) || entries == 0 {
            return RicePlan {
                param: 0,
                quotient_bits: 0,
                entries,
            };
        }
        let gaps = entries as u64;
        let max = u32::from(MAX_RICE_PARAM);
        let mean = self.total / gaps;
        let guess = (u64::BITS - (mean + 1).leading_zeros())
            .saturating_sub(1)
            .min(max);
        let mut bits: [Option<u64>; MAX_RICE_PARAM as usize + 1] = [None; 13];
        let mut bits_at = |r: u32| -> u64 {
            if let Some(b) = bits[r as usize] {
                return b;
            }
            let first = r.saturating_sub(1).min(max - 2);
            for (i, q) in self.quotients3(first).into_iter().enumerate() {
                let at = first + i as u32;
                bits[at as usize] = Some(gaps * (u64::from(at) + 1) + q);
            }
            bits[r as usize].unwrap_or(u64::MAX)
        };
        let mut r = guess;
        let mut here = bits_at(r);
        loop {
            if r > 0 {
                let below = bits_at(r - 1);
                if below <= here {
                    r -= 1;
                    here = below;
                    continue;
                }
            }
            if r < max {
                let above = bits_at(r + 1);
                if above < here {
                    r += 1;
                    here = above;
                    continue;
                }
            }
            break;
        }
        RicePlan {
            param: r as u8,
            quotient_bits: here - gaps * u64::from(r),
            entries,
        }
    }

    /// Appends the quotient stream, then the remainder stream with `plan.param`.
    pub(crate) fn write(&self, geom: &ChunkGeometry, plan: RicePlan, out: &mut Vec<u8>) {
        if forced(geom) {
            return;
        }
        let r = u32::from(plan.param);
        // Quotients: stop bits set in a 64-bit word, stored when the next stop bit is
        // past it.
        let q_start = out.len();
        let q_end = q_start + plan.quotient_bytes();
        // Whole words: up to 7 bytes past the stream, cut off below.
        out.resize(q_start + plan.quotient_bytes().next_multiple_of(8) + 8, 0);
        {
            let dst = &mut out[q_start..];
            let mut acc = 0u64;
            let mut base = 0usize;
            let mut bit = 0usize;
            for &g in &self.gaps {
                bit = bit.wrapping_add(usize::from(g >> r));
                while bit.wrapping_sub(base) >= 64 {
                    if let Some(word) = dst
                        .get_mut(base / 8..)
                        .and_then(<[u8]>::first_chunk_mut::<8>)
                    {
                        *word = acc.to_le_bytes();
                    }
                    acc = 0;
                    base = base.wrapping_add(64);
                }
                acc |= 1u64.wrapping_shl(bit.wrapping_sub(base) as u32);
                bit = bit.wrapping_add(1);
            }
            if let Some(word) = dst
                .get_mut(base / 8..)
                .and_then(<[u8]>::first_chunk_mut::<8>)
            {
                *word = acc.to_le_bytes();
            }
        }
        out.truncate(q_end);
        if r == 0 {
            return;
        }
        // Remainders: eight gaps (r bytes) per 16-byte store into a buffer with slack.
        let r_end = q_end + plan.remainder_bytes();
        out.resize(r_end + 16, 0);
        let dst = &mut out[q_end..];
        match r {
            1 => put_remainders::<1>(&self.gaps, dst),
            2 => put_remainders::<2>(&self.gaps, dst),
            3 => put_remainders::<3>(&self.gaps, dst),
            4 => put_remainders::<4>(&self.gaps, dst),
            5 => put_remainders::<5>(&self.gaps, dst),
            6 => put_remainders::<6>(&self.gaps, dst),
            7 => put_remainders::<7>(&self.gaps, dst),
            8 => put_remainders::<8>(&self.gaps, dst),
            9 => put_remainders::<9>(&self.gaps, dst),
            10 => put_remainders::<10>(&self.gaps, dst),
            11 => put_remainders::<11>(&self.gaps, dst),
            _ => put_remainders::<12>(&self.gaps, dst),
        }
        out.truncate(r_end);
    }
}

/// Writes the low `R >= 1` bits of every gap into `dst` (zeroed, the stream's length plus
/// 16 bytes): gaps `8 g .. 8 g + 8` fill the `R` bytes at `R * g`, one 16-byte store each
/// (the bytes past them are rewritten by the next group); the last partial group bit by
/// bit.
fn put_remainders<const R: u32>(gaps: &[u16], dst: &mut [u8]) {
    let mask = (1u16 << R) - 1;
    let mut groups = gaps.chunks_exact(8);
    // Eight remainders fit one u64 for R <= 8 (the usual r = 5 or 6), else one u128.
    macro_rules! put_groups {
        ($word:ty, $bytes:literal) => {
            for (g, group) in (&mut groups).enumerate() {
                let w = group.iter().enumerate().fold(0, |w: $word, (j, &gap)| {
                    w | <$word>::from(gap & mask) << (j as u32 * R)
                });
                if let Some(bytes) = dst
                    .get_mut(g * R as usize..)
                    .and_then(<[u8]>::first_chunk_mut::<$bytes>)
                {
                    *bytes = w.to_le_bytes();
                }
            }
        };
    }
    if R <= 8 {
        put_groups!(u64, 8);
    } else {
        put_groups!(u128, 16);
    }
    let done = gaps.len() / 8 * 8;
    let mut w = 0u128;
    for (j, &gap) in groups.remainder().iter().enumerate() {
        w |= u128::from(gap & mask) << (j as u32 * R);
    }
    if let Some(bytes) = dst
        .get_mut(done / 8 * R as usize..)
        .and_then(<[u8]>::first_chunk_mut::<16>)
    {
        *bytes = w.to_le_bytes();
    }
}

/// Little-endian word of up to 8 bytes (missing high bytes zero).
#[inline(always)]
fn load_word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let len = bytes.len().min(8);
    w[..len].copy_from_slice(&bytes[..len]);
    u64::from_le_bytes(w)
}

/// Decodes the indices of a whole tensor from its quotient and remainder streams into
/// `out` (replaced), and checks both streams are canonical: every index below the chunk
/// size, no bytes after the last gap, zero padding, `param` the smallest optimal
/// parameter. `remainders` must be [`remainder_bytes`] long (the framing takes exactly
/// that many).
///
/// Four passes over `out`: the quotients (distances between set bits, word by word), their
/// sums and maximum (vectorized), the remainders (eight at a time), the running index per
/// chunk. Anything unusual (a stream that ends early, a gap past its chunk) is handed to
/// [`read_exact`], which names the error.
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
    out.resize(geom.entries(), 0);
    // Pass 1: quotient of entry e = zeros between stop bits e - 1 and e. First a byte at
    // a time from a table, while eight more entries fit (a byte holds at most eight stop
    // bits), then word by word over set bits for the last few.
    let (mut e, first_byte, mut start) = quotients_by_byte(quotients, out);
    let slots = out.as_mut_slice();
    let rest = quotients.get(first_byte..).unwrap_or(&[]);
    'words: for (w, bytes) in rest.chunks(8).enumerate() {
        let mut word = match bytes.first_chunk::<8>() {
            Some(full) => u64::from_le_bytes(*full),
            None => load_word(bytes),
        };
        let base = (first_byte as u64 + w as u64 * 8) * 8;
        while word != 0 {
            let Some(slot) = slots.get_mut(e) else {
                break 'words;
            };
            let stop = base.wrapping_add(u64::from(word.trailing_zeros()));
            // Truncated to u16 here; the sums below notice.
            *slot = stop.wrapping_sub(start) as u16;
            start = stop.wrapping_add(1);
            e = e.wrapping_add(1);
            word &= word.wrapping_sub(1);
        }
    }
    if e < out.len() {
        return read_exact(quotients, remainders, geom, param, out);
    }
    // The quotients sum to the zeros before the last stop bit, so a stored sum below
    // that means one was truncated. Every gap must stay below n <= 4096: a quotient
    // with q << r >= n is an error, and below that all gaps fit in u16.
    let stats = QuotientStats::of(out);
    if stats.sum != start - out.len() as u64
        || u64::from(stats.max)
            .checked_shl(r)
            .is_none_or(|g| g >= n as u64)
    {
        return read_exact(quotients, remainders, geom, param, out);
    }
    let half_quotients = stats.half_sum;
    // Pass 2: gaps = quotient << r | remainder, eight entries (r bytes) at a time.
    let mut padded = Vec::with_capacity(remainders.len() + 16);
    padded.extend_from_slice(remainders);
    padded.resize(remainders.len() + 16, 0);
    let low_bits = match param {
        0 => 0,
        1 => add_remainders::<1>(out, &padded),
        2 => add_remainders::<2>(out, &padded),
        3 => add_remainders::<3>(out, &padded),
        4 => add_remainders::<4>(out, &padded),
        5 => add_remainders::<5>(out, &padded),
        6 => add_remainders::<6>(out, &padded),
        7 => add_remainders::<7>(out, &padded),
        8 => add_remainders::<8>(out, &padded),
        9 => add_remainders::<9>(out, &padded),
        10 => add_remainders::<10>(out, &padded),
        11 => add_remainders::<11>(out, &padded),
        _ => add_remainders::<12>(out, &padded),
    };
    // Pass 3: indices from gaps, chunk by chunk. They increase inside a chunk, so all
    // are below n exactly when the last one is (the sum cannot wrap: k gaps below 2^12).
    for chunk in out.chunks_exact_mut(k.max(1)) {
        let mut next = 0u32;
        for slot in chunk.iter_mut() {
            let index = next.wrapping_add(u32::from(*slot));
            *slot = index as u16;
            next = index.wrapping_add(1);
        }
        if next > n as u32 {
            return read_exact(quotients, remainders, geom, param, out);
        }
    }
    finish(
        quotients,
        remainders,
        start,
        out.len(),
        param,
        NeighbourCosts {
            quotients: start - out.len() as u64,
            half_quotients,
            low_bits,
        },
    )
}

/// Per byte of a quotient stream: the quotients its stop bits end (zeros before each,
/// counted from the previous stop bit in the byte or from the byte's start), their count,
/// and the zeros after the last one (all eight for a zero byte).
#[derive(Clone, Copy)]
struct ByteStops {
    quotients: [u8; 8],
    count: u8,
    tail: u8,
}

const BYTE_STOPS: [ByteStops; 256] = {
    let mut table = [ByteStops {
        quotients: [0; 8],
        count: 0,
        tail: 0,
    }; 256];
    let mut b = 0;
    while b < 256 {
        let mut zeros = 0u8;
        let mut bit = 0;
        while bit < 8 {
            if (b >> bit) & 1 == 1 {
                let count = table[b].count as usize;
                table[b].quotients[count] = zeros;
                table[b].count += 1;
                zeros = 0;
            } else {
                zeros += 1;
            }
            bit += 1;
        }
        table[b].tail = zeros;
        b += 1;
    }
    table
};

/// The table part of pass 1 of [`read`]: quotients into `out` a byte of the stream at a
/// time while eight more fit (each step stores eight lanes and keeps as many as the byte
/// has stop bits). Returns the entries decoded, the next byte and the bit after the last
/// stop bit read. Quotients are truncated to u16 like the word loop's; the caller's sum
/// check notices.
fn quotients_by_byte(quotients: &[u8], out: &mut [u16]) -> (usize, usize, u64) {
    let mut e = 0usize;
    // Zeros since the last stop bit.
    let mut carry = 0u64;
    let mut used = 0usize;
    for &b in quotients {
        if e + 8 > out.len() {
            break;
        }
        let stops = BYTE_STOPS[usize::from(b)];
        if let Some(lanes) = out.get_mut(e..e + 8) {
            for (slot, &q) in lanes.iter_mut().zip(&stops.quotients) {
                *slot = u16::from(q);
            }
            lanes[0] = lanes[0].wrapping_add(carry as u16);
        }
        e += usize::from(stops.count);
        carry = if stops.count == 0 {
            carry + 8
        } else {
            u64::from(stops.tail)
        };
        used += 1;
    }
    (e, used, (used as u64 * 8).wrapping_sub(carry))
}

/// Sum, sum of halves and maximum of the quotients, in blocks the compiler vectorizes.
struct QuotientStats {
    sum: u64,
    half_sum: u64,
    max: u16,
}

impl QuotientStats {
    fn of(quotients: &[u16]) -> Self {
        let mut stats = Self {
            sum: 0,
            half_sum: 0,
            max: 0,
        };
        // 4096 quotients below 2^16 sum below 2^28 in u32.
        for block in quotients.chunks(4096) {
            let (sum, half, max) = block.iter().fold((0u32, 0u32, 0u16), |(s, h, m), &q| {
                (
                    s.wrapping_add(u32::from(q)),
                    h.wrapping_add(u32::from(q >> 1)),
                    m.max(q),
                )
            });
            stats.sum += u64::from(sum);
            stats.half_sum += u64::from(half);
            stats.max = stats.max.max(max);
        }
        stats
    }
}

/// Pass 2 of [`read`] for parameter `R >= 1` (a constant, so every shift and mask is an
/// immediate): `out[e] = out[e] << R | remainder e`, where the remainders of entries
/// `8 g .. 8 g + 8` are the `R` bytes at `R * g` of `padded` (the remainder stream plus 16
/// zero bytes). The gaps fit in u16 (checked by the caller). Returns the number of
/// remainders with bit `R - 1` set.
fn add_remainders<const R: u32>(out: &mut [u16], padded: &[u8]) -> u64 {
    let mask = (1u16 << R) - 1;
    let mut low_bits = 0u64;
    let done = out.len() / 8 * 8;
    // Eight remainders fit one u64 for R <= 8 (the usual r = 5 or 6), else one u128.
    macro_rules! add_groups {
        ($word:ty, $bytes:literal) => {
            for (g, group) in out.chunks_exact_mut(8).enumerate() {
                let w = padded
                    .get(g * R as usize..)
                    .and_then(<[u8]>::first_chunk::<$bytes>)
                    .map_or(0, |b| <$word>::from_le_bytes(*b));
                for (j, slot) in group.iter_mut().enumerate() {
                    let rem = (w >> (j as u32 * R)) as u16 & mask;
                    low_bits += u64::from(rem >> (R - 1));
                    *slot = (*slot << R) | rem;
                }
            }
        };
    }
    if R <= 8 {
        add_groups!(u64, 8);
    } else {
        add_groups!(u128, 16);
    }
    for (e, slot) in out.iter_mut().enumerate().skip(done) {
        let bit = e * R as usize;
        let rem = padded
            .get(bit / 8..)
            .and_then(<[u8]>::first_chunk::<4>)
            .map_or(0, |b| (u32::from_le_bytes(*b) >> (bit % 8)) as u16 & mask);
        low_bits += u64::from(rem >> (R - 1));
        *slot = (*slot << R) | rem;
    }
    low_bits
}

/// The checks after the last gap: no byte after the last stop bit, zero padding in both
/// streams, `param` the smallest optimum. `end` is the bit after the last stop bit.
fn finish(
    quotients: &[u8],
    remainders: &[u8],
    end: u64,
    gaps: usize,
    param: u8,
    costs: NeighbourCosts,
) -> Result<(), RiceError> {
    let used = end.div_ceil(8) as usize;
    if quotients.len() > used {
        return Err(RiceError::Trailing);
    }
    if !end.is_multiple_of(8)
        && quotients
            .get(used.wrapping_sub(1))
            .is_some_and(|&b| b >> (end % 8) != 0)
    {
        return Err(RiceError::Padding);
    }
    let rem_bits = gaps as u64 * u64::from(param);
    if !rem_bits.is_multiple_of(8) && remainders.last().is_some_and(|&b| b >> (rem_bits % 8) != 0) {
        return Err(RiceError::RemainderPadding);
    }
    if !costs.is_smallest_optimum(gaps as u64, param) {
        return Err(RiceError::Parameter);
    }
    Ok(())
}

/// One gap at a time, bit by bit: the definition [`read`] follows, and the error it
/// reports when a stream is malformed (`out` is overwritten). Not forced, `param` valid.
#[cold]
#[inline(never)]
pub(crate) fn read_exact(
    quotients: &[u8],
    remainders: &[u8],
    geom: &ChunkGeometry,
    param: u8,
    out: &mut Vec<u16>,
) -> Result<(), RiceError> {
    out.clear();
    let (n, k) = (geom.chunk_elems() as u64, geom.k());
    let r = u32::from(param);
    let total = quotients.len() as u64 * 8;
    let bit_at = |bytes: &[u8], b: u64| {
        bytes
            .get((b / 8) as usize)
            .is_some_and(|&byte| byte >> (b % 8) & 1 == 1)
    };
    let mut pos = 0u64;
    let mut entry = 0u64;
    let mut costs = NeighbourCosts::default();
    for chunk in 0..geom.n_chunks() {
        let mut next = 0u64;
        for _ in 0..k {
            let out_of_range = |index: u64| RiceError::OutOfRange {
                chunk,
                index: u16::try_from(index).unwrap_or(u16::MAX),
            };
            let mut q = 0u64;
            while !bit_at(quotients, pos) {
                if pos >= total {
                    return Err(if q << r >= n - next {
                        out_of_range(next + (q << r))
                    } else {
                        RiceError::Truncated
                    });
                }
                q += 1;
                pos += 1;
            }
            pos += 1;
            let mut rem = 0u64;
            for b in 0..u64::from(r) {
                rem |= u64::from(bit_at(remainders, entry * u64::from(r) + b)) << b;
            }
            entry += 1;
            let g = (q << r) | rem;
            if g >= n - next {
                return Err(out_of_range(next + g));
            }
            costs.quotients += q;
            costs.half_quotients += q >> 1;
            costs.low_bits += (rem << 1) >> r;
            out.push((next + g) as u16);
            next += g + 1;
        }
    }
    finish(quotients, remainders, pos, out.len(), param, costs)
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
                quotient_bits: plan_bits(&idx, &g, r),
                entries: idx.len(),
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

    fn for_each_gap(indices: &[u16], k: usize, mut f: impl FnMut(usize)) {
        for chunk in indices.chunks(k.max(1)) {
            let mut next = 0usize;
            for &i in chunk {
                f(usize::from(i) - next);
                next = usize::from(i) + 1;
            }
        }
    }

    #[test]
    fn planner_walk_matches_the_exhaustive_search() {
        // Random subsets from evenly spread to clustered, in 64 x 64 chunks (k = 64) and
        // 8 x 8 chunks (k = 17): the convex walk picks the histogram search's parameter.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let small = SparseLocoConfig {
            topk: 17,
            chunk: 8,
            ..Default::default()
        };
        for case in 0..300 {
            let g = if case % 2 == 0 {
                geom(&[128, 64])
            } else {
                ChunkGeometry::new(&ParamSpec::new("p", [16, 8]), &small).unwrap()
            };
            let n = g.chunk_elems();
            let window = [n, n / 2, n / 8, g.k() + 3][case % 4].max(g.k());
            let mut idx = Vec::new();
            for _ in 0..g.n_chunks() {
                let base = (rand() as usize) % (n - window + 1);
                let mut taken = vec![false; window];
                let mut chosen = Vec::new();
                while chosen.len() < g.k() {
                    let i = (rand() as usize) % window;
                    if !taken[i] {
                        taken[i] = true;
                        chosen.push((base + i) as u16);
                    }
                }
                chosen.sort_unstable();
                idx.extend(chosen);
            }
            let mut hist = GapHistogram::new(n);
            for_each_gap(&idx, g.k(), |gap| hist.counts[gap] += 1);
            hist.gaps = idx.len() as u64;
            let (best, bits) = hist.best();
            let p = plan(&idx, &g);
            assert_eq!((p.param, p.bits()), (best, bits), "case {case}");
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
    fn word_decoder_agrees_with_the_bit_by_bit_definition() {
        // Valid streams with one flipped, dropped or added byte, and random bytes: the
        // fast decoder returns exactly what `read_exact` does (indices or error).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let g = geom(&[128, 64]);
        for case in 0..400 {
            let idx = spread(&g, [1, 7, 63, 64][case % 4]);
            let p = plan(&idx, &g);
            let (mut q, mut rem) = streams(&idx, &g, p);
            match case % 5 {
                0 => {}
                1 if !q.is_empty() => {
                    let at = rand() as usize % q.len();
                    q[at] ^= 1 << (rand() % 8);
                }
                2 if !rem.is_empty() => {
                    let at = rand() as usize % rem.len();
                    rem[at] ^= 1 << (rand() % 8);
                }
                3 => {
                    q.truncate(rand() as usize % (q.len() + 1));
                }
                _ => {
                    q = (0..rand() % 80).map(|_| rand() as u8).collect();
                }
            }
            let param = if case % 7 == 6 {
                (p.param + 1) % 13
            } else {
                p.param
            };
            rem.resize(remainder_bytes(idx.len(), param), 0);
            let mut exact = Vec::new();
            let expected = read_exact(&q, &rem, &g, param, &mut exact).map(|()| exact);
            assert_eq!(read_both(&q, &rem, &g, param), expected, "case {case}");
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
