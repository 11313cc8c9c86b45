//! Error types: [`SparseLocoError`] for compression and aggregation, [`WireError`] for
//! payloads that do not match the expected parameters (decoding and validation).

/// Errors of compression, decompression and aggregation.
#[derive(Debug, thiserror::Error)]
pub enum SparseLocoError {
    /// The configuration cannot be used.
    #[error("invalid SparseLoCo config: {}: {}", .0.field, .0.message)]
    InvalidConfig(#[from] run_manifest::compression::CompressionError),
    /// A parameter spec is unusable (non-positive dimension, too large, ...).
    #[error("invalid parameter {name} with shape {shape:?}: {reason}")]
    InvalidShape {
        /// Parameter name.
        name: String,
        /// Offending shape.
        shape: Vec<i64>,
        /// What is wrong.
        reason: String,
    },
    /// The parameter list itself is unusable (duplicate or overlong names).
    #[error("invalid parameter list: {0}")]
    InvalidSpecs(String),
    /// A caller passed the wrong number of tensors.
    #[error("expected {expected} tensors, got {actual}")]
    TensorCount {
        /// Number of parameters in the specs.
        expected: usize,
        /// Number of tensors passed.
        actual: usize,
    },
    /// A caller passed a tensor whose shape differs from its spec.
    #[error("tensor {name}: expected shape {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// Parameter name.
        name: String,
        /// Shape from the spec.
        expected: Vec<i64>,
        /// Shape of the tensor passed.
        actual: Vec<i64>,
    },
    /// The accumulated error feedback of a tensor holds NaN or infinity, so it cannot be
    /// quantized. The state of that tensor should be reset.
    #[error("tensor {name}: error feedback holds NaN or infinite values")]
    NonFinite {
        /// Parameter name.
        name: String,
    },
    /// `aggregate` was called without any payload.
    #[error("no peer payloads to aggregate")]
    NoPeers,
    /// A payload does not match the expected parameters.
    #[error(transparent)]
    Payload(#[from] WireError),
    /// libtorch reported an error.
    #[error("torch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// Why a payload (encoded bytes or an in-memory [`crate::GradientPayload`]) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The input ended before a field could be read.
    #[error("truncated payload: {field} needs {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// The payload does not start with the SparseLoCo magic.
    #[error("not a SparseLoCo payload (bad magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// The format version is not one this build understands.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u16),
    /// The CRC32 trailer does not match the content.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// CRC stored in the trailer.
        stored: u32,
        /// CRC of the bytes before the trailer.
        computed: u32,
    },
    /// Bytes remain after the last record.
    #[error("{0} unexpected bytes after the last tensor record")]
    TrailingBytes(usize),
    /// The header announces a different number of tensors than expected.
    #[error("payload has {actual} tensors, expected {expected}")]
    TensorCount {
        /// Number of parameters expected.
        expected: usize,
        /// Number announced or present.
        actual: usize,
    },
    /// A tensor name is not valid UTF-8 or too long.
    #[error("tensor name is not valid UTF-8 or longer than the limit")]
    InvalidName,
    /// A tensor name is not among the expected parameters.
    #[error("unexpected tensor {0}")]
    UnknownTensor(String),
    /// A tensor appears twice.
    #[error("tensor {0} appears twice")]
    DuplicateTensor(String),
    /// A tensor is absent or out of order in an in-memory payload.
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    /// The shape differs from the expected one.
    #[error("tensor {name}: shape {actual:?} differs from expected {expected:?}")]
    ShapeMismatch {
        /// Parameter name.
        name: String,
        /// Expected shape.
        expected: Vec<i64>,
        /// Shape found.
        actual: Vec<u64>,
    },
    /// A geometry, count or length field differs from the value the shape implies.
    #[error("tensor {name}: {field} is {actual}, expected {expected}")]
    FieldMismatch {
        /// Parameter name.
        name: String,
        /// Field name.
        field: &'static str,
        /// Value the expected shape implies.
        expected: u64,
        /// Value found.
        actual: u64,
    },
    /// An index is not below the chunk size.
    #[error("tensor {name}: chunk {chunk} has index {index} >= {limit}")]
    IndexOutOfRange {
        /// Parameter name.
        name: String,
        /// Chunk number.
        chunk: usize,
        /// Offending index.
        index: u16,
        /// Chunk size.
        limit: usize,
    },
    /// Indices of a chunk are not strictly increasing (duplicates or unsorted).
    #[error("tensor {name}: indices of chunk {chunk} are not strictly increasing")]
    IndicesNotIncreasing {
        /// Parameter name.
        name: String,
        /// Chunk number.
        chunk: usize,
    },
    /// Unused bits at the end of a packed field are not zero.
    #[error("tensor {name}: padding bits of {field} are not zero")]
    NonZeroPadding {
        /// Parameter name.
        name: String,
        /// Field name.
        field: &'static str,
    },
    /// A coded field (v2: Rice parameter, index or code stream, code frequencies) is not
    /// in the one form the encoder writes for the entries it decodes to.
    #[error("tensor {name}: {field} is not canonically encoded")]
    NonCanonical {
        /// Parameter name.
        name: String,
        /// Field name.
        field: &'static str,
    },
    /// A variable length field is longer than any canonical encoding of it can be.
    #[error("tensor {name}: {field} is {actual}, at most {max} allowed")]
    LengthOutOfBounds {
        /// Parameter name.
        name: String,
        /// Field name.
        field: &'static str,
        /// Largest length the geometry allows.
        max: u64,
        /// Length found.
        actual: u64,
    },
    /// Shift or centroids are NaN or infinite.
    #[error("tensor {name}: quantization parameters are not finite")]
    NonFiniteQuantParams {
        /// Parameter name.
        name: String,
    },
    /// Centroids are not in non-decreasing order (impossible for honest quantization).
    #[error("tensor {name}: centroids are not ordered")]
    UnorderedCentroids {
        /// Parameter name.
        name: String,
    },
    /// The payload belongs to another window or peer than expected.
    #[error(
        "payload is for window {window} uid {uid}, expected window {expected_window} uid {expected_uid}"
    )]
    WrongOrigin {
        /// Window in the payload.
        window: u64,
        /// Uid in the payload.
        uid: u16,
        /// Window expected.
        expected_window: u64,
        /// Uid expected.
        expected_uid: u16,
    },
    /// The expected parameter list itself is invalid.
    #[error("invalid expected parameters: {0}")]
    InvalidSpecs(String),
}
