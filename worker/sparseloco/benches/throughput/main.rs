//! Throughput of the SparseLoCo pipeline on ~100M LLaMA-shaped parameters (CPU).
//!
//! `cargo bench -p worker-sparseloco --profile dev`; environment: `SPARSELOCO_BENCH_THREADS`
//! (default 2, applied with `tch::set_num_threads`), `SPARSELOCO_BENCH_PEERS` (default 8).
//! Compare with `benches/reference_torch.py` (same tensors, same steps in plain PyTorch).

mod shapes;

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use worker_sparseloco::{ErrorFeedback, GradientPayload, aggregate, decode, dense_bytes, encode};

const AGGREGATE_RUNS: usize = 5;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads = env_usize("SPARSELOCO_BENCH_THREADS", 2);
    let peers = env_usize("SPARSELOCO_BENCH_PEERS", 8).max(2);
    tch::set_num_threads(threads as i32);
    let specs = shapes::bench_specs();
    let numel: usize = specs.iter().map(|s| s.numel()).sum();
    println!(
        "sparseloco (Rust/tch): {} tensors, {numel} parameters, {threads} threads, {peers} peers",
        specs.len()
    );

    tch::manual_seed(0);
    let grads: Vec<Tensor> = specs
        .iter()
        .map(|s| Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu)))
        .collect();
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu)?;

    // Round 0 warms up (first touch of the error-feedback memory); the next `peers`
    // rounds are timed and their payloads become the peers of the aggregation.
    let start = Instant::now();
    let warm = ef.compress(&grads)?;
    let _ = encode(&GradientPayload {
        window: 0,
        uid: 0,
        tensors: warm,
    });
    println!(
        "warm-up compress+encode: {:.3} s",
        start.elapsed().as_secs_f64()
    );

    let mut wire = Vec::with_capacity(peers);
    let mut times = Vec::with_capacity(peers);
    for uid in 0..peers {
        let start = Instant::now();
        let tensors = ef.compress(&grads)?;
        let bytes = encode(&GradientPayload {
            window: 1,
            uid: uid as u16,
            tensors,
        });
        times.push(start.elapsed().as_secs_f64());
        wire.push(bytes);
    }
    let (compress_best, compress_s) = best_and_median(&mut times);

    let mut agg_times = Vec::new();
    let mut decode_s = 0.0;
    for _ in 0..AGGREGATE_RUNS {
        let start = Instant::now();
        let payloads = wire
            .iter()
            .map(|b| decode(b, &specs))
            .collect::<Result<Vec<_>, _>>()?;
        decode_s = start.elapsed().as_secs_f64();
        let update = aggregate(&payloads, &specs, Device::Cpu)?;
        agg_times.push(start.elapsed().as_secs_f64());
        drop(update);
    }
    let (aggregate_best, aggregate_s) = best_and_median(&mut agg_times);

    let wire_bytes = wire[0].len();
    let fp32 = dense_bytes(&specs, 4);
    let bf16 = dense_bytes(&specs, 2);
    let rate = |s: f64| numel as f64 / s / 1e6;
    println!(
        "compress+encode (1 peer):   median {compress_s:.3} s = {:.1} M elements/s   best {compress_best:.3} s = {:.1} M elements/s",
        rate(compress_s),
        rate(compress_best)
    );
    println!(
        "decode+aggregate ({peers} peers): median {aggregate_s:.3} s = {:.1} M elements/s   best {aggregate_best:.3} s = {:.1} M elements/s   (decode alone {decode_s:.3} s)",
        rate(aggregate_s),
        rate(aggregate_best)
    );
    println!(
        "wire bytes per peer: {wire_bytes}  dense fp32 {fp32}  dense bf16 {bf16}  ratio vs fp32 {:.2}x  vs bf16 {:.2}x",
        fp32 as f64 / wire_bytes as f64,
        bf16 as f64 / wire_bytes as f64
    );
    Ok(())
}

/// (best, median) of the timings.
fn best_and_median(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}
