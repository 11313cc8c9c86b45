//! `SubxtChain` end to end against an in-memory node: a custom `RpcClientT` serving the legacy
//! JSON-RPC methods from hand-built SCALE (runtime version, the real finney metadata, storage,
//! the neurons runtime API, block bodies and events). Checks reads, the local refusals that
//! never reach the node, the bytes of a submitted transaction, and that an `ExtrinsicFailed`
//! event becomes `SubtensorModule::SettingWeightsTooFast`.

mod support;

use subxt::rpcs::client::RpcClient;
use support::mock_node::{
    FINALIZED, FINALIZED_NUMBER, GENESIS, MockNode, NETUID, NONCE, SPEC_VERSION, TX_VERSION,
    extrinsic_failed_events, node, storage_prefix, twox64_concat,
};
use support::{Lite, compact, encode_neuron_lite, vec_u16};
use worker_chain::{
    Chain, ChainError, Keypair, Network, RateLimited, SubxtChain, SubxtChainConfig, verify,
};

async fn connect(node: &MockNode) -> SubxtChain {
    SubxtChain::from_rpc_client(
        RpcClient::new(node.connection()),
        SubxtChainConfig::new(Network::Local),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn reads_block_window_metagraph_and_commitments() {
    let validator = Keypair::from_dev_name("validator");
    let node = node(&validator, 1234, 0);
    let neuron = Lite {
        hotkey: validator.public_key(),
        coldkey: [9; 32],
        uid: 0,
        netuid: NETUID,
        active: true,
        stake: vec![([9; 32], 42)],
        emission: 0,
        incentive: 65535,
        last_update: 900,
        validator_permit: true,
    };
    node.state().neurons = [compact(1), encode_neuron_lite(&neuron)].concat();
    // Two commitments on our subnet and one on another subnet.
    let commitment = |who: [u8; 32], netuid: u16, data: &[u8]| {
        let key = [
            storage_prefix("Commitments", "CommitmentOf"),
            netuid.to_le_bytes().to_vec(),
            twox64_concat(&who),
        ]
        .concat();
        // Registration { deposit: u64, block: u32, info: CommitmentInfo { fields: [RawN] } }
        let value = [
            0u64.to_le_bytes().to_vec(),
            77u32.to_le_bytes().to_vec(),
            compact(1),
            vec![data.len() as u8 + 1],
            data.to_vec(),
        ]
        .concat();
        node.set(key, value);
    };
    commitment(validator.public_key(), NETUID, &[5; 128]);
    commitment([8; 32], NETUID, b"bucket");
    commitment([8; 32], NETUID + 1, b"other subnet");

    let chain = connect(&node).await;
    assert_eq!(chain.current_block().await.unwrap(), 1234);
    assert_eq!(chain.current_window().await.unwrap(), 1234 / 115);

    let mg = chain.metagraph(NETUID).await.unwrap();
    assert_eq!(mg.block, FINALIZED_NUMBER);
    assert_eq!(mg.len(), 1);
    assert_eq!(mg.neurons[0].hotkey, validator.account_id());
    assert_eq!(mg.neurons[0].stake, 42);
    assert_eq!(mg.neurons[0].last_update, 900);

    let all = chain.commitments(NETUID).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[&validator.account_id()], vec![5; 128]);
    assert_eq!(all[&worker_chain::AccountId([8; 32])], b"bucket".to_vec());
    assert_eq!(chain.weights_rate_limit(NETUID).await.unwrap(), 100);
}

#[tokio::test]
async fn refusals_happen_before_anything_is_submitted() {
    let validator = Keypair::from_dev_name("validator");
    // Last update 950, limit 100, best block 1000: too early.
    let node = node(&validator, 1000, 950);
    let chain = connect(&node).await;
    assert_eq!(
        chain
            .set_weights(NETUID, &validator, &[0, 1], &[1.0, 0.5], 0)
            .await,
        Err(ChainError::RateLimited {
            what: RateLimited::Weights,
            netuid: NETUID,
            current_block: 1000,
            next_allowed_block: 1050
        })
    );
    let stranger = Keypair::from_dev_name("stranger");
    assert!(matches!(
        chain.set_weights(NETUID, &stranger, &[0], &[1.0], 0).await,
        Err(ChainError::NotRegistered { .. })
    ));
    assert!(matches!(
        chain
            .set_weights(NETUID, &validator, &[0], &[f32::NAN], 0)
            .await,
        Err(ChainError::InvalidWeights(_))
    ));
    assert_eq!(
        chain.commit_weights(NETUID, &validator, [0; 32]).await,
        Err(ChainError::CommitReveal {
            netuid: NETUID,
            enabled: false
        })
    );
    let cold = Keypair::from_dev_name("cold");
    assert!(matches!(
        chain
            .burned_register(NETUID, &cold, &validator.account_id())
            .await,
        Err(ChainError::AlreadyRegistered { uid: 0, .. })
    ));
    assert_eq!(
        chain
            .burned_register(NETUID + 1, &cold, &stranger.account_id())
            .await,
        Err(ChainError::UnknownSubnet(NETUID + 1))
    );
    assert!(node.submitted().is_empty());
}

#[tokio::test]
async fn submitted_set_weights_is_signed_and_module_errors_are_named() {
    let validator = Keypair::from_dev_name("validator");
    let node = node(&validator, 1000, 850);
    // The block that includes our extrinsic (index 0) reports
    // ExtrinsicFailed(Module { index: 7 (SubtensorModule), error: [28 = SettingWeightsTooFast, 0, 0, 0] }).
    node.state().events = extrinsic_failed_events(7, 28);
    let chain = connect(&node).await;

    let err = chain
        .set_weights(NETUID, &validator, &[1, 0], &[0.5, 1.0], 9)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ChainError::module("SubtensorModule", "SettingWeightsTooFast")
    );
    assert_eq!(err.to_string(), "SubtensorModule::SettingWeightsTooFast");
    assert!(err.is_rate_limit());

    let submitted = node.submitted();
    assert_eq!(submitted.len(), 1);
    let tx = &submitted[0];
    // set_weights(3, [0, 1], [65535, 32768], 9), max-normalised and sorted by uid.
    let call = [
        vec![7, 0],
        NETUID.to_le_bytes().to_vec(),
        vec_u16(&[0, 1]),
        vec_u16(&[65535, 32768]),
        9u64.to_le_bytes().to_vec(),
    ]
    .concat();
    // Mortal era of 64 blocks born at the finalized block 1000: phase 1000 % 64 = 40,
    // encoded as (log2(64) - 1) | (40 << 4) = 0x0285 little endian.
    let extra = [
        vec![0x85, 0x02],
        compact(NONCE.into()),
        compact(0),
        vec![0x00],
    ]
    .concat();
    let implicit = [
        SPEC_VERSION.to_le_bytes().to_vec(),
        TX_VERSION.to_le_bytes().to_vec(),
        GENESIS.to_vec(),
        FINALIZED.to_vec(),
        vec![0x00],
    ]
    .concat();
    let body_len = 1 + 33 + 65 + extra.len() + call.len();
    let prefix = compact(body_len as u128);
    assert_eq!(&tx[..prefix.len()], &prefix[..]);
    let body = &tx[prefix.len()..];
    assert_eq!(body.len(), body_len);
    assert_eq!(&body[..2], &[0x84, 0x00]);
    assert_eq!(&body[2..34], &validator.public_key());
    assert_eq!(body[34], 0x01);
    assert_eq!(&body[99..99 + extra.len()], &extra[..]);
    assert_eq!(&body[99 + extra.len()..], &call[..]);
    let signature: [u8; 64] = body[35..99].try_into().unwrap();
    let payload = [call, extra, implicit].concat();
    assert!(verify(&validator.public_key(), &payload, &signature));
}

/// A block's time is the node's `Timestamp::Now` at that block (milliseconds since the
/// epoch, read through the static API against the real metadata); a block the node has not
/// produced has none.
#[tokio::test]
async fn block_timestamps_come_from_the_timestamp_pallet() {
    let validator = Keypair::from_dev_name("validator");
    let node = node(&validator, 1234, 0);
    let millis: u64 = 1_733_000_000_123;
    node.set(
        storage_prefix("Timestamp", "Now"),
        millis.to_le_bytes().to_vec(),
    );
    let chain = connect(&node).await;
    assert_eq!(
        chain.block_timestamp(1200).await.unwrap(),
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis))
    );
    assert_eq!(chain.block_timestamp(1235).await.unwrap(), None);
}
