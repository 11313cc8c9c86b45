//! Data-parallel inner training over Gloo ranks (real processes) against the single-process
//! trainer: 1, 2 and 4 ranks, replicated and ZeRO-1 AdamW, tied and untied GQA configs,
//! three windows with pseudo-gradient outer steps.

mod ranks;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ranks::{RankEnv, run_ok};
use tch::{Device, Kind, Tensor};
use worker_distributed::{DEFAULT_BUCKET_BYTES, ProcessGroup, Store, TrainerGroup};
use worker_model::{
    AdamWConfig, Batch, InnerTrainer, Llama, LlamaConfig, LrSchedule, OptimizerSharding,
    save_checkpoint,
};

const WINDOWS: u64 = 3;
const INNER_STEPS: usize = 3;
const MICRO_BATCHES: usize = 4;
const MICRO_BATCH: usize = 2;
const SEQ: usize = 32;
const SEED: u64 = 11;

fn config(name: &str) -> LlamaConfig {
    match name {
        "tiny" => LlamaConfig::tiny(),
        "untied" => LlamaConfig {
            tie_word_embeddings: false,
            ..LlamaConfig::tiny()
        },
        other => panic!("unknown config {other}"),
    }
}

fn adamw() -> AdamWConfig {
    AdamWConfig {
        schedule: LrSchedule {
            peak: 3e-3,
            warmup_steps: 2,
            total_steps: 100,
            min_ratio: 0.1,
        },
        ..AdamWConfig::default()
    }
}

/// Deterministic, learnable token streams (a noisy repeating pattern) for every window.
fn window_steps(window: u64, vocab: i64) -> Vec<Vec<Batch>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ window;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..INNER_STEPS)
        .map(|_| {
            (0..MICRO_BATCHES)
                .map(|_| {
                    let samples: Vec<Vec<i64>> = (0..MICRO_BATCH)
                        .map(|_| {
                            let start = (next() % 50) as i64;
                            (0..=SEQ as i64)
                                .map(|t| {
                                    if next() % 5 == 0 {
                                        (next() % vocab as u64) as i64
                                    } else {
                                        (start + 3 * t) % 97 + 1
                                    }
                                })
                                .collect()
                        })
                        .collect();
                    Batch::from_samples(&samples, Some(0)).unwrap()
                })
                .collect()
        })
        .collect()
}

/// What one run produces: losses per window (exact bits), final parameters.
struct Record {
    losses: Vec<f64>,
    params: Vec<Tensor>,
    optimizer_bytes: u64,
}

fn train(model: &mut Llama, trainer: &mut InnerTrainer) -> Record {
    let vocab = model.config().vocab_size;
    let mut losses = Vec::new();
    for window in 0..WINDOWS {
        let outcome = trainer
            .train_window(model, &window_steps(window, vocab))
            .unwrap();
        losses.push(outcome.mean_loss);
        model.apply_update(&outcome.pseudo_gradients, 1.0).unwrap();
    }
    Record {
        losses,
        params: model.parameters(),
        optimizer_bytes: trainer.optimizer().state_bytes(),
    }
}

fn save(record: &Record, path: &Path) {
    let named: Vec<(String, Tensor)> = record
        .params
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("p{i}"), t.shallow_clone()))
        .chain([
            ("losses".to_string(), Tensor::from_slice(&record.losses)),
            (
                "optimizer_bytes".to_string(),
                Tensor::from_slice(&[record.optimizer_bytes as i64]),
            ),
        ])
        .collect();
    Tensor::save_multi(&named, path).unwrap();
}

fn load(path: &Path) -> Record {
    let mut named: std::collections::HashMap<String, Tensor> =
        Tensor::load_multi(path).unwrap().into_iter().collect();
    let losses = Vec::<f64>::try_from(named.remove("losses").unwrap()).unwrap();
    let optimizer_bytes = named.remove("optimizer_bytes").unwrap().int64_value(&[0]) as u64;
    let params = (0..named.len())
        .map(|i| named.remove(&format!("p{i}")).unwrap())
        .collect();
    Record {
        losses,
        params,
        optimizer_bytes,
    }
}

#[test]
#[ignore = "a rank's body: run by the other tests with WD_TEST_* set"]
fn rank_body() {
    tch::set_num_threads(1);
    let env = RankEnv::from_env();
    let sharding = match std::env::var("WD_TEST_SHARDING").as_deref() {
        Ok("zero1") => OptimizerSharding::Zero1,
        _ => OptimizerSharding::Replicated,
    };
    let config = config(&std::env::var("WD_TEST_CONFIG").unwrap());
    let timeout = Duration::from_secs(20);
    let store = Store::file(&env.store_path(), env.world, timeout).unwrap();
    let group = ProcessGroup::gloo(&store, env.rank, env.world, timeout, "127.0.0.1").unwrap();
    let group = TrainerGroup::new(Arc::new(group), DEFAULT_BUCKET_BYTES);
    let mut model = Llama::new(config, Device::Cpu, SEED).unwrap();
    let mut trainer =
        InnerTrainer::data_parallel(adamw(), &model, Box::new(group), sharding).unwrap();
    assert_eq!(trainer.rank_and_world(), (env.rank, env.world));
    // Many small all-gathers (the tiny model's shard is ~56 K elements at 2 ranks), so the
    // chunked reassembly is exercised; bit-identity with replicated must still hold.
    trainer.optimizer_mut().set_gather_chunk(20_000);
    let record = train(&mut model, &mut trainer);
    if sharding == OptimizerSharding::Zero1 && env.world > 1 {
        let refused = save_checkpoint(
            &env.dir.join("ckpt"),
            0,
            &model,
            Some(trainer.optimizer()),
            &[],
        );
        assert!(
            refused.is_err(),
            "a sharded optimizer must not be checkpointed as a whole"
        );
    }
    save(&record, &env.dir.join(format!("rank{}.ot", env.rank)));
}

fn reference(config_name: &str) -> Record {
    tch::set_num_threads(1);
    let mut model = Llama::new(config(config_name), Device::Cpu, SEED).unwrap();
    let mut trainer = InnerTrainer::new(adamw(), &model).unwrap();
    train(&mut model, &mut trainer)
}

fn run_ranks(config_name: &str, sharding: &str, world: usize) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        "train",
        world,
        dir.path(),
        &[
            ("WD_TEST_SHARDING", sharding.to_string()),
            ("WD_TEST_CONFIG", config_name.to_string()),
        ],
        Duration::from_secs(240),
    );
    (0..world)
        .map(|rank| load(&dir.path().join(format!("rank{rank}.ot"))))
        .collect()
}

fn bit_equal(a: &Record, b: &Record) -> bool {
    a.losses == b.losses && a.params.iter().zip(&b.params).all(|(x, y)| x.equal(y))
}

/// Largest |a - b| over all parameters, relative to the largest |reference - initial|
/// movement would be nicer but needs the initial weights; we report absolute differences.
fn max_abs_diff(a: &Record, b: &Record) -> f64 {
    a.params
        .iter()
        .zip(&b.params)
        .map(|(x, y)| (x - y).abs().max().to_kind(Kind::Double).double_value(&[]))
        .fold(0.0, f64::max)
}

/// Parameters within this of the single-process run (fp32 summation order only). Measured:
/// <= 7.5e-7 on 2 and 4 ranks on an idle machine, but 8.8e-6 for the untied GQA config under
/// `make test` load (libtorch's intra-op reductions split differently when threads are
/// contended, and AdamW divides tiny gradient differences by tiny second moments). That is
/// 0.3 % of one step at lr 3e-3; a real divergence (a wrong shard, a missed reduction) moves
/// parameters by whole steps.
const PARAM_TOLERANCE: f64 = 3e-5;
const LOSS_TOLERANCE: f64 = 2e-6;

fn check_against(reference: &Record, ranks: &[Record], label: &str) {
    for (rank, record) in ranks.iter().enumerate() {
        assert!(
            bit_equal(record, &ranks[0]),
            "{label}: rank {rank} differs from rank 0"
        );
    }
    let diff = max_abs_diff(reference, &ranks[0]);
    let loss_diff = reference
        .losses
        .iter()
        .zip(&ranks[0].losses)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "{label}: max |param - single| = {diff:.3e}, max |loss - single| = {loss_diff:.3e}, losses {:?}, optimizer bytes/rank {}",
        ranks[0].losses, ranks[0].optimizer_bytes
    );
    assert!(
        diff <= PARAM_TOLERANCE,
        "{label}: parameters differ by {diff}"
    );
    assert!(
        loss_diff <= LOSS_TOLERANCE,
        "{label}: losses differ by {loss_diff}"
    );
}

#[test]
fn one_two_and_four_ranks_train_like_one_process_with_and_without_zero1() {
    let single = reference("tiny");
    assert!(
        single.losses[2] < single.losses[0],
        "the run must learn: {:?}",
        single.losses
    );
    for world in [1, 2, 4] {
        let replicated = run_ranks("tiny", "replicated", world);
        check_against(
            &single,
            &replicated,
            &format!("tiny, {world} ranks, replicated"),
        );
        if world == 1 {
            assert!(
                bit_equal(&single, &replicated[0]),
                "one rank is the single process"
            );
        }
        let zero1 = run_ranks("tiny", "zero1", world);
        check_against(&single, &zero1, &format!("tiny, {world} ranks, ZeRO-1"));
        // Same reduced gradients, element-wise identical AdamW: same bits as replicated.
        assert!(
            bit_equal(&replicated[0], &zero1[0]),
            "ZeRO-1 differs from replicated at {world} ranks (max {:.3e})",
            max_abs_diff(&replicated[0], &zero1[0])
        );
        let full = replicated[0].optimizer_bytes;
        let total: u64 = zero1.iter().map(|r| r.optimizer_bytes).sum();
        assert_eq!(total, full, "ZeRO-1 shards hold every moment exactly once");
        for record in &zero1 {
            assert!(
                record.optimizer_bytes <= full.div_ceil(world as u64) + 8,
                "{world} ranks: {} bytes on a rank vs {full} unsharded",
                record.optimizer_bytes
            );
        }
    }
}

#[test]
fn untied_gqa_config_trains_like_one_process_on_two_ranks() {
    let single = reference("untied");
    check_against(
        &single,
        &run_ranks("untied", "replicated", 2),
        "untied, 2 ranks",
    );
    check_against(
        &single,
        &run_ranks("untied", "zero1", 2),
        "untied, 2 ranks, ZeRO-1",
    );
}
