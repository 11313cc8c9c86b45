//! Training-step throughput (forward + backward + clip + AdamW) and evaluation throughput
//! on the CPU, for the tiny and 150M configurations. Compare with
//! `benches/reference_torch.py`, which runs the same step in PyTorch.
//!
//! `cargo bench -p worker-model --profile dev` (set `WORKER_MODEL_BENCH=tiny` or `150m` to
//! run one configuration).

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use worker_model::{AdamWConfig, Batch, InnerTrainer, Llama, LlamaConfig};

struct Case {
    name: &'static str,
    config: LlamaConfig,
    batch: i64,
    warmup: usize,
    steps: usize,
}

fn random_batch(config: &LlamaConfig, batch: i64) -> Batch {
    let shape = [batch, config.seq_len + 1];
    let tokens = Tensor::randint(config.vocab_size, shape, (Kind::Int64, Device::Cpu));
    Batch {
        input_ids: tokens.narrow(1, 0, config.seq_len),
        labels: tokens.narrow(1, 1, config.seq_len).contiguous(),
    }
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (Linux, USER_HZ = 100). Less sensitive to a busy machine than wall time.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Median of the samples (robust to a busy machine).
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

fn run(case: &Case) -> Result<(), worker_model::ModelError> {
    let started = Instant::now();
    let mut model = Llama::new(case.config.clone(), Device::Cpu, 0)?;
    let init_s = started.elapsed().as_secs_f64();
    let mut trainer = InnerTrainer::new(AdamWConfig::default(), &model)?;
    let batch = random_batch(&case.config, case.batch);
    let tokens = (case.batch * case.config.seq_len) as f64;
    for _ in 0..case.warmup {
        trainer.train_step(&mut model, std::slice::from_ref(&batch))?;
    }
    let mut train = Vec::with_capacity(case.steps);
    let cpu_start = process_cpu_seconds();
    for _ in 0..case.steps {
        let started = Instant::now();
        trainer.train_step(&mut model, std::slice::from_ref(&batch))?;
        train.push(started.elapsed().as_secs_f64());
    }
    let train_cpu = (process_cpu_seconds() - cpu_start) / case.steps as f64;
    let mut eval = Vec::with_capacity(case.steps);
    for _ in 0..case.steps {
        let started = Instant::now();
        model.loss_on(&batch)?;
        eval.push(started.elapsed().as_secs_f64());
    }
    let (train_s, eval_s) = (median(train), median(eval));
    println!(
        "{:<5} params {:>11}  batch {}x{}  train step (median) {:>8.1} ms  {:>9.0} tokens/s  ({:.2} cpu-s/step) | eval {:>8.1} ms  {:>9.0} tokens/s  (init {:.1} s)",
        case.name,
        case.config.param_count(),
        case.batch,
        case.config.seq_len,
        train_s * 1e3,
        tokens / train_s,
        train_cpu,
        eval_s * 1e3,
        tokens / eval_s,
        init_s,
    );
    Ok(())
}

fn main() {
    tch::manual_seed(0);
    let only = std::env::var("WORKER_MODEL_BENCH")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let cases = [
        Case {
            name: "tiny",
            config: LlamaConfig::tiny(),
            batch: 8,
            warmup: 3,
            steps: 20,
        },
        Case {
            name: "150m",
            config: LlamaConfig {
                seq_len: 256,
                ..LlamaConfig::m150()
            },
            batch: 2,
            warmup: 1,
            steps: 3,
        },
    ];
    println!(
        "worker-model train-step bench: CPU, {} threads, fp32",
        tch::get_num_threads()
    );
    for case in &cases {
        if !only.is_empty() && only != case.name {
            continue;
        }
        if let Err(error) = run(case) {
            eprintln!("{}: {error}", case.name);
            std::process::exit(1);
        }
    }
}
