//! Entries section of wire format version 2:
//!
//! ```text
//! rice parameter u8 | quotient bytes u32 | unary quotients of the index gaps
//! | remainders of the index gaps (ceil(entries * r / 8) bytes) (both: see rice.rs)
//! | code coder u8, then
//!     0 (rANS):  code frequencies u16 x 4 | code bytes u32 | rANS stream (see rans.rs)
//!     1 (plane): exceptions u32 | exception bytes u32 | plane | gaps (see code_plane.rs)
//! ```
//!
//! Both index streams are empty when every element of a chunk is kept (`k` equals the
//! chunk size). The code coder follows from the code histogram ([`code_plane::chosen`]).
//! All coders are canonical: the decoder rejects any parameter, coder, frequency table,
//! length or padding other than the one the encoder writes for the decoded entries.

use super::reader::Reader;
use super::{Entries, RecordErrors};
use crate::code_plane::{self, PlaneError};
use crate::compressed::CompressedTensor;
use crate::error::WireError;
use crate::geometry::ChunkGeometry;
use crate::quant::NUM_BINS;
use crate::rans::{self, RansError};
use crate::rice::{self, RiceError};

/// Fixed bytes of the index part: parameter, quotient length.
const INDEX_FIXED_LEN: usize = 1 + 4;
/// Fixed bytes of the rANS code part: frequencies, code length.
const RANS_FIXED_LEN: usize = 2 * NUM_BINS + 4;
/// The code coder byte.
const CODER_LEN: usize = 1;
const CODER_RANS: u8 = 0;
const CODER_PLANE: u8 = 1;

/// Bytes of the section for `t` (runs the code coder to size its stream).
pub(super) fn entries_len(t: &CompressedTensor) -> usize {
    let plan = rice::plan(&t.indices, &t.geometry);
    let mut codes = Vec::new();
    write_codes(t, &mut codes);
    INDEX_FIXED_LEN + plan.quotient_bytes() + plan.remainder_bytes() + codes.len()
}

/// Most bytes the section for `t` can take (a capacity hint that needs no coding).
pub(super) fn entries_len_bound(t: &CompressedTensor) -> usize {
    entries_len_max(&t.geometry)
}

/// Most bytes a canonical section of a tensor of `geometry` can take.
pub(super) fn entries_len_max(geometry: &ChunkGeometry) -> usize {
    let n = geometry.entries();
    INDEX_FIXED_LEN
        + rice::plan_bound(geometry)
        + CODER_LEN
        + (RANS_FIXED_LEN + rans::max_len(n)).max(code_plane::max_len(n))
}

pub(super) fn write_entries(t: &CompressedTensor, out: &mut Vec<u8>) {
    let gaps = rice::Gaps::new(&t.indices, &t.geometry);
    let plan = gaps.plan(&t.geometry);
    out.push(plan.param);
    out.extend_from_slice(&(plan.quotient_bytes() as u32).to_le_bytes());
    gaps.write(&t.geometry, plan, out);
    write_codes(t, out);
}

/// The code coder byte and the codes of `t` in that coder.
fn write_codes(t: &CompressedTensor, out: &mut Vec<u8>) {
    let hist = t.code_histogram();
    let n = t.indices.len();
    if code_plane::chosen(&hist) {
        out.push(CODER_PLANE);
        code_plane::write(&t.codes, n, code_plane::exceptions(&hist), out);
        return;
    }
    out.push(CODER_RANS);
    let freqs = rans::normalize(&hist);
    for f in freqs {
        out.extend_from_slice(&f.to_le_bytes());
    }
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    rans::write(&t.codes, n, &freqs, out);
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Coded entries of a v2 record.
pub(crate) struct Section<'a> {
    param: u8,
    quotients: &'a [u8],
    remainders: &'a [u8],
    codes: Codes<'a>,
}

/// The coded 2-bit codes of a v2 record.
enum Codes<'a> {
    Rans {
        freqs: [u16; NUM_BINS],
        stream: &'a [u8],
    },
    Plane {
        exceptions: u32,
        plane: &'a [u8],
        gaps: &'a [u8],
    },
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
    let n = geom.entries();
    let codes = match reader.u8("code coder")? {
        CODER_RANS => {
            let mut freqs = [0u16; NUM_BINS];
            for f in &mut freqs {
                *f = reader.u16("code frequency")?;
            }
            let code_len = reader.u32("code bytes")?;
            errors.at_most("code bytes", rans::max_len(n), code_len.into())?;
            let stream = reader.take(code_len as usize, "codes")?;
            Codes::Rans { freqs, stream }
        }
        CODER_PLANE => {
            let exceptions = reader.u32("code exceptions")?;
            errors.at_most(
                "code exceptions",
                code_plane::max_exceptions(n),
                exceptions.into(),
            )?;
            let gap_len = reader.u32("exception bytes")?;
            errors.at_most(
                "exception bytes",
                code_plane::max_gap_bytes(n, exceptions as usize),
                gap_len.into(),
            )?;
            let plane = reader.take(code_plane::plane_len(n), "code plane")?;
            let gaps = reader.take(gap_len as usize, "code exceptions")?;
            Codes::Plane {
                exceptions,
                plane,
                gaps,
            }
        }
        _ => return Err(errors.non_canonical("code coder")),
    };
    Ok(Section {
        param,
        quotients,
        remainders,
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
    let n = geom.entries();
    let mut codes = Vec::new();
    match section.codes {
        Codes::Rans { freqs, stream } => {
            let hist = rans::read(stream, n, &freqs, &mut codes).map_err(|e| match e {
                RansError::FreqSum | RansError::Freqs => errors.non_canonical("code frequencies"),
                RansError::Truncated | RansError::State => errors.non_canonical("code bytes"),
            })?;
            if code_plane::chosen(&hist) {
                return Err(errors.non_canonical("code coder"));
            }
        }
        Codes::Plane {
            exceptions,
            plane,
            gaps,
        } => {
            code_plane::read(plane, gaps, n, exceptions, &mut codes).map_err(|e| match e {
                PlaneError::Padding => errors.padding("code plane"),
                PlaneError::NotChosen => errors.non_canonical("code coder"),
                PlaneError::Truncated
                | PlaneError::Trailing
                | PlaneError::Varint
                | PlaneError::OutOfRange => errors.non_canonical("code exceptions"),
            })?;
        }
    }
    Ok(Entries { indices, codes })
}
