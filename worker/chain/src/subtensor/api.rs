//! Static subxt interface generated from `metadata/subtensor-stripped.scale` (see
//! `tests/metadata_strip.rs` for how that file is derived from the full finney metadata).

#[allow(missing_docs, clippy::all, clippy::pedantic)]
#[subxt::subxt(runtime_metadata_path = "metadata/subtensor-stripped.scale")]
pub mod runtime {}
