//! LSB-first bit streams: a writer over a `Vec<u8>` and bounds-checked random access.
//!
//! Bit `i` of the stream is bit `i % 8` of byte `i / 8`. A finished stream is padded with
//! zero bits to a whole byte.

/// Appends bits to a byte vector, least significant bit first.
pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    used: u32,
}

impl<'a> BitWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            used: 0,
        }
    }

    /// Appends the low `bits` bits of `value` (`bits <= 32`, higher bits of `value` zero).
    #[inline]
    pub(crate) fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 32 && (bits == 32 || value >> bits == 0));
        self.acc |= value << self.used;
        self.used += bits;
        if self.used >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.used -= 32;
        }
    }

    /// Appends `n` zero bits.
    pub(crate) fn zeros(&mut self, mut n: usize) {
        while n > 0 {
            let step = n.min(32);
            self.put(0, step as u32);
            n -= step;
        }
    }

    /// Flushes the last partial byte (zero-padded).
    pub(crate) fn finish(self) {
        let bytes = self.used.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

/// Random access to the bits of a byte slice; bits past the end read as zero.
pub(crate) struct BitSlice<'a> {
    bytes: &'a [u8],
}

impl<'a> BitSlice<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Number of bits in the slice.
    pub(crate) fn len_bits(&self) -> usize {
        self.bytes.len() * 8
    }

    /// The bits from `pos` on, in the low end of the word: at least 57 are valid (those
    /// past the end of the slice are zero).
    #[inline(always)]
    pub(crate) fn peek(&self, pos: usize) -> u64 {
        let byte = pos >> 3;
        let mut w = [0u8; 8];
        match self.bytes.get(byte..byte + 8) {
            Some(word) => w.copy_from_slice(word),
            None => {
                let tail = self.bytes.get(byte..).unwrap_or(&[]);
                w[..tail.len()].copy_from_slice(tail);
            }
        }
        u64::from_le_bytes(w) >> (pos & 7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_lsb_first() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        let items: Vec<(u64, u32)> = (0..200u64)
            .map(|i| (i % (1 << (i % 13)), (i % 13) as u32))
            .collect();
        for &(v, b) in &items {
            w.put(v, b);
        }
        w.zeros(70);
        w.put(1, 1);
        w.finish();
        let total: u32 = items.iter().map(|&(_, b)| b).sum::<u32>() + 71;
        assert_eq!(out.len(), total.div_ceil(8) as usize);
        let bits = BitSlice::new(&out);
        let mut pos = 0;
        for &(v, b) in &items {
            assert_eq!(bits.peek(pos) & ((1u64 << b) - 1), v);
            pos += b as usize;
        }
        assert_eq!(bits.peek(pos) & ((1 << 50) - 1), 0);
        assert_eq!(bits.peek(pos + 50) & ((1 << 20) - 1), 0);
        pos += 70;
        assert_eq!(bits.peek(pos), 1);
    }

    #[test]
    fn peek_reads_any_position_and_zeros_past_the_end() {
        let bytes = [0b1010_0001u8, 0xff, 0x01];
        let b = BitSlice::new(&bytes);
        assert_eq!(b.len_bits(), 24);
        assert_eq!(b.peek(0) & 0xff, 0b1010_0001);
        assert_eq!(b.peek(5) & 0b111, 0b101);
        assert_eq!(b.peek(16), 1);
        assert_eq!(b.peek(17), 0);
        assert_eq!(b.peek(1000), 0);
    }

    #[test]
    fn first_bit_is_the_low_bit_of_the_first_byte() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        w.put(1, 1);
        w.put(0b10, 2);
        w.finish();
        assert_eq!(out, [0b101]);
    }
}
