//! Token files, sample assignment and EOS masking.

mod common;

use std::io::Write;

use common::*;
use worker_model::data::npy;
use worker_model::{
    IGNORE_INDEX, ModelError, SampleDigest, TokenDataset, TokenShard, TokenWidth,
    assigned_sample_ids, random_sample_ids,
};

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

#[test]
fn same_uid_and_window_give_identical_batches_and_uids_differ() {
    common::single_threaded_torch();
    // Two independent computations (separately opened datasets), as miner and validator do.
    let miner = train_data();
    let validator = train_data();
    let count = INNER_STEPS * ACCUM * MICRO_BATCH;
    let ids_m = assigned_sample_ids(RUN_SEED, 11, 500, count, miner.num_samples()).unwrap();
    let ids_v = assigned_sample_ids(RUN_SEED, 11, 500, count, validator.num_samples()).unwrap();
    assert_eq!(SampleDigest::of(&ids_m), SampleDigest::of(&ids_v));
    let a = miner
        .window_steps(&ids_m, INNER_STEPS, ACCUM, MICRO_BATCH)
        .unwrap();
    let b = validator
        .window_steps(&ids_v, INNER_STEPS, ACCUM, MICRO_BATCH)
        .unwrap();
    for (sa, sb) in a.iter().zip(&b) {
        for (x, y) in sa.iter().zip(sb) {
            assert!(x.input_ids.equal(&y.input_ids) && x.labels.equal(&y.labels));
        }
    }
    let other = assigned_sample_ids(RUN_SEED, 12, 500, count, miner.num_samples()).unwrap();
    assert_ne!(SampleDigest::of(&other), SampleDigest::of(&ids_m));
    let c = miner
        .window_steps(&other, INNER_STEPS, ACCUM, MICRO_BATCH)
        .unwrap();
    assert!(!c[0][0].input_ids.equal(&a[0][0].input_ids));
    let random = random_sample_ids(count, miner.num_samples()).unwrap();
    assert_ne!(random, ids_m);
}

#[test]
fn samples_cover_shards_back_to_back_with_eos_masking() {
    common::single_threaded_torch();
    let dir = tempfile::tempdir().unwrap();
    // Shard 0: 10 tokens -> 3 samples of seq_len 3; shard 1 (npy, u32): 5 tokens -> 1 sample.
    let flat: Vec<u8> = [1u16, 2, 3, 0, 5, 6, 7, 8, 0, 10]
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect();
    let a = TokenShard::open_flat(write(&dir, "a.bin", &flat), TokenWidth::U16).unwrap();
    let b = TokenShard::open(
        write(
            &dir,
            "b.npy",
            &npy::encode(TokenWidth::U32, &[20, 0, 22, 23, 24]),
        ),
        TokenWidth::U16,
    )
    .unwrap();
    assert_eq!(b.width(), TokenWidth::U32);
    let data = TokenDataset::new(vec![a, b], 3, Some(30), Some(0)).unwrap();
    assert_eq!(data.num_samples(), 4);
    assert_eq!(data.sample(0).unwrap(), vec![1, 2, 3, 0]);
    assert_eq!(data.sample(1).unwrap(), vec![0, 5, 6, 7]);
    assert_eq!(data.sample(2).unwrap(), vec![7, 8, 0, 10]);
    assert_eq!(data.sample(3).unwrap(), vec![20, 0, 22, 23]);
    assert!(data.sample(4).is_err());
    let batch = data.batch(&[1, 2, 3]).unwrap();
    let labels: Vec<Vec<i64>> = (0..3)
        .map(|i| Vec::<i64>::try_from(batch.labels.get(i)).unwrap())
        .collect();
    assert_eq!(labels[0], vec![IGNORE_INDEX, 6, 7]);
    assert_eq!(labels[1], vec![8, 0, IGNORE_INDEX]);
    assert_eq!(labels[2], vec![0, IGNORE_INDEX, 23]);
    // Tokens beyond the vocabulary are caught when the dataset is built.
    let a = TokenShard::open_flat(dir.path().join("a.bin"), TokenWidth::U16).unwrap();
    assert!(matches!(
        TokenDataset::new(vec![a], 3, Some(10), Some(0)),
        Err(ModelError::TokenFile { .. })
    ));
    let a = TokenShard::open_flat(dir.path().join("a.bin"), TokenWidth::U16).unwrap();
    assert!(
        TokenDataset::new(vec![a], 10, None, Some(0)).is_err(),
        "no shard holds 11 tokens"
    );
}

#[test]
fn malformed_token_files_are_rejected() {
    common::single_threaded_torch();
    let dir = tempfile::tempdir().unwrap();
    let rejects = |path: std::path::PathBuf, width: TokenWidth| {
        let result = TokenShard::open(&path, width);
        assert!(
            matches!(
                result,
                Err(ModelError::TokenFile { .. }) | Err(ModelError::Io { .. })
            ),
            "{} was accepted",
            path.display()
        );
    };
    rejects(dir.path().join("missing.bin"), TokenWidth::U16);
    rejects(write(&dir, "empty.bin", &[]), TokenWidth::U16);
    rejects(write(&dir, "odd.bin", &[1, 2, 3]), TokenWidth::U16);
    rejects(write(&dir, "six.bin", &[1, 2, 3, 4, 5, 6]), TokenWidth::U32);
    let good = npy::encode(TokenWidth::U16, &[1, 2, 3, 4]);
    rejects(
        write(&dir, "truncated.npy", &good[..good.len() - 1]),
        TokenWidth::U16,
    );
    let mut long = good.clone();
    long.push(0);
    rejects(write(&dir, "long.npy", &long), TokenWidth::U16);
    rejects(write(&dir, "header-only.npy", &good[..20]), TokenWidth::U16);
    let replace = |from: &[u8], to: &[u8]| -> Vec<u8> {
        let at = good.windows(from.len()).position(|w| w == from).unwrap();
        [&good[..at], to, &good[at + from.len()..]].concat()
    };
    let float = replace(b"<u2", b"<f2");
    rejects(write(&dir, "float.npy", &float), TokenWidth::U16);
    let matrix = replace(b"(4,), ", b"(2,2),");
    rejects(write(&dir, "matrix.npy", &matrix), TokenWidth::U16);
    let big_endian = replace(b"<u2", b">u2");
    rejects(write(&dir, "big-endian.npy", &big_endian), TokenWidth::U16);
    rejects(
        write(&dir, "empty-array.npy", &npy::encode(TokenWidth::U16, &[])),
        TokenWidth::U16,
    );
    let shard = TokenShard::open(write(&dir, "good.npy", &good), TokenWidth::U32).unwrap();
    assert_eq!(shard.read(0, 4).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(shard.read(1, 4), None);
    assert_eq!(shard.get(3), Some(4));
    assert_eq!(shard.get(4), None);
}

#[test]
fn assigned_window_bundles_ids_digest_and_steps() {
    common::single_threaded_torch();
    use worker_model::WindowShape;
    let data = train_data();
    let shape = WindowShape {
        inner_steps: INNER_STEPS,
        micro_batches_per_step: ACCUM,
        micro_batch_size: MICRO_BATCH,
    };
    let window = data.assigned_window(RUN_SEED, 5, 9, shape).unwrap();
    assert_eq!(window.sample_ids.len(), shape.samples());
    assert_eq!(window.digest, SampleDigest::of(&window.sample_ids));
    let manual = window_steps(&data, 5, 9);
    assert_eq!(window.steps.len(), INNER_STEPS);
    for (a, b) in window.steps.iter().zip(&manual) {
        assert_eq!(a.len(), ACCUM);
        for (x, y) in a.iter().zip(b) {
            assert!(x.input_ids.equal(&y.input_ids) && x.labels.equal(&y.labels));
            assert_eq!(x.input_ids.size(), vec![MICRO_BATCH as i64, 64]);
        }
    }
    let random = data.random_batches(10, 4).unwrap();
    assert_eq!(
        random.iter().map(|b| b.batch_size()).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
}
