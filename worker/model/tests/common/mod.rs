//! Helpers shared by the integration tests.
#![allow(dead_code)]

use tch::Device;
use worker_model::{
    AdamWConfig, Batch, CorpusSplit, InnerTrainer, Llama, LlamaConfig, LrSchedule, TokenDataset,
    assigned_sample_ids, open_bundled,
};

pub const RUN_SEED: u64 = 2026;
pub const INNER_STEPS: usize = 8;
pub const ACCUM: usize = 2;
pub const MICRO_BATCH: usize = 4;

/// A fast-learning optimizer for the tiny model.
pub fn fast_adamw() -> AdamWConfig {
    AdamWConfig {
        schedule: LrSchedule {
            peak: 3e-3,
            warmup_steps: 4,
            total_steps: 200,
            min_ratio: 0.1,
        },
        ..AdamWConfig::default()
    }
}

/// Tests run in parallel threads; one libtorch thread each avoids oversubscribing the
/// 2-core CI machine (tiny-model ops are too small to gain from intra-op threads).
pub fn single_threaded_torch() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tch::set_num_threads(1));
}

pub fn tiny_model(seed: u64) -> Llama {
    single_threaded_torch();
    Llama::new(LlamaConfig::tiny(), Device::Cpu, seed).unwrap()
}

pub fn train_data() -> TokenDataset {
    open_bundled(CorpusSplit::Train, LlamaConfig::tiny().seq_len as usize).unwrap()
}

pub fn val_batches() -> Vec<Batch> {
    let val = open_bundled(CorpusSplit::Val, LlamaConfig::tiny().seq_len as usize).unwrap();
    let ids: Vec<u64> = (0..32).map(|i| i * (val.num_samples() / 32)).collect();
    val.batches(&ids, 16).unwrap()
}

/// The inner steps `uid` trains on in `window`.
pub fn window_steps(data: &TokenDataset, uid: u16, window: u64) -> Vec<Vec<Batch>> {
    let count = INNER_STEPS * ACCUM * MICRO_BATCH;
    let ids = assigned_sample_ids(RUN_SEED, uid, window, count, data.num_samples()).unwrap();
    data.window_steps(&ids, INNER_STEPS, ACCUM, MICRO_BATCH)
        .unwrap()
}

pub fn trainer(model: &Llama) -> InnerTrainer {
    InnerTrainer::new(fast_adamw(), model).unwrap()
}
