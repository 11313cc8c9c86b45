//! Sharded SparseLoCo over 1, 2 and 4 Gloo ranks: rank 0's assembled payload is
//! byte-identical (wire encoding) to a single process's, window after window (the error
//! feedback carries over).

mod ranks;

use std::time::Duration;

use ranks::{RankEnv, run_ok};
use tch::{Device, Kind, Tensor};
use worker_distributed::sparse::ShardedCompressor;
use worker_distributed::{ProcessGroup, Store};
use worker_model::LlamaConfig;
use worker_sparseloco::{ErrorFeedback, GradientPayload, ParamSpec, SparseLocoConfig, encode};

const WINDOWS: u64 = 3;
const UID: u16 = 9;

fn specs() -> Vec<ParamSpec> {
    LlamaConfig {
        tie_word_embeddings: false,
        ..LlamaConfig::tiny()
    }
    .param_specs()
    .into_iter()
    .map(|(name, shape)| ParamSpec::new(name, shape))
    .collect()
}

/// The same pseudo-gradients in every process (libtorch's CPU generator, fixed seed).
fn pseudo_gradients(window: u64) -> Vec<Tensor> {
    tch::manual_seed(1000 + window as i64);
    specs()
        .iter()
        .map(|s| Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu)) * 0.01)
        .collect()
}

#[test]
#[ignore = "a rank's body: run by the other tests with WD_TEST_* set"]
fn rank_body() {
    tch::set_num_threads(1);
    let env = RankEnv::from_env();
    let timeout = Duration::from_secs(20);
    let store = Store::file(&env.store_path(), env.world, timeout).unwrap();
    let group = ProcessGroup::gloo(&store, env.rank, env.world, timeout, "127.0.0.1").unwrap();
    let mut compressor = ShardedCompressor::new(
        &specs(),
        SparseLocoConfig::default(),
        Device::Cpu,
        env.rank,
        env.world,
    )
    .unwrap();
    for window in 0..WINDOWS {
        let payload = compressor
            .compress(&group, &pseudo_gradients(window), window, UID)
            .unwrap();
        assert_eq!(payload.is_some(), env.rank == 0);
        if let Some(payload) = payload {
            std::fs::write(
                env.dir.join(format!("window{window}.bin")),
                encode(&payload),
            )
            .unwrap();
        }
    }
    std::fs::write(
        env.dir.join(format!("owned{}", env.rank)),
        format!("{:?}", compressor.owned()),
    )
    .unwrap();
}

#[test]
fn sharded_compression_assembles_the_single_process_payload() {
    let mut feedback = ErrorFeedback::new(&specs(), Device::Cpu).unwrap();
    let reference: Vec<Vec<u8>> = (0..WINDOWS)
        .map(|window| {
            let tensors = feedback.compress(&pseudo_gradients(window)).unwrap();
            encode(&GradientPayload {
                window,
                uid: UID,
                tensors,
            })
        })
        .collect();
    for world in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        run_ok("sparse", world, dir.path(), &[], Duration::from_secs(120));
        for (window, expected) in reference.iter().enumerate() {
            let got = std::fs::read(dir.path().join(format!("window{window}.bin"))).unwrap();
            assert!(
                got == *expected,
                "{world} ranks, window {window}: payload differs"
            );
        }
        let owned: Vec<String> = (0..world)
            .map(|r| std::fs::read_to_string(dir.path().join(format!("owned{r}"))).unwrap())
            .collect();
        eprintln!(
            "{world} ranks: tensors per rank {owned:?}, {} bytes in window 0",
            reference[0].len()
        );
    }
}
