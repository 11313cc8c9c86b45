//! Throughput and wire size of the SparseLoCo pipeline on ~100M LLaMA-shaped parameters
//! and on one 4096 x 4096 matrix (CPU), wire format v1 beside v2 in the same run.
//!
//! `cargo bench -p worker-sparseloco --profile dev`; environment: `SPARSELOCO_BENCH_THREADS`
//! (default 2, applied with `tch::set_num_threads`), `SPARSELOCO_BENCH_PEERS` (default 8).
//! Compare with `benches/reference_torch.py` (same tensors, same steps in plain PyTorch).
//! Elements/s count dense parameters covered per second.

mod shapes;

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use worker_sparseloco::{
    ErrorFeedback, GradientPayload, ParamSpec, WireVersion, aggregate, decode, dense_bytes,
    encode_as,
};

const AGGREGATE_RUNS: usize = 5;
const MATRIX_RUNS: usize = 11;
const VERSIONS: [WireVersion; 2] = [WireVersion::V1, WireVersion::V2];

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
    let warm = GradientPayload {
        window: 0,
        uid: 0,
        tensors: ef.compress(&grads)?,
    };
    for v in VERSIONS {
        let _ = encode_as(&warm, v);
    }
    println!(
        "warm-up compress+encode: {:.3} s",
        start.elapsed().as_secs_f64()
    );

    let mut wire: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    let mut compress_t = Vec::new();
    let mut encode_t: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut pipeline_t: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for uid in 0..peers {
        let start = Instant::now();
        let payload = GradientPayload {
            window: 1,
            uid: uid as u16,
            tensors: ef.compress(&grads)?,
        };
        let c = start.elapsed().as_secs_f64();
        compress_t.push(c);
        for (i, v) in VERSIONS.into_iter().enumerate() {
            let start = Instant::now();
            let bytes = encode_as(&payload, v);
            let e = start.elapsed().as_secs_f64();
            encode_t[i].push(e);
            pipeline_t[i].push(c + e);
            wire[i].push(bytes);
        }
    }

    let mut decode_t: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut agg_t: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..AGGREGATE_RUNS {
        for (i, bytes) in wire.iter().enumerate() {
            let start = Instant::now();
            let mut payloads = Vec::with_capacity(peers);
            for b in bytes {
                let one = Instant::now();
                payloads.push(decode(b, &specs)?);
                decode_t[i].push(one.elapsed().as_secs_f64());
            }
            let update = aggregate(&payloads, &specs, Device::Cpu)?;
            agg_t[i].push(start.elapsed().as_secs_f64());
            drop(update);
        }
    }

    let rate = |s: f64| numel as f64 / s / 1e6;
    let line = |what: &str, t: &mut Vec<f64>| {
        let (best, median) = best_and_median(t);
        println!(
            "  {what:<28} median {:9.3} ms = {:>8.1} M el/s   best {:9.3} ms = {:>8.1} M el/s",
            median * 1e3,
            rate(median),
            best * 1e3,
            rate(best)
        );
    };
    code_statistics(&warm);
    line("compress (1 peer)", &mut compress_t);
    for (i, v) in VERSIONS.into_iter().enumerate() {
        println!("{v:?}:");
        line("encode (1 peer)", &mut encode_t[i]);
        line("decode (1 peer)", &mut decode_t[i]);
        line("compress+encode (1 peer)", &mut pipeline_t[i]);
        line(&format!("decode+aggregate ({peers} peers)"), &mut agg_t[i]);
        sizes(&specs, wire[i][0].len());
    }

    // The speed target of v2: encode + decode per peer no slower than v1's, same run.
    let mut sums = [(0.0, 0.0); 2];
    for (i, sum) in sums.iter_mut().enumerate() {
        let (eb, em) = best_and_median(&mut encode_t[i]);
        let (db, dm) = best_and_median(&mut decode_t[i]);
        *sum = (em + dm, eb + db);
    }
    println!(
        "encode+decode per peer: V1 median {:.2} ms (best {:.2} ms), V2 median {:.2} ms (best {:.2} ms): V2/V1 {:.3} (best {:.3})",
        sums[0].0 * 1e3,
        sums[0].1 * 1e3,
        sums[1].0 * 1e3,
        sums[1].1 * 1e3,
        sums[1].0 / sums[0].0,
        sums[1].1 / sums[0].1,
    );

    matrix()?;
    Ok(())
}

/// Encode/decode of one 4096 x 4096 matrix in both versions.
fn matrix() -> Result<(), Box<dyn std::error::Error>> {
    let specs = vec![ParamSpec::new(
        "model.layers.0.mlp.up_proj.weight",
        [4096, 4096],
    )];
    tch::manual_seed(1);
    let g = Tensor::randn([4096, 4096], (Kind::Float, Device::Cpu));
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu)?;
    let _ = ef.compress(std::slice::from_ref(&g))?;
    let payload = GradientPayload {
        window: 2,
        uid: 0,
        tensors: ef.compress(&[g])?,
    };
    let numel = 4096.0 * 4096.0;
    println!("4096 x 4096 matrix ({MATRIX_RUNS} runs each):");
    for v in VERSIONS {
        let mut enc = Vec::new();
        let mut dec = Vec::new();
        let mut bytes = Vec::new();
        for _ in 0..MATRIX_RUNS {
            let start = Instant::now();
            bytes = encode_as(&payload, v);
            enc.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            let back = decode(&bytes, &specs)?;
            dec.push(start.elapsed().as_secs_f64());
            assert!(back == payload, "round trip");
        }
        let (eb, em) = best_and_median(&mut enc);
        let (db, dm) = best_and_median(&mut dec);
        println!(
            "{v:?}: encode median {:.1} / best {:.1} M el/s, decode median {:.1} / best {:.1} M el/s",
            numel / em / 1e6,
            numel / eb / 1e6,
            numel / dm / 1e6,
            numel / db / 1e6
        );
        sizes(&specs, bytes.len());
    }
    Ok(())
}

/// Code histogram of a payload and its entropy: what the v2 code coder can reach.
fn code_statistics(payload: &GradientPayload) {
    let mut hist = [0u64; 4];
    for t in &payload.tensors {
        for (h, c) in hist.iter_mut().zip(t.code_histogram()) {
            *h += c;
        }
    }
    let total: u64 = hist.iter().sum();
    let entropy: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.log2()
        })
        .sum();
    println!(
        "codes: {total} entries, histogram {hist:?}, entropy {entropy:.3} bits/code (v1 stores 2)"
    );
}

fn sizes(specs: &[ParamSpec], wire: usize) {
    let fp32 = dense_bytes(specs, 4);
    let bf16 = dense_bytes(specs, 2);
    println!(
        "  wire bytes {wire}  (dense fp32 {fp32}, bf16 {bf16})  ratio vs fp32 {:.2}x  vs bf16 {:.2}x",
        fp32 as f64 / wire as f64,
        bf16 as f64 / wire as f64,
    );
}

/// (best, median) of the timings.
fn best_and_median(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}
