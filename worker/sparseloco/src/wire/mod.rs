//! Versioned binary wire format of a [`GradientPayload`].
//!
//! All integers little-endian. Both versions share the header, the record prefix, the
//! quantization parameters and the trailer; they differ in how a record's entries (the
//! kept indices and their 2-bit codes) are stored:
//!
//! ```text
//! header   magic "SLCO" | version u16 | window u64 | uid u16 | tensor count u32
//! record   name length u16 | name (UTF-8) | ndim u8 | dims u64 x ndim
//!          | block_rows u16 | block_cols u16 | k u16 | entries u32
//!          | entries section (v1: see v1.rs, v2: see v2.rs)
//!          | shift f32 | centroids f32 x 4
//! trailer  CRC32 (IEEE) of every byte before it, u32
//! ```
//!
//! [`encode`] writes version 2 (Golomb-Rice coded index gaps, plane or rANS coded codes);
//! [`decode`] accepts versions 1 and 2 and returns the same [`GradientPayload`] for both.
//! It never trusts a count: every length, shape, geometry field and `k` must equal (or
//! stay within the bound of) what the caller's expected parameter list implies before
//! anything is allocated, and every index, padding bit, coder parameter and quantization
//! parameter is checked, so only canonical encodings are accepted.

mod reader;
mod v1;
mod v2;

use crate::compressed::{CompressedTensor, GradientPayload};
use crate::config::{MAX_NAME_LEN, MAX_NDIM, ParamSpec, SparseLocoConfig};
use crate::error::WireError;
use crate::geometry::ChunkGeometry;
use crate::host::par_map_weighted;
use crate::layout::Layout;
use crate::quant::{NUM_BINS, QuantParams};
use crate::validate::check_quant;
use reader::Reader;

/// First four bytes of every payload.
pub const MAGIC: [u8; 4] = *b"SLCO";

/// Format version [`encode`] writes.
pub const WIRE_VERSION: u16 = WireVersion::V2.number();

/// A wire format version this build can write and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireVersion {
    /// 12-bit packed indices, 2-bit packed codes (14 bits per entry).
    V1,
    /// Golomb-Rice coded index gaps, codes as a bit plane plus exceptions (rANS when not
    /// nearly binary): about 8.6 bits per entry.
    V2,
}

impl WireVersion {
    /// The `u16` in the header.
    pub const fn number(self) -> u16 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    fn from_number(n: u16) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

const HEADER_LEN: usize = 4 + 2 + 8 + 2 + 4;
const TRAILER_LEN: usize = 4;
const QUANT_LEN: usize = 4 * (1 + NUM_BINS);

fn record_prefix_len(t: &CompressedTensor) -> usize {
    2 + t.name.len() + 1 + 8 * t.shape.len() + 6 + 4
}

/// Largest canonical encoding, in either version, of any payload for `specs` under `config`:
/// the exact size limit a fetch of a peer's object can enforce before reading its body (v1's
/// size follows from the shapes alone; v2's entries are bounded by their coders' worst case).
pub fn max_encoded_len(
    specs: &[ParamSpec],
    config: &SparseLocoConfig,
) -> Result<usize, crate::SparseLocoError> {
    let mut total = HEADER_LEN + TRAILER_LEN;
    for spec in specs {
        let geometry = ChunkGeometry::new(spec, config)?;
        let prefix = 2 + spec.name.len() + 1 + 8 * spec.shape.len() + 6 + 4;
        let entries = v1::entries_len_for(geometry.entries()).max(v2::entries_len_max(&geometry));
        total += prefix + entries + QUANT_LEN;
    }
    Ok(total)
}

/// Exact size of [`encode`]'s output for `payload`.
pub fn encoded_len(payload: &GradientPayload) -> usize {
    encoded_len_as(payload, WireVersion::V2)
}

/// Exact encoded size of `payload` in `version`.
pub fn encoded_len_as(payload: &GradientPayload, version: WireVersion) -> usize {
    HEADER_LEN
        + payload
            .tensors
            .iter()
            .map(|t| {
                record_prefix_len(t)
                    + match version {
                        WireVersion::V1 => v1::entries_len(t),
                        WireVersion::V2 => v2::entries_len(t),
                    }
                    + QUANT_LEN
            })
            .sum::<usize>()
        + TRAILER_LEN
}

/// Serializes `payload` in the current version ([`WIRE_VERSION`], tensors in their
/// current order). This is what new objects use.
pub fn encode(payload: &GradientPayload) -> Vec<u8> {
    encode_as(payload, WireVersion::V2)
}

/// Serializes `payload` in `version` (v1 for peers or tools that predate v2).
pub fn encode_as(payload: &GradientPayload, version: WireVersion) -> Vec<u8> {
    // Records are coded on the kernel threads, each into a buffer of at least its size,
    // then joined once into an output of the exact size.
    let records = par_map_weighted(&payload.tensors, CompressedTensor::entries, |t| {
        let mut record = Vec::with_capacity(record_len_bound(t, version));
        write_record(t, version, &mut record);
        record
    });
    let len = HEADER_LEN + records.iter().map(Vec::len).sum::<usize>() + TRAILER_LEN;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.number().to_le_bytes());
    out.extend_from_slice(&payload.window.to_le_bytes());
    out.extend_from_slice(&payload.uid.to_le_bytes());
    out.extend_from_slice(&(payload.tensors.len() as u32).to_le_bytes());
    for record in &records {
        out.extend_from_slice(record);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// At least the encoded size of `t`'s record in `version` (exact for v1).
fn record_len_bound(t: &CompressedTensor, version: WireVersion) -> usize {
    record_prefix_len(t)
        + match version {
            WireVersion::V1 => v1::entries_len(t),
            WireVersion::V2 => v2::entries_len_bound(t),
        }
        + QUANT_LEN
}

fn write_record(t: &CompressedTensor, version: WireVersion, out: &mut Vec<u8>) {
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
    match version {
        WireVersion::V1 => v1::write_entries(t, out),
        WireVersion::V2 => v2::write_entries(t, out),
    }
    out.extend_from_slice(&t.quant.shift.to_le_bytes());
    for c in t.quant.centroids {
        out.extend_from_slice(&c.to_le_bytes());
    }
}

/// Version of an encoded payload (after checking the magic), without decoding it.
pub fn wire_version(bytes: &[u8]) -> Result<WireVersion, WireError> {
    let mut reader = Reader { bytes, pos: 0 };
    let magic: [u8; 4] = reader.array("magic")?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = reader.u16("version")?;
    WireVersion::from_number(version).ok_or(WireError::UnsupportedVersion(version))
}

/// Decodes and validates untrusted bytes (version 1 or 2) against the expected
/// parameters, using the default [`SparseLocoConfig`]. Tensors come back in spec order.
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
    let version = wire_version(bytes)?;
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
        pos: MAGIC.len() + 2,
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
    // Pass 1: the framing of every record (cheap, sequential); pass 2: the entries of
    // the records (the coders), in parallel.
    let mut slots: Vec<Option<Framed<'_>>> = (0..layout.len()).map(|_| None).collect();
    for _ in 0..count {
        let framed = read_framing(&mut reader, &layout, version)?;
        match slots.get_mut(framed.position) {
            Some(slot @ None) => *slot = Some(framed),
            _ => {
                let name = layout
                    .spec(framed.position)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                return Err(WireError::DuplicateTensor(name));
            }
        }
    }
    if reader.remaining() > 0 {
        return Err(WireError::TrailingBytes(reader.remaining()));
    }
    let framed = slots
        .into_iter()
        .zip(layout.specs())
        .map(|(slot, spec)| slot.ok_or_else(|| WireError::MissingTensor(spec.name.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let tensors = par_map_weighted(
        &framed,
        |f| {
            layout
                .geometries()
                .get(f.position)
                .map_or(0, ChunkGeometry::entries)
        },
        |f| decode_record(f, &layout),
    )
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(GradientPayload {
        window,
        uid,
        tensors,
    })
}

/// Decoded entries of one record: local indices and packed 2-bit codes.
pub(crate) struct Entries {
    pub(crate) indices: Vec<u16>,
    pub(crate) codes: Vec<u8>,
}

/// Builds the errors of one record.
pub(crate) struct RecordErrors<'a> {
    pub(crate) name: &'a str,
}

impl RecordErrors<'_> {
    pub(crate) fn mismatch(&self, field: &'static str, expected: usize, actual: u64) -> WireError {
        WireError::FieldMismatch {
            name: self.name.to_owned(),
            field,
            expected: expected as u64,
            actual,
        }
    }

    pub(crate) fn expect(
        &self,
        actual: u64,
        expected: usize,
        field: &'static str,
    ) -> Result<(), WireError> {
        if actual == expected as u64 {
            Ok(())
        } else {
            Err(self.mismatch(field, expected, actual))
        }
    }

    pub(crate) fn padding(&self, field: &'static str) -> WireError {
        WireError::NonZeroPadding {
            name: self.name.to_owned(),
            field,
        }
    }

    pub(crate) fn non_canonical(&self, field: &'static str) -> WireError {
        WireError::NonCanonical {
            name: self.name.to_owned(),
            field,
        }
    }

    pub(crate) fn at_most(
        &self,
        field: &'static str,
        max: usize,
        actual: u64,
    ) -> Result<(), WireError> {
        if actual <= max as u64 {
            Ok(())
        } else {
            Err(WireError::LengthOutOfBounds {
                name: self.name.to_owned(),
                field,
                max: max as u64,
                actual,
            })
        }
    }
}

/// One record with its framing checked and its entries still coded.
struct Framed<'a> {
    position: usize,
    section: Section<'a>,
    quant: QuantParams,
}

/// The coded entries of a record, lengths already checked against the geometry.
pub(crate) enum Section<'a> {
    V1(v1::Section<'a>),
    V2(v2::Section<'a>),
}

fn read_framing<'a>(
    reader: &mut Reader<'a>,
    layout: &Layout,
    version: WireVersion,
) -> Result<Framed<'a>, WireError> {
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
    let errors = RecordErrors { name: &spec.name };
    let ndim = usize::from(reader.u8("ndim")?);
    if ndim > MAX_NDIM || ndim != spec.shape.len() {
        return Err(errors.mismatch("ndim", spec.shape.len(), ndim as u64));
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
            name: spec.name.clone(),
            expected: spec.shape.clone(),
            actual: dims,
        });
    }
    errors.expect(
        reader.u16("block_rows")?.into(),
        geom.block_rows(),
        "block_rows",
    )?;
    errors.expect(
        reader.u16("block_cols")?.into(),
        geom.block_cols(),
        "block_cols",
    )?;
    errors.expect(reader.u16("k")?.into(), geom.k(), "k")?;
    errors.expect(reader.u32("entries")?.into(), geom.entries(), "entries")?;
    let section = match version {
        WireVersion::V1 => Section::V1(v1::read_section(reader, geom, &errors)?),
        WireVersion::V2 => Section::V2(v2::read_section(reader, geom, &errors)?),
    };
    let shift = reader.f32("shift")?;
    let mut centroids = [0f32; NUM_BINS];
    for c in &mut centroids {
        *c = reader.f32("centroid")?;
    }
    Ok(Framed {
        position,
        section,
        quant: QuantParams { shift, centroids },
    })
}

fn decode_record(framed: &Framed<'_>, layout: &Layout) -> Result<CompressedTensor, WireError> {
    let (Some(spec), Some(geom)) = (
        layout.spec(framed.position),
        layout.geometries().get(framed.position),
    ) else {
        return Err(WireError::InvalidSpecs("record outside the layout".into()));
    };
    let errors = RecordErrors { name: &spec.name };
    let entries = match &framed.section {
        Section::V1(section) => v1::decode_section(section, geom, &errors)?,
        Section::V2(section) => v2::decode_section(section, geom, &errors)?,
    };
    let tensor = CompressedTensor {
        name: spec.name.clone(),
        shape: spec.shape.clone(),
        geometry: *geom,
        indices: entries.indices,
        codes: entries.codes,
        quant: framed.quant,
    };
    // v1 checks its indices while decoding them; v2's gap coding cannot express an
    // unsorted, duplicate or out-of-range index.
    check_quant(&tensor, &spec.name)?;
    Ok(tensor)
}

/// Dense fp32 size of `specs` divided by the encoded size of `payload` ([`encode`]).
/// This sizes the coded streams; when the bytes are at hand, use
/// [`compression_ratio_of_len`] with their length instead.
pub fn compression_ratio(payload: &GradientPayload, specs: &[ParamSpec]) -> f64 {
    compression_ratio_of_len(encoded_len(payload), specs)
}

/// Dense fp32 size of `specs` divided by `encoded_len` (the length of an encoded payload).
pub fn compression_ratio_of_len(encoded_len: usize, specs: &[ParamSpec]) -> f64 {
    dense_bytes(specs, 4) as f64 / encoded_len.max(1) as f64
}

/// Bytes the parameters take densely at `bytes_per_element` (4 for fp32, 2 for bf16).
pub fn dense_bytes(specs: &[ParamSpec], bytes_per_element: usize) -> usize {
    specs
        .iter()
        .map(|s| s.numel().saturating_mul(bytes_per_element))
        .fold(0, usize::saturating_add)
}
