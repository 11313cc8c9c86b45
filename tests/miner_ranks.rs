//! A miner that trains on several processes (CPU ranks over Gloo, as a multi-GPU pod's
//! ranks over NCCL): rank 0 is the production `Miner`, ranks 1.. are the `worker rank`
//! processes of the worker binary. It trains like a single-process miner, and a rank that is
//! killed fails the replica within the rank timeout; the restarted replica resumes from its
//! checkpoint.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use run_manifest::RunManifest;
use tch::{Device, Tensor};
use worker::miner::Miner;
use worker::rank_control::RankSharding;
use worker::settings::TrainingSettings;
use worker::training_ranks::RankArgs;
use worker_model::{CorpusSplit, TokenDataset, open_bundled};

/// Tiny model, 3 inner steps of 4 micro-batches (2 per rank at 2 ranks).
fn settings() -> TrainingSettings {
    let mut m = RunManifest::reference("ranks", "tiny");
    m.training.inner_steps = 3;
    m.training.micro_batch_size = 2;
    m.training.batch_size = 8;
    m.training.inner_lr = 3e-3;
    m.training.warmup_steps = 2;
    TrainingSettings::from_manifest(&run_manifest::verify(m, "test", None).unwrap())
}

/// `world_size` ranks with the production default, ZeRO-1.
fn ranks(world_size: usize, timeout_secs: u64) -> RankArgs {
    sharded_ranks(world_size, timeout_secs, RankSharding::Zero1)
}

fn sharded_ranks(world_size: usize, timeout_secs: u64, sharding: RankSharding) -> RankArgs {
    RankArgs {
        world_size: Some(world_size),
        rank_timeout_secs: timeout_secs,
        rank_program: Some(PathBuf::from(env!("CARGO_BIN_EXE_worker"))),
        optimizer_sharding: sharding,
        keep_own_threads: false,
    }
}

fn dataset(s: &TrainingSettings) -> TokenDataset {
    open_bundled(CorpusSplit::Train, s.model_config().seq_len as usize).unwrap()
}

fn max_abs_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

#[test]
fn two_and_three_rank_miners_train_like_one_process_over_three_windows() {
    let s = settings();
    let data = dataset(&s);
    for (world_size, sharding) in [
        (2, RankSharding::Replicated),
        (2, RankSharding::Zero1),
        (3, RankSharding::Zero1),
    ] {
        let mut single = Miner::new(1, &s, Device::Cpu).unwrap();
        let args = sharded_ranks(world_size, 60, sharding);
        let mut multi = Miner::for_node(1, &s, Device::Cpu, &args).unwrap();
        assert_eq!(multi.ranks().unwrap().world_size(), world_size);
        // Measured: rank 0's AdamW moments (8 B per element it holds).
        let full = single.inner_optimizer().state_bytes();
        let held = multi.inner_optimizer().state_bytes();
        match sharding {
            RankSharding::Replicated => assert_eq!(held, full),
            RankSharding::Zero1 => {
                let n = world_size as u64;
                // Rank 0 owns ceil(P / N) elements: 1 / N of the state, rounded up.
                assert!(
                    held * n >= full && held * n < full + 8 * n,
                    "{held} B of {full} at {world_size} ranks"
                );
            }
        }
        for window in 0..3 {
            let (ids, _) = single.assignment(&data, window).unwrap();
            let (expected, expected_loss) = single.train(&data, &ids).unwrap();
            let (got, loss) = multi.train(&data, &ids).unwrap();
            // Only the order of the fp32 gradient additions differs.
            let diff = max_abs_diff(&expected, &got);
            assert!(
                diff < 5e-6,
                "{world_size} ranks ({sharding:?}), window {window}: pseudo-gradients differ by {diff:e}"
            );
            assert!(
                (loss - expected_loss).abs() < 1e-5,
                "{world_size} ranks, window {window}: loss {loss} vs {expected_loss}"
            );
            // Both apply the same outer step (as every node applies the run's aggregate):
            // the replicas stay bit-identical, and the ranks get rank 0's model next window.
            single.replica.model.apply_update(&expected, 1.0).unwrap();
            multi.replica.model.apply_update(&expected, 1.0).unwrap();
            assert_eq!(
                single.replica.sync_sample().unwrap(),
                multi.replica.sync_sample().unwrap()
            );
        }
    }
}

#[test]
fn a_killed_rank_fails_the_replica_within_the_timeout_and_the_restart_resumes() {
    const TIMEOUT_SECS: u64 = 5;
    let s = settings();
    let data = dataset(&s);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("miner.ckpt");
    let mut multi = Miner::for_node(1, &s, Device::Cpu, &ranks(2, TIMEOUT_SECS)).unwrap();
    let (ids, _) = multi.assignment(&data, 0).unwrap();
    multi.train(&data, &ids).unwrap();
    multi.save_checkpoint(&checkpoint, 0).unwrap();

    // The ZeRO-1 checkpoint holds the whole optimizer state, gathered from both ranks: what
    // one process that trained the same window holds.
    let mut single = Miner::new(1, &s, Device::Cpu).unwrap();
    single.train(&data, &ids).unwrap();
    let mut from_multi = Miner::new(1, &s, Device::Cpu).unwrap();
    from_multi.load_checkpoint(&checkpoint).unwrap();
    let (a, b) = (single.inner_optimizer(), from_multi.inner_optimizer());
    assert_eq!(a.step_count(), b.step_count());
    for (which, x, y) in [
        ("exp_avg", a.exp_avg(), b.exp_avg()),
        ("exp_avg_sq", a.exp_avg_sq(), b.exp_avg_sq()),
    ] {
        let scale = x
            .iter()
            .map(|t| t.abs().max().double_value(&[]))
            .fold(0.0, f64::max);
        let diff = max_abs_diff(x, y);
        assert!(
            scale > 0.0 && diff <= 1e-4 * scale,
            "{which}: {diff:e} of {scale:e}"
        );
    }

    // Rank 1 is killed while rank 0 trains (or, on a fast machine, between windows).
    let (rank, pid) = multi.ranks().unwrap().pids()[0];
    assert_eq!(rank, 1);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
    });
    let started = Instant::now();
    // Windows go on until the replica notices (a window takes tens of milliseconds here,
    // so the kill lands inside one: in a collective, or in rank 0's own compute).
    let mut failure = None;
    let mut window = 1;
    while failure.is_none() && started.elapsed() < Duration::from_secs(TIMEOUT_SECS + 10) {
        let (ids, _) = multi.assignment(&data, window).unwrap();
        failure = multi.train(&data, &ids).err();
        window += 1;
    }
    assert!(killer.join().unwrap().success());
    let failure = failure.expect("training goes on without rank 1");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(TIMEOUT_SECS + 10),
        "the replica noticed after {elapsed:?}"
    );
    // However the peer's death surfaced (a reset or closed connection inside a collective,
    // or its exit seen before the window), the error names rank 1 and how it ended.
    let message = failure.to_string();
    assert!(
        message.contains("rank 1 exited with signal: 9"),
        "unclear failure: {message}"
    );
    drop(multi);

    // The pod restarts: a fresh replica resumes from the checkpoint and trains window 1 as
    // a single process resumed from it does.
    let mut restarted = Miner::for_node(1, &s, Device::Cpu, &ranks(2, TIMEOUT_SECS)).unwrap();
    assert_eq!(restarted.load_checkpoint(&checkpoint).unwrap(), 0);
    let mut reference = Miner::new(1, &s, Device::Cpu).unwrap();
    assert_eq!(reference.load_checkpoint(&checkpoint).unwrap(), 0);
    let (ids, _) = reference.assignment(&data, 1).unwrap();
    let (expected, expected_loss) = reference.train(&data, &ids).unwrap();
    let (got, loss) = restarted.train(&data, &ids).unwrap();
    // The optimizer state came from the checkpoint on every rank: the same update follows.
    let diff = max_abs_diff(&expected, &got);
    assert!(diff < 5e-6, "resumed replica differs by {diff:e}");
    assert!((loss - expected_loss).abs() < 1e-5);
}

#[test]
fn a_rank_program_that_cannot_start_is_a_clear_error() {
    let s = settings();
    let mut args = ranks(2, 2);
    args.rank_program = Some(PathBuf::from("/nonexistent/worker"));
    let Err(err) = Miner::for_node(1, &s, Device::Cpu, &args) else {
        panic!("a replica started without its rank 1");
    };
    assert!(
        err.to_string().contains("cannot start rank 1"),
        "unclear: {err}"
    );
    // A validator-style request for zero ranks is refused too.
    let mut zero = ranks(0, 2);
    zero.rank_program = None;
    assert!(zero.world_size_for(Device::Cpu).is_err());
}
