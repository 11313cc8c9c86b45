//! SparseLoCo compression settings and the limits the wire format puts on them.

/// Largest block edge: with 2-D chunks of at most 64 x 64 elements every in-chunk
/// position fits in the 12 bits of the wire format.
pub const MAX_CHUNK_EDGE: i64 = 64;

/// Bits per quantized value on the wire (SparseLoCo's 2-bit codes; the only width encoded).
pub const QUANTIZATION_BITS: u8 = 2;

/// A compression setting outside its valid range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompressionError {
    /// The offending field (manifest spelling, e.g. `topk`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

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
    pub fn validate(&self) -> Result<(), CompressionError> {
        if !(1..=MAX_CHUNK_EDGE).contains(&self.chunk) {
            return Err(CompressionError {
                field: "chunk",
                message: format!("must be in 1..={MAX_CHUNK_EDGE}, got {}", self.chunk),
            });
        }
        let max_topk = MAX_CHUNK_EDGE * MAX_CHUNK_EDGE;
        if !(1..=max_topk).contains(&self.topk) {
            return Err(CompressionError {
                field: "topk",
                message: format!("must be in 1..={max_topk}, got {}", self.topk),
            });
        }
        if !(self.error_decay.is_finite() && (0.0..=1.0).contains(&self.error_decay)) {
            return Err(CompressionError {
                field: "errorFeedbackDecay",
                message: format!("must be in [0, 1], got {}", self.error_decay),
            });
        }
        Ok(())
    }
}
