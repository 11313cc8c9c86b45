//! Figures for the README: `cargo bench -p worker-chain --profile dev`.
//! Prints per-operation latency of signing, weight normalisation, commit hashing, metagraph
//! decoding, embedded-chain epochs, and the bittensor-strength keyfile KDF.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use support::{Lite, compact, encode_neuron_lite, full_metadata};
use worker_chain::wallet::nacl;
use worker_chain::{
    EmbeddedChain, EmbeddedChainConfig, Keypair, SubnetConfig, commit_hash, normalize_max_weights,
    verify,
};

fn time<T>(name: &str, iterations: u32, mut f: impl FnMut() -> T) -> Duration {
    black_box(f());
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    let per = start.elapsed() / iterations;
    println!(
        "{name:<48} {:>12.3} µs/op ({iterations} iterations)",
        per.as_secs_f64() * 1e6
    );
    per
}

fn main() {
    let pair = Keypair::from_dev_name("bench");
    let message = [7u8; 32];
    let signature = pair.sign(&message);
    time("sr25519 sign (32-byte digest)", 2000, || {
        pair.sign(&message)
    });
    time("sr25519 verify", 2000, || {
        verify(&pair.public_key(), &message, &signature)
    });

    let uids: Vec<u16> = (0..256).collect();
    let weights: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin().abs()).collect();
    time("normalize_max_weights (256 uids)", 20_000, || {
        normalize_max_weights(&uids, &weights)
    });
    let w = normalize_max_weights(&uids, &weights).unwrap();
    time("commit_hash (256 uids)", 20_000, || {
        commit_hash(&pair.public_key(), 3, &w.uids, &w.values, &[1, 2, 3, 4], 1)
    });

    let metadata = full_metadata();
    let mut bytes = compact(256);
    for uid in 0..256u16 {
        bytes.extend(encode_neuron_lite(&Lite {
            hotkey: [uid as u8; 32],
            coldkey: [1; 32],
            uid,
            netuid: 3,
            active: true,
            stake: vec![([2; 32], 1_000_000)],
            emission: 10,
            incentive: uid,
            last_update: 1000,
            validator_permit: uid < 64,
        }));
    }
    time("decode get_neurons_lite output (256 neurons)", 200, || {
        worker_chain::subtensor::decode_neurons_lite(3, 0, &bytes, &metadata)
    });

    let chain = EmbeddedChain::new(EmbeddedChainConfig::default());
    chain.add_subnet(
        3,
        SubnetConfig {
            weights_rate_limit: 0,
            ..SubnetConfig::default()
        },
    );
    let cold = Keypair::from_dev_name("cold");
    let keys: Vec<Keypair> = (0..256)
        .map(|i| Keypair::from_dev_name(&format!("hot-{i}")))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        use worker_chain::Chain;
        for key in &keys {
            chain
                .burned_register(3, &cold, &key.account_id())
                .await
                .unwrap();
        }
        for key in keys.iter().take(64) {
            chain.add_stake(3, &key.account_id(), 1_000).unwrap();
            chain.set_weights(3, key, &uids, &weights, 0).await.unwrap();
        }
    });
    time("embedded epoch (256 neurons, 64 full rows)", 200, || {
        chain.run_epoch(3)
    });
    time("embedded metagraph read (256 neurons)", 2000, || {
        rt.block_on(async {
            use worker_chain::Chain;
            chain.metagraph(3).await
        })
    });

    let sealed = nacl::encrypt_with_params(b"{}", b"pw", nacl::KdfParams::BITTENSOR).unwrap();
    let start = Instant::now();
    nacl::decrypt(&sealed, b"pw").unwrap();
    println!(
        "{:<48} {:>12.3} s (Argon2i, 512 MiB, 8 passes)",
        "$NACL keyfile decrypt (bittensor KDF)",
        start.elapsed().as_secs_f64()
    );
}
