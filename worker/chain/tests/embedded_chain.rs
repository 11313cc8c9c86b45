//! The embedded chain through the `Chain` trait object: registration, commitments, weights
//! rate limit, commit-reveal, incentives following validator weights, and the block timer.

use std::sync::Arc;
use std::time::Duration;

use worker_chain::{
    AccountId, Chain, ChainError, EmbeddedChain, EmbeddedChainConfig, Keypair, RateLimited,
    SubnetConfig, WeightsReveal, normalize_max_weights,
};

const NETUID: u16 = 3;

fn chain(subnet: SubnetConfig) -> EmbeddedChain {
    let chain = EmbeddedChain::new(EmbeddedChainConfig {
        blocks_per_window: 10,
        block_time: Duration::from_millis(5),
    });
    chain.add_subnet(NETUID, subnet);
    chain
}

async fn register(chain: &dyn Chain, name: &str) -> (Keypair, u16) {
    let coldkey = Keypair::from_dev_name(&format!("{name}-cold"));
    let hotkey = Keypair::from_dev_name(name);
    let uid = chain
        .burned_register(NETUID, &coldkey, &hotkey.account_id())
        .await
        .unwrap();
    (hotkey, uid)
}

#[tokio::test]
async fn registration_assigns_uids_in_order_up_to_capacity() {
    let embedded = chain(SubnetConfig {
        max_uids: 2,
        ..SubnetConfig::default()
    });
    let chain: Arc<dyn Chain> = Arc::new(embedded.clone());
    let (a, uid_a) = register(chain.as_ref(), "a").await;
    let (_, uid_b) = register(chain.as_ref(), "b").await;
    assert_eq!((uid_a, uid_b), (0, 1));

    let cold = Keypair::from_dev_name("a-cold");
    assert_eq!(
        chain.burned_register(NETUID, &cold, &a.account_id()).await,
        Err(ChainError::AlreadyRegistered {
            netuid: NETUID,
            hotkey: a.account_id(),
            uid: 0
        })
    );
    let c = Keypair::from_dev_name("c");
    assert_eq!(
        chain.burned_register(NETUID, &cold, &c.account_id()).await,
        Err(ChainError::SubnetFull {
            netuid: NETUID,
            capacity: 2
        })
    );
    assert_eq!(
        chain.burned_register(99, &cold, &c.account_id()).await,
        Err(ChainError::UnknownSubnet(99))
    );

    let mg = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(mg.len(), 2);
    assert_eq!(mg.uid_of(&a.account_id()), Some(0));
    assert_eq!(mg.neurons[0].coldkey, cold.account_id());
}

#[tokio::test]
async fn commitments_are_per_hotkey_and_rate_limited() {
    let embedded = chain(SubnetConfig {
        commitment_interval: 5,
        ..SubnetConfig::default()
    });
    let chain: &dyn Chain = &embedded;
    let (a, _) = register(chain, "a").await;
    let (b, _) = register(chain, "b").await;
    let creds_a = [7u8; 128];
    chain.set_commitment(NETUID, &a, &creds_a).await.unwrap();
    chain.set_commitment(NETUID, &b, b"short").await.unwrap();
    let all = chain.commitments(NETUID).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[&a.account_id()], creds_a.to_vec());
    assert_eq!(all[&b.account_id()], b"short".to_vec());

    let err = chain
        .set_commitment(NETUID, &a, b"again")
        .await
        .unwrap_err();
    assert!(err.is_rate_limit());
    assert!(matches!(
        err,
        ChainError::RateLimited {
            what: RateLimited::Commitment,
            next_allowed_block: 5,
            ..
        }
    ));
    embedded.advance(5);
    chain.set_commitment(NETUID, &a, b"again").await.unwrap();
    assert_eq!(
        chain.commitments(NETUID).await.unwrap()[&a.account_id()],
        b"again".to_vec()
    );

    assert!(matches!(
        chain.set_commitment(NETUID, &a, &[0; 129]).await,
        Err(ChainError::CommitmentTooLarge { len: 129, .. })
    ));
    let stranger = Keypair::from_dev_name("stranger");
    assert!(
        chain
            .set_commitment(NETUID, &stranger, b"x")
            .await
            .unwrap_err()
            .is_module("Commitments", "AccountNotAllowedCommit")
    );
}

#[tokio::test]
async fn set_weights_respects_permit_rate_limit_and_validation() {
    let embedded = chain(SubnetConfig {
        weights_rate_limit: 20,
        ..SubnetConfig::default()
    });
    let chain: &dyn Chain = &embedded;
    // Register at block 1 (`LastUpdate` 0 means "never set" to subtensor).
    embedded.advance(1);
    let (validator, _) = register(chain, "validator").await;
    let (_, miner) = register(chain, "miner").await;

    // Registered at block 1: the rate limit counts from registration (checked first, as
    // subtensor does).
    let err = chain
        .set_weights(NETUID, &validator, &[miner], &[1.0], 0)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ChainError::RateLimited {
            what: RateLimited::Weights,
            netuid: NETUID,
            current_block: 1,
            next_allowed_block: 21
        }
    );
    embedded.advance(20);

    // No stake, no permit.
    let err = chain
        .set_weights(NETUID, &validator, &[miner], &[1.0], 0)
        .await
        .unwrap_err();
    assert!(
        err.is_module("SubtensorModule", "NeuronNoValidatorPermit"),
        "{err}"
    );
    embedded
        .add_stake(NETUID, &validator.account_id(), 1000)
        .unwrap();
    assert_eq!(chain.weights_rate_limit(NETUID).await.unwrap(), 20);
    chain
        .set_weights(NETUID, &validator, &[miner, 0], &[0.5, 0.25], 0)
        .await
        .unwrap();
    assert_eq!(
        embedded.weights(NETUID).unwrap()[0],
        vec![(0, 32768), (1, 65535)]
    );
    assert!(
        chain
            .set_weights(NETUID, &validator, &[miner], &[1.0], 0)
            .await
            .unwrap_err()
            .is_rate_limit()
    );
    embedded.advance(20);
    assert!(matches!(
        chain
            .set_weights(NETUID, &validator, &[miner], &[f32::NAN], 0)
            .await,
        Err(ChainError::InvalidWeights(_))
    ));
    assert!(
        chain
            .set_weights(NETUID, &validator, &[7], &[1.0], 0)
            .await
            .unwrap_err()
            .is_module("SubtensorModule", "UidVecContainInvalidOne")
    );
    let stranger = Keypair::from_dev_name("stranger");
    assert!(matches!(
        chain.set_weights(NETUID, &stranger, &[0], &[1.0], 0).await,
        Err(ChainError::NotRegistered { .. })
    ));
    let mg = chain.metagraph(NETUID).await.unwrap();
    assert!(mg.neurons[0].validator_permit);
    assert!(!mg.neurons[1].validator_permit);
    assert_eq!(mg.neurons[0].last_update, 21);
}

#[tokio::test]
async fn incentive_follows_stake_weighted_validator_weights() {
    let embedded = chain(SubnetConfig {
        weights_rate_limit: 0,
        tempo: 10,
        ..SubnetConfig::default()
    });
    let chain: &dyn Chain = &embedded;
    let (big, _) = register(chain, "big-validator").await;
    let (small, _) = register(chain, "small-validator").await;
    let (_, m1) = register(chain, "miner-1").await;
    let (_, m2) = register(chain, "miner-2").await;
    embedded
        .add_stake(NETUID, &big.account_id(), 3_000)
        .unwrap();
    embedded
        .add_stake(NETUID, &small.account_id(), 1_000)
        .unwrap();

    // big: all on m1; small: m2 twice as much as m1.
    chain
        .set_weights(NETUID, &big, &[m1], &[1.0], 0)
        .await
        .unwrap();
    chain
        .set_weights(NETUID, &small, &[m1, m2], &[1.0, 2.0], 0)
        .await
        .unwrap();
    // Incentives only change at the epoch: subtensor runs it where
    // (block + netuid + 1) % (tempo + 1) == tempo, i.e. block 6 for netuid 3, tempo 10.
    embedded.advance(5);
    assert_eq!(
        chain.metagraph(NETUID).await.unwrap().neurons[usize::from(m1)].incentive,
        0.0
    );
    embedded.advance(1);
    let mg = chain.metagraph(NETUID).await.unwrap();
    // Row sums: big = 1 on m1; small = (1/3, 2/3) after max-normalisation round trip.
    let small_m1 = 32768.0 / (32768.0 + 65535.0);
    let expected_m1 = (3000.0 + 1000.0 * small_m1) / 4000.0;
    assert!((mg.neurons[usize::from(m1)].incentive - expected_m1).abs() < 1e-9);
    assert!((mg.neurons[usize::from(m2)].incentive - (1.0 - expected_m1)).abs() < 1e-9);
    assert!(mg.neurons[usize::from(m1)].incentive > mg.neurons[usize::from(m2)].incentive);

    // The big validator switches to m2: at the next epoch (tempo + 1 blocks later) m2
    // overtakes m1.
    chain
        .set_weights(NETUID, &big, &[m2], &[1.0], 0)
        .await
        .unwrap();
    embedded.advance(11);
    let mg = chain.metagraph(NETUID).await.unwrap();
    assert!(mg.neurons[usize::from(m2)].incentive > 0.9);
    let total: f64 = mg.neurons.iter().map(|n| n.incentive).sum();
    assert!((total - 1.0).abs() < 1e-9);
}

#[tokio::test]
async fn commit_reveal_round_trip() {
    let embedded = chain(SubnetConfig {
        commit_reveal: true,
        reveal_delay: 5,
        weights_rate_limit: 0,
        ..SubnetConfig::default()
    });
    let chain: &dyn Chain = &embedded;
    let (validator, _) = register(chain, "validator").await;
    let (_, miner) = register(chain, "miner").await;
    embedded
        .add_stake(NETUID, &validator.account_id(), 10)
        .unwrap();

    assert_eq!(
        chain
            .set_weights(NETUID, &validator, &[miner], &[1.0], 0)
            .await,
        Err(ChainError::CommitReveal {
            netuid: NETUID,
            enabled: true
        })
    );
    let w = normalize_max_weights(&[miner], &[1.0]).unwrap();
    let reveal = WeightsReveal {
        uids: w.uids,
        values: w.values,
        salt: vec![1, 2, 3],
        version_key: 0,
    };
    let who: AccountId = validator.account_id();
    chain
        .commit_weights(NETUID, &validator, reveal.commit_hash(&who, NETUID))
        .await
        .unwrap();
    assert!(
        chain
            .reveal_weights(NETUID, &validator, &reveal)
            .await
            .unwrap_err()
            .is_module("SubtensorModule", "RevealTooEarly")
    );
    embedded.advance(5);
    let mut wrong = reveal.clone();
    wrong.salt = vec![9];
    assert!(
        chain
            .reveal_weights(NETUID, &validator, &wrong)
            .await
            .unwrap_err()
            .is_module("SubtensorModule", "InvalidRevealCommitHashNotMatch")
    );
    chain
        .reveal_weights(NETUID, &validator, &reveal)
        .await
        .unwrap();
    assert_eq!(embedded.weights(NETUID).unwrap()[0], vec![(miner, 65535)]);
    assert!(
        chain
            .reveal_weights(NETUID, &validator, &reveal)
            .await
            .unwrap_err()
            .is_module("SubtensorModule", "NoWeightsCommitFound")
    );
}

#[tokio::test]
async fn timer_advances_blocks_and_windows() {
    let embedded = EmbeddedChain::start(EmbeddedChainConfig {
        blocks_per_window: 4,
        block_time: Duration::from_millis(5),
    });
    let chain: Arc<dyn Chain> = Arc::new(embedded.clone());
    let reached = tokio::time::timeout(Duration::from_secs(5), chain.wait_for_block(9))
        .await
        .expect("timer produces blocks")
        .unwrap();
    assert!(reached >= 9);
    assert!(chain.current_window().await.unwrap() >= 2);
    // Manual advance works alongside the timer and never goes backwards.
    let before = embedded.block();
    assert!(embedded.advance(100) >= before + 100);
}

/// Every produced block has a production time, in block order; a block not produced yet
/// has none, and the oldest are forgotten as a node prunes old state.
#[tokio::test]
async fn produced_blocks_have_timestamps_in_order() {
    use worker_chain::embedded::TIMESTAMPED_BLOCKS;
    let chain = EmbeddedChain::new(EmbeddedChainConfig::default());
    let before = std::time::SystemTime::now();
    chain.advance(3);
    std::thread::sleep(std::time::Duration::from_millis(5));
    chain.advance(2);
    let stamps: Vec<_> = futures::future::join_all((1..=5).map(|b| chain.block_timestamp(b)))
        .await
        .into_iter()
        .map(|t| t.unwrap().expect("a produced block has a time"))
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(stamps[0] >= before && stamps[3] > stamps[2], "{stamps:?}");
    assert_eq!(chain.block_timestamp(6).await.unwrap(), None);
    chain.advance(TIMESTAMPED_BLOCKS + 10);
    assert_eq!(chain.block_timestamp(5).await.unwrap(), None);
    assert!(
        chain
            .block()
            .checked_sub(1)
            .is_some_and(|b| chain.timestamp(b).is_some())
    );
}
