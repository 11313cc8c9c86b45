//! Static rANS coding of the 2-bit codes of one tensor (wire format v2).
//!
//! Frequencies: the tensor's code histogram normalized to `M = 4096` ([`normalize`]):
//! `f_s = max(1, floor(count_s * M / total))` for every code that occurs, 0 otherwise, and
//! the rounding remainder added to the most frequent code (lowest code on ties).
//! Coder: two interleaved 32-bit states (entry `i` uses state `i % 2`), `L = 2^23`,
//! byte-wise renormalization. The encoder starts both states at `L` and codes the entries
//! last to first, pushing renormalization bytes on one stack; the stream is the two final
//! states (`u32` LE, state 0 first) followed by the stack in the order the decoder reads
//! it. A canonical stream decodes exactly `entries` codes, ends with both states at `L`
//! and no byte left, and its frequencies equal the normalized histogram of what it
//! decodes to.

use crate::bitpack::code_at;
use crate::quant::NUM_BINS;

/// Bits of precision of the frequencies (they sum to `1 << FREQ_BITS`).
pub const FREQ_BITS: u32 = 12;
const M: u32 = 1 << FREQ_BITS;
const L: u32 = 1 << 23;
const STATE_BYTES: usize = 4;

/// Normalized code frequencies.
pub(crate) type Freqs = [u16; NUM_BINS];

/// Why a code stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RansError {
    /// Frequencies do not sum to `M` (or are non-zero for an empty tensor).
    FreqSum,
    /// The stream ended before all codes were decoded.
    Truncated,
    /// The initial state is outside `[L, 256 L)`, the final state is not `L`, or bytes
    /// remain after the last code.
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

/// Interleaved states: entry `i` is coded with state `i % LANES`.
const LANES: usize = 2;

/// Appends the rANS stream of the `n` packed codes with frequencies `freqs` (which must
/// be [`normalize`] of their histogram). Nothing is written for `n == 0`.
pub(crate) fn write(packed: &[u8], n: usize, freqs: &Freqs, out: &mut Vec<u8>) {
    if n == 0 {
        return;
    }
    let cum = cumulative(freqs);
    // x / f as (x * m) >> 44 with m = floor(2^44 / f) + 1: exact for x < 2^31, f <= 2^12
    // (the error term stays below 2^-13 < 1 / f).
    let magic: [u128; NUM_BINS] = freqs.map(|f| (1u128 << 44) / u128::from(f.max(1)) + 1);
    let freq = freqs.map(|f| u32::from(f).max(1));
    let mut renorm = Vec::with_capacity(n / 4 + 16);
    let mut x = [L; LANES];
    for i in (0..n).rev() {
        let s = usize::from(code_at(packed, i));
        let f = freq[s];
        let lane = &mut x[i % LANES];
        let x_max = ((L >> FREQ_BITS) << 8) * f;
        while *lane >= x_max {
            renorm.push(*lane as u8);
            *lane >>= 8;
        }
        let q = ((u128::from(*lane) * magic[s]) >> 44) as u32;
        *lane = (q << FREQ_BITS) + (*lane - q * f) + cum[s];
    }
    out.reserve(STATE_BYTES * LANES + renorm.len());
    for lane in x {
        out.extend_from_slice(&lane.to_le_bytes());
    }
    out.extend(renorm.iter().rev());
}

/// Exact length of the stream [`write`] produces.
pub(crate) fn stream_len(packed: &[u8], n: usize, freqs: &Freqs) -> usize {
    let mut out = Vec::new();
    write(packed, n, freqs, &mut out);
    out.len()
}

/// Most bytes a stream of `n` codes can take: at most `FREQ_BITS` bits per code.
pub(crate) fn max_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        STATE_BYTES * LANES + (n * FREQ_BITS as usize).div_ceil(8) + STATE_BYTES * LANES
    }
}

/// Decoding tables in registers: frequencies and cumulative frequencies of the four
/// codes packed 16 bits each.
#[derive(Clone, Copy)]
struct Tables {
    freq: u64,
    cum: u64,
    c1: u32,
    c2: u32,
    c3: u32,
}

impl Tables {
    fn new(freqs: &Freqs) -> Self {
        let cum = cumulative(freqs);
        let pack = |v: [u32; NUM_BINS]| {
            v.iter()
                .enumerate()
                .fold(0u64, |acc, (s, &x)| acc | u64::from(x) << (16 * s))
        };
        Self {
            freq: pack(freqs.map(u32::from)),
            cum: pack(cum),
            c1: cum[1],
            c2: cum[2],
            c3: cum[3],
        }
    }
}

/// One decoding step of one lane: the code, and the state renormalized from `bytes`
/// (reading at most two bytes; past the end reads zeros and moves `pos` beyond `len`,
/// which the caller rejects).
#[inline(always)]
fn step(x: &mut u32, t: Tables, bytes: &[u8], pos: &mut usize) -> u8 {
    let slot = *x & (M - 1);
    let s = u32::from(slot >= t.c1) + u32::from(slot >= t.c2) + u32::from(slot >= t.c3);
    let f = ((t.freq >> (16 * s)) & 0xffff) as u32;
    let c = ((t.cum >> (16 * s)) & 0xffff) as u32;
    // No overflow: f * (x >> 12) + slot < 2^12 * 2^19, and slot >= c.
    let mut y = f
        .wrapping_mul(*x >> FREQ_BITS)
        .wrapping_add(slot)
        .wrapping_sub(c);
    for _ in 0..2 {
        let need = u32::from(y < L);
        let b = u32::from(bytes.get(*pos).copied().unwrap_or(0));
        y = (y << (8 * need)) | (b & need.wrapping_neg() & 0xff);
        *pos += need as usize;
    }
    *x = y;
    s as u8
}

/// Decodes `n` codes from `bytes` into `out` (packed four per byte, cleared first) and
/// checks the stream is canonical.
#[cfg(test)]
pub(crate) fn read(
    bytes: &[u8],
    n: usize,
    freqs: &Freqs,
    out: &mut Vec<u8>,
) -> Result<(), RansError> {
    out.clear();
    let mut reader = RansReader::new(bytes, n, freqs)?;
    out.reserve(n.div_ceil(4));
    for i in 0..n {
        reader.next(i, out);
    }
    reader.finish(n, freqs, out)
}

/// Incremental decoder, so the codes can be decoded in the same loop as the indices
/// (two independent dependency chains the CPU overlaps).
pub(crate) struct RansReader<'a> {
    x: [u32; LANES],
    pos: usize,
    stream: &'a [u8],
    tables: Tables,
    byte: u8,
}

impl<'a> RansReader<'a> {
    /// Checks the frequency sum and the initial states of a stream of `n` codes.
    pub(crate) fn new(bytes: &'a [u8], n: usize, freqs: &Freqs) -> Result<Self, RansError> {
        let sum: u32 = freqs.iter().map(|&f| u32::from(f)).sum();
        let tables = Tables::new(freqs);
        if n == 0 {
            return if sum != 0 {
                Err(RansError::FreqSum)
            } else if !bytes.is_empty() {
                Err(RansError::State)
            } else {
                Ok(Self {
                    x: [L; LANES],
                    pos: 0,
                    stream: bytes,
                    tables,
                    byte: 0,
                })
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
            if !(L..L << 8).contains(lane) {
                return Err(RansError::State);
            }
        }
        Ok(Self {
            x,
            pos: 0,
            stream,
            tables,
            byte: 0,
        })
    }

    /// Decodes entry `i` (called for `i = 0, 1, ...` in order), packing into `out`.
    #[inline(always)]
    pub(crate) fn next(&mut self, i: usize, out: &mut Vec<u8>) {
        let lane = &mut self.x[i % LANES];
        let s = step(lane, self.tables, self.stream, &mut self.pos);
        self.byte |= s << (2 * (i % 4));
        if i % 4 == 3 {
            out.push(self.byte);
            self.byte = 0;
        }
    }

    /// After `n` calls of [`Self::next`]: flushes the last partial byte and checks the
    /// stream ended canonically.
    pub(crate) fn finish(
        self,
        n: usize,
        freqs: &Freqs,
        out: &mut Vec<u8>,
    ) -> Result<(), RansError> {
        if !n.is_multiple_of(4) {
            out.push(self.byte);
        }
        if self.pos > self.stream.len() {
            return Err(RansError::Truncated);
        }
        if self.x.iter().any(|&x| x != L) || self.pos != self.stream.len() {
            return Err(RansError::State);
        }
        let mut hist = [0u64; NUM_BINS];
        for &b in out.iter() {
            for k in 0..4 {
                hist[usize::from(b >> (2 * k) & 3)] += 1;
            }
        }
        // Padding codes of the last byte were counted as code 0.
        hist[0] -= ((4 - n % 4) % 4) as u64;
        if normalize(&hist) != *freqs {
            return Err(RansError::Freqs);
        }
        Ok(())
    }
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
            read(&bytes, n, &f, &mut back).unwrap();
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
