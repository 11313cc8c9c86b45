//! Assignment over a 100 000-shard dataset: one window touches only the shards its samples
//! live in, and two participants compute the same data.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use run_manifest::Sampling;
use worker_data::{DATASET_MANIFEST_FILE, ShardCache, ShardedDataset, Split, read_manifest};
use worker_model::Samples;

const SHARDS: usize = 100_000;
const SEQ_LEN: usize = 16;
/// 4 samples of 16 inputs per shard.
const TOKENS: usize = 4 * SEQ_LEN + 1;
const RUN_SEED: u64 = 42;
/// 30 inner steps x 8 samples, as the reference manifest.
const PER_WINDOW: usize = 240;

struct Participant {
    source: Arc<SyntheticSource>,
    dataset: ShardedDataset,
    _cache: tempfile::TempDir,
}

fn participant(sampling: Sampling) -> Participant {
    let source = Arc::new(SyntheticSource::new(SHARDS, TOKENS));
    let manifest = read_manifest(source.as_ref(), Some(&source.manifest.hash())).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ShardCache::open(cache_dir.path(), 1 << 30).unwrap());
    let dataset = ShardedDataset::new(
        manifest,
        Split::Train,
        source.clone(),
        cache,
        SEQ_LEN,
        sampling,
        RUN_SEED,
    )
    .unwrap();
    Participant {
        source,
        dataset,
        _cache: cache_dir,
    }
}

/// The shard keys of `ids` (4 samples per shard).
fn keys_of(ids: &[u64]) -> BTreeSet<String> {
    ids.iter()
        .map(|id| format!("shards/{:06}.bin", id / 4))
        .collect()
}

fn check_window(sampling: Sampling, window: u64, max_shards: usize) -> usize {
    let miner = participant(sampling);
    let validator = participant(sampling);
    assert_eq!(miner.dataset.num_samples(), (SHARDS * 4) as u64);
    assert_eq!(
        miner.source.keys_read(),
        [DATASET_MANIFEST_FILE],
        "opening reads no shard"
    );

    let ids = miner
        .dataset
        .assigned_ids(RUN_SEED, 7, window, PER_WINDOW)
        .unwrap();
    let steps = miner.dataset.window_steps(&ids, 30, 1, 8).unwrap();
    assert_eq!(steps.len(), 30);
    // The validator recomputes the same ids and reads the first micro-batches of them.
    let again = validator
        .dataset
        .assigned_ids(RUN_SEED, 7, window, PER_WINDOW)
        .unwrap();
    assert_eq!(again, ids);
    let checked = validator.dataset.batches(&again[..16], 8).unwrap();
    assert_eq!(checked.len(), 2);
    for &id in &again[..16] {
        assert_eq!(
            validator.dataset.sample(id).unwrap(),
            miner.dataset.sample(id).unwrap()
        );
    }

    let needed = keys_of(&ids);
    let mut touched: BTreeSet<String> = miner.source.keys_read().into_iter().collect();
    assert!(touched.remove(DATASET_MANIFEST_FILE));
    assert_eq!(
        touched, needed,
        "the miner read exactly the shards of its samples"
    );
    assert!(needed.len() <= max_shards, "{} shards", needed.len());
    for (key, reads) in miner.source.reads.lock().unwrap().iter() {
        assert_eq!(*reads, 1, "{key} fetched once");
    }
    let validator_touched = validator.source.keys_read().len() - 1;
    assert!(validator_touched <= keys_of(&again[..16]).len());
    needed.len()
}

#[test]
fn a_window_over_the_whole_dataset_touches_only_its_samples_shards() {
    let touched = check_window(Sampling::WholeDataset {}, 1234, PER_WINDOW);
    // 240 draws among 100 000 shards rarely share one.
    assert!(touched > 200, "{touched}");
    eprintln!("whole dataset: window touched {touched} of {SHARDS} shards");
}

#[test]
fn a_shard_window_confines_a_window_to_its_shards() {
    let sampling = Sampling::ShardWindow {
        shards: 64,
        rotate_every_windows: 455,
    };
    let touched = check_window(sampling, 1234, 64);
    eprintln!("shard window of 64: window touched {touched} of {SHARDS} shards");
    let p = participant(sampling);
    let window = p.dataset.assigner().window_shards(1234).unwrap();
    // Every uid of the window stays inside the same 64 shards; the next epoch moves on.
    for uid in 0..20 {
        let ids = p
            .dataset
            .assigned_ids(RUN_SEED, uid, 1234, PER_WINDOW)
            .unwrap();
        assert!(ids.iter().all(|id| window.contains(&((id / 4) as usize))));
    }
    assert_ne!(p.dataset.assigner().window_shards(455 * 3).unwrap(), window);
}
