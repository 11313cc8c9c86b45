//! Compression settings and the caller's description of the model parameters.

// The compression settings and their limits are protocol rules of the run manifest.
pub use run_manifest::compression::{MAX_CHUNK_EDGE, SparseLocoConfig};

/// Largest parameter name accepted (the wire format stores the length as `u16`).
pub const MAX_NAME_LEN: usize = 1024;

/// Largest number of dimensions accepted for a parameter.
pub const MAX_NDIM: usize = 8;

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
