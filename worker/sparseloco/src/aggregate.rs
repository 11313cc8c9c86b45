//! Decompression to dense tensors, aggregation of peer payloads and the outer step.
//!
//! Aggregation, per tensor: dequantize each peer, scale each peer so its norm is at most
//! the (lower) median of the peers' norms, then average every coordinate over the peers
//! that transmitted it (coordinates nobody sent stay 0). It runs chunk by chunk in a
//! cache-resident scratch buffer, parallel over bands, straight into the output tensor.

use std::mem::MaybeUninit;

use tch::{Device, Kind, Tensor};

use crate::bitpack::code_at;
use crate::compressed::{CompressedTensor, GradientPayload};
use crate::config::{ParamSpec, SparseLocoConfig};
use crate::error::{SparseLocoError, WireError};
use crate::geometry::ChunkGeometry;
use crate::host::{new_f32_tensor, par_bands};
use crate::layout::Layout;
use crate::quant::NUM_BINS;
use crate::validate::check_payload_structure;

/// Outer learning rate of the SparseLoCo outer SGD step.
pub const DEFAULT_OUTER_LR: f64 = 0.4;

/// One peer's entries of one tensor with its (clipped) dequantization table.
struct PeerEntries<'a> {
    indices: &'a [u16],
    codes: &'a [u8],
    table: [f32; NUM_BINS],
}

impl<'a> PeerEntries<'a> {
    fn new(tensor: &'a CompressedTensor, factor: f32) -> Self {
        Self {
            indices: &tensor.indices,
            codes: &tensor.codes,
            table: tensor.quant.dequant_table().map(|v| v * factor),
        }
    }
}

/// Dense tensor (`f32`, param shape) of one compressed parameter on `device`.
pub fn decompress(tensor: &CompressedTensor, device: Device) -> Result<Tensor, SparseLocoError> {
    densify(
        &tensor.geometry,
        &tensor.shape,
        &[PeerEntries::new(tensor, 1.0)],
        device,
    )
}

/// Dense tensors of every parameter of `payload`, in payload order.
pub fn decompress_payload(
    payload: &GradientPayload,
    device: Device,
) -> Result<Vec<Tensor>, SparseLocoError> {
    payload
        .tensors
        .iter()
        .map(|t| decompress(t, device))
        .collect()
}

/// Dense tensors of many peers at once (one `Vec` per payload).
pub fn decompress_batch(
    payloads: &[GradientPayload],
    device: Device,
) -> Result<Vec<Vec<Tensor>>, SparseLocoError> {
    payloads
        .iter()
        .map(|p| decompress_payload(p, device))
        .collect()
}

/// Aggregates peer payloads into one dense update per parameter (spec order, `f32`, on
/// `device`), with median-norm clipping and per-coordinate mean. Default config.
pub fn aggregate(
    payloads: &[GradientPayload],
    specs: &[ParamSpec],
    device: Device,
) -> Result<Vec<Tensor>, SparseLocoError> {
    aggregate_with_config(payloads, specs, &SparseLocoConfig::default(), device)
}

/// [`aggregate`] with an explicit config.
pub fn aggregate_with_config(
    payloads: &[GradientPayload],
    specs: &[ParamSpec],
    config: &SparseLocoConfig,
    device: Device,
) -> Result<Vec<Tensor>, SparseLocoError> {
    if payloads.is_empty() {
        return Err(SparseLocoError::NoPeers);
    }
    let layout = Layout::new(specs, config)?;
    for payload in payloads {
        check_payload_structure(payload, &layout)?;
    }
    let mut out = Vec::with_capacity(layout.len());
    for (i, (spec, geom)) in layout.specs().iter().zip(layout.geometries()).enumerate() {
        let tensors: Vec<&CompressedTensor> = payloads
            .iter()
            .map(|p| {
                p.tensors
                    .get(i)
                    .ok_or_else(|| WireError::MissingTensor(spec.name.clone()))
            })
            .collect::<Result<_, _>>()?;
        let factors = clip_factors(&tensors.iter().map(|t| t.norm()).collect::<Vec<_>>());
        let clipped = factors.iter().filter(|&&f| f < 1.0).count();
        tracing::trace!(tensor = %spec.name, peers = payloads.len(), clipped, "aggregating");
        let peers: Vec<PeerEntries<'_>> = tensors
            .iter()
            .zip(factors)
            .map(|(t, f)| PeerEntries::new(t, f as f32))
            .collect();
        out.push(densify(geom, &spec.shape, &peers, device)?);
    }
    tracing::debug!(
        peers = payloads.len(),
        tensors = out.len(),
        "aggregated peer payloads"
    );
    Ok(out)
}

/// Scale factors that bring every norm down to the lower median of `norms`
/// (`torch.median` semantics); norms at or below the median keep factor 1.
pub fn clip_factors(norms: &[f64]) -> Vec<f64> {
    let mut sorted = norms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(&median) = sorted.get(sorted.len().saturating_sub(1) / 2) else {
        return Vec::new();
    };
    norms
        .iter()
        .map(|&n| {
            if n > median && n > 0.0 {
                median / n
            } else {
                1.0
            }
        })
        .collect()
}

/// Scatter-mean of `peers` into a new dense tensor.
fn densify(
    geom: &ChunkGeometry,
    shape: &[i64],
    peers: &[PeerEntries<'_>],
    device: Device,
) -> Result<Tensor, SparseLocoError> {
    let dense = new_f32_tensor(geom.numel(), |out| {
        par_bands(out, geom.band_elems(), geom.bands(), |first_band, group| {
            scatter_mean_bands(geom, peers, first_band, group);
        });
    })?;
    Ok(dense.f_reshape(shape)?.f_to_device(device)?)
}

/// Writes every element of whole bands of the output, starting at band `first_band`.
fn scatter_mean_bands(
    geom: &ChunkGeometry,
    peers: &[PeerEntries<'_>],
    first_band: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let (bc, cols, k) = (geom.block_cols(), geom.cols(), geom.k());
    let per_band = geom.chunks_per_band();
    // Per-chunk accumulators; the output pass reads them and leaves them zeroed.
    let mut sum = vec![0f32; geom.chunk_elems()];
    let mut count = vec![0u32; geom.chunk_elems()];
    for (b, band) in out.chunks_exact_mut(geom.band_elems()).enumerate() {
        for j in 0..per_band {
            let base = ((first_band + b) * per_band + j) * k;
            for peer in peers {
                let Some(indices) = peer.indices.get(base..base + k) else {
                    continue;
                };
                for (e, &local) in indices.iter().enumerate() {
                    let value = peer.table[usize::from(code_at(peer.codes, base + e))];
                    let local = usize::from(local);
                    if let (Some(s), Some(c)) = (sum.get_mut(local), count.get_mut(local)) {
                        *s += value;
                        *c = c.wrapping_add(1);
                    }
                }
            }
            // Row r of the chunk: band[r * cols + j * bc ..][..bc].
            let rows = band.get_mut(j * bc..).unwrap_or_default().chunks_mut(cols);
            for ((row, srow), crow) in rows
                .zip(sum.chunks_exact_mut(bc))
                .zip(count.chunks_exact_mut(bc))
            {
                for ((o, s), c) in row.iter_mut().zip(srow).zip(crow) {
                    o.write(if *c > 0 { *s / *c as f32 } else { 0.0 });
                    *s = 0.0;
                    *c = 0;
                }
            }
        }
    }
}

/// Outer SGD step without momentum: `p <- p - lr * update` in place, under `no_grad`.
///
/// `params` are handles to the model's parameters (their storage is updated); `update`
/// may be on another device or dtype and is converted.
pub fn outer_step(params: &[Tensor], update: &[Tensor], lr: f64) -> Result<(), SparseLocoError> {
    if params.len() != update.len() {
        return Err(SparseLocoError::TensorCount {
            expected: params.len(),
            actual: update.len(),
        });
    }
    for (p, u) in params.iter().zip(update) {
        if p.size() != u.size() {
            return Err(SparseLocoError::ShapeMismatch {
                name: String::new(),
                expected: p.size(),
                actual: u.size(),
            });
        }
    }
    tch::no_grad(|| -> Result<(), SparseLocoError> {
        for (p, u) in params.iter().zip(update) {
            let step = u
                .f_to_device(p.device())?
                .f_to_kind(Kind::Float)?
                .f_mul_scalar(lr)?
                .f_to_kind(p.kind())?;
            let mut target = p.shallow_clone();
            let _ = target.f_sub_(&step)?;
        }
        Ok(())
    })
}
