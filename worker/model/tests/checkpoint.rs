//! Checkpoint round trips, corruption and resume; Hugging Face export.

mod common;

use common::*;
use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor};
use worker_model::{Llama, LlamaConfig, ModelError, export_hf, load_checkpoint, save_checkpoint};

#[test]
fn checkpoint_round_trip_is_bit_exact_and_resume_continues() {
    common::single_threaded_torch();
    let data = train_data();
    let mut model = tiny_model(1);
    let mut trainer = trainer(&model);
    let outcome = trainer
        .train_window(&mut model, &window_steps(&data, 2, 0))
        .unwrap();
    model.apply_update(&outcome.pseudo_gradients, 0.7).unwrap();
    let error_feedback = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
    let counters = Tensor::from_slice(&[1i64, 2, 3]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.bin");
    save_checkpoint(
        &path,
        17,
        &model,
        Some(trainer.optimizer()),
        &[("ef/a", &error_feedback), ("counters", &counters)],
    )
    .unwrap();
    assert!(!dir.path().join("ckpt.bin.tmp").exists());

    let mut restored = tiny_model(99);
    let mut restored_trainer = common::trainer(&restored);
    let loaded =
        load_checkpoint(&path, &mut restored, Some(restored_trainer.optimizer_mut())).unwrap();
    assert_eq!(loaded.window, 17);
    assert_eq!(loaded.optimizer_step, Some(INNER_STEPS as u64));
    assert!(
        restored
            .snapshot()
            .unwrap()
            .bit_equal(&model.snapshot().unwrap())
    );
    let a = trainer.optimizer();
    let b = restored_trainer.optimizer();
    assert_eq!(a.step_count(), b.step_count());
    for (x, y) in a
        .exp_avg()
        .iter()
        .chain(a.exp_avg_sq())
        .zip(b.exp_avg().iter().chain(b.exp_avg_sq()))
    {
        assert!(x.equal(y));
    }
    assert!(
        a.exp_avg()[1].abs().sum(Kind::Float).double_value(&[]) > 0.0,
        "moments were trained"
    );
    let names: Vec<&str> = loaded.extra.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["counters", "ef/a"]);
    assert!(loaded.extra[0].1.equal(&counters));
    assert!(loaded.extra[1].1.equal(&error_feedback));

    // Resuming: the next window computed by both is identical.
    let next = window_steps(&data, 2, loaded.window + 1);
    let g1 = trainer.train_window(&mut model, &next).unwrap();
    let g2 = restored_trainer.train_window(&mut restored, &next).unwrap();
    for (x, y) in g1.pseudo_gradients.iter().zip(&g2.pseudo_gradients) {
        assert!(x.equal(y));
    }
    assert_eq!(g1.mean_loss, g2.mean_loss);
}

#[test]
fn corrupt_truncated_or_foreign_checkpoints_are_rejected() {
    common::single_threaded_torch();
    let model = tiny_model(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.bin");
    save_checkpoint(&path, 3, &model, None, &[]).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let mut target = tiny_model(2);
    let original = target.snapshot().unwrap();
    let check = |bytes: &[u8], target: &mut Llama| {
        let bad = dir.path().join("bad.bin");
        std::fs::write(&bad, bytes).unwrap();
        let result = load_checkpoint(&bad, target, None);
        assert!(
            matches!(result, Err(ModelError::Checkpoint { .. })),
            "{result:?}"
        );
    };
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    check(&flipped, &mut target);
    check(&bytes[..bytes.len() - 10], &mut target);
    check(&bytes[..30], &mut target);
    check(b"", &mut target);
    assert!(
        target.snapshot().unwrap().bit_equal(&original),
        "failed loads change nothing"
    );

    // Optimizer state requested from a checkpoint saved without it.
    let mut trainer = trainer(&target);
    assert!(load_checkpoint(&path, &mut target, Some(trainer.optimizer_mut())).is_err());
    // A different model shape.
    let mut other = Llama::new(
        LlamaConfig {
            intermediate_size: 128,
            ..LlamaConfig::tiny()
        },
        Device::Cpu,
        1,
    )
    .unwrap();
    assert!(load_checkpoint(&path, &mut other, None).is_err());
    // The good file still loads.
    assert_eq!(load_checkpoint(&path, &mut target, None).unwrap().window, 3);
    assert!(
        target
            .snapshot()
            .unwrap()
            .bit_equal(&model.snapshot().unwrap())
    );
}

#[test]
fn export_has_hf_names_shapes_and_config() {
    common::single_threaded_torch();
    for (config, kind, dtype, torch_dtype) in [
        (
            LlamaConfig::tiny(),
            Kind::Float,
            safetensors::Dtype::F32,
            "float32",
        ),
        (
            LlamaConfig {
                tie_word_embeddings: false,
                ..LlamaConfig::tiny()
            },
            Kind::BFloat16,
            safetensors::Dtype::BF16,
            "bfloat16",
        ),
    ] {
        let model = Llama::new(config.clone(), Device::Cpu, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        export_hf(&model, dir.path(), kind).unwrap();
        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
        names.sort();
        let mut expected: Vec<String> = config.param_specs().into_iter().map(|(n, _)| n).collect();
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(
            names.contains(&"lm_head.weight".to_string()),
            !config.tie_word_embeddings
        );
        for ((name, shape), param) in config.param_specs().iter().zip(model.parameters()) {
            let view = file.tensor(name).unwrap();
            assert_eq!(view.dtype(), dtype);
            let dims: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            assert_eq!(&dims, shape, "{name}");
            let back = Tensor::from_data_size(view.data(), &dims, kind).to_kind(Kind::Float);
            let expected = param.to_kind(kind).to_kind(Kind::Float);
            assert!(back.equal(&expected), "{name} values");
        }
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            header.metadata().as_ref().unwrap().get("format").unwrap(),
            "pt"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(json["architectures"][0], "LlamaForCausalLM");
        assert_eq!(json["model_type"], "llama");
        assert_eq!(json["hidden_size"], 64);
        assert_eq!(json["num_key_value_heads"], 2);
        assert_eq!(json["intermediate_size"], 176);
        assert_eq!(json["tie_word_embeddings"], config.tie_word_embeddings);
        assert_eq!(json["torch_dtype"], torch_dtype);
        assert_eq!(json["hidden_act"], "silu");
    }
}
