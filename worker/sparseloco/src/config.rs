//! Compression settings and the caller's description of the model parameters.

use crate::error::SparseLocoError;

/// Largest block edge: with 2-D chunks of at most 64 x 64 elements every in-chunk
/// position fits in the 12 bits of the wire format.
pub const MAX_CHUNK_EDGE: i64 = 64;

/// Largest parameter name accepted (the wire format stores the length as `u16`).
pub const MAX_NAME_LEN: usize = 1024;

/// Largest number of dimensions accepted for a parameter.
pub const MAX_NDIM: usize = 8;

/// SparseLoCo compression settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseLocoConfig {
    /// Upper bound of the block edge: each dimension is split into blocks of its largest
    /// divisor not above this (1..=64).
    pub chunk: i64,
    /// Entries kept per chunk (`k = min(topk, chunk elements)`).
    pub topk: i64,
    /// Error-feedback decay: `e <- error_decay * e + delta`.
    pub error_decay: f64,
}

impl Default for SparseLocoConfig {
    fn default() -> Self {
        Self {
            chunk: 64,
            topk: 64,
            error_decay: 0.95,
        }
    }
}

impl SparseLocoConfig {
    /// Checks the settings are usable with the 12-bit wire format.
    pub fn validate(&self) -> Result<(), SparseLocoError> {
        if !(1..=MAX_CHUNK_EDGE).contains(&self.chunk) {
            return Err(SparseLocoError::InvalidConfig(format!(
                "chunk must be in 1..={MAX_CHUNK_EDGE}, got {}",
                self.chunk
            )));
        }
        if !(1..=MAX_CHUNK_EDGE * MAX_CHUNK_EDGE).contains(&self.topk) {
            return Err(SparseLocoError::InvalidConfig(format!(
                "topk must be in 1..=4096, got {}",
                self.topk
            )));
        }
        if !(self.error_decay.is_finite() && (0.0..=1.0).contains(&self.error_decay)) {
            return Err(SparseLocoError::InvalidConfig(format!(
                "error_decay must be in [0, 1], got {}",
                self.error_decay
            )));
        }
        Ok(())
    }
}

/// Name and shape of one model parameter, in the order the model lists them.
///
/// Both the sender and the receiver of a payload hold the same list; the decoder checks
/// every record against it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParamSpec {
    /// Parameter name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Parameter shape (every dimension at least 1).
    pub shape: Vec<i64>,
}

impl ParamSpec {
    /// Convenience constructor.
    pub fn new(name: impl Into<String>, shape: impl Into<Vec<i64>>) -> Self {
        Self {
            name: name.into(),
            shape: shape.into(),
        }
    }

    /// Number of elements (`usize::MAX` when a dimension is negative or the product overflows).
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
            .unwrap_or(usize::MAX)
    }
}
