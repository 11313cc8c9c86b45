//! The inner loop, pseudo-gradients and the outer step on the tiny model.

mod common;

use common::*;
use tch::{Device, Kind};
use worker_model::{Llama, LlamaConfig, Precision};

#[test]
fn loss_falls_over_outer_rounds_with_pseudo_gradient_updates() {
    common::single_threaded_torch();
    let data = train_data();
    let val = val_batches();
    let mut model = tiny_model(1);
    let mut trainer = trainer(&model);
    let initial = model.loss_on_batches(&val).unwrap();
    // At initialisation the loss is close to ln(vocab).
    assert!(
        (initial - (2048f64).ln()).abs() < 0.3,
        "initial loss {initial}"
    );

    let mut train_losses = Vec::new();
    for window in 0..4 {
        let before = model.snapshot().unwrap();
        let outcome = trainer
            .train_window(&mut model, &window_steps(&data, 7, window))
            .unwrap();
        // The model is handed back exactly as it was before the window.
        assert!(model.snapshot().unwrap().bit_equal(&before));
        assert_eq!(outcome.inner_steps, INNER_STEPS);
        assert_eq!(outcome.pseudo_gradients.len(), model.param_names().len());
        assert!(
            outcome
                .pseudo_gradients
                .iter()
                .all(|g| g.kind() == Kind::Float)
        );
        assert!(outcome.mean_loss.is_finite());
        train_losses.push(outcome.mean_loss);
        model.apply_update(&outcome.pseudo_gradients, 1.0).unwrap();
    }
    let last = model.loss_on_batches(&val).unwrap();
    eprintln!("val loss {initial:.3} -> {last:.3}, train losses {train_losses:.3?}");
    assert!(last < initial - 1.0, "val loss {initial} -> {last}");
    assert!(
        train_losses[3] < train_losses[0],
        "train losses {train_losses:?}"
    );
    assert_eq!(trainer.optimizer().step_count(), 4 * INNER_STEPS as u64);
}

#[test]
fn pseudo_gradient_is_the_inner_progress() {
    common::single_threaded_torch();
    let data = train_data();
    let steps = window_steps(&data, 3, 0);

    let mut windowed = tiny_model(5);
    let mut trainer_a = trainer(&windowed);
    let outcome = trainer_a.train_window(&mut windowed, &steps).unwrap();
    windowed
        .apply_update(&outcome.pseudo_gradients, 1.0)
        .unwrap();

    let mut direct = tiny_model(5);
    let mut trainer_b = trainer(&direct);
    for micro_batches in &steps {
        trainer_b.train_step(&mut direct, micro_batches).unwrap();
    }
    for ((name, a), b) in windowed
        .param_names()
        .iter()
        .zip(windowed.parameters())
        .zip(direct.parameters())
    {
        let diff = (&a - &b).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name} differs by {diff}");
    }
    // The update moved the weights: theta_after != theta_before.
    let fresh = tiny_model(5);
    let moved = fresh.parameters()[1]
        .f_sub(&direct.parameters()[1])
        .unwrap()
        .abs()
        .max()
        .double_value(&[]);
    assert!(moved > 1e-4);
}

#[test]
fn bf16_compute_keeps_fp32_master_weights() {
    common::single_threaded_torch();
    let data = train_data();
    let mut model =
        Llama::with_precision(LlamaConfig::tiny(), Device::Cpu, 9, Precision::Bf16).unwrap();
    assert!(
        model
            .var_store()
            .variables()
            .values()
            .all(|v| v.kind() == Kind::BFloat16)
    );
    assert!(model.parameters().iter().all(|p| p.kind() == Kind::Float));
    let mut trainer = trainer(&model);
    let before = model.snapshot().unwrap();
    let outcome = trainer
        .train_window(&mut model, &window_steps(&data, 1, 0)[..2])
        .unwrap();
    assert!(model.snapshot().unwrap().bit_equal(&before));
    assert!(outcome.mean_loss.is_finite());
    let norm: f64 = outcome
        .pseudo_gradients
        .iter()
        .map(|g| g.norm().double_value(&[]))
        .sum();
    assert!(norm > 0.0);
    let val = val_batches();
    let loss = model.loss_on(&val[0]).unwrap();
    assert!((loss - (2048f64).ln()).abs() < 0.5, "bf16 loss {loss}");
}

#[test]
fn failed_window_restores_the_model() {
    common::single_threaded_torch();
    let data = train_data();
    let mut model = tiny_model(2);
    let mut trainer = trainer(&model);
    let before = model.snapshot().unwrap();
    let mut steps = window_steps(&data, 1, 0);
    // A corrupt micro-batch in the last step: token id past the vocabulary.
    let last = steps.last_mut().unwrap();
    let _ = last[0].input_ids.get(0).get(0).fill_(5000);
    assert!(trainer.train_window(&mut model, &steps).is_err());
    assert!(model.snapshot().unwrap().bit_equal(&before));
}
