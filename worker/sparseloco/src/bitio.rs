//! LSB-first bit streams: a writer over a `Vec<u8>` and a bounds-checked reader.
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

/// Reads bits least significant first; never reads past the slice.
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            acc: 0,
            avail: 0,
        }
    }

    /// Tops the buffer up to at least 57 bits, or to the end of the input.
    #[inline]
    pub(crate) fn refill(&mut self) {
        if let Some(word) = self.bytes.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.acc |= u64::from_le_bytes(w) << self.avail;
            let taken = (63 - self.avail) / 8;
            self.pos += taken as usize;
            self.avail += taken * 8;
        } else {
            while self.avail <= 56 {
                let Some(&b) = self.bytes.get(self.pos) else {
                    break;
                };
                self.acc |= u64::from(b) << self.avail;
                self.pos += 1;
                self.avail += 8;
            }
        }
        // Bits above `avail` may hold stray data from the wide load: clear them.
        if self.avail < 64 {
            self.acc &= (1u64 << self.avail) - 1;
        }
    }

    /// Buffered bits (valid bits are the low `available()` ones).
    #[inline]
    pub(crate) fn buffer(&self) -> u64 {
        self.acc
    }

    /// Number of buffered bits.
    #[inline]
    pub(crate) fn available(&self) -> u32 {
        self.avail
    }

    /// Drops `n <= available()` buffered bits.
    #[inline]
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.avail);
        self.acc = if n >= 64 { 0 } else { self.acc >> n };
        self.avail -= n;
    }

    /// True when every byte was read and the unread buffered bits (at most 7, the
    /// padding of the last byte) are zero.
    pub(crate) fn at_clean_end(&self) -> bool {
        self.pos == self.bytes.len() && self.avail < 8 && self.acc == 0
    }

    /// True when every byte was buffered and fewer than 8 bits remain (padding).
    pub(crate) fn exhausted(&self) -> bool {
        self.pos == self.bytes.len() && self.avail < 8
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
        let mut r = BitReader::new(&out);
        for &(v, b) in &items {
            r.refill();
            assert_eq!(r.buffer() & ((1u64 << b) - 1), v);
            r.consume(b);
        }
        for _ in 0..2 {
            r.refill();
            r.consume(35);
        }
        r.refill();
        assert_eq!(r.buffer() & 1, 1);
        r.consume(1);
        assert!(r.at_clean_end());
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
