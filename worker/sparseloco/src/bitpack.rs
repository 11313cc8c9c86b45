//! Bit packing: 12-bit indices (two in three bytes) and 2-bit codes (four per byte).
//!
//! Indices: pair `(a, b)` becomes `[a & 0xff, (a >> 8) | (b & 0xf) << 4, b >> 4]`; an odd
//! last index takes two bytes whose upper nibble is zero. Codes: code `i` sits in bits
//! `2 * (i % 4)` of byte `i / 4`; unused high bits of the last byte are zero.

/// Bytes needed for `n` packed 12-bit indices.
pub const fn packed_indices_len(n: usize) -> usize {
    (n * 3).div_ceil(2)
}

/// Bytes needed for `n` packed 2-bit codes.
pub const fn packed_codes_len(n: usize) -> usize {
    n.div_ceil(4)
}

/// Appends `indices` (each below 4096) packed 12 bits each to `out`.
pub fn pack_indices12(indices: &[u16], out: &mut Vec<u8>) {
    out.reserve(packed_indices_len(indices.len()));
    let mut pairs = indices.chunks_exact(2);
    for pair in &mut pairs {
        let (a, b) = (pair[0] & 0x0fff, pair[1] & 0x0fff);
        out.extend_from_slice(&[
            a as u8,
            ((a >> 8) | ((b & 0x0f) << 4)) as u8,
            (b >> 4) as u8,
        ]);
    }
    if let [a] = pairs.remainder() {
        let a = a & 0x0fff;
        out.extend_from_slice(&[a as u8, (a >> 8) as u8]);
    }
}

/// Why packed bytes could not be unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpackError {
    /// The byte slice has the wrong length for the count.
    Length,
    /// Unused padding bits are not zero.
    Padding,
}

/// Unpacks exactly `n` 12-bit indices from `bytes` into `out` (cleared first).
pub fn unpack_indices12(bytes: &[u8], n: usize, out: &mut Vec<u16>) -> Result<(), UnpackError> {
    if bytes.len() != packed_indices_len(n) {
        return Err(UnpackError::Length);
    }
    out.clear();
    out.reserve(n);
    let mut triples = bytes.chunks_exact(3);
    for t in triples.by_ref().take(n / 2) {
        let (b0, b1, b2) = (u16::from(t[0]), u16::from(t[1]), u16::from(t[2]));
        out.push(b0 | ((b1 & 0x0f) << 8));
        out.push((b1 >> 4) | (b2 << 4));
    }
    if n % 2 == 1 {
        match bytes.get(bytes.len() - 2..) {
            Some(&[b0, b1]) if b1 & 0xf0 == 0 => out.push(u16::from(b0) | (u16::from(b1) << 8)),
            Some(_) => return Err(UnpackError::Padding),
            None => return Err(UnpackError::Length),
        }
    }
    Ok(())
}

/// Packs 2-bit codes (values 0..=3) four per byte.
pub fn pack_codes2(codes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed_codes_len(codes.len()));
    let mut quads = codes.chunks_exact(4);
    for q in &mut quads {
        out.push((q[0] & 3) | (q[1] & 3) << 2 | (q[2] & 3) << 4 | (q[3] & 3) << 6);
    }
    let rest = quads.remainder();
    if !rest.is_empty() {
        out.push(
            rest.iter()
                .enumerate()
                .fold(0u8, |acc, (i, c)| acc | (c & 3) << (2 * i)),
        );
    }
    out
}

/// Code `i` of packed codes; 0 when `i` is past the end.
#[inline]
pub fn code_at(packed: &[u8], i: usize) -> u8 {
    packed.get(i / 4).map_or(0, |b| (b >> (2 * (i % 4))) & 3)
}

/// How many of the first `n` packed codes take each value (codes past the end of
/// `packed` count as 0). Counts 32 codes per step with popcounts.
pub fn code_histogram(packed: &[u8], n: usize) -> [u64; 4] {
    const LOW: u64 = 0x5555_5555_5555_5555;
    let full = (n / 4).min(packed.len());
    let body = packed.get(..full).unwrap_or(&[]);
    let (mut ones, mut twos, mut threes) = (0u64, 0u64, 0u64);
    let mut words = body.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let (lo, hi) = (w & LOW, (w >> 1) & LOW);
        ones += u64::from((lo & !hi).count_ones());
        twos += u64::from((hi & !lo).count_ones());
        threes += u64::from((lo & hi).count_ones());
    }
    let mut hist = [0u64; 4];
    for &b in words.remainder() {
        for shift in [0, 2, 4, 6] {
            hist[usize::from((b >> shift) & 3)] += 1;
        }
    }
    for i in full * 4..n {
        hist[usize::from(code_at(packed, i))] += 1;
    }
    hist[1] += ones;
    hist[2] += twos;
    hist[3] += threes;
    hist[0] = n as u64 - hist[1] - hist[2] - hist[3];
    hist
}

/// Checks `packed` holds exactly `n` codes with zero padding bits.
pub fn check_codes2(packed: &[u8], n: usize) -> Result<(), UnpackError> {
    if packed.len() != packed_codes_len(n) {
        return Err(UnpackError::Length);
    }
    let used = n % 4;
    match packed.last() {
        Some(last) if used != 0 && last >> (2 * used) != 0 => Err(UnpackError::Padding),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_round_trip_even_and_odd_counts() {
        for n in 0..9usize {
            let idx: Vec<u16> = (0..n as u16).map(|i| (i * 1237 + 4095) % 4096).collect();
            let mut packed = Vec::new();
            pack_indices12(&idx, &mut packed);
            assert_eq!(packed.len(), packed_indices_len(n));
            let mut back = Vec::new();
            unpack_indices12(&packed, n, &mut back).unwrap();
            assert_eq!(back, idx);
        }
    }

    #[test]
    fn known_index_layout_matches_templar_packing() {
        let mut packed = Vec::new();
        pack_indices12(&[0xabc, 0x123], &mut packed);
        assert_eq!(packed, [0xbc, 0x3a, 0x12]);
    }

    #[test]
    fn index_unpack_rejects_wrong_length_and_padding() {
        let mut out = Vec::new();
        assert_eq!(
            unpack_indices12(&[0, 0, 0], 1, &mut out),
            Err(UnpackError::Length)
        );
        assert_eq!(
            unpack_indices12(&[0, 0x10], 1, &mut out),
            Err(UnpackError::Padding)
        );
    }

    #[test]
    fn codes_round_trip_and_padding_checked() {
        for n in 0..11usize {
            let codes: Vec<u8> = (0..n).map(|i| (i * 7 % 4) as u8).collect();
            let packed = pack_codes2(&codes);
            assert_eq!(packed.len(), packed_codes_len(n));
            check_codes2(&packed, n).unwrap();
            let back: Vec<u8> = (0..n).map(|i| code_at(&packed, i)).collect();
            assert_eq!(back, codes);
        }
        assert_eq!(check_codes2(&[0b0100_0000], 3), Err(UnpackError::Padding));
    }

    #[test]
    fn histogram_counts_every_code_once() {
        for n in [0usize, 1, 3, 4, 31, 32, 33, 100, 257] {
            let codes: Vec<u8> = (0..n)
                .map(|i| ((i * 2_654_435_761) >> 5 & 3) as u8)
                .collect();
            let mut expected = [0u64; 4];
            for &c in &codes {
                expected[usize::from(c)] += 1;
            }
            assert_eq!(code_histogram(&pack_codes2(&codes), n), expected, "n {n}");
        }
        assert_eq!(check_codes2(&[0, 0], 3), Err(UnpackError::Length));
    }
}
