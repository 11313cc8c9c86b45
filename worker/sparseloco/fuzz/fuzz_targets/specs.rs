//! The parameter list the fuzz target decodes against, small LLaMA-like shapes with odd
//! sizes (64 x 64 chunks, 50 x 50 chunks, vectors, a chunk kept whole); the same list as
//! `examples/fuzz_seeds.rs`, which writes the seed corpus.

use worker_sparseloco::ParamSpec;

pub fn fuzz_specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("embed", [96, 128]),
        ParamSpec::new("q_proj", [128, 128]),
        ParamSpec::new("odd", [50, 100]),
        ParamSpec::new("norm", [128]),
        ParamSpec::new("tiny", [7]),
    ]
}
