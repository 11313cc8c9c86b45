//! Entries section of wire format version 2:
//!
//! ```text
//! rice parameter u8 | index bytes u32 | Golomb-Rice coded index gaps (see rice.rs)
//! | code frequencies u16 x 4 | code bytes u32 | rANS coded 2-bit codes (see rans.rs)
//! ```
//!
//! The index stream is empty when every element of a chunk is kept (`k` equals the chunk
//! size). Both coders are canonical: the decoder rejects any parameter, frequency table,
//! length or padding other than the one the encoder writes for the decoded entries.

use super::reader::Reader;
use super::{Entries, RecordErrors};
use crate::compressed::CompressedTensor;
use crate::error::WireError;
use crate::geometry::ChunkGeometry;
use crate::quant::NUM_BINS;
use crate::rans::{self, RansError, RansReader};
use crate::rice::{self, RiceError};

/// Bytes of the section for `t` (runs both coders' length computations).
pub(super) fn entries_len(t: &CompressedTensor) -> usize {
    let plan = rice::plan(&t.indices, &t.geometry);
    let freqs = rans::normalize(&t.code_histogram());
    1 + 4 + plan.bytes() + 2 * NUM_BINS + 4 + rans::stream_len(&t.codes, t.indices.len(), &freqs)
}

pub(super) fn write_entries(t: &CompressedTensor, out: &mut Vec<u8>) {
    let plan = rice::plan(&t.indices, &t.geometry);
    out.push(plan.param);
    out.extend_from_slice(&(plan.bytes() as u32).to_le_bytes());
    rice::write(&t.indices, &t.geometry, plan, out);
    let freqs = rans::normalize(&t.code_histogram());
    for f in freqs {
        out.extend_from_slice(&f.to_le_bytes());
    }
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    rans::write(&t.codes, t.indices.len(), &freqs, out);
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Coded entries of a v2 record.
pub(crate) struct Section<'a> {
    param: u8,
    indices: &'a [u8],
    freqs: [u16; NUM_BINS],
    codes: &'a [u8],
}

pub(super) fn read_section<'a>(
    reader: &mut Reader<'a>,
    geom: &ChunkGeometry,
    errors: &RecordErrors<'_>,
) -> Result<Section<'a>, WireError> {
    let param = reader.u8("rice parameter")?;
    if param > rice::MAX_RICE_PARAM {
        return Err(errors.non_canonical("rice parameter"));
    }
    let index_len = reader.u32("index bytes")?;
    errors.at_most(
        "index bytes",
        rice::max_bytes(geom, param),
        index_len.into(),
    )?;
    let indices = reader.take(index_len as usize, "indices")?;
    let mut freqs = [0u16; NUM_BINS];
    for f in &mut freqs {
        *f = reader.u16("code frequency")?;
    }
    let code_len = reader.u32("code bytes")?;
    errors.at_most("code bytes", rans::max_len(geom.entries()), code_len.into())?;
    let codes = reader.take(code_len as usize, "codes")?;
    Ok(Section {
        param,
        indices,
        freqs,
        codes,
    })
}

pub(super) fn decode_section(
    section: &Section<'_>,
    geom: &ChunkGeometry,
    errors: &RecordErrors<'_>,
) -> Result<Entries, WireError> {
    let entries = geom.entries();
    let code_error = |e| match e {
        RansError::FreqSum | RansError::Freqs => errors.non_canonical("code frequencies"),
        RansError::Truncated | RansError::State => errors.non_canonical("code bytes"),
    };
    let mut codes_reader =
        RansReader::new(section.codes, entries, &section.freqs).map_err(code_error)?;
    let mut codes = Vec::with_capacity(entries.div_ceil(4));
    let mut indices = Vec::new();
    // One loop for both streams: the Rice and rANS dependency chains overlap.
    rice::read_with(section.indices, geom, section.param, &mut indices, |i| {
        codes_reader.next(i, &mut codes)
    })
    .map_err(|e| match e {
        RiceError::Truncated | RiceError::Trailing => errors.non_canonical("index bytes"),
        RiceError::OutOfRange { chunk, index } => WireError::IndexOutOfRange {
            name: errors.name.to_owned(),
            chunk,
            index,
            limit: geom.chunk_elems(),
        },
        RiceError::Padding => errors.padding("indices"),
        RiceError::Parameter => errors.non_canonical("rice parameter"),
    })?;
    codes_reader
        .finish(entries, &section.freqs, &mut codes)
        .map_err(code_error)?;
    Ok(Entries { indices, codes })
}
