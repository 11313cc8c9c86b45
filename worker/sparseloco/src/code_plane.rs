//! Plane coding of the 2-bit codes of one tensor (wire format v2, code coder 1).
//!
//! The quantizer puts almost every kept entry in one of its two outer bins, codes 1 and 3
//! (low bit set): measured on the benchmark set, 99.6 % of the entries. So the codes are
//! sent as their high bits, one plane bit per entry (bit `i % 8` of byte `i / 8`), plus the
//! positions of the *exceptions*, the entries whose low bit is clear (codes 0 and 2), as
//! LEB128 gaps (`p_0`, then `p_j - p_{j-1} - 1`). That costs `1 + 8..16 x share` bits per
//! code against `1 + H(share)` for an entropy coder, about 1 % more on real gradients, and
//! codes and decodes 32 entries per word with shifts and masks instead of a rANS step per
//! code.
//!
//! Which coder a tensor uses is fixed by its histogram ([`chosen`]): the plane when at most
//! one code in [`EXCEPTION_DIVISOR`] is an exception, rANS otherwise. Layout:
//!
//! ```text
//! exceptions u32 | exception bytes u32 | plane (ceil(entries / 8) bytes) | LEB128 gaps
//! ```
//!
//! Canonical: zero plane padding, minimal LEB128 (at most 5 bytes, no zero final byte in a
//! longer encoding), every position below the entry count, exactly `exceptions` gaps and
//! no byte after them, and a histogram for which [`chosen`] holds.

/// The plane coder is chosen when `exceptions * EXCEPTION_DIVISOR <= entries`.
pub(crate) const EXCEPTION_DIVISOR: u64 = 16;
/// Fixed bytes ahead of the plane: exception count and exception bytes.
pub(crate) const FIXED_LEN: usize = 4 + 4;
/// Most bytes of one LEB128 gap (values below `2^32`).
const MAX_VARINT_LEN: usize = 5;
/// Bit 0 of every 2-bit code of a 64-bit word of packed codes.
const LOW: u64 = 0x5555_5555_5555_5555;

/// Why a plane-coded stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaneError {
    /// The gaps end inside a LEB128 value, or hold fewer than the stated exceptions.
    Truncated,
    /// Bytes remain after the last gap.
    Trailing,
    /// A plane padding bit is set.
    Padding,
    /// A gap is not minimally encoded.
    Varint,
    /// An exception lies at or past the last entry.
    OutOfRange,
    /// The histogram calls for the rANS coder.
    NotChosen,
}

/// Exceptions (codes 0 and 2) of a code histogram.
pub(crate) fn exceptions(hist: &[u64; 4]) -> u64 {
    hist[0] + hist[2]
}

/// Whether a tensor with this code histogram is plane coded (else rANS).
pub(crate) fn chosen(hist: &[u64; 4]) -> bool {
    let entries: u64 = hist.iter().sum();
    exceptions(hist).saturating_mul(EXCEPTION_DIVISOR) <= entries
}

/// Most exceptions a plane-coded tensor of `entries` codes holds.
pub(crate) fn max_exceptions(entries: usize) -> usize {
    entries / EXCEPTION_DIVISOR as usize
}

/// Bytes of the plane of `entries` codes.
pub(crate) fn plane_len(entries: usize) -> usize {
    entries.div_ceil(8)
}

/// Most bytes `exceptions` gaps of a tensor of `entries` codes take.
pub(crate) fn max_gap_bytes(entries: usize, exceptions: usize) -> usize {
    exceptions.saturating_mul(varint_len(entries.saturating_sub(1) as u64))
}

/// Most bytes a plane-coded stream of `entries` codes takes (fixed fields included).
pub(crate) fn max_len(entries: usize) -> usize {
    FIXED_LEN + plane_len(entries) + max_gap_bytes(entries, max_exceptions(entries))
}

fn varint_len(mut v: u64) -> usize {
    let mut len = 1;
    while v >= 0x80 {
        v >>= 7;
        len += 1;
    }
    len
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Little-endian word of up to 8 bytes (missing high bytes zero).
#[inline(always)]
fn load_word(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<8>() {
        Some(full) => u64::from_le_bytes(*full),
        None => {
            let mut w = [0u8; 8];
            let len = bytes.len().min(8);
            w[..len].copy_from_slice(&bytes[..len]);
            u64::from_le_bytes(w)
        }
    }
}

/// Bits 0, 2, .., 62 of `x`, packed into 32 bits.
#[inline(always)]
fn gather_even(x: u64) -> u32 {
    let mut x = x & LOW;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    x = (x | (x >> 16)) & 0x0000_0000_ffff_ffff;
    x as u32
}

/// The 32 bits of `x` at bits 0, 2, .., 62 (inverse of [`gather_even`]).
#[inline(always)]
fn spread_even(x: u32) -> u64 {
    let mut x = u64::from(x);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & LOW
}

/// Appends the plane stream of the `n` packed codes (four per byte, zero padding), which
/// hold `exceptions` codes 0 or 2.
pub(crate) fn write(packed: &[u8], n: usize, exceptions: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&(exceptions as u32).to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let plane_at = out.len();
    let plane = plane_len(n);
    out.resize(plane_at + plane, 0);
    let mut gaps = Vec::with_capacity(exceptions as usize * 2);
    let mut next = 0u64;
    let used = packed.get(..n.div_ceil(4)).unwrap_or(packed);
    for (w, bytes) in used.chunks(8).enumerate() {
        let word = load_word(bytes);
        let high = gather_even(word >> 1).to_le_bytes();
        let at = 4 * w;
        let len = plane.saturating_sub(at).min(4);
        if let Some(dst) = out.get_mut(plane_at + at..plane_at + at + len) {
            dst.copy_from_slice(&high[..len]);
        }
        let codes = (n - 32 * w).min(32);
        let valid = if codes == 32 {
            u64::MAX
        } else {
            (1u64 << (2 * codes)) - 1
        };
        let mut clear = !word & LOW & valid;
        while clear != 0 {
            let position = 32 * w as u64 + u64::from(clear.trailing_zeros() / 2);
            put_varint(position - next, &mut gaps);
            next = position + 1;
            clear &= clear - 1;
        }
    }
    out.extend_from_slice(&gaps);
    out[len_at..len_at + 4].copy_from_slice(&(gaps.len() as u32).to_le_bytes());
}

/// Decodes `n` codes from their `plane` (exactly [`plane_len`] bytes) and `gaps` into `out`
/// (packed four per byte, replaced), and checks the stream is canonical.
pub(crate) fn read(
    plane: &[u8],
    gaps: &[u8],
    n: usize,
    exceptions: u32,
    out: &mut Vec<u8>,
) -> Result<(), PlaneError> {
    out.clear();
    if plane.len() != plane_len(n) {
        return Err(PlaneError::Truncated);
    }
    if !n.is_multiple_of(8) && plane.last().is_some_and(|&b| b >> (n % 8) != 0) {
        return Err(PlaneError::Padding);
    }
    let packed_len = n.div_ceil(4);
    out.resize(packed_len, 0);
    // Four plane bytes are 32 codes, eight packed bytes: code = high << 1 | 1.
    for (w, dst) in out.chunks_mut(8).enumerate() {
        let high = plane
            .get(4 * w..)
            .map_or(0, |b| load_word(b.get(..4).unwrap_or(b)) as u32);
        let codes = (spread_even(high) << 1) | LOW;
        dst.copy_from_slice(&codes.to_le_bytes()[..dst.len()]);
    }
    if !n.is_multiple_of(4)
        && let Some(last) = out.last_mut()
    {
        *last &= (1u8 << (2 * (n % 4))) - 1;
    }
    // Exceptions clear their code's low bit.
    let mut pos = 0usize;
    let mut next = 0u64;
    for _ in 0..exceptions {
        let mut value = 0u64;
        let mut len = 0usize;
        loop {
            let Some(&byte) = gaps.get(pos + len) else {
                return Err(PlaneError::Truncated);
            };
            value |= u64::from(byte & 0x7f) << (7 * len);
            len += 1;
            if byte & 0x80 == 0 {
                if len > 1 && byte == 0 {
                    return Err(PlaneError::Varint);
                }
                break;
            }
            if len == MAX_VARINT_LEN {
                return Err(PlaneError::Varint);
            }
        }
        pos += len;
        let position = next + value;
        if position >= n as u64 {
            return Err(PlaneError::OutOfRange);
        }
        let at = position as usize;
        if let Some(byte) = out.get_mut(at / 4) {
            *byte &= !(1u8 << (2 * (at % 4)));
        }
        next = position + 1;
    }
    if pos != gaps.len() {
        return Err(PlaneError::Trailing);
    }
    if u64::from(exceptions) * EXCEPTION_DIVISOR > n as u64 {
        return Err(PlaneError::NotChosen);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitpack::{code_histogram, pack_codes2};

    fn codes(n: usize, every: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60;
                if every > 0 && i % every == every - 1 {
                    (h & 2) as u8
                } else {
                    1 | (h & 2) as u8
                }
            })
            .collect()
    }

    fn round_trip(codes: &[u8]) -> Vec<u8> {
        let packed = pack_codes2(codes);
        let hist = code_histogram(&packed, codes.len());
        let mut bytes = Vec::new();
        write(&packed, codes.len(), exceptions(&hist), &mut bytes);
        assert!(bytes.len() <= max_len(codes.len()) || !chosen(&hist));
        let count = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        let gap_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let plane = &bytes[FIXED_LEN..FIXED_LEN + plane_len(codes.len())];
        let gaps = &bytes[FIXED_LEN + plane.len()..];
        assert_eq!(gaps.len(), gap_len);
        let mut back = Vec::new();
        let result = read(plane, gaps, codes.len(), count, &mut back);
        if chosen(&hist) {
            result.unwrap();
            assert_eq!(back, packed, "{} codes", codes.len());
        } else {
            assert_eq!(result, Err(PlaneError::NotChosen));
        }
        bytes
    }

    #[test]
    fn round_trip_at_every_length_and_exception_rate() {
        for n in (0..70).chain([127, 128, 129, 4095, 4096, 10_001]) {
            for every in [0, 16, 17, 300, 2] {
                round_trip(&codes(n, every));
            }
        }
    }

    #[test]
    fn bit_helpers_are_inverse() {
        for x in [0u32, 1, 0x8000_0001, 0xdead_beef, u32::MAX] {
            assert_eq!(gather_even(spread_even(x)), x);
            assert_eq!(gather_even(spread_even(x) << 1 >> 1), x);
        }
    }

    #[test]
    fn outer_codes_cost_about_one_bit() {
        let n = 100_000;
        let bytes = round_trip(&codes(n, 256));
        // n/8 for the plane, ~2 bytes per exception.
        assert!(bytes.len() < n / 8 + 2 * n / 256 + 16, "{}", bytes.len());
    }

    #[test]
    fn malformed_streams_are_rejected() {
        let c = codes(100, 20);
        let bytes = round_trip(&c);
        let plane = &bytes[FIXED_LEN..FIXED_LEN + 13];
        let gaps = &bytes[FIXED_LEN + 13..];
        let mut out = Vec::new();
        assert_eq!(read(plane, gaps, 100, 5, &mut out), Ok(()));
        // Padding bit in the plane's last byte (codes 96..99 use its low 4 bits).
        let mut padded = plane.to_vec();
        padded[12] |= 0x10;
        assert_eq!(
            read(&padded, gaps, 100, 5, &mut out),
            Err(PlaneError::Padding)
        );
        assert_eq!(
            read(plane, gaps, 100, 6, &mut out),
            Err(PlaneError::Truncated)
        );
        assert_eq!(
            read(plane, gaps, 100, 4, &mut out),
            Err(PlaneError::Trailing)
        );
        let mut long = gaps.to_vec();
        long.push(0);
        assert_eq!(
            read(plane, &long, 100, 5, &mut out),
            Err(PlaneError::Trailing)
        );
        // A non-minimal varint (0x93 0x00 for 19) and a 6-byte one.
        let mut padded_gap = vec![0x93, 0x00];
        padded_gap.extend_from_slice(&gaps[1..]);
        assert_eq!(gaps[0], 19);
        assert_eq!(
            read(plane, &padded_gap, 100, 5, &mut out),
            Err(PlaneError::Varint)
        );
        assert_eq!(
            read(
                plane,
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                100,
                1,
                &mut out
            ),
            Err(PlaneError::Varint)
        );
        // A position past the last entry.
        assert_eq!(
            read(plane, &[100], 100, 1, &mut out),
            Err(PlaneError::OutOfRange)
        );
        let mut far = gaps.to_vec();
        far[4] = 99;
        assert_eq!(
            read(plane, &far, 100, 5, &mut out),
            Err(PlaneError::OutOfRange)
        );
        // Seven exceptions in 100 codes call for rANS.
        let seven = [0u8, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            read(plane, &seven, 100, 7, &mut out),
            Err(PlaneError::NotChosen)
        );
        assert_eq!(
            read(&plane[..12], gaps, 100, 5, &mut out),
            Err(PlaneError::Truncated)
        );
    }
}
