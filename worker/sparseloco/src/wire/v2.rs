//! Entries section of wire format version 2:
//!
//! ```text
//! rice parameter u8 | quotient bytes u32 | unary quotients of the index gaps
//! | remainders of the index gaps (ceil(entries * r / 8) bytes) (both: see rice.rs)
//! | code frequencies u16 x 4 | code bytes u32 | rANS coded 2-bit codes (see rans.rs)
//! ```
//!
//! Both index streams are empty when every element of a chunk is kept (`k` equals the
//! chunk size). Both coders are canonical: the decoder rejects any parameter, frequency
//! table, length or padding other than the one the encoder writes for the decoded
//! entries.

use super::reader::Reader;
use super::{Entries, RecordErrors};
use crate::compressed::CompressedTensor;
use crate::error::WireError;
use crate::geometry::ChunkGeometry;
use crate::quant::NUM_BINS;
use crate::rans::{self, RansError};
use crate::rice::{self, RiceError};

/// Fixed bytes of the section: parameter, quotient length, frequencies, code length.
const FIXED_LEN: usize = 1 + 4 + 2 * NUM_BINS + 4;

/// Bytes of the section for `t` (runs the rANS coder to size its stream).
pub(super) fn entries_len(t: &CompressedTensor) -> usize {
    let plan = rice::plan(&t.indices, &t.geometry);
    let freqs = rans::normalize(&t.code_histogram());
    FIXED_LEN
        + plan.quotient_bytes()
        + plan.remainder_bytes()
        + rans::stream_len(&t.codes, t.indices.len(), &freqs)
}

/// Most bytes the section for `t` can take (a capacity hint that needs no coding).
pub(super) fn entries_len_bound(t: &CompressedTensor) -> usize {
    entries_len_max(&t.geometry)
}

/// Most bytes a canonical section of a tensor of `geometry` can take.
pub(super) fn entries_len_max(geometry: &ChunkGeometry) -> usize {
    FIXED_LEN + rice::plan_bound(geometry) + rans::max_len(geometry.entries())
}

pub(super) fn write_entries(t: &CompressedTensor, out: &mut Vec<u8>) {
    let gaps = rice::Gaps::new(&t.indices, &t.geometry);
    let plan = gaps.plan(&t.geometry);
    out.push(plan.param);
    out.extend_from_slice(&(plan.quotient_bytes() as u32).to_le_bytes());
    gaps.write(&t.geometry, plan, out);
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
    quotients: &'a [u8],
    remainders: &'a [u8],
    freqs: [u16; NUM_BINS],
    codes: &'a [u8],
}

pub(super) fn read_section<'a>(
    reader: &mut Reader<'a>,
    geom: &ChunkGeometry,
    errors: &RecordErrors<'_>,
) -> Result<Section<'a>, WireError> {
    let param = reader.u8("rice parameter")?;
    // Forced chunks have parameter 0 (and so no remainder stream).
    if param > rice::MAX_RICE_PARAM || (rice::forced(geom) && param != 0) {
        return Err(errors.non_canonical("rice parameter"));
    }
    let quotient_len = reader.u32("index bytes")?;
    errors.at_most(
        "index bytes",
        rice::max_quotient_bytes(geom, param),
        quotient_len.into(),
    )?;
    let quotients = reader.take(quotient_len as usize, "indices")?;
    let remainders = reader.take(
        rice::remainder_bytes(geom.entries(), param),
        "index remainders",
    )?;
    let mut freqs = [0u16; NUM_BINS];
    for f in &mut freqs {
        *f = reader.u16("code frequency")?;
    }
    let code_len = reader.u32("code bytes")?;
    errors.at_most("code bytes", rans::max_len(geom.entries()), code_len.into())?;
    let codes = reader.take(code_len as usize, "codes")?;
    Ok(Section {
        param,
        quotients,
        remainders,
        freqs,
        codes,
    })
}

pub(super) fn decode_section(
    section: &Section<'_>,
    geom: &ChunkGeometry,
    errors: &RecordErrors<'_>,
) -> Result<Entries, WireError> {
    let mut indices = Vec::new();
    rice::read(
        section.quotients,
        section.remainders,
        geom,
        section.param,
        &mut indices,
    )
    .map_err(|e| match e {
        RiceError::Truncated | RiceError::Trailing => errors.non_canonical("index bytes"),
        RiceError::OutOfRange { chunk, index } => WireError::IndexOutOfRange {
            name: errors.name.to_owned(),
            chunk,
            index,
            limit: geom.chunk_elems(),
        },
        RiceError::Padding => errors.padding("indices"),
        RiceError::RemainderPadding => errors.padding("index remainders"),
        RiceError::Parameter => errors.non_canonical("rice parameter"),
    })?;
    let mut codes = Vec::new();
    rans::read(section.codes, geom.entries(), &section.freqs, &mut codes).map_err(|e| match e {
        RansError::FreqSum | RansError::Freqs => errors.non_canonical("code frequencies"),
        RansError::Truncated | RansError::State => errors.non_canonical("code bytes"),
    })?;
    Ok(Entries { indices, codes })
}
