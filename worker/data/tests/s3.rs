//! Datasets on a real SeaweedFS (the suite's S3 server; these tests fail when it is missing).

mod common;

use std::sync::Arc;

use common::*;
use worker_data::{
    BUNDLED_DATASET_SHA256, CacheOutcome, DATASET_MANIFEST_FILE, DataArgs, DataError, DirSource,
    S3Source, ShardCache, ShardSource, ShardedDataset, Split, open_for_run, read_manifest,
};
use worker_model::Samples;
use worker_storage::testing::{SeaweedFs, unique_name};

/// Uploads the bundled dataset to a fresh bucket under `prefix`, with `tamper` applied to
/// each (key, body) first. Returns the bucket.
fn upload_bundled(prefix: &str, tamper: impl Fn(&str, &mut Vec<u8>)) -> String {
    let server = SeaweedFs::shared();
    let bucket = unique_name("data");
    let writer = S3Source::with_config(server.s3_config(&bucket), prefix).unwrap();
    writer.ensure_bucket().unwrap();
    let manifest = read_manifest(&DirSource::new(bundled_dir()), None).unwrap();
    let mut keys = vec![
        DATASET_MANIFEST_FILE.to_owned(),
        manifest.tokenizer.file.clone(),
    ];
    keys.extend(manifest.shards.iter().map(|s| s.key.clone()));
    keys.extend(manifest.held_out.iter().map(|s| s.key.clone()));
    for key in keys {
        let mut body = std::fs::read(bundled_dir().join(&key)).unwrap();
        tamper(&key, &mut body);
        writer.put(&key, body).unwrap();
    }
    bucket
}

fn reader(bucket: &str, prefix: &str) -> S3Source {
    let server = SeaweedFs::shared();
    let mut config = server.s3_config(bucket);
    config.credentials = server.reader_credentials();
    S3Source::with_config(config, prefix).unwrap()
}

#[test]
fn a_run_trains_from_a_dataset_on_s3_with_read_credentials() {
    let server = SeaweedFs::shared();
    let bucket = upload_bundled("bundled/v1", |_, _| {});
    let uri = format!("s3://{bucket}/bundled/v1");
    let run = run_with(dataset_section(
        &uri,
        BUNDLED_DATASET_SHA256,
        Some(server.endpoint()),
    ));
    let cache = tempfile::tempdir().unwrap();
    let reader_credentials = server.reader_credentials();
    let args = DataArgs {
        data_access_key_id: Some(reader_credentials.access_key_id.clone()),
        data_secret_access_key: Some(reader_credentials.secret_access_key.clone()),
        ..DataArgs::with_cache(cache.path())
    };
    let from_s3 = open_for_run(&run, &args).unwrap();
    let local = open_for_run(
        &run_with(dataset_section(
            &format!("file://{}", bundled_dir().display()),
            BUNDLED_DATASET_SHA256,
            None,
        )),
        &args,
    )
    .unwrap();
    assert_eq!(from_s3.num_samples(), local.num_samples());
    let ids = from_s3.assigned_ids(42, 1, 9, 32).unwrap();
    assert_eq!(ids, local.assigned_ids(42, 1, 9, 32).unwrap());
    for &id in &ids {
        assert_eq!(from_s3.sample(id).unwrap(), local.sample(id).unwrap());
    }
    // Both training shards are now in the cache, verified.
    let cached = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(cached, 2);

    let no_credentials = open_for_run(&run, &DataArgs::with_cache(cache.path())).unwrap_err();
    assert!(
        no_credentials.to_string().contains("DATA_ACCESS_KEY_ID"),
        "{no_credentials}"
    );
}

#[test]
fn a_corrupt_or_truncated_cached_shard_is_dropped_and_fetched_again() {
    let bucket = upload_bundled("ds", |_, _| {});
    let source = reader(&bucket, "ds");
    let manifest = read_manifest(&source, Some(&BUNDLED_DATASET_SHA256.parse().unwrap())).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ShardCache::open(cache_dir.path(), 1 << 30).unwrap();
    let shard = &manifest.shards[1];
    let (path, outcome) = cache.get(&source, shard).unwrap();
    assert_eq!(outcome, CacheOutcome::Fetched);
    assert_eq!(cache.get(&source, shard).unwrap().1, CacheOutcome::Hit);

    // Truncated (an interrupted copy, a full disk).
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(
        cache.get(&source, shard).unwrap().1,
        CacheOutcome::Refetched
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // One flipped bit.
    let mut flipped = bytes.clone();
    flipped[1000] ^= 0x04;
    std::fs::write(&path, &flipped).unwrap();
    assert_eq!(
        cache.get(&source, shard).unwrap().1,
        CacheOutcome::Refetched
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // A cache reopened after a restart finds the valid file.
    let reopened = ShardCache::open(cache_dir.path(), 1 << 30).unwrap();
    assert_eq!(reopened.get(&source, shard).unwrap().1, CacheOutcome::Hit);
}

#[test]
fn the_cache_stays_within_its_bound() {
    let bucket = upload_bundled("ds", |_, _| {});
    let source = reader(&bucket, "ds");
    let manifest = read_manifest(&source, None).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    // Room for one training shard only.
    let bound = manifest.shards[0].bytes() + 10;
    let cache = ShardCache::open(cache_dir.path(), bound).unwrap();
    cache.get(&source, &manifest.shards[0]).unwrap();
    cache.get(&source, &manifest.shards[1]).unwrap();
    assert!(cache.total_bytes() <= bound);
    assert!(
        !cache.path_of(&manifest.shards[0]).exists(),
        "least recently used evicted"
    );
    assert!(cache.path_of(&manifest.shards[1]).exists());
    assert_eq!(
        cache.get(&source, &manifest.shards[0]).unwrap().1,
        CacheOutcome::Fetched
    );
}

#[test]
fn a_corrupt_or_missing_shard_in_the_bucket_is_a_clear_error_naming_it() {
    let bucket = upload_bundled("ds", |key, body| {
        if key == "train-00001.bin" {
            body[10] ^= 0xff;
        }
    });
    let source: Arc<dyn ShardSource> = Arc::new(reader(&bucket, "ds"));
    let manifest = read_manifest(source.as_ref(), None).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ShardCache::open(cache_dir.path(), 1 << 30).unwrap());
    let dataset = ShardedDataset::new(
        manifest.clone(),
        Split::Train,
        source.clone(),
        cache.clone(),
        64,
        run_manifest::Sampling::WholeDataset {},
        42,
    )
    .unwrap();
    assert!(dataset.sample(0).is_ok(), "shard 0 is intact");
    let last = dataset.num_samples() - 1;
    let err = dataset.sample(last).unwrap_err().to_string();
    assert!(
        err.contains("train-00001.bin") && err.contains("corrupt"),
        "{err}"
    );
    assert!(err.contains(&format!("s3://{bucket}/ds")), "{err}");
    assert!(
        !cache.path_of(&manifest.shards[1]).exists(),
        "nothing corrupt is cached"
    );

    let missing = read_manifest(&reader(&bucket, "elsewhere"), None).unwrap_err();
    assert!(
        matches!(&missing, DataError::MissingShard { key, .. } if key == DATASET_MANIFEST_FILE),
        "{missing}"
    );
}

#[test]
fn prepare_upload_and_train_from_the_bucket() {
    use std::ops::ControlFlow;
    use worker_data::{PrepareOptions, PrepareOutcome, UploadOutcome, inspect, prepare, upload};

    let server = SeaweedFs::shared();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.jsonl");
    let lines: String = (0..200)
        .map(|i| {
            let text = format!(
                "Sample document number {i}. {}",
                "Hello there. ".repeat(i % 9 + 1)
            );
            format!("{}\n", serde_json::json!({ "body": text }))
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    // Text, JSONL and Parquet inputs in one dataset.
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "A plain text document. ".repeat(50)).unwrap();
    let rows: Vec<String> = (0..150)
        .map(|i| format!("Parquet row {i}. {}", "General Kenobi. ".repeat(i % 5 + 1)))
        .collect();
    let refs: Vec<Option<&str>> = rows.iter().map(|r| Some(r.as_str())).collect();
    let parquet = tmp.path().join("rows.parquet");
    worker_data::testing::write_parquet(
        &parquet,
        "body",
        &refs,
        parquet::basic::Compression::SNAPPY,
        40,
    )
    .unwrap();
    let options = |out: &str, shard_tokens| PrepareOptions {
        name: "uploaded".into(),
        tokenizer: bundled_dir().join("tokenizer.json"),
        eos_token: "<|endoftext|>".into(),
        train: vec![input.clone(), text.clone(), parquet.clone()],
        held_out: vec![],
        text_field: "body".into(),
        shard_tokens,
        out: tmp.path().join(out),
    };
    let PrepareOutcome::Done { manifest, .. } =
        prepare(&options("out", 700), |_| ControlFlow::Continue(())).unwrap()
    else {
        panic!("stopped")
    };

    let bucket = unique_name("prep");
    let target = S3Source::with_config(server.s3_config(&bucket), "sets/uploaded").unwrap();
    target.ensure_bucket().unwrap();
    let outcome = upload(&tmp.path().join("out"), &target).unwrap();
    assert!(
        matches!(outcome, UploadOutcome::Uploaded { objects, .. } if objects == manifest.shards.len() + 2),
        "{outcome:?}"
    );
    assert_eq!(
        upload(&tmp.path().join("out"), &target).unwrap(),
        UploadOutcome::AlreadyThere
    );
    // A different dataset at the same prefix is refused.
    prepare(&options("other", 900), |_| ControlFlow::Continue(())).unwrap();
    let err = upload(&tmp.path().join("other"), &target).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");

    // A run naming the uploaded dataset trains from the bucket, with read credentials.
    let run = run_with(dataset_section(
        &format!("s3://{bucket}/sets/uploaded"),
        &manifest.hash().to_hex(),
        Some(server.endpoint()),
    ));
    let cache = tempfile::tempdir().unwrap();
    let reader_credentials = server.reader_credentials();
    let args = DataArgs {
        data_access_key_id: Some(reader_credentials.access_key_id),
        data_secret_access_key: Some(reader_credentials.secret_access_key),
        ..DataArgs::with_cache(cache.path())
    };
    let dataset = open_for_run(&run, &args).unwrap();
    let ids = dataset.assigned_ids(42, 0, 0, 8).unwrap();
    let steps = dataset.window_steps(&ids, 2, 1, 4).unwrap();
    assert_eq!(steps.len(), 2);
    let report = inspect(&reader(&bucket, "sets/uploaded"), 32).unwrap();
    assert!(report.contains("Sample document number 0"), "{report}");
    // The Parquet rows are in the bucket's shards: the last shard ends with the last row.
    let last = manifest.shards.last().unwrap();
    let bytes = reader(&bucket, "sets/uploaded")
        .read(&last.key, last.bytes())
        .unwrap();
    let tokens: Vec<u32> = match last.width {
        worker_data::ShardWidth::U16 => bytes
            .chunks_exact(2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        worker_data::ShardWidth::U32 => bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    };
    let tokenizer = tokenizers::Tokenizer::from_file(bundled_dir().join("tokenizer.json")).unwrap();
    let tail = tokenizer
        .decode(&tokens[tokens.len().saturating_sub(200)..], false)
        .unwrap();
    assert!(tail.contains("Parquet row 149."), "{tail}");
}
