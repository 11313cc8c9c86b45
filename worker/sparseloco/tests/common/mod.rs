//! Test helpers: an independent writer of the documented wire layout, so tests can craft
//! valid and malformed payloads field by field.
#![allow(dead_code)]

use tch::{Device, Kind, Tensor};
use worker_sparseloco::{ChunkGeometry, ParamSpec, SparseLocoConfig};

/// One record, every field explicit.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub block_rows: u16,
    pub block_cols: u16,
    pub k: u16,
    pub entries: u32,
    pub index_len: Option<u32>,
    pub indices: Vec<u16>,
    /// v1: the packed indices; v2: the quotient stream.
    pub index_bytes: Option<Vec<u8>>,
    /// v2 only: remainder stream override (default: the remainders with the parameter
    /// written).
    pub remainder_bytes: Option<Vec<u8>>,
    pub code_len: Option<u32>,
    pub codes: Vec<u8>,
    pub code_bytes: Option<Vec<u8>>,
    pub shift: f32,
    pub centroids: [f32; 4],
    /// v2 only: Rice parameter override (default: the canonical one).
    pub rice_param: Option<u8>,
    /// v2 only: code frequency override (default: the normalized histogram).
    pub freqs: Option<[u16; 4]>,
    /// v2 only: code coder override (default: 1, the plane, when at most one code in 16
    /// is 0 or 2, else 0, rANS). With the plane, `code_len` overrides the exception bytes
    /// and `code_bytes` the exception gaps.
    pub code_coder: Option<u8>,
    /// v2 plane only: exception count override.
    pub exceptions: Option<u32>,
    /// v2 plane only: plane override.
    pub plane_bytes: Option<Vec<u8>>,
}

impl RawTensor {
    /// A valid record for `spec`: chunk `c` sends local indices `pick(c)` (sorted, `k` of
    /// them) with codes `code(entry)`.
    pub fn valid(
        spec: &ParamSpec,
        pick: impl Fn(usize, usize) -> Vec<u16>,
        code: impl Fn(usize) -> u8,
    ) -> Self {
        let g = ChunkGeometry::new(spec, &SparseLocoConfig::default()).unwrap();
        let mut indices = Vec::new();
        for c in 0..g.n_chunks() {
            let chosen = pick(c, g.chunk_elems());
            assert_eq!(chosen.len(), g.k());
            indices.extend(chosen);
        }
        let codes = (0..indices.len()).map(&code).collect();
        Self {
            name: spec.name.clone(),
            dims: spec.shape.iter().map(|&d| d as u64).collect(),
            block_rows: g.block_rows() as u16,
            block_cols: g.block_cols() as u16,
            k: g.k() as u16,
            entries: g.entries() as u32,
            index_len: None,
            indices,
            index_bytes: None,
            remainder_bytes: None,
            code_len: None,
            codes,
            code_bytes: None,
            shift: 0.0,
            centroids: [-1.5, -0.5, 0.5, 1.5],
            rice_param: None,
            freqs: None,
            code_coder: None,
            exceptions: None,
            plane_bytes: None,
        }
    }

    /// Codes 0 and 2 (the plane coder's exceptions).
    pub fn exceptions_of(&self) -> u32 {
        self.codes.iter().filter(|&&c| c & 1 == 0).count() as u32
    }

    /// The code coder the documented rule picks: the plane when at most one code in 16 is
    /// an exception (0 or 2).
    pub fn canonical_code_coder(&self) -> u8 {
        let exceptions = self.codes.iter().filter(|&&c| c & 1 == 0).count();
        u8::from(exceptions * 16 <= self.codes.len())
    }

    /// Chunk size implied by the block fields.
    fn chunk_elems(&self) -> usize {
        usize::from(self.block_rows) * usize::from(self.block_cols)
    }

    fn write(&self, version: u16, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.push(self.dims.len() as u8);
        for d in &self.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        for v in [self.block_rows, self.block_cols, self.k] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.entries.to_le_bytes());
        if version == 2 {
            self.write_v2_entries(out);
        } else {
            self.write_v1_entries(out);
        }
        out.extend_from_slice(&self.shift.to_le_bytes());
        for c in self.centroids {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }

    /// The canonical Rice parameter and quotient stream of the indices (independent
    /// writer).
    pub fn rice_stream(&self) -> (u8, Vec<u8>) {
        let r = self.canonical_rice_param();
        (r, self.rice_stream_with(r))
    }

    /// The canonical Rice parameter: the smallest one with the fewest bits in total.
    pub fn canonical_rice_param(&self) -> u8 {
        let n = self.chunk_elems();
        let k = usize::from(self.k);
        if k == n {
            return 0;
        }
        (0..=12u8)
            .map(|r| {
                let (q, rem) = rice_bits(&self.indices, k, r);
                (r, q.len() + rem.len())
            })
            .min_by_key(|(r, bits)| (*bits, *r))
            .unwrap()
            .0
    }

    /// The quotient stream with parameter `r`, canonical or not (empty for forced chunks).
    pub fn rice_stream_with(&self, r: u8) -> Vec<u8> {
        if usize::from(self.k) == self.chunk_elems() {
            return Vec::new();
        }
        bits_to_bytes(&rice_bits(&self.indices, usize::from(self.k), r).0)
    }

    /// The remainder stream with parameter `r` (empty for forced chunks).
    pub fn rice_remainders_with(&self, r: u8) -> Vec<u8> {
        if usize::from(self.k) == self.chunk_elems() {
            return Vec::new();
        }
        bits_to_bytes(&rice_bits(&self.indices, usize::from(self.k), r).1)
    }

    /// The normalized code frequencies.
    pub fn canonical_freqs(&self) -> [u16; 4] {
        let mut hist = [0u64; 4];
        for &c in &self.codes {
            hist[usize::from(c)] += 1;
        }
        normalize_freqs(&hist)
    }

    fn write_v2_entries(&self, out: &mut Vec<u8>) {
        let param = self
            .rice_param
            .unwrap_or_else(|| self.canonical_rice_param());
        let index_bytes = self
            .index_bytes
            .clone()
            .unwrap_or_else(|| self.rice_stream_with(param));
        out.push(param);
        out.extend_from_slice(
            &self
                .index_len
                .unwrap_or(index_bytes.len() as u32)
                .to_le_bytes(),
        );
        out.extend_from_slice(&index_bytes);
        let remainders = self
            .remainder_bytes
            .clone()
            .unwrap_or_else(|| self.rice_remainders_with(param));
        out.extend_from_slice(&remainders);
        let coder = self
            .code_coder
            .unwrap_or_else(|| self.canonical_code_coder());
        out.push(coder);
        if coder == 1 {
            let (plane, exceptions, gaps) = plane_encode(&self.codes);
            let gaps = self.code_bytes.clone().unwrap_or(gaps);
            out.extend_from_slice(&self.exceptions.unwrap_or(exceptions).to_le_bytes());
            out.extend_from_slice(&self.code_len.unwrap_or(gaps.len() as u32).to_le_bytes());
            out.extend_from_slice(&self.plane_bytes.clone().unwrap_or(plane));
            out.extend_from_slice(&gaps);
            return;
        }
        let freqs = self.freqs.unwrap_or_else(|| self.canonical_freqs());
        for f in freqs {
            out.extend_from_slice(&f.to_le_bytes());
        }
        let code_bytes = self
            .code_bytes
            .clone()
            .unwrap_or_else(|| rans_encode(&self.codes, &freqs));
        out.extend_from_slice(
            &self
                .code_len
                .unwrap_or(code_bytes.len() as u32)
                .to_le_bytes(),
        );
        out.extend_from_slice(&code_bytes);
    }

    fn write_v1_entries(&self, out: &mut Vec<u8>) {
        let index_bytes = self
            .index_bytes
            .clone()
            .unwrap_or_else(|| pack12(&self.indices));
        out.extend_from_slice(
            &self
                .index_len
                .unwrap_or(index_bytes.len() as u32)
                .to_le_bytes(),
        );
        out.extend_from_slice(&index_bytes);
        let code_bytes = self
            .code_bytes
            .clone()
            .unwrap_or_else(|| pack2(&self.codes));
        out.extend_from_slice(
            &self
                .code_len
                .unwrap_or(code_bytes.len() as u32)
                .to_le_bytes(),
        );
        out.extend_from_slice(&code_bytes);
    }
}

/// Rice bits of the gaps of every chunk of `k` indices, as documented, in two streams:
/// quotients (`g >> r` zeros, then a one) and remainders (the low `r` bits of `g`, low
/// bit first).
fn rice_bits(indices: &[u16], k: usize, r: u8) -> (Vec<bool>, Vec<bool>) {
    let (mut quotients, mut remainders) = (Vec::new(), Vec::new());
    for chunk in indices.chunks(k) {
        let mut next = 0i64;
        for &i in chunk {
            let g = i64::from(i) - next;
            assert!(g >= 0, "indices must increase");
            quotients.extend(std::iter::repeat_n(false, (g >> r) as usize));
            quotients.push(true);
            remainders.extend((0..r).map(|b| (g >> b) & 1 == 1));
            next = i64::from(i) + 1;
        }
    }
    (quotients, remainders)
}

/// Bit `i` -> bit `i % 8` of byte `i / 8`, zero padded.
fn bits_to_bytes(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|b| {
            b.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &bit)| acc | (u8::from(bit) << i))
        })
        .collect()
}

/// Frequencies as documented: `max(1, floor(c * 4096 / total))` for present codes, the
/// remainder to the most frequent code (lowest on ties).
pub fn normalize_freqs(hist: &[u64; 4]) -> [u16; 4] {
    let total: u64 = hist.iter().sum();
    let mut f = [0i64; 4];
    for s in 0..4 {
        if hist[s] > 0 {
            f[s] = ((hist[s] * 4096 / total) as i64).max(1);
        }
    }
    let mut top = 0;
    for s in 1..4 {
        if hist[s] > hist[top] {
            top = s;
        }
    }
    f[top] += 4096 - f.iter().sum::<i64>();
    f.map(|v| v as u16)
}

/// rANS with four 32-bit states (entry i uses state i % 4), L = 2^16, 12-bit
/// frequencies, 16-bit words out; entries coded last to first from states L; stream =
/// final states LE (state 0 first), then the words (LE) in decoder order.
pub fn rans_encode(codes: &[u8], freqs: &[u16; 4]) -> Vec<u8> {
    if codes.is_empty() {
        return Vec::new();
    }
    let cum: Vec<u64> = (0..4)
        .map(|s| freqs[..s].iter().map(|&f| u64::from(f)).sum())
        .collect();
    let mut states: [u64; 4] = [1 << 16; 4];
    let mut stack: Vec<u16> = Vec::new();
    for (i, &c) in codes.iter().enumerate().rev() {
        let f = u64::from(freqs[usize::from(c)]);
        assert!(f > 0, "code {c} has frequency 0");
        let x = &mut states[i % 4];
        // Renormalize so that the coded state stays below 2^32.
        while *x >= f << 20 {
            stack.push((*x & 0xffff) as u16);
            *x >>= 16;
        }
        *x = (*x / f) * 4096 + *x % f + cum[usize::from(c)];
    }
    let mut out = Vec::new();
    for x in states {
        out.extend_from_slice(&(x as u32).to_le_bytes());
    }
    for w in stack.iter().rev() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// The plane coding of codes, as documented: plane bit `i` = code `i` >> 1 (bit `i % 8` of
/// byte `i / 8`), the positions of codes 0 and 2 as LEB128 gaps (`p_0`, then
/// `p_j - p_{j-1} - 1`). Returns (plane, exception count, gaps).
pub fn plane_encode(codes: &[u8]) -> (Vec<u8>, u32, Vec<u8>) {
    let high: Vec<bool> = codes.iter().map(|&c| c >> 1 == 1).collect();
    let mut gaps = Vec::new();
    let mut count = 0u32;
    let mut next = 0u64;
    for (i, &c) in codes.iter().enumerate() {
        if c & 1 == 0 {
            let mut v = i as u64 - next;
            loop {
                let low = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    gaps.push(low);
                    break;
                }
                gaps.push(low | 0x80);
            }
            next = i as u64 + 1;
            count += 1;
        }
    }
    (bits_to_bytes(&high), count, gaps)
}

/// Whole payload, every header field explicit.
#[derive(Clone, Debug)]
pub struct RawPayload {
    pub magic: [u8; 4],
    pub version: u16,
    pub window: u64,
    pub uid: u16,
    pub count: Option<u32>,
    pub tensors: Vec<RawTensor>,
    pub trailing: Vec<u8>,
}

impl RawPayload {
    /// A version 2 payload.
    pub fn new_v2(window: u64, uid: u16, tensors: Vec<RawTensor>) -> Self {
        Self {
            version: 2,
            ..Self::new(window, uid, tensors)
        }
    }

    pub fn new(window: u64, uid: u16, tensors: Vec<RawTensor>) -> Self {
        Self {
            magic: *b"SLCO",
            version: 1,
            window,
            uid,
            count: None,
            tensors,
            trailing: Vec::new(),
        }
    }

    /// Bytes with a correct CRC32 trailer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.window.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(
            &self
                .count
                .unwrap_or(self.tensors.len() as u32)
                .to_le_bytes(),
        );
        for t in &self.tensors {
            t.write(self.version, &mut out);
        }
        out.extend_from_slice(&self.trailing);
        fix_crc_appending(&mut out);
        out
    }
}

fn pack12(indices: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    for pair in indices.chunks(2) {
        match *pair {
            [a, b] => out.extend_from_slice(&[
                a as u8,
                ((a >> 8) | ((b & 15) << 4)) as u8,
                (b >> 4) as u8,
            ]),
            [a] => out.extend_from_slice(&[a as u8, (a >> 8) as u8]),
            _ => unreachable!(),
        }
    }
    out
}

fn pack2(codes: &[u8]) -> Vec<u8> {
    codes
        .chunks(4)
        .map(|q| {
            q.iter()
                .enumerate()
                .fold(0u8, |acc, (i, c)| acc | (c << (2 * i)))
        })
        .collect()
}

/// Appends the CRC32 of `bytes`.
pub fn fix_crc_appending(bytes: &mut Vec<u8>) {
    let crc = crc32fast::hash(bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
}

/// Replaces the trailer of `bytes` with the CRC of the rest (no-op when too short).
pub fn refresh_crc(bytes: &mut Vec<u8>) {
    if bytes.len() >= 4 {
        bytes.truncate(bytes.len() - 4);
        fix_crc_appending(bytes);
    }
}

/// A small LLaMA-like parameter list with odd sizes.
pub fn small_specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("embed", [96, 128]),
        ParamSpec::new("q_proj", [128, 128]),
        ParamSpec::new("odd", [50, 100]),
        ParamSpec::new("norm", [128]),
        ParamSpec::new("tiny", [7]),
    ]
}

/// Deterministic normal tensors for `specs`.
pub fn random_tensors(specs: &[ParamSpec], seed: i64) -> Vec<Tensor> {
    tch::manual_seed(seed);
    specs
        .iter()
        .map(|s| Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu)))
        .collect()
}

/// Chunk `c`'s first `k` local indices offset by `shift` (mod chunk size), sorted.
pub fn strided_pick(shift: usize, k: usize) -> impl Fn(usize, usize) -> Vec<u16> {
    move |_, elems| {
        let mut v: Vec<u16> = (0..k).map(|i| ((i + shift) % elems) as u16).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
