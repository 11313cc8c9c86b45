//! Versioned binary wire format of a [`GradientPayload`].
//!
//! All integers little-endian. Layout of version 1:
//!
//! ```text
//! header   magic "SLCO" | version u16 | window u64 | uid u16 | tensor count u32
//! record   name length u16 | name (UTF-8) | ndim u8 | dims u64 x ndim
//!          | block_rows u16 | block_cols u16 | k u16 | entries u32
//!          | index bytes u32 | 12-bit packed indices | code bytes u32 | 2-bit packed codes
//!          | shift f32 | centroids f32 x 4
//! trailer  CRC32 (IEEE) of every byte before it, u32
//! ```
//!
//! [`decode`] never trusts a count: every length, shape, geometry field and `k` must equal
//! what the caller's expected parameter list implies before anything is allocated, and
//! every index, padding bit and quantization parameter is checked.

use crate::bitpack::{
    UnpackError, check_codes2, pack_indices12, packed_codes_len, packed_indices_len,
    unpack_indices12,
};
use crate::compressed::{CompressedTensor, GradientPayload};
use crate::config::{MAX_NAME_LEN, MAX_NDIM, ParamSpec, SparseLocoConfig};
use crate::error::WireError;
use crate::layout::Layout;
use crate::quant::{NUM_BINS, QuantParams};
use crate::validate::check_entries;

/// First four bytes of every payload.
pub const MAGIC: [u8; 4] = *b"SLCO";

/// Current format version.
pub const WIRE_VERSION: u16 = 1;

const HEADER_LEN: usize = 4 + 2 + 8 + 2 + 4;
const TRAILER_LEN: usize = 4;
const QUANT_LEN: usize = 4 * (1 + NUM_BINS);

/// Exact encoded size of `payload` in bytes.
pub fn encoded_len(payload: &GradientPayload) -> usize {
    HEADER_LEN
        + payload
            .tensors
            .iter()
            .map(|t| {
                2 + t.name.len()
                    + 1
                    + 8 * t.shape.len()
                    + 6
                    + 4
                    + 4
                    + packed_indices_len(t.indices.len())
                    + 4
                    + t.codes.len()
                    + QUANT_LEN
            })
            .sum::<usize>()
        + TRAILER_LEN
}

/// Serializes `payload` (tensors in their current order).
pub fn encode(payload: &GradientPayload) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(payload));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    out.extend_from_slice(&payload.window.to_le_bytes());
    out.extend_from_slice(&payload.uid.to_le_bytes());
    out.extend_from_slice(&(payload.tensors.len() as u32).to_le_bytes());
    for t in &payload.tensors {
        // Names are at most MAX_NAME_LEN bytes, ndim at most MAX_NDIM, block edges at most
        // 64, k at most 4096 and entries below 2^32 (checked when the specs were accepted).
        out.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
        out.extend_from_slice(t.name.as_bytes());
        out.push(t.shape.len() as u8);
        for &d in &t.shape {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        let g = &t.geometry;
        for v in [g.block_rows(), g.block_cols(), g.k()] {
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        out.extend_from_slice(&(t.indices.len() as u32).to_le_bytes());
        out.extend_from_slice(&(packed_indices_len(t.indices.len()) as u32).to_le_bytes());
        pack_indices12(&t.indices, &mut out);
        out.extend_from_slice(&(t.codes.len() as u32).to_le_bytes());
        out.extend_from_slice(&t.codes);
        out.extend_from_slice(&t.quant.shift.to_le_bytes());
        for c in t.quant.centroids {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and validates untrusted bytes against the expected parameters, using the
/// default [`SparseLocoConfig`]. Tensors come back in spec order.
pub fn decode(bytes: &[u8], specs: &[ParamSpec]) -> Result<GradientPayload, WireError> {
    decode_with_config(bytes, specs, &SparseLocoConfig::default())
}

/// [`decode`] with an explicit config (chunk edge and `k` the payload must use).
pub fn decode_with_config(
    bytes: &[u8],
    specs: &[ParamSpec],
    config: &SparseLocoConfig,
) -> Result<GradientPayload, WireError> {
    let layout = Layout::new(specs, config).map_err(|e| WireError::InvalidSpecs(e.to_string()))?;
    let mut reader = Reader { bytes, pos: 0 };
    let magic: [u8; 4] = reader.array("magic")?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = reader.u16("version")?;
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let body_len = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .filter(|&n| n >= HEADER_LEN)
        .ok_or(WireError::Truncated {
            field: "header",
            offset: 0,
            needed: HEADER_LEN + TRAILER_LEN,
            available: bytes.len(),
        })?;
    let (body, trailer) = bytes.split_at(body_len);
    let stored = Reader {
        bytes: trailer,
        pos: 0,
    }
    .u32("checksum")?;
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(WireError::BadChecksum { stored, computed });
    }
    let mut reader = Reader {
        bytes: body,
        pos: reader.pos,
    };
    let window = reader.u64("window")?;
    let uid = reader.u16("uid")?;
    let count = reader.u32("tensor count")? as usize;
    if count != layout.len() {
        return Err(WireError::TensorCount {
            expected: layout.len(),
            actual: count,
        });
    }
    let mut slots: Vec<Option<CompressedTensor>> = vec![None; layout.len()];
    for _ in 0..count {
        let (position, tensor) = read_record(&mut reader, &layout)?;
        match slots.get_mut(position) {
            Some(slot @ None) => *slot = Some(tensor),
            _ => return Err(WireError::DuplicateTensor(tensor.name)),
        }
    }
    if reader.remaining() > 0 {
        return Err(WireError::TrailingBytes(reader.remaining()));
    }
    let tensors = slots
        .into_iter()
        .zip(layout.specs())
        .map(|(slot, spec)| slot.ok_or_else(|| WireError::MissingTensor(spec.name.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GradientPayload {
        window,
        uid,
        tensors,
    })
}

fn read_record(
    reader: &mut Reader<'_>,
    layout: &Layout,
) -> Result<(usize, CompressedTensor), WireError> {
    let name_len = usize::from(reader.u16("name length")?);
    if name_len > MAX_NAME_LEN {
        return Err(WireError::InvalidName);
    }
    let name =
        std::str::from_utf8(reader.take(name_len, "name")?).map_err(|_| WireError::InvalidName)?;
    let position = layout
        .position(name)
        .ok_or_else(|| WireError::UnknownTensor(name.to_owned()))?;
    let (Some(spec), Some(geom)) = (layout.spec(position), layout.geometries().get(position))
    else {
        return Err(WireError::UnknownTensor(name.to_owned()));
    };
    let name = spec.name.clone();
    let mismatch = |field, expected: usize, actual: u64| WireError::FieldMismatch {
        name: name.clone(),
        field,
        expected: expected as u64,
        actual,
    };
    let ndim = usize::from(reader.u8("ndim")?);
    if ndim > MAX_NDIM || ndim != spec.shape.len() {
        return Err(mismatch("ndim", spec.shape.len(), ndim as u64));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        dims.push(reader.u64("dim")?);
    }
    if dims
        .iter()
        .zip(&spec.shape)
        .any(|(&d, &s)| i64::try_from(d).ok() != Some(s))
    {
        return Err(WireError::ShapeMismatch {
            name,
            expected: spec.shape.clone(),
            actual: dims,
        });
    }
    expect(
        reader.u16("block_rows")?.into(),
        geom.block_rows(),
        "block_rows",
        &mismatch,
    )?;
    expect(
        reader.u16("block_cols")?.into(),
        geom.block_cols(),
        "block_cols",
        &mismatch,
    )?;
    expect(reader.u16("k")?.into(), geom.k(), "k", &mismatch)?;
    let entries = geom.entries();
    expect(reader.u32("entries")?.into(), entries, "entries", &mismatch)?;
    expect(
        reader.u32("index bytes")?.into(),
        packed_indices_len(entries),
        "index bytes",
        &mismatch,
    )?;
    let index_bytes = reader.take(packed_indices_len(entries), "indices")?;
    let mut indices = Vec::new();
    unpack_indices12(index_bytes, entries, &mut indices).map_err(|e| match e {
        UnpackError::Padding => WireError::NonZeroPadding {
            name: name.clone(),
            field: "indices",
        },
        UnpackError::Length => mismatch(
            "index bytes",
            packed_indices_len(entries),
            index_bytes.len() as u64,
        ),
    })?;
    expect(
        reader.u32("code bytes")?.into(),
        packed_codes_len(entries),
        "code bytes",
        &mismatch,
    )?;
    let codes = reader.take(packed_codes_len(entries), "codes")?;
    check_codes2(codes, entries).map_err(|_| WireError::NonZeroPadding {
        name: name.clone(),
        field: "codes",
    })?;
    let shift = reader.f32("shift")?;
    let mut centroids = [0f32; NUM_BINS];
    for c in &mut centroids {
        *c = reader.f32("centroid")?;
    }
    let tensor = CompressedTensor {
        name,
        shape: spec.shape.clone(),
        geometry: *geom,
        indices,
        codes: codes.to_vec(),
        quant: QuantParams { shift, centroids },
    };
    check_entries(&tensor, &spec.name, geom)?;
    Ok((position, tensor))
}

fn expect(
    actual: u64,
    expected: usize,
    field: &'static str,
    mismatch: &impl Fn(&'static str, usize, u64) -> WireError,
) -> Result<(), WireError> {
    if actual == expected as u64 {
        Ok(())
    } else {
        Err(mismatch(field, expected, actual))
    }
}

/// Bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(WireError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn f32(&mut self, field: &'static str) -> Result<f32, WireError> {
        self.array(field).map(f32::from_le_bytes)
    }
}

/// Dense fp32 size of `specs` divided by the encoded size of `payload`.
pub fn compression_ratio(payload: &GradientPayload, specs: &[ParamSpec]) -> f64 {
    dense_bytes(specs, 4) as f64 / encoded_len(payload) as f64
}

/// Bytes the parameters take densely at `bytes_per_element` (4 for fp32, 2 for bf16).
pub fn dense_bytes(specs: &[ParamSpec], bytes_per_element: usize) -> usize {
    specs
        .iter()
        .map(|s| s.numel().saturating_mul(bytes_per_element))
        .fold(0, usize::saturating_add)
}
