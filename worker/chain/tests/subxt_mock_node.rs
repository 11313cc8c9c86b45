//! `SubxtChain` end to end against an in-memory node: a custom `RpcClientT` serving the legacy
//! JSON-RPC methods from hand-built SCALE (runtime version, the real finney metadata, storage,
//! the neurons runtime API, block bodies and events). Checks reads, the local refusals that
//! never reach the node, the bytes of a submitted transaction, and that an `ExtrinsicFailed`
//! event becomes `SubtensorModule::SettingWeightsTooFast`.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{Value, json};
use sp_crypto_hashing::{blake2_128, twox_64, twox_128};
use subxt::rpcs::client::{RawRpcFuture, RawRpcSubscription, RawValue, RpcClient, RpcClientT};
use support::{Lite, compact, encode_neuron_lite, vec_u16};
use worker_chain::{
    Chain, ChainError, Keypair, Network, RateLimited, SubxtChain, SubxtChainConfig, verify,
};

const NETUID: u16 = 3;
const GENESIS: [u8; 32] = [0x11; 32];
const FINALIZED: [u8; 32] = [0x22; 32];
const FINALIZED_NUMBER: u64 = 1000;
const INCLUSION: [u8; 32] = [0x33; 32];
const SPEC_VERSION: u32 = 393;
const TX_VERSION: u32 = 1;
const NONCE: u64 = 7;

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn unhex(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or("0x");
    hex::decode(text.trim_start_matches("0x")).unwrap()
}

fn storage_prefix(pallet: &str, entry: &str) -> Vec<u8> {
    [twox_128(pallet.as_bytes()), twox_128(entry.as_bytes())].concat()
}

fn blake2_128_concat(key: &[u8]) -> Vec<u8> {
    [blake2_128(key).to_vec(), key.to_vec()].concat()
}

fn twox64_concat(key: &[u8]) -> Vec<u8> {
    [twox_64(key).to_vec(), key.to_vec()].concat()
}

fn scale_string(s: &str) -> Vec<u8> {
    [compact(s.len() as u128), s.as_bytes().to_vec()].concat()
}

fn header(number: u64, parent: [u8; 32]) -> Value {
    json!({
        "parentHash": hex0x(&parent),
        "number": format!("0x{number:x}"),
        "stateRoot": hex0x(&[0; 32]),
        "extrinsicsRoot": hex0x(&[0; 32]),
        "digest": {"logs": []},
    })
}

#[derive(Default)]
struct NodeState {
    best: u64,
    storage: BTreeMap<Vec<u8>, Vec<u8>>,
    neurons: Vec<u8>,
    events: Vec<u8>,
    submitted: Vec<Vec<u8>>,
    calls: Vec<String>,
}

#[derive(Clone, Default)]
struct MockNode(Arc<Mutex<NodeState>>);

impl MockNode {
    fn set(&self, key: Vec<u8>, value: Vec<u8>) {
        self.0.lock().unwrap().storage.insert(key, value);
    }

    fn submitted(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().submitted.clone()
    }

    fn runtime_version() -> Vec<u8> {
        [
            scale_string("node-subtensor"),
            scale_string("node-subtensor"),
            1u32.to_le_bytes().to_vec(),
            SPEC_VERSION.to_le_bytes().to_vec(),
            1u32.to_le_bytes().to_vec(),
            compact(0),
            TX_VERSION.to_le_bytes().to_vec(),
            vec![1],
        ]
        .concat()
    }

    fn state_call(&self, name: &str, hash: &Value) -> Option<Vec<u8>> {
        let state = self.0.lock().unwrap();
        match name {
            "Core_version" => Some(Self::runtime_version()),
            // No Metadata_metadata_versions: subxt falls back to the V14+ `Metadata_metadata`.
            "Metadata_metadata" => {
                let bytes = std::fs::read(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/metadata/finney-spec393.scale"
                ))
                .unwrap();
                Some([compact(bytes.len() as u128), bytes].concat())
            }
            // The on-chain nonce (3) lags the pool-aware `system_accountNextIndex` (7), which
            // SubxtChain must prefer.
            "AccountNonceApi_account_nonce" => Some(3u32.to_le_bytes().to_vec()),
            "NeuronInfoRuntimeApi_get_neurons_lite" => {
                assert_eq!(
                    unhex(hash),
                    FINALIZED,
                    "runtime API called at the finalized block"
                );
                Some(state.neurons.clone())
            }
            _ => None,
        }
    }

    fn handle(&self, method: &str, params: &[Value]) -> Option<Value> {
        self.0.lock().unwrap().calls.push(method.to_owned());
        let param = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
        Some(match method {
            "rpc_methods" => {
                json!({"methods": ["chain_getHeader", "state_call", "state_getStorage"]})
            }
            "chain_getBlockHash" => json!(hex0x(&GENESIS)),
            "chain_getFinalizedHead" => json!(hex0x(&FINALIZED)),
            "chain_getHeader" => match param(0) {
                Value::Null => header(self.0.lock().unwrap().best, [0; 32]),
                hash if unhex(&hash) == INCLUSION => header(FINALIZED_NUMBER + 1, FINALIZED),
                _ => header(FINALIZED_NUMBER, [0; 32]),
            },
            "chain_getBlock" => {
                let state = self.0.lock().unwrap();
                let extrinsics: Vec<String> = state.submitted.iter().map(|x| hex0x(x)).collect();
                json!({
                    "block": {"header": header(FINALIZED_NUMBER + 1, FINALIZED), "extrinsics": extrinsics},
                    "justifications": null,
                })
            }
            "state_call" => json!(hex0x(&self.state_call(param(0).as_str()?, &param(2))?)),
            "state_getStorage" => {
                let key = unhex(&param(0));
                let state = self.0.lock().unwrap();
                if key == storage_prefix("System", "Events") {
                    json!(hex0x(&state.events))
                } else {
                    state
                        .storage
                        .get(&key)
                        .map_or(Value::Null, |v| json!(hex0x(v)))
                }
            }
            "state_getKeysPaged" => {
                let prefix = unhex(&param(0));
                let count = param(1).as_u64().unwrap_or(1000) as usize;
                let start = param(2);
                let start = if start.is_null() {
                    Vec::new()
                } else {
                    unhex(&start)
                };
                let state = self.0.lock().unwrap();
                let keys: Vec<String> = state
                    .storage
                    .keys()
                    .filter(|k| k.starts_with(&prefix) && **k > start)
                    .take(count)
                    .map(|k| hex0x(k))
                    .collect();
                json!(keys)
            }
            "state_queryStorageAt" => {
                let state = self.0.lock().unwrap();
                let changes: Vec<Value> = param(0)
                    .as_array()?
                    .iter()
                    .map(|k| {
                        let key = unhex(k);
                        json!([hex0x(&key), state.storage.get(&key).map(|v| hex0x(v))])
                    })
                    .collect();
                json!([{"block": hex0x(&FINALIZED), "changes": changes}])
            }
            "system_accountNextIndex" => json!(NONCE),
            _ => return None,
        })
    }
}

fn raw(value: Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).unwrap()
}

fn params_vec(params: Option<Box<RawValue>>) -> Vec<Value> {
    params
        .and_then(|p| serde_json::from_str::<Vec<Value>>(p.get()).ok())
        .unwrap_or_default()
}

impl RpcClientT for MockNode {
    fn request_raw<'a>(
        &'a self,
        method: &'a str,
        params: Option<Box<RawValue>>,
    ) -> RawRpcFuture<'a, Box<RawValue>> {
        let result = self.handle(method, &params_vec(params));
        Box::pin(async move {
            result.map(raw).ok_or_else(|| {
                subxt::rpcs::Error::Client(format!("method not found: {method}").into())
            })
        })
    }

    fn subscribe_raw<'a>(
        &'a self,
        sub: &'a str,
        params: Option<Box<RawValue>>,
        _unsub: &'a str,
    ) -> RawRpcFuture<'a, RawRpcSubscription> {
        assert_eq!(sub, "author_submitAndWatchExtrinsic");
        let tx = unhex(&params_vec(params)[0]);
        self.0.lock().unwrap().submitted.push(tx);
        let updates = vec![
            Ok(raw(json!("ready"))),
            Ok(raw(json!({"inBlock": hex0x(&INCLUSION)}))),
            Ok(raw(json!({"finalized": hex0x(&INCLUSION)}))),
        ];
        Box::pin(async move {
            Ok(RawRpcSubscription {
                stream: futures::stream::iter(updates).boxed(),
                id: Some("sub-1".into()),
            })
        })
    }
}

/// A node where `validator` is uid 0 on a subnet with commit-reveal off, rate limit 100 and
/// its last weight update at `last_update`; the best block is `best`.
fn node(validator: &Keypair, best: u64, last_update: u64) -> MockNode {
    let node = MockNode::default();
    node.0.lock().unwrap().best = best;
    let netuid = NETUID.to_le_bytes().to_vec();
    let st = |entry: &str| storage_prefix("SubtensorModule", entry);
    node.set(
        [
            st("Uids"),
            netuid.clone(),
            blake2_128_concat(&validator.public_key()),
        ]
        .concat(),
        0u16.to_le_bytes().to_vec(),
    );
    node.set([st("NetworksAdded"), netuid.clone()].concat(), vec![1]);
    node.set(
        [st("CommitRevealWeightsEnabled"), netuid.clone()].concat(),
        vec![0],
    );
    node.set(
        [st("WeightsVersionKey"), netuid.clone()].concat(),
        0u64.to_le_bytes().to_vec(),
    );
    node.set(
        [st("WeightsSetRateLimit"), netuid.clone()].concat(),
        100u64.to_le_bytes().to_vec(),
    );
    let last_updates = [
        compact(2),
        last_update.to_le_bytes().to_vec(),
        5u64.to_le_bytes().to_vec(),
    ]
    .concat();
    node.set([st("LastUpdate"), netuid].concat(), last_updates);
    node
}

async fn connect(node: &MockNode) -> SubxtChain {
    SubxtChain::from_rpc_client(
        RpcClient::new(node.clone()),
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
    node.0.lock().unwrap().neurons = [compact(1), encode_neuron_lite(&neuron)].concat();
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
    let events = [
        compact(1),
        vec![0x00],                  // Phase::ApplyExtrinsic
        0u32.to_le_bytes().to_vec(), // extrinsic index 0
        vec![0x00, 0x01],            // RuntimeEvent::System, Event::ExtrinsicFailed
        vec![0x03, 7, 28, 0, 0, 0],  // DispatchError::Module
        compact(1000),               // weight.ref_time
        compact(0),                  // weight.proof_size
        vec![0x00, 0x00],            // DispatchClass::Normal, Pays::Yes
        compact(0),                  // topics
    ]
    .concat();
    node.0.lock().unwrap().events = events;
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
