//! `worker data prepare`: deterministic, resumable, never overwriting another dataset, and
//! what produced the committed bundled dataset.

mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use common::*;
use worker_data::{
    BUNDLED_DATASET_SHA256, DirSource, PrepareOptions, PrepareOutcome, inspect, prepare,
    read_manifest,
};

fn tokenizer() -> PathBuf {
    bundled_dir().join("tokenizer.json")
}

/// A JSONL file and a plain-text file of varied documents.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let jsonl = dir.join("docs.jsonl");
    let mut lines = String::new();
    for i in 0..120 {
        let text = format!(
            "Document {i}: {} The end of {i}.",
            "All the world's a stage, and all the men and women merely players. ".repeat(i % 7 + 1)
        );
        lines.push_str(&serde_json::json!({ "id": i, "text": text }).to_string());
        lines.push('\n');
    }
    std::fs::write(&jsonl, lines).unwrap();
    let txt = dir.join("poem.txt");
    std::fs::write(
        &txt,
        "Of Man's first disobedience, and the fruit\nOf that forbidden tree\n".repeat(40),
    )
    .unwrap();
    vec![jsonl, txt]
}

fn options(inputs: &[PathBuf], out: &Path) -> PrepareOptions {
    PrepareOptions {
        name: "test-set".into(),
        tokenizer: tokenizer(),
        eos_token: "<|endoftext|>".into(),
        train: inputs.to_vec(),
        held_out: vec![inputs[1].clone()],
        text_field: "text".into(),
        shard_tokens: 1000,
        out: out.to_path_buf(),
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn done(outcome: PrepareOutcome) -> (worker_data::DatasetManifest, usize) {
    match outcome {
        PrepareOutcome::Done {
            manifest,
            resumed_shards,
        } => (*manifest, resumed_shards),
        PrepareOutcome::Stopped => panic!("stopped"),
    }
}

#[test]
fn prepare_twice_gives_byte_identical_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = inputs(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (manifest, _) =
        done(prepare(&options(&inputs, &a), |_| ControlFlow::Continue(())).unwrap());
    done(prepare(&options(&inputs, &b), |_| ControlFlow::Continue(())).unwrap());
    assert_eq!(files(&a), files(&b));

    assert!(manifest.shards.len() > 5, "{}", manifest.shards.len());
    let (last, full) = manifest.shards.split_last().unwrap();
    assert!(full.iter().all(|s| s.tokens == 1000), "fixed-size shards");
    assert!(last.tokens <= 1000);
    assert_eq!(manifest.held_out.len(), 1);
    // Every document ends with EOS: 120 JSONL documents and one text file.
    let dataset = read_manifest(&DirSource::new(&a), Some(&manifest.hash())).unwrap();
    let eos = dataset
        .shards
        .iter()
        .map(|s| {
            std::fs::read(a.join(&s.key))
                .unwrap()
                .chunks_exact(2)
                .filter(|b| u16::from_le_bytes([b[0], b[1]]) == 0)
                .count()
        })
        .sum::<usize>();
    assert_eq!(eos, 121);

    // Rerunning in place is a no-op with the same result.
    let (again, _) = done(prepare(&options(&inputs, &a), |_| ControlFlow::Continue(())).unwrap());
    assert_eq!(again.hash(), manifest.hash());

    let report = inspect(&DirSource::new(&a), 16).unwrap();
    assert!(report.contains(&manifest.hash().to_hex()), "{report}");
    assert!(report.contains("Document 0"), "decoded sample: {report}");
}

#[test]
fn an_interrupted_prepare_resumes_to_the_same_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = inputs(tmp.path());
    let (whole, resumed) = (tmp.path().join("whole"), tmp.path().join("resumed"));
    done(prepare(&options(&inputs, &whole), |_| ControlFlow::Continue(())).unwrap());

    let mut calls = 0;
    let outcome = prepare(&options(&inputs, &resumed), |_| {
        calls += 1;
        if calls == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert!(matches!(outcome, PrepareOutcome::Stopped));
    assert!(!resumed.join("dataset.json").exists());
    // A crash mid-write leaves a partial file behind; it is not part of the dataset.
    std::fs::write(resumed.join(".partial-train-00003.bin"), b"junk").unwrap();

    let (_, resumed_shards) =
        done(prepare(&options(&inputs, &resumed), |_| ControlFlow::Continue(())).unwrap());
    assert_eq!(resumed_shards, 3);
    let mut got = files(&resumed);
    got.remove(".partial-train-00003.bin");
    assert_eq!(got, files(&whole));
}

#[test]
fn another_dataset_at_the_same_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = inputs(tmp.path());
    let out = tmp.path().join("out");
    done(prepare(&options(&inputs, &out), |_| ControlFlow::Continue(())).unwrap());
    let before = files(&out);
    let mut other = options(&inputs, &out);
    other.shard_tokens = 500;
    let err = prepare(&other, |_| ControlFlow::Continue(())).unwrap_err();
    assert!(err.to_string().contains("holds a dataset"), "{err}");
    assert_eq!(files(&out), before, "nothing was touched");
    let err = prepare(
        &PrepareOptions {
            eos_token: "<none>".into(),
            ..options(&inputs, &tmp.path().join("x"))
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--eos-token"), "{err}");
}

/// The committed bundled dataset is exactly what `prepare` makes of its documents (recovered
/// here by decoding the shards: byte-level BPE is lossless).
#[test]
fn prepare_reproduces_the_committed_bundled_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let bundled = read_manifest(&DirSource::new(bundled_dir()), None).unwrap();
    let tok = tokenizers::Tokenizer::from_file(tokenizer()).unwrap();
    let to_jsonl = |shards: &[worker_data::ShardEntry], name: &str| {
        let mut ids: Vec<u32> = Vec::new();
        for shard in shards {
            let bytes = std::fs::read(bundled_dir().join(&shard.key)).unwrap();
            ids.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))),
            );
        }
        let mut lines = String::new();
        for doc in ids
            .split(|&t| t == bundled.eos_id)
            .filter(|d| !d.is_empty())
        {
            let text = tok.decode(doc, false).unwrap();
            lines.push_str(&serde_json::json!({ "text": text }).to_string());
            lines.push('\n');
        }
        let path = tmp.path().join(name);
        std::fs::write(&path, lines).unwrap();
        path
    };
    let train = to_jsonl(&bundled.shards, "train.jsonl");
    let val = to_jsonl(&bundled.held_out, "val.jsonl");
    let out = tmp.path().join("out");
    let (manifest, _) = done(
        prepare(
            &PrepareOptions {
                name: bundled.name.clone(),
                tokenizer: tokenizer(),
                eos_token: "<|endoftext|>".into(),
                train: vec![train],
                held_out: vec![val],
                text_field: "text".into(),
                shard_tokens: bundled.shards[0].tokens,
                out: out.clone(),
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap(),
    );
    assert_eq!(manifest, bundled);
    assert_eq!(manifest.hash().to_hex(), BUNDLED_DATASET_SHA256);
    for shard in manifest.shards.iter().chain(&manifest.held_out) {
        assert_eq!(
            std::fs::read(out.join(&shard.key)).unwrap(),
            std::fs::read(bundled_dir().join(&shard.key)).unwrap(),
            "{}",
            shard.key
        );
    }
}
