//! Inner-step time of one global batch over 1 and 2 Gloo ranks (processes) on the CPU.
//!
//! `cargo bench -p worker-distributed --profile dev --bench data_parallel_step`
//! (`WD_BENCH_CONFIG=tiny|150m`, default 150m; `WD_BENCH_STEPS`, default 5). The global
//! batch is fixed (2 micro-batches of 1 x 256 tokens for 150m), so 2 ranks each do half
//! the forward/backward and then all-reduce the gradients. The machine's cores are split
//! evenly between the ranks (libtorch intra-op threads = cores / ranks); `WD_BENCH_RUNS`
//! picks the runs (default `1,1t1,2,2z`, see `main`). Prints best and median step,
//! tokens/s, optimizer bytes and peak RSS per rank.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tch::{Device, Tensor};
use worker_distributed::{DEFAULT_BUCKET_BYTES, ProcessGroup, Store, TrainerGroup};
use worker_model::{AdamWConfig, Batch, InnerTrainer, Llama, LlamaConfig, OptimizerSharding};

fn main() {
    if let Ok(rank) = std::env::var("WD_BENCH_RANK") {
        rank_main(rank.parse().expect("rank"));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("data_parallel_step: benchmark");
        return;
    }
    let config = std::env::var("WD_BENCH_CONFIG").unwrap_or_else(|_| "150m".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("config {config}, {cores} cores");
    // "1": 1 rank on every core, "1t1": 1 rank on one core, "2": 2 ranks, "2z": 2 ranks ZeRO-1.
    let runs = std::env::var("WD_BENCH_RUNS").unwrap_or_else(|_| "1,1t1,2,2z".into());
    for run in runs.split(',') {
        let (world, sharding, threads) = match run {
            "1" => (1, "replicated", cores),
            "1t1" => (1, "replicated", 1),
            "2" => (2, "replicated", (cores / 2).max(1)),
            "2z" => (2, "zero1", (cores / 2).max(1)),
            other => panic!("unknown WD_BENCH_RUNS entry {other}"),
        };
        let dir = std::env::temp_dir().join(format!(
            "wd-bench-{}-{world}-{sharding}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        let exe = std::env::current_exe().expect("bench binary");
        let children: Vec<_> = (0..world)
            .map(|rank| {
                Command::new(&exe)
                    .env("WD_BENCH_RANK", rank.to_string())
                    .env("WD_BENCH_WORLD", world.to_string())
                    .env("WD_BENCH_DIR", &dir)
                    .env("WD_BENCH_CONFIG", &config)
                    .env("WD_BENCH_SHARDING", sharding)
                    .env("WD_BENCH_THREADS", threads.to_string())
                    .spawn()
                    .expect("spawn rank")
            })
            .collect();
        for mut child in children {
            let status = child.wait().expect("wait rank");
            assert!(status.success(), "rank failed: {status}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn rank_main(rank: usize) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name}"));
    let world: usize = var("WD_BENCH_WORLD").parse().expect("world");
    let threads: i32 = var("WD_BENCH_THREADS").parse().expect("threads");
    let steps: usize = std::env::var("WD_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    tch::set_num_threads(threads);
    let (config, seq, micro_batches) = match var("WD_BENCH_CONFIG").as_str() {
        "tiny" => (LlamaConfig::tiny(), 64usize, 8usize),
        _ => (LlamaConfig::m150(), 256, 2),
    };
    let sharding = match var("WD_BENCH_SHARDING").as_str() {
        "zero1" => OptimizerSharding::Zero1,
        _ => OptimizerSharding::Replicated,
    };
    let timeout = Duration::from_secs(300);
    let store = Store::file(
        &std::path::Path::new(&var("WD_BENCH_DIR")).join("store"),
        world,
        timeout,
    )
    .expect("store");
    let group = ProcessGroup::gloo(&store, rank, world, timeout, "127.0.0.1").expect("group");
    let group = TrainerGroup::new(Arc::new(group), DEFAULT_BUCKET_BYTES);
    let vocab = config.vocab_size;
    let params = config.param_count();
    let mut model = Llama::new(config, Device::Cpu, 1).expect("model");
    let mut trainer =
        InnerTrainer::data_parallel(AdamWConfig::default(), &model, Box::new(group), sharding)
            .expect("trainer");
    tch::manual_seed(0);
    let batches: Vec<Batch> = (0..micro_batches)
        .map(|_| {
            let ids = Tensor::randint(vocab, [1, seq as i64 + 1], (tch::Kind::Int64, Device::Cpu));
            let sample = Vec::<i64>::try_from(ids.reshape([-1])).expect("ids");
            Batch::from_samples(&[sample], None).expect("batch")
        })
        .collect();
    let mut times = Vec::new();
    for step in 0..=steps {
        let start = Instant::now();
        trainer.train_step(&mut model, &batches).expect("step");
        if step > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let best = times[0];
    let median = times[times.len() / 2];
    let tokens = (micro_batches * seq) as f64;
    println!(
        "{world} rank(s) {sharding:?} rank {rank}: {params} params, {threads} threads/rank, step best {best:.3} s / median {median:.3} s = {:.0} tok/s (global batch {} tokens), optimizer state {:.1} MiB, peak RSS {} MiB",
        tokens / median,
        tokens as usize,
        trainer.optimizer().state_bytes() as f64 / (1 << 20) as f64,
        peak_rss_mib()
    );
}

/// `VmHWM` of this process, MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
