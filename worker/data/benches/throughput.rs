//! Data-path figures for the README: `cargo bench -p worker-data --profile dev`. Each figure
//! is measured `RUNS` times in the same process and printed as best and median.
//!
//! * prepare: tokens/s of `prepare` (bundled tokenizer, synthetic English-like JSONL);
//! * fetch: MB/s of shards fetched from SeaweedFS into the verified cache;
//! * loader: time to read one 150M-shaped micro-batch (2 samples of 256 + 1 tokens) from a
//!   cached dataset, against the 3.0 s CPU train step of the model crate's bench.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use worker_data::{
    PrepareOptions, PrepareOutcome, S3Source, ShardCache, ShardSource, ShardedDataset, Split,
    prepare, read_manifest, upload,
};
use worker_model::Samples;
use worker_storage::testing::{SeaweedFs, unique_name};

/// 150M train step on 2 CPU threads (worker/model/README.md).
const TRAIN_STEP_SECS: f64 = 3.0;
/// Repetitions of each measurement.
const RUNS: usize = 5;

/// Best (shortest) and median of `secs`.
fn best_and_median(mut secs: Vec<f64>) -> (f64, f64) {
    secs.sort_by(f64::total_cmp);
    (secs[0], secs[secs.len() / 2])
}

fn bundled_tokenizer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundled/tokenizer.json")
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let docs: usize = std::env::var("BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let words = [
        "the", "river", "ran", "under", "a", "stone", "bridge", "where", "children", "played",
        "in", "summer", "and", "old", "men", "told", "stories", "of", "kings", "ships",
    ];
    let input = tmp.path().join("bench.jsonl");
    let mut text = String::new();
    let mut state = 7u64;
    for _ in 0..docs {
        let mut doc = String::new();
        for _ in 0..400 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            doc.push_str(words[(state >> 33) as usize % words.len()]);
            doc.push(if (state >> 20).is_multiple_of(13) {
                '.'
            } else {
                ' '
            });
        }
        text.push_str(&serde_json::json!({ "text": doc }).to_string());
        text.push('\n');
    }
    std::fs::write(&input, text).expect("input");
    let options = PrepareOptions {
        name: "bench".into(),
        tokenizer: bundled_tokenizer(),
        eos_token: "<|endoftext|>".into(),
        train: vec![input],
        held_out: vec![],
        text_field: "text".into(),
        shard_tokens: 1 << 20,
        out: tmp.path().join("out-0"),
    };
    let mut prepare_secs = Vec::new();
    let mut prepared = None;
    for run in 0..RUNS {
        let options = PrepareOptions {
            out: tmp.path().join(format!("out-{run}")),
            ..options.clone()
        };
        let started = Instant::now();
        let PrepareOutcome::Done { manifest, .. } =
            prepare(&options, |_| ControlFlow::Continue(())).expect("prepare")
        else {
            panic!("stopped");
        };
        prepare_secs.push(started.elapsed().as_secs_f64());
        prepared = Some(*manifest);
    }
    let manifest = prepared.expect("prepared");
    let tokens = manifest.total_tokens() as f64;
    let (best, median) = best_and_median(prepare_secs);
    println!(
        "prepare: {tokens} tokens, {} shards of 1 Mi tokens: best {:.0} tokens/s, median {:.0} tokens/s ({RUNS} runs)",
        manifest.shards.len(),
        tokens / best,
        tokens / median
    );

    let server = SeaweedFs::shared();
    let bucket = unique_name("bench");
    let target = S3Source::with_config(server.s3_config(&bucket), "bench").expect("s3");
    target.ensure_bucket().expect("bucket");
    upload(&tmp.path().join("out-0"), &target).expect("upload");
    let bytes: u64 = manifest.shards.iter().map(|s| s.bytes()).sum();
    let mut fetch_secs = Vec::new();
    let mut caches = Vec::new();
    for _ in 0..RUNS {
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = ShardCache::open(cache_dir.path(), 1 << 34).expect("cache");
        let started = Instant::now();
        for shard in &manifest.shards {
            cache.get(&target, shard).expect("fetch");
        }
        fetch_secs.push(started.elapsed().as_secs_f64());
        caches.push((cache_dir, cache));
    }
    let (best, median) = best_and_median(fetch_secs);
    let mb = bytes as f64 / 1e6;
    println!(
        "fetch: {} shards, {mb:.1} MB into an empty cache (GET + SHA-256 + cache write): best {:.1} MB/s, median {:.1} MB/s ({RUNS} runs)",
        manifest.shards.len(),
        mb / best,
        mb / median
    );
    let (_cache_dir, cache) = caches.pop().expect("a cache");

    let source: Arc<dyn ShardSource> = Arc::new(target);
    let manifest = read_manifest(source.as_ref(), None).expect("manifest");
    let dataset = ShardedDataset::new(
        manifest,
        Split::Train,
        source,
        Arc::new(cache),
        256,
        run_manifest::Sampling::WholeDataset {},
        42,
    )
    .expect("dataset");
    // Map every shard once (what the first window pays), then time steady-state batches.
    let warm = dataset.assigned_ids(42, 0, 0, 64).expect("ids");
    dataset.batches(&warm, 2).expect("warm");
    let rounds = 200;
    let mut loader_secs = Vec::new();
    for run in 0..RUNS as u64 {
        let started = Instant::now();
        for window in 0..rounds {
            let ids = dataset
                .assigned_ids(42, 1, run * rounds + window, 2)
                .expect("ids");
            dataset.batch(&ids).expect("batch");
        }
        loader_secs.push(started.elapsed().as_secs_f64() / rounds as f64);
    }
    let (best, median) = best_and_median(loader_secs);
    println!(
        "loader: per 2 x 257-token micro-batch (assignment + read + Batch): best {:.1} us, median {:.1} us = {:.4}% of a {TRAIN_STEP_SECS} s 150M CPU train step ({RUNS} runs of {rounds})",
        best * 1e6,
        median * 1e6,
        100.0 * median / TRAIN_STEP_SECS
    );
}
