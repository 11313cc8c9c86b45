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
    pub index_bytes: Option<Vec<u8>>,
    pub code_len: Option<u32>,
    pub codes: Vec<u8>,
    pub code_bytes: Option<Vec<u8>>,
    pub shift: f32,
    pub centroids: [f32; 4],
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
            code_len: None,
            codes,
            code_bytes: None,
            shift: 0.0,
            centroids: [-1.5, -0.5, 0.5, 1.5],
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
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
        out.extend_from_slice(&self.shift.to_le_bytes());
        for c in self.centroids {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
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
            t.write(&mut out);
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
