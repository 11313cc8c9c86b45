//! SparseLoCo compression for decentralized training.
//!
//! Pipeline of one window, per parameter:
//! 1. [`ErrorFeedback::compress`]: `e <- 0.95 e + delta`; per chunk (64 x 64 for 2-D
//!    weights, 64 for vectors) keep the 64 largest-magnitude entries; quantize them to
//!    2 bits per tensor; `e <- e - dequantized`.
//! 2. [`encode`] a [`GradientPayload`] (window, uid, tensors) into the versioned wire
//!    format v2: Golomb-Rice coded index gaps, 2-bit codes as a bit plane plus exceptions
//!    (rANS when the codes are not nearly binary), CRC32 trailer
//!    (about 240x smaller than fp32; v1, 12-bit indices and packed codes, stays readable).
//! 3. [`decode`] untrusted bytes against the expected [`ParamSpec`]s (typed
//!    [`WireError`]s, never a panic), [`aggregate`] the peers (median-norm clipping,
//!    per-coordinate mean) and apply [`outer_step`] (`p <- p - 0.4 * agg`).
//!
//! For validators: [`validate_payload`], [`index_overlap`] (copy detection),
//! [`GradientPayload::tensor_norms`], [`decompress`] for single-peer evaluation.
//!
//! ```no_run
//! use tch::{Device, Kind, Tensor};
//! use worker_sparseloco::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let specs = vec![ParamSpec::new("w", [128, 64]), ParamSpec::new("b", [64])];
//! let device = Device::cuda_if_available();
//! let mut ef = ErrorFeedback::new(&specs, device)?;
//! let deltas: Vec<Tensor> =
//!     specs.iter().map(|s| Tensor::randn(s.shape.as_slice(), (Kind::Float, device))).collect();
//! let payload = GradientPayload { window: 7, uid: 3, tensors: ef.compress(&deltas)? };
//! let bytes = encode(&payload);
//!
//! let received = decode(&bytes, &specs)?; // typed WireError on anything malformed
//! received.check_origin(7, 3)?;
//! let update = aggregate(&[received], &specs, device)?;
//! let params: Vec<Tensor> = specs.iter().map(|s| Tensor::zeros(s.shape.as_slice(), (Kind::Float, device))).collect();
//! outer_step(&params, &update, DEFAULT_OUTER_LR)?;
//! # Ok(())
//! # }
//! ```

mod aggregate;
mod bitpack;
mod code_plane;
mod compressed;
mod config;
mod error;
mod error_feedback;
mod geometry;
mod host;
mod layout;
mod quant;
mod rans;
mod rice;
mod select;
mod validate;
mod wire;

pub use aggregate::{
    DEFAULT_OUTER_LR, aggregate, aggregate_with_config, clip_factors, decompress, decompress_batch,
    decompress_payload, outer_step,
};
pub use bitpack::{packed_codes_len, packed_indices_len};
pub use compressed::{CompressedTensor, GradientPayload, index_overlap};
pub use config::{MAX_CHUNK_EDGE, MAX_NAME_LEN, MAX_NDIM, ParamSpec, SparseLocoConfig};
pub use error::{SparseLocoError, WireError};
pub use error_feedback::ErrorFeedback;
pub use geometry::{ChunkGeometry, MAX_NUMEL, largest_divisor_at_most};
pub use quant::{NUM_BINS, QuantParams};
pub use rans::FREQ_BITS;
pub use rice::MAX_RICE_PARAM;
pub use validate::validate_payload;
pub use wire::{
    MAGIC, WIRE_VERSION, WireVersion, compression_ratio, compression_ratio_of_len, decode,
    decode_with_config, dense_bytes, encode, encode_as, encoded_len, encoded_len_as,
    max_encoded_len, wire_version,
};
