//! Checks a payload against the expected parameters: names, shapes, chunk geometry,
//! exact `k`, index bounds and order, code padding, quantization parameters.

use crate::bitpack::{UnpackError, check_codes2};
use crate::compressed::{CompressedTensor, GradientPayload};
use crate::config::{ParamSpec, SparseLocoConfig};
use crate::error::WireError;
use crate::geometry::ChunkGeometry;
use crate::layout::Layout;

/// Validates an in-memory payload against `specs` (tensors must be in spec order).
///
/// [`crate::decode`] already applies these checks; use this for payloads built otherwise.
pub fn validate_payload(
    payload: &GradientPayload,
    specs: &[ParamSpec],
    config: &SparseLocoConfig,
) -> Result<(), WireError> {
    let layout = Layout::new(specs, config).map_err(|e| WireError::InvalidSpecs(e.to_string()))?;
    check_payload_structure(payload, &layout)?;
    for ((tensor, spec), geom) in payload
        .tensors
        .iter()
        .zip(layout.specs())
        .zip(layout.geometries())
    {
        check_entries(tensor, &spec.name, geom)?;
    }
    Ok(())
}

/// Cheap structural check: tensor count, names in order, shapes and geometry.
pub(crate) fn check_payload_structure(
    payload: &GradientPayload,
    layout: &Layout,
) -> Result<(), WireError> {
    if payload.tensors.len() != layout.len() {
        return Err(WireError::TensorCount {
            expected: layout.len(),
            actual: payload.tensors.len(),
        });
    }
    for ((tensor, spec), geom) in payload
        .tensors
        .iter()
        .zip(layout.specs())
        .zip(layout.geometries())
    {
        check_header(tensor, spec, geom)?;
    }
    Ok(())
}

fn check_header(
    t: &CompressedTensor,
    spec: &ParamSpec,
    geom: &ChunkGeometry,
) -> Result<(), WireError> {
    if t.name != spec.name {
        return Err(WireError::MissingTensor(spec.name.clone()));
    }
    if t.shape != spec.shape {
        return Err(WireError::ShapeMismatch {
            name: spec.name.clone(),
            expected: spec.shape.clone(),
            actual: t.shape.iter().map(|&d| d as u64).collect(),
        });
    }
    let mismatch = |field, expected: usize, actual: usize| WireError::FieldMismatch {
        name: spec.name.clone(),
        field,
        expected: expected as u64,
        actual: actual as u64,
    };
    let g = &t.geometry;
    for (field, expected, actual) in [
        ("block_rows", geom.block_rows(), g.block_rows()),
        ("block_cols", geom.block_cols(), g.block_cols()),
        ("k", geom.k(), g.k()),
        ("rows", geom.rows(), g.rows()),
        ("cols", geom.cols(), g.cols()),
        ("entries", geom.entries(), t.indices.len()),
    ] {
        if expected != actual {
            return Err(mismatch(field, expected, actual));
        }
    }
    match check_codes2(&t.codes, geom.entries()) {
        Ok(()) => {}
        Err(UnpackError::Length) => {
            return Err(mismatch(
                "code bytes",
                crate::bitpack::packed_codes_len(geom.entries()),
                t.codes.len(),
            ));
        }
        Err(UnpackError::Padding) => {
            return Err(WireError::NonZeroPadding {
                name: spec.name.clone(),
                field: "codes",
            });
        }
    }
    Ok(())
}

/// Checks indices (below the chunk size, strictly increasing per chunk) and quantization
/// parameters (finite, ordered centroids).
pub(crate) fn check_entries(
    t: &CompressedTensor,
    name: &str,
    geom: &ChunkGeometry,
) -> Result<(), WireError> {
    check_indices(&t.indices, name, geom)?;
    check_quant(t, name)
}

/// Indices below the chunk size and strictly increasing per chunk.
pub(crate) fn check_indices(
    indices: &[u16],
    name: &str,
    geom: &ChunkGeometry,
) -> Result<(), WireError> {
    let limit = geom.chunk_elems();
    let k = geom.k().max(1);
    for (chunk, indices) in indices.chunks(k).enumerate() {
        let mut previous: Option<u16> = None;
        for &index in indices {
            if usize::from(index) >= limit {
                return Err(WireError::IndexOutOfRange {
                    name: name.to_owned(),
                    chunk,
                    index,
                    limit,
                });
            }
            if previous.is_some_and(|p| p >= index) {
                return Err(WireError::IndicesNotIncreasing {
                    name: name.to_owned(),
                    chunk,
                });
            }
            previous = Some(index);
        }
    }
    Ok(())
}

/// Finite shift and centroids, centroids in non-decreasing order.
pub(crate) fn check_quant(t: &CompressedTensor, name: &str) -> Result<(), WireError> {
    if !t.quant.is_finite() {
        return Err(WireError::NonFiniteQuantParams {
            name: name.to_owned(),
        });
    }
    if !t.quant.is_ordered() {
        return Err(WireError::UnorderedCentroids {
            name: name.to_owned(),
        });
    }
    Ok(())
}
