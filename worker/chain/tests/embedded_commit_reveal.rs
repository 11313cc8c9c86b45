//! Commit-reveal v4 on the embedded chain, through `Chain::submit_weights` as the validator
//! uses it: weights are committed timelocked to the beacon round of the reveal epoch, the
//! chain decrypts them itself at that round, and the next epoch's incentive follows them.
//! Also: the subnet rules refuse bad vectors before anything is committed, and a commit that
//! bypasses those checks is dropped at reveal like subtensor drops it.

use std::time::Duration;

use rand::SeedableRng;
use worker_chain::embedded::RevealOutcome;
use worker_chain::timelock::{self, RevealSchedule};
use worker_chain::{
    Chain, ChainError, EmbeddedChain, EmbeddedChainConfig, ErrorClass, Keypair, RateLimited,
    SubnetConfig, TimelockedCommit, WeightsRefusal, WeightsSubmission, WeightsTlockPayload,
    normalize_max_weights,
};

const NETUID: u16 = 2;
const TEMPO: u64 = 10;

struct Subnet {
    chain: EmbeddedChain,
    validator: Keypair,
    miners: Vec<u16>,
}

/// A validator (uid 0, staked) and `miners` miners, registered at block 1.
async fn subnet(config: SubnetConfig, miners: usize) -> Subnet {
    let chain = EmbeddedChain::new(EmbeddedChainConfig {
        blocks_per_window: 10,
        block_time: Duration::from_millis(200),
    });
    chain.add_subnet(NETUID, config);
    chain.advance(1);
    let owner = Keypair::from_dev_name("owner");
    let validator = Keypair::from_dev_name("validator");
    chain
        .burned_register(NETUID, &owner, &validator.account_id())
        .await
        .unwrap();
    chain
        .add_stake(NETUID, &validator.account_id(), 1_000_000)
        .unwrap();
    let mut uids = Vec::new();
    for i in 0..miners {
        let key = Keypair::from_dev_name(&format!("miner-{i}"));
        uids.push(
            chain
                .burned_register(NETUID, &owner, &key.account_id())
                .await
                .unwrap(),
        );
    }
    Subnet {
        chain,
        validator,
        miners: uids,
    }
}

fn commit_reveal(min_allowed_weights: u16) -> SubnetConfig {
    SubnetConfig {
        commit_reveal: true,
        reveal_period_epochs: 1,
        tempo: TEMPO,
        weights_rate_limit: 5,
        min_allowed_weights,
        ..SubnetConfig::default()
    }
}

#[tokio::test]
async fn weights_are_committed_revealed_at_their_round_and_drive_incentive() {
    let s = subnet(commit_reveal(2), 3).await;
    let chain: &dyn Chain = &s.chain;
    let m = &s.miners;
    s.chain.advance(9); // block 10, outside the epoch block
    let submission = chain
        .submit_weights(
            NETUID,
            &s.validator,
            &[m[0], m[1], m[2]],
            &[1.0, 0.5, 0.0],
            7,
        )
        .await
        .unwrap();
    let WeightsSubmission::Committed {
        block,
        reveal_round,
        first_reveal_block,
        commit_reveal_version,
        ref weights,
        ..
    } = submission
    else {
        panic!("commit-reveal is on: expected a commit, got {submission}");
    };
    assert_eq!(block, 10);
    assert_eq!(commit_reveal_version, 4);
    // uid 3's zero weight is dropped, like the SDK does.
    assert_eq!(weights.uids, vec![m[0], m[1]]);
    let expected = RevealSchedule {
        netuid: NETUID,
        tempo: TEMPO,
        reveal_period_epochs: 1,
        current_block: 10,
        block_time: 0.2,
    };
    // epoch(10) = (10 + 3) / 11 = 1; the reveal epoch 2 starts at 2 * 11 - 3 = 19.
    assert_eq!(first_reveal_block, 19);
    assert_eq!(expected.first_reveal_block(), 19);
    // Four beacon rounds per block: the round of block 19 + 3.
    assert!(
        (reveal_round == 88) || (reveal_round == 87),
        "reveal round {reveal_round}"
    );
    let pending = chain
        .pending_commits(NETUID, &s.validator.account_id())
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].epoch, 1);
    assert_eq!(pending[0].commit_block, 10);
    assert_eq!(pending[0].reveal_round, reveal_round);
    // The commit counts as the weight update for the rate limit.
    let mg = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(mg.neurons[0].last_update, 10);

    // Nothing is applied before the pulse of the reveal round is out (block 22).
    while s.chain.block() < 21 {
        s.chain.advance(1);
        assert!(s.chain.weights(NETUID).unwrap()[0].is_empty());
    }
    s.chain.advance(1);
    assert_eq!(s.chain.block(), 22);
    assert_eq!(
        s.chain.weights(NETUID).unwrap()[0],
        vec![(m[0], 65535), (m[1], 32768)]
    );
    let reveals = s.chain.reveals(NETUID).unwrap();
    assert_eq!(reveals.len(), 1);
    assert_eq!(reveals[0].block, 22);
    assert_eq!(reveals[0].reveal_round, reveal_round);
    assert_eq!(reveals[0].outcome, RevealOutcome::Applied);
    assert!(
        chain
            .pending_commits(NETUID, &s.validator.account_id())
            .await
            .unwrap()
            .is_empty()
    );

    // The epoch at the end of the reveal epoch (block 29: (29 + 3) % 11 == 10) computes
    // incentive from the revealed weights: 2/3 and 1/3.
    s.chain.advance(6);
    let before = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(before.neurons[usize::from(m[0])].incentive, 0.0);
    s.chain.advance(1);
    let after = chain.metagraph(NETUID).await.unwrap();
    let i0 = after.neurons[usize::from(m[0])].incentive;
    let i1 = after.neurons[usize::from(m[1])].incentive;
    assert!((i0 - 65535.0 / 98303.0).abs() < 1e-9, "{i0}");
    assert!((i1 - 32768.0 / 98303.0).abs() < 1e-9, "{i1}");
    assert_eq!(after.neurons[usize::from(m[2])].incentive, 0.0);
}

#[tokio::test]
async fn subnet_rules_refuse_weights_before_anything_is_committed() {
    let config = SubnetConfig {
        max_weight_limit: 40_000, // 61% of the total at most
        weights_version_key: 3,
        ..commit_reveal(2)
    };
    let s = subnet(config, 3).await;
    let chain: &dyn Chain = &s.chain;
    let m = &s.miners;
    s.chain.advance(5); // block 6: the rate limit (5) since registration at block 1 passed
    let who = s.validator.account_id();

    let err = chain
        .submit_weights(NETUID, &s.validator, &[m[0]], &[1.0], 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::WeightsRefused(WeightsRefusal::TooFewWeights {
                given: 1,
                required: 2,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::RefusedByRule);
    assert!(err.to_string().contains("MinAllowedWeights 2"), "{err}");

    let err = chain
        .submit_weights(NETUID, &s.validator, &[m[0], m[1]], &[1.0, 0.1], 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::WeightsRefused(WeightsRefusal::MaxWeightExceeded { .. })
        ),
        "{err}"
    );

    let err = chain
        .submit_weights(NETUID, &s.validator, &[m[0], m[1]], &[1.0, 1.0], 2)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ChainError::VersionKey {
            given: 2,
            required: 3
        }
    );
    assert!(
        chain
            .pending_commits(NETUID, &who)
            .await
            .unwrap()
            .is_empty()
    );

    // A valid vector goes through; a second one within the rate limit is retryable.
    chain
        .submit_weights(NETUID, &s.validator, &[m[0], m[1]], &[1.0, 1.0], 3)
        .await
        .unwrap();
    let err = chain
        .submit_weights(NETUID, &s.validator, &[m[0], m[1]], &[1.0, 1.0], 3)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ChainError::RateLimited {
            what: RateLimited::Weights,
            ..
        }
    ));
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(chain.pending_commits(NETUID, &who).await.unwrap().len(), 1);

    // A miner without a permit may only set a self-weight.
    let miner = Keypair::from_dev_name("miner-0");
    let err = chain
        .submit_weights(NETUID, &miner, &[0, m[1]], &[1.0, 1.0], 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::WeightsRefused(WeightsRefusal::NoValidatorPermit { .. })
        ),
        "{err}"
    );
    let stranger = Keypair::from_dev_name("stranger");
    let err = chain
        .submit_weights(NETUID, &stranger, &[0], &[1.0], 3)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::NotRegistered { .. }));
    assert_eq!(err.class(), ErrorClass::RefusedByRule);
}

/// Build a commit by hand, skipping `submit_weights`' checks; `tweak` may change it before
/// it is submitted.
async fn raw_commit(
    s: &Subnet,
    hotkey: [u8; 32],
    uids: &[u16],
    weights: &[f32],
    tweak: impl FnOnce(&mut TimelockedCommit),
) -> Result<TimelockedCommit, ChainError> {
    let chain: &dyn Chain = &s.chain;
    let context = chain
        .weights_context(NETUID, &s.validator.account_id())
        .await?;
    let normalized = normalize_max_weights(uids, weights)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(context.block);
    let (mut commit, _) = TimelockedCommit::seal(
        &context,
        hotkey,
        &normalized,
        0,
        &chain.timelock_beacon(),
        chain.block_time().as_secs_f64(),
        &mut rng,
    )?;
    tweak(&mut commit);
    chain
        .commit_timelocked_weights(NETUID, &s.validator, &commit)
        .await?;
    Ok(commit)
}

/// Re-encrypt `commit` to another round.
fn retarget(chain: &EmbeddedChain, hotkey: [u8; 32], uids: &[u16], round: u64) -> TimelockedCommit {
    let payload = WeightsTlockPayload {
        hotkey: hotkey.to_vec(),
        uids: uids.to_vec(),
        values: vec![65535; uids.len()],
        version_key: 0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(round);
    TimelockedCommit {
        commit: timelock::encrypt(
            &chain.timelock_beacon().public_key,
            round,
            &payload.to_bytes(),
            &mut rng,
        )
        .unwrap(),
        reveal_round: round,
        commit_reveal_version: 4,
    }
}

#[tokio::test]
async fn commits_that_break_rules_are_dropped_at_reveal_as_on_chain() {
    let s = subnet(
        SubnetConfig {
            weights_rate_limit: 0,
            ..commit_reveal(2)
        },
        3,
    )
    .await;
    let m = s.miners.clone();
    s.chain.advance(2);
    let me = s.validator.public_key();
    // Too few weights: the chain takes the commit and refuses the weights when it reveals.
    raw_commit(&s, me, &[m[0]], &[1.0], |_| {}).await.unwrap();
    // Another hotkey inside the payload.
    raw_commit(&s, [9; 32], &[m[0], m[1]], &[1.0, 1.0], |_| {})
        .await
        .unwrap();
    // A round the beacon only publishes long after the reveal epoch.
    let late = retarget(&s.chain, me, &[m[0], m[1]], 1_000_000);
    raw_commit(&s, me, &[m[0], m[1]], &[1.0, 1.0], |c| *c = late)
        .await
        .unwrap();
    s.chain.advance(30);
    let outcomes: Vec<RevealOutcome> = s
        .chain
        .reveals(NETUID)
        .unwrap()
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        outcomes,
        vec![
            RevealOutcome::Refused("SubtensorModule::WeightVecLengthIsLow".into()),
            RevealOutcome::Invalid("payload hotkey is not the committer".into()),
            RevealOutcome::Expired,
        ]
    );
    assert!(s.chain.weights(NETUID).unwrap()[0].is_empty());
}

#[tokio::test]
async fn the_chain_checks_version_switch_and_pending_limit_of_commits() {
    let s = subnet(
        SubnetConfig {
            weights_rate_limit: 0,
            ..commit_reveal(1)
        },
        2,
    )
    .await;
    let chain: &dyn Chain = &s.chain;
    let m = s.miners.clone();
    let me = s.validator.public_key();

    // A client still sending version 4 after the chain moved to 5.
    s.chain.set_commit_reveal_version(5);
    let err = raw_commit(&s, me, &[m[0]], &[1.0], |c| c.commit_reveal_version = 4)
        .await
        .unwrap_err();
    assert!(err.is_module("SubtensorModule", "IncorrectCommitRevealVersion"));
    assert_eq!(err.class(), ErrorClass::RefusedByRule);
    s.chain.set_commit_reveal_version(4);

    for _ in 0..10 {
        raw_commit(&s, me, &[m[0]], &[1.0], |_| {}).await.unwrap();
    }
    let err = raw_commit(&s, me, &[m[0]], &[1.0], |_| {})
        .await
        .unwrap_err();
    assert!(err.is_module("SubtensorModule", "TooManyUnrevealedCommits"));
    assert_eq!(err.class(), ErrorClass::Retryable);

    // With commit-reveal off the same entry point sets weights directly.
    let plain = subnet(
        SubnetConfig {
            weights_rate_limit: 0,
            ..SubnetConfig::default()
        },
        2,
    )
    .await;
    let chain_plain: &dyn Chain = &plain.chain;
    let submission = chain_plain
        .submit_weights(NETUID, &plain.validator, &[1, 2], &[1.0, 0.25], 0)
        .await
        .unwrap();
    assert!(
        matches!(submission, WeightsSubmission::Set { .. }),
        "{submission}"
    );
    assert_eq!(
        plain.chain.weights(NETUID).unwrap()[0],
        vec![(1, 65535), (2, 16384)]
    );
    let err = raw_commit(&plain, plain.validator.public_key(), &[1], &[1.0], |_| {})
        .await
        .unwrap_err();
    assert!(err.is_module("SubtensorModule", "CommitRevealDisabled"));
    assert_eq!(
        chain
            .pending_commits(NETUID, &s.validator.account_id())
            .await
            .unwrap()
            .len(),
        10
    );
}
