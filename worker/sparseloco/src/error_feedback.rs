//! Per-parameter error feedback and compression of the accumulated error.
//!
//! For every parameter: `e <- decay * e + delta`; keep the `k` largest-magnitude entries
//! of every chunk; quantize them to 2 bits; `e <- e - dequantized(sent)`.
//!
//! On the CPU the state lives in host memory and one fused pass per chunk does the update
//! and the selection (threads: torch's intra-op count). On other devices the state stays
//! a device tensor and selection runs as torch ops; only the selected entries (1.6 %)
//! travel to the host for quantization and packing.

use tch::{Device, Kind, Tensor};

use crate::bitpack::code_at;
use crate::compressed::CompressedTensor;
use crate::config::{ParamSpec, SparseLocoConfig};
use crate::error::SparseLocoError;
use crate::geometry::ChunkGeometry;
use crate::host::{f32_slice, par_bands};
use crate::layout::Layout;
use crate::quant::quantize;
use crate::select::{decay_add_select, subtract_transmitted};

/// Error-feedback state of one parameter.
enum Residual {
    /// Row-major values in host memory (CPU device).
    Host(Vec<f32>),
    /// Flat `f32` tensor on the device.
    Device(Tensor),
}

/// Error-feedback state for a model; produces the compressed pseudo-gradients.
pub struct ErrorFeedback {
    config: SparseLocoConfig,
    layout: Layout,
    device: Device,
    residuals: Vec<Residual>,
}

impl std::fmt::Debug for ErrorFeedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorFeedback")
            .field("config", &self.config)
            .field("params", &self.layout.len())
            .field("device", &self.device)
            .finish()
    }
}

impl ErrorFeedback {
    /// Zero state for `specs` on `device`, default config.
    pub fn new(specs: &[ParamSpec], device: Device) -> Result<Self, SparseLocoError> {
        Self::with_config(specs, SparseLocoConfig::default(), device)
    }

    /// Zero state for `specs` on `device` with `config`.
    pub fn with_config(
        specs: &[ParamSpec],
        config: SparseLocoConfig,
        device: Device,
    ) -> Result<Self, SparseLocoError> {
        Self::build(specs, config, device, device != Device::Cpu)
    }

    fn build(
        specs: &[ParamSpec],
        config: SparseLocoConfig,
        device: Device,
        tensor_ops: bool,
    ) -> Result<Self, SparseLocoError> {
        let layout = Layout::new(specs, &config)?;
        let residuals = layout
            .geometries()
            .iter()
            .map(|g| {
                Ok(if tensor_ops {
                    Residual::Device(Tensor::f_zeros([g.numel() as i64], (Kind::Float, device))?)
                } else {
                    Residual::Host(vec![0.0; g.numel()])
                })
            })
            .collect::<Result<Vec<_>, SparseLocoError>>()?;
        Ok(Self {
            config,
            layout,
            device,
            residuals,
        })
    }

    /// Same as [`Self::with_config`] but always using the torch-op path (tests compare
    /// it with the CPU kernel).
    #[cfg(test)]
    pub(crate) fn with_tensor_ops(
        specs: &[ParamSpec],
        config: SparseLocoConfig,
        device: Device,
    ) -> Result<Self, SparseLocoError> {
        Self::build(specs, config, device, true)
    }

    /// The parameters this state covers.
    pub fn specs(&self) -> &[ParamSpec] {
        self.layout.specs()
    }

    /// The config in use.
    pub fn config(&self) -> &SparseLocoConfig {
        &self.config
    }

    /// Device of the state.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Folds `pseudo_grads` (one per spec, in spec order, any float dtype and device) into
    /// the error feedback and returns the compressed tensors in spec order.
    ///
    /// On error the state of the failing tensor may already be updated; an error about
    /// non-finite values means that tensor's state must be reset with [`Self::load_state`].
    /// The caller must not mutate `pseudo_grads` from another thread meanwhile.
    pub fn compress(
        &mut self,
        pseudo_grads: &[Tensor],
    ) -> Result<Vec<CompressedTensor>, SparseLocoError> {
        if pseudo_grads.len() != self.layout.len() {
            return Err(SparseLocoError::TensorCount {
                expected: self.layout.len(),
                actual: pseudo_grads.len(),
            });
        }
        let decay = self.config.error_decay as f32;
        let mut out = Vec::with_capacity(pseudo_grads.len());
        for (((grad, spec), geom), residual) in pseudo_grads
            .iter()
            .zip(self.layout.specs())
            .zip(self.layout.geometries())
            .zip(self.residuals.iter_mut())
        {
            check_shape(spec, grad)?;
            let (indices, values) = match residual {
                Residual::Host(state) => select_on_host(state, grad, geom, decay)?,
                Residual::Device(state) => select_with_tensor_ops(state, grad, geom, decay)?,
            };
            if !values.iter().all(|v| v.is_finite()) {
                tracing::warn!(tensor = %spec.name, "error feedback holds non-finite values");
                return Err(SparseLocoError::NonFinite {
                    name: spec.name.clone(),
                });
            }
            let (codes, quant) = quantize(&values);
            let table = quant.dequant_table();
            let dequantized = |entry: usize| table[usize::from(code_at(&codes, entry))];
            match residual {
                Residual::Host(state) => {
                    let per_band_entries = geom.chunks_per_band() * geom.k();
                    par_bands(
                        state,
                        geom.band_elems(),
                        geom.bands(),
                        |first_band, group| {
                            let first = first_band * per_band_entries;
                            subtract_transmitted(
                                geom,
                                group,
                                indices.get(first..).unwrap_or(&[]),
                                values.get(first..).unwrap_or(&[]),
                                dequantized,
                                first,
                            );
                        },
                    );
                }
                Residual::Device(state) => {
                    let k = geom.k().max(1);
                    let flat: Vec<i64> = indices
                        .iter()
                        .enumerate()
                        .map(|(e, &l)| geom.flat_index(e / k, usize::from(l)) as i64)
                        .collect();
                    let kept: Vec<f32> = values
                        .iter()
                        .enumerate()
                        .map(|(e, &v)| v - dequantized(e))
                        .collect();
                    let flat = Tensor::f_from_slice(&flat)?.f_to_device(self.device)?;
                    let kept = Tensor::f_from_slice(&kept)?.f_to_device(self.device)?;
                    let _ = tch::no_grad(|| state.f_scatter_(0, &flat, &kept))?;
                }
            }
            out.push(CompressedTensor {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                geometry: *geom,
                indices,
                codes,
                quant,
            });
        }
        tracing::debug!(
            tensors = out.len(),
            entries = out.iter().map(CompressedTensor::entries).sum::<usize>(),
            "compressed pseudo-gradients"
        );
        Ok(out)
    }

    /// Copies of the error-feedback tensors (param shapes, `f32`, on the state's device),
    /// for checkpoints.
    pub fn state(&self) -> Result<Vec<Tensor>, SparseLocoError> {
        self.residuals
            .iter()
            .zip(self.layout.specs())
            .map(|(residual, spec)| {
                let t = match residual {
                    Residual::Host(state) => Tensor::f_from_slice(state)?,
                    Residual::Device(state) => deep_copy(state)?,
                };
                Ok(t.f_reshape(spec.shape.as_slice())?)
            })
            .collect()
    }

    /// Replaces the state with `tensors` (param shapes, spec order; copied).
    pub fn load_state(&mut self, tensors: Vec<Tensor>) -> Result<(), SparseLocoError> {
        if tensors.len() != self.layout.len() {
            return Err(SparseLocoError::TensorCount {
                expected: self.layout.len(),
                actual: tensors.len(),
            });
        }
        let mut fresh = Vec::with_capacity(tensors.len());
        for ((tensor, spec), current) in
            tensors.iter().zip(self.layout.specs()).zip(&self.residuals)
        {
            check_shape(spec, tensor)?;
            let flat = tensor.f_detach()?.f_to_kind(Kind::Float)?.f_reshape([-1])?;
            fresh.push(match current {
                Residual::Host(_) => {
                    let host = flat.f_to_device(Device::Cpu)?.f_contiguous()?;
                    Residual::Host(
                        f32_slice(&host)
                            .map(<[f32]>::to_vec)
                            .ok_or_else(|| not_host(spec))?,
                    )
                }
                Residual::Device(_) => {
                    Residual::Device(deep_copy(&flat.f_to_device(self.device)?)?)
                }
            });
        }
        self.residuals = fresh;
        Ok(())
    }
}

fn not_host(spec: &ParamSpec) -> SparseLocoError {
    SparseLocoError::InvalidShape {
        name: spec.name.clone(),
        shape: spec.shape.clone(),
        reason: "could not read tensor into host memory".into(),
    }
}

fn deep_copy(t: &Tensor) -> Result<Tensor, SparseLocoError> {
    let mut copy = t.f_zeros_like()?;
    copy.f_copy_(t)?;
    Ok(copy)
}

fn check_shape(spec: &ParamSpec, tensor: &Tensor) -> Result<(), SparseLocoError> {
    let actual = tensor.size();
    if actual != spec.shape {
        return Err(SparseLocoError::ShapeMismatch {
            name: spec.name.clone(),
            expected: spec.shape.clone(),
            actual,
        });
    }
    Ok(())
}

/// CPU path: fused update + top-k over host memory, parallel over bands.
fn select_on_host(
    state: &mut [f32],
    grad: &Tensor,
    geom: &ChunkGeometry,
    decay: f32,
) -> Result<(Vec<u16>, Vec<f32>), SparseLocoError> {
    let delta = grad
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?;
    let delta = f32_slice(&delta).ok_or_else(|| SparseLocoError::InvalidShape {
        name: String::new(),
        shape: grad.size(),
        reason: "pseudo-gradient is not readable as host f32".into(),
    })?;
    let band_elems = geom.band_elems();
    let parts = par_bands(state, band_elems, geom.bands(), |first_band, group| {
        let start = first_band * band_elems;
        let d = delta.get(start..start + group.len()).unwrap_or(&[]);
        decay_add_select(geom, decay, group, d)
    });
    let mut indices = Vec::with_capacity(geom.entries());
    let mut values = Vec::with_capacity(geom.entries());
    for part in parts {
        indices.extend_from_slice(&part.indices);
        values.extend_from_slice(&part.values);
    }
    Ok((indices, values))
}

/// Device path: update and top-k as torch ops; selected entries come back to the host,
/// sorted by local index inside each chunk.
fn select_with_tensor_ops(
    state: &mut Tensor,
    grad: &Tensor,
    geom: &ChunkGeometry,
    decay: f32,
) -> Result<(Vec<u16>, Vec<f32>), SparseLocoError> {
    let device = state.device();
    let (bands, per_band) = (geom.bands() as i64, geom.chunks_per_band() as i64);
    let (br, bc) = (geom.block_rows() as i64, geom.block_cols() as i64);
    let k = geom.k();
    let (idx, vals) = tch::no_grad(|| -> Result<(Tensor, Tensor), tch::TchError> {
        let delta = grad
            .f_detach()?
            .f_to_device(device)?
            .f_to_kind(Kind::Float)?
            .f_reshape([-1])?;
        let _ = state.f_mul_scalar_(f64::from(decay))?;
        let _ = state.f_add_(&delta)?;
        let chunks = state
            .f_view([bands, br, per_band, bc])?
            .f_permute([0, 2, 1, 3])?
            .f_reshape([bands * per_band, br * bc])?;
        let (_, idx) = chunks.f_abs()?.f_topk(k as i64, 1, true, false)?;
        let vals = chunks.f_gather(1, &idx, false)?;
        Ok((idx, vals))
    })?;
    let idx = Vec::<i64>::try_from(&idx.f_to_device(Device::Cpu)?.f_reshape([-1])?)?;
    let vals = Vec::<f32>::try_from(&vals.f_to_device(Device::Cpu)?.f_reshape([-1])?)?;
    let mut indices = Vec::with_capacity(idx.len());
    let mut values = Vec::with_capacity(vals.len());
    let mut pairs: Vec<(u16, f32)> = Vec::with_capacity(k);
    for (ci, cv) in idx.chunks(k.max(1)).zip(vals.chunks(k.max(1))) {
        pairs.clear();
        pairs.extend(ci.iter().zip(cv).map(|(&i, &v)| (i as u16, v)));
        pairs.sort_unstable_by_key(|&(i, _)| i);
        for &(i, v) in &pairs {
            indices.push(i);
            values.push(v);
        }
    }
    Ok((indices, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("w", [128, 192]),
            ParamSpec::new("odd", [50, 100]),
            ParamSpec::new("bias", [130]),
            ParamSpec::new("conv", [2, 3, 64]),
        ]
    }

    fn random_grads(specs: &[ParamSpec], seed: i64) -> Vec<Tensor> {
        tch::manual_seed(seed);
        specs
            .iter()
            .map(|s| Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu)))
            .collect()
    }

    fn sorted_chunk_entries(t: &CompressedTensor) -> Vec<Vec<(u16, u8)>> {
        let k = t.geometry().k();
        (0..t.geometry().n_chunks())
            .map(|c| {
                (c * k..(c + 1) * k)
                    .map(|e| (t.indices()[e], t.code(e)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn host_kernel_and_torch_ops_agree() {
        let specs = specs();
        let config = SparseLocoConfig::default();
        let mut host = ErrorFeedback::with_config(&specs, config, Device::Cpu).unwrap();
        let mut ops = ErrorFeedback::with_tensor_ops(&specs, config, Device::Cpu).unwrap();
        for round in 0..3 {
            let grads = random_grads(&specs, round);
            let a = host.compress(&grads).unwrap();
            let b = ops.compress(&grads).unwrap();
            for (ta, tb) in a.iter().zip(&b) {
                assert_eq!(
                    sorted_chunk_entries(ta),
                    sorted_chunk_entries(tb),
                    "{}",
                    ta.name()
                );
                assert_eq!(ta.quant(), tb.quant());
            }
            for (sa, sb) in host.state().unwrap().iter().zip(ops.state().unwrap()) {
                assert_eq!(sa.size(), sb.size());
                assert!(sa.allclose(&sb, 0.0, 0.0, false));
            }
        }
    }

    #[test]
    fn residual_keeps_what_was_not_transmitted() {
        let specs = specs();
        let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
        let first = random_grads(&specs, 1);
        ef.compress(&first).unwrap();
        let before = ef.state().unwrap();
        let delta = random_grads(&specs, 2);
        let sent = ef.compress(&delta).unwrap();
        let after = ef.state().unwrap();
        for (((b, d), s), a) in before.iter().zip(&delta).zip(&sent).zip(&after) {
            let accumulated = b * 0.95 + d;
            let dense = crate::decompress(s, Device::Cpu).unwrap();
            let expected = &accumulated - &dense;
            assert!(a.allclose(&expected, 1e-6, 1e-6, false), "{}", s.name());
            // Exactly k entries per chunk, at the largest magnitudes of the accumulation.
            let geom = s.geometry();
            let acc: Vec<f32> = Vec::try_from(&accumulated.reshape([-1])).unwrap();
            for chunk in 0..geom.n_chunks() {
                let chosen: Vec<usize> = s.indices()[chunk * geom.k()..(chunk + 1) * geom.k()]
                    .iter()
                    .map(|&l| usize::from(l))
                    .collect();
                let min_chosen = chosen
                    .iter()
                    .map(|&l| acc[geom.flat_index(chunk, l)].abs())
                    .fold(f32::INFINITY, f32::min);
                for l in (0..geom.chunk_elems()).filter(|l| !chosen.contains(l)) {
                    assert!(acc[geom.flat_index(chunk, l)].abs() <= min_chosen);
                }
            }
        }
    }

    #[test]
    fn mass_is_conserved_without_decay() {
        let specs = specs();
        let config = SparseLocoConfig {
            error_decay: 1.0,
            ..SparseLocoConfig::default()
        };
        let mut ef = ErrorFeedback::with_config(&specs, config, Device::Cpu).unwrap();
        let mut inputs: Vec<Tensor> = specs
            .iter()
            .map(|s| Tensor::zeros(s.shape.as_slice(), (Kind::Float, Device::Cpu)))
            .collect();
        let mut transmitted = inputs.iter().map(Tensor::zeros_like).collect::<Vec<_>>();
        for round in 0..5 {
            let grads = random_grads(&specs, 10 + round);
            for (sum, g) in inputs.iter_mut().zip(&grads) {
                *sum = &*sum + g;
            }
            for (sum, t) in transmitted.iter_mut().zip(ef.compress(&grads).unwrap()) {
                *sum = &*sum + crate::decompress(&t, Device::Cpu).unwrap();
            }
        }
        for ((input, sent), residual) in inputs.iter().zip(&transmitted).zip(ef.state().unwrap()) {
            let total = sent + &residual;
            assert!(total.allclose(input, 1e-5, 1e-5, false));
            // Something was actually transmitted and something kept.
            assert!(sent.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
        // The 2-D tensor keeps most of its mass in the residual (1.6 % density).
        assert!(
            ef.state().unwrap()[0]
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );
    }

    #[test]
    fn state_round_trips_and_rejects_wrong_shapes() {
        let specs = specs();
        let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
        ef.compress(&random_grads(&specs, 3)).unwrap();
        let saved = ef.state().unwrap();
        let next = random_grads(&specs, 4);
        let a = ef.compress(&next).unwrap();
        let mut restored = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
        restored.load_state(saved).unwrap();
        assert_eq!(restored.compress(&next).unwrap(), a);

        let mut wrong = random_grads(&specs, 5);
        wrong[0] = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(
            ef.load_state(wrong.iter().map(Tensor::shallow_clone).collect()),
            Err(SparseLocoError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            ef.compress(&wrong),
            Err(SparseLocoError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            ef.compress(&wrong[..1]),
            Err(SparseLocoError::TensorCount { .. })
        ));
    }

    #[test]
    fn non_finite_pseudo_gradients_are_reported() {
        let specs = vec![ParamSpec::new("w", [64, 64])];
        let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
        let g = Tensor::zeros([64, 64], (Kind::Float, Device::Cpu));
        let _ = g.get(3).get(5).fill_(f64::NAN);
        assert!(matches!(
            ef.compress(&[g]),
            Err(SparseLocoError::NonFinite { .. })
        ));
    }

    #[test]
    fn bf16_pseudo_gradients_are_accepted() {
        let specs = specs();
        let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
        let grads: Vec<Tensor> = random_grads(&specs, 6)
            .iter()
            .map(|g| g.to_kind(Kind::BFloat16))
            .collect();
        let out = ef.compress(&grads).unwrap();
        assert_eq!(out.len(), specs.len());
    }
}
