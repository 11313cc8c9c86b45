//! Bridges tch tensors and the safetensors format.

use std::borrow::Cow;
use std::cell::Cell;

use safetensors::tensor::{Dtype, TensorView, View};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// safetensors dtype of a tch kind (the kinds this crate stores).
pub fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => {
            return Err(ModelError::Shape(format!(
                "cannot store tensors of kind {other:?}"
            )));
        }
    })
}

/// tch kind of a safetensors dtype.
pub fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => {
            return Err(ModelError::Shape(format!(
                "unsupported safetensors dtype {other:?}"
            )));
        }
    })
}

/// A tensor staged for writing: CPU, contiguous, bytes produced lazily one tensor at a
/// time (so a checkpoint never holds a second full copy of the model in memory).
pub struct StagedTensor<'a> {
    tensor: Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
    failed: &'a Cell<bool>,
}

impl<'a> StagedTensor<'a> {
    /// Stages `tensor` (converted to `kind` when given). `failed` is set if copying the
    /// bytes out fails later, so the caller can discard the file.
    pub fn new(
        tensor: &Tensor,
        kind: Option<Kind>,
        failed: &'a Cell<bool>,
    ) -> Result<StagedTensor<'a>> {
        let tensor = tch::no_grad(|| -> Result<Tensor> {
            let t = tensor.f_detach()?;
            let t = match kind {
                Some(kind) if kind != t.kind() => t.f_to_kind(kind)?,
                _ => t,
            };
            Ok(t.f_to_device(Device::Cpu)?.f_contiguous()?)
        })?;
        let dtype = dtype_of(tensor.kind())?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        Ok(StagedTensor {
            tensor,
            dtype,
            shape,
            failed,
        })
    }
}

impl View for &StagedTensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let mut bytes = vec![0u8; self.data_len()];
        if let Err(error) = self.tensor.f_copy_data_u8(&mut bytes, self.tensor.numel()) {
            tracing::error!(%error, "copying tensor bytes for safetensors failed");
            self.failed.set(true);
        }
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

/// A tensor (on `device`) holding a copy of a safetensors view.
pub fn tensor_from_view(view: &TensorView<'_>, device: Device) -> Result<Tensor> {
    let kind = kind_of(view.dtype())?;
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(view.data(), &shape, kind)?.f_to_device(device)?)
}
