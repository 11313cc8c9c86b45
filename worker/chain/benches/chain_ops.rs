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

/// Best and median of `samples` single runs.
fn best_and_median<T>(name: &str, samples: usize, mut f: impl FnMut() -> T) {
    black_box(f());
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{name:<48} best {:>9.3} ms, median {:>9.3} ms ({samples} runs)",
        times[0].as_secs_f64() * 1e3,
        times[samples / 2].as_secs_f64() * 1e3
    );
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

    // Timelocked commit of 256 weights to quicknet, and the chain-side decryption.
    let payload = worker_chain::WeightsTlockPayload {
        hotkey: pair.public_key().to_vec(),
        uids: w.uids.clone(),
        values: w.values.clone(),
        version_key: 1,
    }
    .to_bytes();
    let key = worker_chain::timelock::BeaconKey::from_seed(&[3; 64]).unwrap();
    let mut rng = rand::rng();
    best_and_median("timelock encrypt (256 weights, quicknet key)", 50, || {
        worker_chain::timelock::encrypt(
            &worker_chain::timelock::QUICKNET_PUBLIC_KEY,
            1000,
            &payload,
            &mut rng,
        )
    });
    let sealed =
        worker_chain::timelock::encrypt(&key.public_key(), 1000, &payload, &mut rng).unwrap();
    let pulse = key.sign(1000).unwrap();
    best_and_median("timelock decrypt (256 weights)", 50, || {
        worker_chain::timelock::decrypt(&sealed, &pulse)
    });
    best_and_median("beacon round signature (hash to G1 + mul)", 50, || {
        key.sign(1000)
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
