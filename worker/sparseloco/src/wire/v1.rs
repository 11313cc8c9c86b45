//! Entries section of wire format version 1:
//!
//! ```text
//! index bytes u32 | 12-bit packed indices | code bytes u32 | 2-bit packed codes
//! ```
//!
//! Indices: pair `a, b` -> `a & 0xff`, `a >> 8 | (b & 0xf) << 4`, `b >> 4`; an odd last
//! index takes 2 bytes. Codes: code `i` in bits `2 * (i % 4)` of byte `i / 4`.

use super::reader::Reader;
use super::{Entries, RecordErrors};
use crate::bitpack::{
    UnpackError, check_codes2, pack_indices12, packed_codes_len, packed_indices_len,
    unpack_indices12,
};
use crate::compressed::CompressedTensor;
use crate::error::WireError;
use crate::geometry::ChunkGeometry;
use crate::validate::check_indices;

/// Bytes of the section for `t`.
pub(super) fn entries_len(t: &CompressedTensor) -> usize {
    4 + packed_indices_len(t.indices.len()) + 4 + t.codes.len()
}

/// [`entries_len`] of any tensor with `entries` kept entries.
pub(super) fn entries_len_for(entries: usize) -> usize {
    4 + packed_indices_len(entries) + 4 + crate::packed_codes_len(entries)
}

pub(super) fn write_entries(t: &CompressedTensor, out: &mut Vec<u8>) {
    out.extend_from_slice(&(packed_indices_len(t.indices.len()) as u32).to_le_bytes());
    pack_indices12(&t.indices, out);
    out.extend_from_slice(&(t.codes.len() as u32).to_le_bytes());
    out.extend_from_slice(&t.codes);
}

/// Coded entries of a v1 record.
pub(crate) struct Section<'a> {
    indices: &'a [u8],
    codes: &'a [u8],
}

pub(super) fn read_section<'a>(
    reader: &mut Reader<'a>,
    geom: &ChunkGeometry,
    errors: &RecordErrors<'_>,
) -> Result<Section<'a>, WireError> {
    let entries = geom.entries();
    errors.expect(
        reader.u32("index bytes")?.into(),
        packed_indices_len(entries),
        "index bytes",
    )?;
    let indices = reader.take(packed_indices_len(entries), "indices")?;
    errors.expect(
        reader.u32("code bytes")?.into(),
        packed_codes_len(entries),
        "code bytes",
    )?;
    let codes = reader.take(packed_codes_len(entries), "codes")?;
    Ok(Section { indices, codes })
}

pub(super) fn decode_section(
    section: &Section<'_>,
    geom: &ChunkGeometry,
    errors: &RecordErrors<'_>,
) -> Result<Entries, WireError> {
    let entries = geom.entries();
    let mut indices = Vec::new();
    unpack_indices12(section.indices, entries, &mut indices).map_err(|e| match e {
        UnpackError::Padding => errors.padding("indices"),
        UnpackError::Length => errors.mismatch(
            "index bytes",
            packed_indices_len(entries),
            section.indices.len() as u64,
        ),
    })?;
    check_indices(&indices, errors.name, geom)?;
    check_codes2(section.codes, entries).map_err(|_| errors.padding("codes"))?;
    Ok(Entries {
        indices,
        codes: section.codes.to_vec(),
    })
}
