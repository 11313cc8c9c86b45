//! The committed bundled dataset: what `data: {bundled: {}}` trains on, and the same samples
//! as the model crate's in-memory corpus.

mod common;

use common::*;
use run_manifest::{DataSection, LlamaConfig, ModelSection, RunManifest, verify};
use worker_data::{
    BUNDLED_DATASET_SHA256, DataArgs, DataError, DirSource, Split, open_for_run, read_manifest,
};
use worker_model::{CorpusSplit, Samples, open_bundled};

fn args(cache: &tempfile::TempDir) -> DataArgs {
    DataArgs {
        bundled_dataset: Some(bundled_dir()),
        ..DataArgs::with_cache(cache.path())
    }
}

#[test]
fn the_committed_manifest_is_the_pinned_bundled_dataset() {
    let manifest = read_manifest(&DirSource::new(bundled_dir()), None).unwrap();
    assert_eq!(manifest.hash().to_hex(), BUNDLED_DATASET_SHA256);
    assert_eq!(manifest.vocab_size, 2048);
    assert!(manifest.check_model(&LlamaConfig::tiny()).is_ok());
}

#[test]
fn bundled_runs_read_the_same_samples_as_the_in_memory_corpus() {
    let cache = tempfile::tempdir().unwrap();
    let run = run_with(DataSection::Bundled {});
    let dataset = open_for_run(&run, &args(&cache)).unwrap();
    let seq_len = LlamaConfig::tiny().seq_len as usize;
    let corpus = open_bundled(CorpusSplit::Train, seq_len).unwrap();
    assert_eq!(dataset.num_samples(), corpus.num_samples());
    let ids = dataset.assigned_ids(42, 3, 17, 64).unwrap();
    assert_eq!(ids, Samples::assigned_ids(&corpus, 42, 3, 17, 64).unwrap());
    for &id in &ids {
        assert_eq!(dataset.sample(id).unwrap(), corpus.sample(id).unwrap());
    }
    let held_out = dataset.split(Split::HeldOut, 42).unwrap();
    let val = open_bundled(CorpusSplit::Val, seq_len).unwrap();
    assert_eq!(held_out.num_samples(), val.num_samples());
    assert_eq!(held_out.sample(3).unwrap(), val.sample(3).unwrap());
    // A directory is read in place: nothing was copied into the cache.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn without_its_directory_a_bundled_run_says_what_to_set() {
    let cache = tempfile::tempdir().unwrap();
    let err = open_for_run(
        &run_with(DataSection::Bundled {}),
        &DataArgs::with_cache(cache.path()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("WORKER_BUNDLED_DATASET"), "{err}");
}

#[test]
fn a_dataset_that_does_not_fit_the_model_is_refused_naming_the_field() {
    let cache = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", bundled_dir().display());
    let section = dataset_section(&uri, BUNDLED_DATASET_SHA256, None);
    assert!(open_for_run(&run_with(section.clone()), &args(&cache)).is_ok());

    let mut m = RunManifest::reference("r", "tiny");
    m.data = section.clone();
    let mut shape = LlamaConfig::tiny();
    shape.vocab_size = 1024;
    m.model = ModelSection {
        preset: None,
        config: Some(shape),
    };
    let err = open_for_run(&verify(m.clone(), "t", None).unwrap(), &args(&cache)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::ModelMismatch {
                field: "vocabSize",
                ..
            }
        ),
        "{err}"
    );

    let mut shape = LlamaConfig::tiny();
    shape.eos_token_id = 1;
    m.model.config = Some(shape);
    let err = open_for_run(&verify(m, "t", None).unwrap(), &args(&cache)).unwrap_err();
    assert!(
        matches!(err, DataError::ModelMismatch { field: "eosId", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("eosId"), "{err}");

    // Another dataset than the pinned one.
    let other = dataset_section(&uri, &"ab".repeat(32), None);
    let err = open_for_run(&run_with(other), &args(&cache)).unwrap_err();
    assert!(matches!(err, DataError::HashMismatch { .. }), "{err}");
}
