//! Forward pass, evaluation helpers and parameter operations.

mod common;

use common::*;
use tch::{Device, Kind, Tensor};
use worker_model::{Batch, Llama, LlamaConfig, ModelError};

#[test]
fn forward_is_causal_and_shaped() {
    common::single_threaded_torch();
    let model = tiny_model(1);
    let ids = Tensor::from_slice(&[5i64, 17, 99, 3, 250, 8, 1000, 42]).reshape([1, 8]);
    let logits = model.forward(&ids).unwrap();
    assert_eq!(logits.size(), vec![1, 8, 2048]);
    let changed = ids.copy();
    let _ = changed.get(0).get(6).fill_(7);
    let logits2 = model.forward(&changed).unwrap();
    let prefix = |t: &Tensor| t.narrow(1, 0, 6);
    assert!(
        prefix(&logits).equal(&prefix(&logits2)),
        "earlier positions must not see later tokens"
    );
    assert!(!logits.narrow(1, 6, 2).equal(&logits2.narrow(1, 6, 2)));
    assert!(
        model
            .forward(&Tensor::zeros([8], (Kind::Int64, Device::Cpu)))
            .is_err()
    );
}

#[test]
fn untied_model_has_a_separate_head_and_same_init_per_seed() {
    common::single_threaded_torch();
    let config = LlamaConfig {
        tie_word_embeddings: false,
        num_key_value_heads: 4,
        ..LlamaConfig::tiny()
    };
    let a = Llama::new(config.clone(), Device::Cpu, 3).unwrap();
    let b = Llama::new(config.clone(), Device::Cpu, 3).unwrap();
    let c = Llama::new(config, Device::Cpu, 4).unwrap();
    assert_eq!(a.param_names().last().unwrap(), "lm_head.weight");
    assert!(a.snapshot().unwrap().bit_equal(&b.snapshot().unwrap()));
    assert!(!a.snapshot().unwrap().bit_equal(&c.snapshot().unwrap()));
    let names: Vec<String> = a.var_store().variables().into_keys().collect();
    for name in a.param_names() {
        assert!(names.contains(name), "var store lacks {name}");
    }
    let ids = Tensor::from_slice(&[1i64, 2, 3, 4]).reshape([1, 4]);
    assert_eq!(a.forward(&ids).unwrap().size(), vec![1, 4, 2048]);
}

#[test]
fn snapshot_restore_and_outer_update_are_exact() {
    common::single_threaded_torch();
    let mut model = tiny_model(1);
    let snapshot = model.snapshot().unwrap();
    let update: Vec<Tensor> = model.parameters().iter().map(|p| p.ones_like()).collect();
    model.apply_update(&update, 0.5).unwrap();
    let expected = snapshot.tensors()[3].f_sub_scalar(0.5).unwrap();
    assert!(model.parameters()[3].equal(&expected));
    model.restore(&snapshot).unwrap();
    assert!(model.snapshot().unwrap().bit_equal(&snapshot));

    // Wrong count, wrong shape and non-finite updates are refused without touching weights.
    assert!(matches!(
        model.apply_update(&update[1..], 1.0),
        Err(ModelError::Shape(_))
    ));
    let mut bad_shape = update.iter().map(|t| t.shallow_clone()).collect::<Vec<_>>();
    bad_shape[0] = Tensor::ones([3], (Kind::Float, Device::Cpu));
    assert!(model.apply_update(&bad_shape, 1.0).is_err());
    let nan = update.iter().map(|t| t.copy()).collect::<Vec<_>>();
    let _ = nan[2].get(0).get(0).fill_(f64::NAN);
    assert!(model.apply_update(&nan, 1.0).is_err());
    assert!(model.snapshot().unwrap().bit_equal(&snapshot));
}

#[test]
fn loss_on_validates_batches() {
    common::single_threaded_torch();
    let model = tiny_model(1);
    let val = val_batches();
    let loss = model.loss_on(&val[0]).unwrap();
    assert!(loss.is_finite());
    assert_eq!(
        loss,
        model.loss_on(&val[0]).unwrap(),
        "evaluation is deterministic"
    );
    let out_of_vocab = Batch::from_samples(&[vec![1, 2, 4096, 3]], Some(0)).unwrap();
    assert!(model.loss_on(&out_of_vocab).is_err());
    let all_masked = Batch::from_samples(&[vec![0, 0, 0]], Some(0)).unwrap();
    assert!(model.loss_on(&all_masked).is_err());
}

#[test]
fn parameter_sample_is_deterministic_and_tracks_updates() {
    common::single_threaded_torch();
    let mut model = tiny_model(1);
    let other = tiny_model(1);
    let a = model.parameter_sample(3, 4).unwrap();
    assert_eq!(a.len(), 4 * model.param_names().len());
    assert_eq!(a, other.parameter_sample(3, 4).unwrap());
    assert_ne!(a, model.parameter_sample(4, 4).unwrap());
    let update: Vec<Tensor> = model.parameters().iter().map(|p| p.ones_like()).collect();
    model.apply_update(&update, 0.25).unwrap();
    let b = model.parameter_sample(3, 4).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - 0.25 - y).abs() < 1e-6));
}

#[test]
fn handles_can_move_across_threads() {
    common::single_threaded_torch();
    fn assert_send<T: Send>() {}
    assert_send::<Llama>();
    assert_send::<worker_model::InnerTrainer>();
    assert_send::<worker_model::TokenDataset>();
    assert_send::<worker_model::WindowOutcome>();
    let model = tiny_model(1);
    let handle = std::thread::spawn(move || model.param_names().len());
    assert_eq!(handle.join().unwrap(), 20);
}
