//! Cross-check of the forward pass against an independent PyTorch implementation of the
//! Hugging Face LLaMA maths (`benches/reference_torch.py check`), reading our HF export.
//! Needs the workspace `.venv` (created by `scripts/setup.sh`, as CI does); without it the
//! test says so and passes.

mod common;

use std::path::Path;
use std::process::Command;

use tch::{Device, Tensor};
use worker_model::{Llama, LlamaConfig, export_hf};

#[test]
fn logits_match_pytorch_reference_on_exported_weights() {
    common::single_threaded_torch();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../../.venv/bin/python");
    if !python.exists() {
        eprintln!(
            "skipping: {} not found (run scripts/setup.sh)",
            python.display()
        );
        return;
    }
    // Untied head, GQA, non-default RoPE base: every code path the presets use.
    let config = LlamaConfig {
        tie_word_embeddings: false,
        rope_theta: 500_000.0,
        ..LlamaConfig::tiny()
    };
    let mut model = Llama::new(config, Device::Cpu, 4).unwrap();
    // Non-trivial norm weights so RMSNorm scaling is exercised too.
    let update: Vec<Tensor> = model
        .parameters()
        .iter()
        .map(|p| p.randn_like() * 0.1)
        .collect();
    model.apply_update(&update, 1.0).unwrap();

    let dir = tempfile::tempdir().unwrap();
    export_hf(&model, dir.path(), tch::Kind::Float).unwrap();
    let ids: Vec<Vec<i64>> = (0..2)
        .map(|b| (0..48).map(|t| (b * 977 + t * 131 + 7) % 2048).collect())
        .collect();
    std::fs::write(
        dir.path().join("input_ids.json"),
        serde_json::to_vec(&ids).unwrap(),
    )
    .unwrap();
    let flat: Vec<i64> = ids.concat();
    let logits = model
        .forward(&Tensor::from_slice(&flat).reshape([2, 48]))
        .unwrap();
    let values = Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.path().join("logits.f32"), bytes).unwrap();

    let run = || {
        Command::new(&python)
            .env("OMP_NUM_THREADS", "1")
            .arg(root.join("benches/reference_torch.py"))
            .arg("check")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "reference check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("max |logits"), "{stdout}");

    // The comparison is sensitive: a different RoPE base in config.json must fail it.
    let config_path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    json["rope_theta"] = serde_json::json!(10_000.0);
    std::fs::write(&config_path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(!run().status.success(), "a wrong RoPE base went unnoticed");
}

#[test]
fn inner_steps_match_torch_adamw_with_clipping() {
    common::single_threaded_torch();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../../.venv/bin/python");
    if !python.exists() {
        eprintln!(
            "skipping: {} not found (run scripts/setup.sh)",
            python.display()
        );
        return;
    }
    let config = LlamaConfig {
        tie_word_embeddings: false,
        ..LlamaConfig::tiny()
    };
    let mut model = Llama::new(config, Device::Cpu, 8).unwrap();
    let dir = tempfile::tempdir().unwrap();
    export_hf(&model, dir.path(), tch::Kind::Float).unwrap();

    let adamw = worker_model::AdamWConfig {
        schedule: worker_model::LrSchedule {
            peak: 1e-3,
            warmup_steps: 1,
            total_steps: 1 << 40,
            min_ratio: 0.1,
        },
        grad_clip: Some(0.5),
        // Large enough that decoupled decay (and its exemption for norm weights) shows.
        weight_decay: 10.0,
        ..worker_model::AdamWConfig::default()
    };
    let mut trainer = worker_model::InnerTrainer::new(adamw.clone(), &model).unwrap();
    let data = common::train_data();
    // Sample 0 starts right after nothing, others straddle EOS boundaries somewhere in the corpus.
    let steps = data
        .window_steps(&(0..12).map(|i| i * 97).collect::<Vec<u64>>(), 3, 2, 2)
        .unwrap();
    let mut clipped = 0;
    for micro_batches in &steps {
        let (_, _, stats) = trainer.train_step(&mut model, micro_batches).unwrap();
        clipped += usize::from(stats.grad_norm > 0.5);
    }
    assert!(clipped > 0, "clipping should be exercised");
    export_hf(&model, &dir.path().join("after"), tch::Kind::Float).unwrap();

    let to_lists = |t: &Tensor| -> Vec<Vec<i64>> {
        (0..t.size()[0])
            .map(|i| Vec::<i64>::try_from(t.get(i)).unwrap())
            .collect()
    };
    let spec = serde_json::json!({
        "lr": adamw.schedule.peak,
        "beta1": adamw.beta1,
        "beta2": adamw.beta2,
        "eps": adamw.eps,
        "weight_decay": adamw.weight_decay,
        "grad_clip": 0.5,
        "steps": steps.iter().map(|mbs| mbs.iter().map(|b| serde_json::json!({
            "input_ids": to_lists(&b.input_ids),
            "labels": to_lists(&b.labels),
        })).collect::<Vec<_>>()).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.path().join("train.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let output = Command::new(&python)
        .env("OMP_NUM_THREADS", "1")
        .arg(root.join("benches/reference_torch.py"))
        .arg("check-train")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "torch AdamW disagrees:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
