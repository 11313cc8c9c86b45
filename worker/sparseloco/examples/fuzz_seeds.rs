//! Writes a seed corpus for the cargo-fuzz `decode` target in `fuzz/`: payloads of
//! compressed random gradients in v1 and v2, for the parameter list that target decodes
//! against (keep `fuzz_specs` in sync with `fuzz/fuzz_targets/specs.rs`).
//!
//! `cargo run -p worker-sparseloco --example fuzz_seeds -- worker/sparseloco/fuzz/corpus/decode`

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use worker_sparseloco::{ErrorFeedback, GradientPayload, ParamSpec, WireVersion, encode_as};

fn fuzz_specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("embed", [96, 128]),
        ParamSpec::new("q_proj", [128, 128]),
        ParamSpec::new("odd", [50, 100]),
        ParamSpec::new("norm", [128]),
        ParamSpec::new("tiny", [7]),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "worker/sparseloco/fuzz/corpus/decode".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let specs = fuzz_specs();
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu)?;
    for round in 0..4u64 {
        tch::manual_seed(round as i64);
        let grads: Vec<Tensor> = specs
            .iter()
            .map(|s| Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu)))
            .collect();
        let payload = GradientPayload {
            window: round,
            uid: 1,
            tensors: ef.compress(&grads)?,
        };
        for version in [WireVersion::V1, WireVersion::V2] {
            let path = dir.join(format!("{version:?}-{round}"));
            std::fs::write(&path, encode_as(&payload, version))?;
        }
    }
    println!("wrote 8 seeds to {}", dir.display());
    Ok(())
}
