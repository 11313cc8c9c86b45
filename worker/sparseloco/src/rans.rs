//! Static rANS coding of the 2-bit codes of one tensor (wire format v2).
//!
//! Frequencies: the tensor's code histogram normalized to `M = 4096` ([`normalize`]):
//! `f_s = max(1, floor(count_s * M / total))` for every code that occurs, 0 otherwise, and
//! the rounding remainder added to the most frequent code (lowest code on ties).
//! Coder: four interleaved 32-bit states (entry `i` uses state `i % 4`, so one decoding
//! step of the four states yields one packed byte of codes), `L = 2^16`, renormalization
//! by 16-bit words (at most one per code). The encoder starts every state at `L` and codes
//! the entries last to first, pushing renormalization words on one stack; the stream is
//! the four final states (`u32` LE, state 0 first) followed by the stack in the order the
//! decoder reads it (`u16` LE words). A canonical stream decodes exactly `entries` codes,
//! ends with every state at `L` and no byte left, and its frequencies equal the
//! normalized histogram of what it decodes to.
//!
//! The decoder is table driven: one 4096-entry table maps a slot (`x mod M`) to its code,
//! that code's frequency and the slot's offset inside the code's range.

use crate::bitpack::code_histogram;
use crate::quant::NUM_BINS;

/// Bits of precision of the frequencies (they sum to `1 << FREQ_BITS`).
pub const FREQ_BITS: u32 = 12;
const M: u32 = 1 << FREQ_BITS;
const L: u32 = 1 << 16;
/// Renormalization unit.
const WORD_BITS: u32 = 16;
const WORD_BYTES: usize = 2;
const STATE_BYTES: usize = 4;
/// Interleaved states: entry `i` is coded with state `i % LANES` (four codes per byte).
const LANES: usize = 4;

/// Normalized code frequencies.
pub(crate) type Freqs = [u16; NUM_BINS];

/// Why a code stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RansError {
    /// Frequencies do not sum to `M` (or are non-zero for an empty tensor).
    FreqSum,
    /// The stream ended before all codes were decoded.
    Truncated,
    /// An initial state is below `L`, a final state is not `L`, or bytes remain after the
    /// last code.
    State,
    /// The frequencies are not the normalized histogram of the decoded codes.
    Freqs,
}

/// Canonical frequencies of a code histogram.
pub(crate) fn normalize(hist: &[u64; NUM_BINS]) -> Freqs {
    let total: u64 = hist.iter().sum();
    let mut f = [0u16; NUM_BINS];
    if total == 0 {
        return f;
    }
    for (out, &c) in f.iter_mut().zip(hist) {
        if c > 0 {
            *out = ((u128::from(c) * u128::from(M) / u128::from(total)) as u16).max(1);
        }
    }
    let largest = (0..NUM_BINS).fold(0, |best, s| if hist[s] > hist[best] { s } else { best });
    let sum: i32 = f.iter().map(|&v| i32::from(v)).sum();
    // Floors lose at most 3, the max(1) bumps add at most 3; the largest code has at
    // least M / 4, so it stays positive.
    f[largest] = (i32::from(f[largest]) + M as i32 - sum) as u16;
    f
}

fn cumulative(f: &Freqs) -> [u32; NUM_BINS] {
    let mut c = [0u32; NUM_BINS];
    for s in 1..NUM_BINS {
        c[s] = c[s - 1] + u32::from(f[s - 1]);
    }
    c
}

/// Encoder constants of one code.
#[derive(Clone, Copy)]
struct EncSymbol {
    freq: u32,
    cum: u32,
    /// States at or above this are renormalized before coding: `(L / M) * 2^16 * f`.
    x_max: u64,
    /// `x / f` as `(x * rcp) >> 44` with `rcp = floor(2^44 / f) + 1`: exact for
    /// `x < 2^32`, `f <= 2^12` (the error term stays below `2^-12 <= 1 / f`).
    rcp: u64,
}

impl EncSymbol {
    fn new(freq: u16, cum: u32) -> Self {
        let f = u32::from(freq).max(1);
        Self {
            freq: f,
            cum,
            x_max: u64::from((L >> FREQ_BITS) << WORD_BITS) * u64::from(f),
            rcp: (1u64 << 44) / u64::from(f) + 1,
        }
    }

    /// Codes one symbol into state `x`, first storing its low word below `top` in `buf`
    /// when it must be renormalized (rare for skewed codes, so a branch).
    #[inline(always)]
    fn put(&self, x: &mut u32, buf: &mut [u8], top: &mut usize) {
        let mut v = *x;
        if u64::from(v) >= self.x_max {
            *top = top.wrapping_sub(WORD_BYTES);
            if let Some(word) = buf.get_mut(*top..).and_then(<[u8]>::first_chunk_mut::<2>) {
                *word = (v as u16).to_le_bytes();
            }
            v >>= WORD_BITS;
        }
        // v < 2^20 f after renormalization, so q < 2^20 and the new state < 2^32.
        let q = ((u128::from(v) * u128::from(self.rcp)) >> 44) as u32;
        *x = (q << FREQ_BITS)
            .wrapping_add(v.wrapping_sub(q.wrapping_mul(self.freq)))
            .wrapping_add(self.cum);
    }
}

/// Appends the rANS stream of the `n` packed codes with frequencies `freqs` (which must
/// be [`normalize`] of their histogram). Nothing is written for `n == 0`.
pub(crate) fn write(packed: &[u8], n: usize, freqs: &Freqs, out: &mut Vec<u8>) {
    if n == 0 {
        return;
    }
    let cum = cumulative(freqs);
    let syms: [EncSymbol; NUM_BINS] = std::array::from_fn(|s| EncSymbol::new(freqs[s], cum[s]));
    // Words are written from the end of `buf` down, so they end up in decoder order; at
    // most one per code.
    let mut buf = vec![0u8; WORD_BYTES * n];
    let mut top = buf.len();
    let mut x = [L; LANES];
    let full = n / LANES;
    let tail = n % LANES;
    if tail > 0 {
        let b = packed.get(full).copied().unwrap_or(0);
        for j in (0..tail).rev() {
            syms[usize::from((b >> (2 * j)) & 3)].put(&mut x[j], &mut buf, &mut top);
        }
    }
    // The states in locals (registers), not an indexed array.
    let [mut x0, mut x1, mut x2, mut x3] = x;
    for &b in packed.get(..full).unwrap_or(&[]).iter().rev() {
        syms[usize::from(b >> 6)].put(&mut x3, &mut buf, &mut top);
        syms[usize::from((b >> 4) & 3)].put(&mut x2, &mut buf, &mut top);
        syms[usize::from((b >> 2) & 3)].put(&mut x1, &mut buf, &mut top);
        syms[usize::from(b & 3)].put(&mut x0, &mut buf, &mut top);
    }
    let x = [x0, x1, x2, x3];
    let words = buf.get(top..).unwrap_or(&[]);
    out.reserve(STATE_BYTES * LANES + words.len());
    for lane in x {
        out.extend_from_slice(&lane.to_le_bytes());
    }
    out.extend_from_slice(words);
}

/// Exact length of the stream [`write`] produces (runs the coder).
#[cfg(test)]
pub(crate) fn stream_len(packed: &[u8], n: usize, freqs: &Freqs) -> usize {
    let mut out = Vec::new();
    write(packed, n, freqs, &mut out);
    out.len()
}

/// Most bytes a stream of `n` codes can take: the states, and at most one word per code
/// (the decoder never reads more).
pub(crate) fn max_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        STATE_BYTES * LANES + WORD_BYTES * n
    }
}

/// Slot -> (code, frequency, offset of the slot in the code's range), packed as
/// `code | freq << 2 | offset << 16`.
struct DecodeTable([u32; M as usize]);

impl DecodeTable {
    fn new(freqs: &Freqs) -> Self {
        let mut table = [0u32; M as usize];
        let mut start = 0usize;
        for (s, &f) in freqs.iter().enumerate() {
            let f = usize::from(f);
            // The caller checked the frequencies sum to M.
            if let Some(range) = table.get_mut(start..start + f) {
                for (offset, slot) in range.iter_mut().enumerate() {
                    *slot = s as u32 | (f as u32) << 2 | (offset as u32) << 16;
                }
            }
            start += f;
        }
        Self(table)
    }

    /// Decodes one code from state `x`: the code and the state before renormalization
    /// (in `[16 f, 2^20 f)`, no overflow for `x < 2^32`).
    #[inline(always)]
    fn decode(&self, x: u32) -> (u8, u32) {
        let e = self.0[(x & (M - 1)) as usize];
        let f = (e >> 2) & 0x1fff;
        let y = f.wrapping_mul(x >> FREQ_BITS).wrapping_add(e >> 16);
        ((e & 3) as u8, y)
    }
}

/// The next 8 stream bytes from `pos` as a little-endian word (zeros past the end).
#[inline(always)]
fn window(stream: &[u8], pos: usize) -> u64 {
    match stream.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
        Some(bytes) => u64::from_le_bytes(*bytes),
        None => window_tail(stream, pos),
    }
}

#[cold]
fn window_tail(stream: &[u8], pos: usize) -> u64 {
    let mut w = [0u8; 8];
    let tail = stream.get(pos..).unwrap_or(&[]);
    let len = tail.len().min(8);
    w[..len].copy_from_slice(&tail[..len]);
    u64::from_le_bytes(w)
}

/// Renormalizes `y` with the word at `pos` when `y < L` (a word past the end reads as 0
/// and still moves `pos`, which the caller rejects).
#[inline(always)]
fn refill(y: u32, stream: &[u8], pos: &mut usize) -> u32 {
    if y >= L {
        return y;
    }
    let word = stream
        .get(*pos..)
        .and_then(<[u8]>::first_chunk::<2>)
        .map_or(0, |w| u16::from_le_bytes(*w));
    *pos = pos.wrapping_add(WORD_BYTES);
    (y << WORD_BITS) | u32::from(word)
}

/// Renormalizes `y` with the word at `offset` words into `window` when `y < L`; returns
/// the new state and whether a word was taken.
#[inline(always)]
fn renorm(y: u32, window: u64, offset: u32) -> u32 {
    let need = u32::from(y < L);
    let word = (window >> (WORD_BITS * offset)) as u32 & 0xffff;
    y.wrapping_shl(WORD_BITS * need) | (word & need.wrapping_neg())
}

/// Decodes `n` codes from `bytes` into `out` (packed four per byte, replaced), checks the
/// stream is canonical, and returns the decoded codes' histogram.
pub(crate) fn read(
    bytes: &[u8],
    n: usize,
    freqs: &Freqs,
    out: &mut Vec<u8>,
) -> Result<[u64; NUM_BINS], RansError> {
    out.clear();
    let sum: u32 = freqs.iter().map(|&f| u32::from(f)).sum();
    if n == 0 {
        return if sum != 0 {
            Err(RansError::FreqSum)
        } else if !bytes.is_empty() {
            Err(RansError::State)
        } else {
            Ok([0; NUM_BINS])
        };
    }
    if sum != M {
        return Err(RansError::FreqSum);
    }
    let Some((states, stream)) = bytes.split_at_checked(STATE_BYTES * LANES) else {
        return Err(RansError::Truncated);
    };
    let mut x = [0u32; LANES];
    for (lane, word) in x.iter_mut().zip(states.chunks_exact(STATE_BYTES)) {
        let mut w = [0u8; STATE_BYTES];
        w.copy_from_slice(word);
        *lane = u32::from_le_bytes(w);
        if *lane < L {
            return Err(RansError::State);
        }
    }
    let table = DecodeTable::new(freqs);
    out.resize(n.div_ceil(LANES), 0);
    let full = n / LANES;
    let (body, last) = out.split_at_mut(full);
    let mut pos = 0usize;
    let [mut x0, mut x1, mut x2, mut x3] = x;
    for byte in body.iter_mut() {
        // One step of the four states: one byte of codes. Renormalization is rare for
        // skewed codes (about every 16th code at one bit per code), so it branches.
        let (s0, y0) = table.decode(x0);
        let (s1, y1) = table.decode(x1);
        let (s2, y2) = table.decode(x2);
        let (s3, y3) = table.decode(x3);
        x0 = refill(y0, stream, &mut pos);
        x1 = refill(y1, stream, &mut pos);
        x2 = refill(y2, stream, &mut pos);
        x3 = refill(y3, stream, &mut pos);
        *byte = s0 | s1 << 2 | s2 << 4 | s3 << 6;
    }
    let mut x = [x0, x1, x2, x3];
    if let Some(byte) = last.first_mut() {
        for (j, lane) in x.iter_mut().enumerate().take(n % LANES) {
            let (s, y) = table.decode(*lane);
            *lane = renorm(y, window(stream, pos), 0);
            pos = pos.wrapping_add(WORD_BYTES * usize::from(y < L));
            *byte |= s << (2 * j);
        }
    }
    if pos > stream.len() {
        return Err(RansError::Truncated);
    }
    if x.iter().any(|&x| x != L) || pos != stream.len() {
        return Err(RansError::State);
    }
    let hist = code_histogram(out, n);
    if normalize(&hist) != *freqs {
        return Err(RansError::Freqs);
    }
    Ok(hist)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitpack::pack_codes2;

    fn hist(codes: &[u8]) -> [u64; 4] {
        let mut h = [0u64; 4];
        for &c in codes {
            h[usize::from(c)] += 1;
        }
        h
    }

    #[test]
    fn normalized_frequencies_sum_to_m_and_keep_every_code() {
        for h in [
            [1, 1_000_000, 0, 999_999],
            [5, 5, 5, 5],
            [0, 0, 7, 0],
            [1, 1, 1, 4093],
            [3, 0, 0, 1],
        ] {
            let f = normalize(&h);
            assert_eq!(f.iter().map(|&v| u32::from(v)).sum::<u32>(), M, "{h:?}");
            for s in 0..4 {
                assert_eq!(f[s] > 0, h[s] > 0, "{h:?} -> {f:?}");
            }
        }
    }

    #[test]
    fn round_trip_for_skewed_and_uniform_codes() {
        for (n, pattern) in [(1usize, 0u64), (7, 1), (1000, 2), (4096, 3), (10_001, 4)] {
            let codes: Vec<u8> = (0..n as u64)
                .map(|i| match pattern {
                    0 | 3 => (i * 7 % 4) as u8,
                    1 => 2,
                    2 => {
                        if i % 97 == 0 {
                            0
                        } else if i % 3 == 0 {
                            1
                        } else {
                            3
                        }
                    }
                    _ => ((i * 2654435761) >> 7 & 3) as u8,
                })
                .collect();
            let packed = pack_codes2(&codes);
            let f = normalize(&hist(&codes));
            let mut bytes = Vec::new();
            write(&packed, n, &f, &mut bytes);
            assert_eq!(bytes.len(), stream_len(&packed, n, &f));
            assert!(bytes.len() <= max_len(n));
            let mut back = Vec::new();
            assert_eq!(read(&bytes, n, &f, &mut back).unwrap(), hist(&codes));
            assert_eq!(back, packed, "n {n} pattern {pattern}");
            for len in 0..bytes.len() {
                assert!(read(&bytes[..len], n, &f, &mut back).is_err());
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(read(&extra, n, &f, &mut back).is_err());
        }
    }

    #[test]
    fn skewed_codes_cost_about_their_entropy() {
        // Two equally likely codes: about one bit each.
        let codes: Vec<u8> = (0..40_000u64)
            .map(|i| {
                if (i * 2654435761) >> 13 & 1 == 0 {
                    1
                } else {
                    3
                }
            })
            .collect();
        let packed = pack_codes2(&codes);
        let f = normalize(&hist(&codes));
        let len = stream_len(&packed, codes.len(), &f);
        assert!(len < 40_000 / 8 + 64, "{len}");
    }

    #[test]
    fn skewed_four_code_mix_costs_about_its_entropy() {
        // The histogram of real gradients: codes 1 and 3 about half each, 0 and 2 rare.
        let codes: Vec<u8> = (0..400_000u64)
            .map(
                |i| match (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 10_000 {
                    0..2 => 0,
                    2..40 => 2,
                    40..5020 => 1,
                    _ => 3,
                },
            )
            .collect();
        let h = hist(&codes);
        let total = codes.len() as f64;
        let entropy: f64 = h
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| -(c as f64 / total) * (c as f64 / total).log2())
            .sum();
        let packed = pack_codes2(&codes);
        let len = stream_len(&packed, codes.len(), &normalize(&h));
        let bound = entropy * total / 8.0 * 1.005 + 64.0;
        assert!((len as f64) < bound, "{len} bytes, entropy bound {bound}");
    }

    #[test]
    fn wrong_frequencies_are_rejected() {
        let codes: Vec<u8> = (0..500u32).map(|i| (i % 3) as u8 + 1).collect();
        let packed = pack_codes2(&codes);
        let f = normalize(&hist(&codes));
        let mut bytes = Vec::new();
        write(&packed, codes.len(), &f, &mut bytes);
        let mut out = Vec::new();
        let mut skewed = f;
        skewed[1] -= 1;
        skewed[2] += 1;
        assert!(read(&bytes, codes.len(), &skewed, &mut out).is_err());
        let mut short = f;
        short[1] -= 1;
        assert_eq!(
            read(&bytes, codes.len(), &short, &mut out),
            Err(RansError::FreqSum)
        );
    }
}
