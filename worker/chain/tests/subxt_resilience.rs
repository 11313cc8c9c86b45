//! `SubxtChain` against the in-memory node (`support/mock_node.rs`) with faults injected:
//!
//! - `submit_weights` on a commit-reveal subnet submits `commit_timelocked_weights` with the
//!   call layout of spec 393 and a reveal round from the subnet's tempo;
//! - the node drops the connection mid-run (and refuses reconnects for a while): reads are
//!   retried on a new connection, a submission cut off is not resent and is retryable;
//! - a refused extrinsic of each class (retryable, refused-by-rule, fatal) maps to its class
//!   and leaves the client usable;
//! - a runtime whose `set_weights` encoding changed is reported at connect naming both spec
//!   versions; `set_weights` then fails with that message while reads and
//!   `commit_timelocked_weights` (unchanged) keep working.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scale_info::{TypeDef, TypeDefPrimitive};
use subxt::ext::codec::{Decode, Encode};
use subxt::ext::frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};
use subxt::rpcs::client::RpcClient;
use support::compact;
use support::mock_node::{
    MockNode, NETUID, RpcRefusal, SubnetState, extrinsic_failed_events, node, node_with,
    spec393_metadata,
};
use worker_chain::subtensor::RetryPolicy;
use worker_chain::timelock::{Beacon, Ciphertext, RevealSchedule};
use worker_chain::{
    Chain, ChainError, ErrorClass, Keypair, Network, SubxtChain, SubxtChainConfig,
    WeightsSubmission,
};

fn config() -> SubxtChainConfig {
    let mut config = SubxtChainConfig::new(Network::Local);
    config.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_attempts: 5,
    };
    config.finalization_timeout = Duration::from_secs(10);
    config
}

async fn connect(node: &MockNode) -> SubxtChain {
    SubxtChain::connect_with(node.connector(), config())
        .await
        .unwrap()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The call data at the end of a submitted v4 signed extrinsic with a mortal era, the
/// nonce, a zero tip and no metadata hash.
fn call_of(tx: &[u8]) -> &[u8] {
    let mut body = tx;
    let len = subxt::ext::codec::Compact::<u32>::decode(&mut body)
        .unwrap()
        .0;
    assert_eq!(len as usize, body.len());
    // version byte, signer (0x00 + 32), signature (0x01 + 64), era (2), nonce 7, tip 0,
    // metadata-hash mode 0.
    let extra_len = 2 + compact(7).len() + 1 + 1;
    &body[1 + 33 + 65 + extra_len..]
}

fn error_index(pallet: &str, error: &str) -> (u8, u8) {
    let md = support::full_metadata();
    let p = md.pallet_by_name(pallet).unwrap();
    let index = p
        .error_variants()
        .unwrap()
        .iter()
        .find(|v| v.name == error)
        .unwrap()
        .index;
    (p.error_index(), index)
}

#[tokio::test]
async fn commit_reveal_subnet_gets_a_timelocked_commit() {
    let validator = Keypair::from_dev_name("validator");
    let best = 5_000_000;
    let node = node_with(
        &validator,
        best,
        &SubnetState {
            commit_reveal: true,
            tempo: 360,
            reveal_period: 2,
            subnet_n: 4,
            ..SubnetState::default()
        },
    );
    let chain = connect(&node).await;
    assert!(chain.runtime_compatibility().is_compatible());
    let before = unix_now();
    let submission = chain
        .submit_weights(NETUID, &validator, &[1, 2, 3], &[0.2, 1.0, 0.5], 11)
        .await
        .unwrap();
    let after = unix_now();
    let WeightsSubmission::Committed {
        reveal_round,
        first_reveal_block,
        commit_bytes,
        ..
    } = submission
    else {
        panic!("expected a timelocked commit, got {submission}");
    };
    let schedule = RevealSchedule {
        netuid: NETUID,
        tempo: 360,
        reveal_period_epochs: 2,
        current_block: best,
        block_time: 12.0,
    };
    assert_eq!(first_reveal_block, schedule.first_reveal_block());
    let quicknet = Beacon::quicknet();
    assert!(
        (schedule.reveal_round(before, &quicknet)..=schedule.reveal_round(after, &quicknet))
            .contains(&reveal_round)
    );

    // commit_timelocked_weights = [7, 113] netuid commit: Vec<u8> reveal_round: u64 version: u16.
    let submitted = node.submitted();
    assert_eq!(submitted.len(), 1);
    let call = call_of(&submitted[0]);
    assert_eq!(&call[..2], &[7, 113]);
    assert_eq!(&call[2..4], &NETUID.to_le_bytes());
    let mut rest = &call[4..];
    let commit = Vec::<u8>::decode(&mut rest).unwrap();
    assert_eq!(commit.len(), commit_bytes);
    assert_eq!(
        rest,
        [reveal_round.to_le_bytes().to_vec(), vec![4, 0]].concat()
    );
    Ciphertext::from_bytes(&commit).expect("a tle ciphertext");
}

#[tokio::test]
async fn a_dropped_connection_is_survived() {
    let validator = Keypair::from_dev_name("validator");
    let node = node(&validator, 1234, 0);
    let chain = connect(&node).await;
    assert_eq!(chain.current_block().await.unwrap(), 1234);
    assert_eq!(node.state().connects, 1);

    // The node restarts and refuses the first two reconnects.
    node.drop_connections();
    node.state().refuse_connects = 2;
    assert_eq!(chain.current_block().await.unwrap(), 1234);
    assert_eq!(node.state().connects, 4);
    assert_eq!(chain.reconnects(), 1);

    // Dropped in the middle of a multi-request read.
    node.state().drop_after_requests = Some(3);
    let context = chain
        .weights_context(NETUID, &validator.account_id())
        .await
        .unwrap();
    assert_eq!(context.uid, 0);
    assert_eq!(context.policy.weights_rate_limit, 100);
    assert_eq!(chain.reconnects(), 2);

    // A submission cut off by the drop is not resent: the node may hold it.
    node.state().drop_on_submit = true;
    let err = chain
        .submit_weights(NETUID, &validator, &[0, 1], &[1.0, 0.5], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Rpc(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(node.submitted().is_empty());
    let submission = chain
        .submit_weights(NETUID, &validator, &[0, 1], &[1.0, 0.5], 0)
        .await
        .unwrap();
    assert!(matches!(submission, WeightsSubmission::Set { .. }));
    assert_eq!(node.submitted().len(), 1);

    // An outage longer than the retry budget surfaces as a retryable error, and the client
    // works again once the node is back.
    node.drop_connections();
    node.state().refuse_connects = 1000;
    let err = chain.current_block().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    node.state().refuse_connects = 0;
    assert_eq!(chain.current_block().await.unwrap(), 1234);
}

#[tokio::test]
async fn each_class_of_refusal_is_reported_as_such() {
    let validator = Keypair::from_dev_name("validator");
    let node = node(&validator, 1000, 0);
    let chain = connect(&node).await;
    let set = || chain.set_weights(NETUID, &validator, &[0, 1], &[1.0, 0.5], 0);

    // Refused by the pool, passes with time: subtensor's custom code 6 (RateLimitExceeded).
    node.state().refuse_submission = Some(RpcRefusal {
        code: 1010,
        message: "Invalid Transaction".into(),
        data: Some("Custom error: 6".into()),
    });
    let err = set().await.unwrap_err();
    assert!(
        matches!(&err, ChainError::InvalidTransaction(m) if m.contains("RateLimitExceeded")),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);

    // Included but failed by a subnet rule.
    let (pallet, index) = error_index("SubtensorModule", "WeightVecLengthIsLow");
    node.state().events = extrinsic_failed_events(pallet, index);
    let err = set().await.unwrap_err();
    assert_eq!(
        err,
        ChainError::module("SubtensorModule", "WeightVecLengthIsLow")
    );
    assert_eq!(err.class(), ErrorClass::RefusedByRule);

    // Included but failed by the rate limit: retryable.
    let (pallet, index) = error_index("SubtensorModule", "SettingWeightsTooFast");
    node.state().events = extrinsic_failed_events(pallet, index);
    assert_eq!(set().await.unwrap_err().class(), ErrorClass::Retryable);
    node.state().events = compact(0);

    // Refused by the pool for lack of funds: a rule, not a transient.
    node.state().refuse_submission = Some(RpcRefusal {
        code: 1010,
        message: "Invalid Transaction".into(),
        data: Some("Inability to pay some fees (e.g. account balance too low)".into()),
    });
    assert_eq!(set().await.unwrap_err().class(), ErrorClass::RefusedByRule);

    // A signature the node cannot verify: this client is broken for this chain.
    node.state().refuse_submission = Some(RpcRefusal {
        code: 1010,
        message: "Invalid Transaction".into(),
        data: Some("Transaction has a bad signature".into()),
    });
    let err = set().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");

    // After all of that the client still works.
    set().await.unwrap();
    assert_eq!(node.submitted().len(), 3);
}

/// Spec 393's metadata with `SubtensorModule.set_weights(.., version_key: u64)` turned into a
/// `u32`, as a runtime upgrade changing that call would.
fn metadata_with_changed_set_weights() -> Vec<u8> {
    let RuntimeMetadataPrefixed(magic, RuntimeMetadata::V16(mut md)) =
        RuntimeMetadataPrefixed::decode(&mut &spec393_metadata()[..]).unwrap()
    else {
        panic!("expected V16");
    };
    let u32_id = md
        .types
        .types
        .iter()
        .find(|t| matches!(t.ty.type_def, TypeDef::Primitive(TypeDefPrimitive::U32)))
        .unwrap()
        .id;
    let pallet = md
        .pallets
        .iter()
        .find(|p| p.name == "SubtensorModule")
        .unwrap();
    let calls_ty = pallet.calls.as_ref().unwrap().ty.id;
    let TypeDef::Variant(calls) = &mut md.types.types[calls_ty as usize].ty.type_def else {
        panic!("calls are an enum");
    };
    let set_weights = calls
        .variants
        .iter_mut()
        .find(|v| v.name == "set_weights")
        .unwrap();
    let field = set_weights
        .fields
        .iter_mut()
        .find(|f| f.name.as_deref() == Some("version_key"))
        .unwrap();
    field.ty = u32_id.into();
    RuntimeMetadataPrefixed(magic, RuntimeMetadata::V16(md)).encode()
}

#[tokio::test]
async fn a_changed_runtime_is_reported_and_unchanged_calls_keep_working() {
    let validator = Keypair::from_dev_name("validator");
    let node = node(&validator, 1000, 0);
    {
        let mut state = node.state();
        state.metadata = metadata_with_changed_set_weights();
        state.spec_version = 394;
    }
    let chain = connect(&node).await;
    let report = chain.runtime_compatibility();
    assert_eq!(report.bundled_spec, 393);
    assert_eq!(report.node_spec, 394);
    assert_eq!(
        report.changed,
        vec!["SubtensorModule.set_weights".to_owned()]
    );
    assert!(report.unchanged > 20, "{report:?}");
    let summary = report.summary();
    assert!(
        summary.contains("spec 394")
            && summary.contains("spec 393")
            && summary.contains("SubtensorModule.set_weights"),
        "{summary}"
    );

    let err = chain
        .submit_weights(NETUID, &validator, &[0, 1], &[1.0, 0.5], 0)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ChainError::IncompatibleRuntime {
            item: "SubtensorModule.set_weights".into(),
            bundled_spec: 393,
            node_spec: 394,
        }
    );
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert_eq!(
        err.to_string(),
        "SubtensorModule.set_weights changed in the node's runtime (spec 394); this client was \
         built against spec 393 and cannot use it until it is updated"
    );
    assert!(node.submitted().is_empty());

    // Reads whose encoding did not change work; so does the timelocked commit.
    assert_eq!(chain.metagraph(NETUID).await.unwrap().netuid, NETUID);
    assert_eq!(chain.weights_rate_limit(NETUID).await.unwrap(), 100);
    let cr = node_with(
        &validator,
        1000,
        &SubnetState {
            commit_reveal: true,
            ..SubnetState::default()
        },
    );
    {
        let mut state = cr.state();
        state.metadata = metadata_with_changed_set_weights();
        state.spec_version = 394;
    }
    let chain = SubxtChain::from_rpc_client(RpcClient::new(cr.connection()), config())
        .await
        .unwrap();
    let submission = chain
        .submit_weights(NETUID, &validator, &[0, 1], &[1.0, 0.5], 0)
        .await
        .unwrap();
    assert!(matches!(submission, WeightsSubmission::Committed { .. }));
    assert_eq!(cr.submitted().len(), 1);
}
