//! An in-memory subtensor node for `SubxtChain` tests: a custom `RpcClientT` serving the
//! legacy JSON-RPC methods from hand-built SCALE (runtime version, a metadata blob, storage,
//! the neurons runtime API, block bodies and events), with fault injection: dropped
//! connections, refused reconnects, refused or interrupted submissions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{Value, json};
use sp_crypto_hashing::{blake2_128, twox_64, twox_128};
use subxt::rpcs::client::{RawRpcFuture, RawRpcSubscription, RawValue, RpcClient, RpcClientT};
use worker_chain::Keypair;
use worker_chain::subtensor::Connector;

use super::compact;

pub const NETUID: u16 = 3;
pub const GENESIS: [u8; 32] = [0x11; 32];
pub const FINALIZED: [u8; 32] = [0x22; 32];
pub const FINALIZED_NUMBER: u64 = 1000;
pub const INCLUSION: [u8; 32] = [0x33; 32];
pub const SPEC_VERSION: u32 = 393;
pub const TX_VERSION: u32 = 1;
pub const NONCE: u64 = 7;

pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

pub fn unhex(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or("0x");
    hex::decode(text.trim_start_matches("0x")).unwrap()
}

pub fn storage_prefix(pallet: &str, entry: &str) -> Vec<u8> {
    [twox_128(pallet.as_bytes()), twox_128(entry.as_bytes())].concat()
}

pub fn blake2_128_concat(key: &[u8]) -> Vec<u8> {
    [blake2_128(key).to_vec(), key.to_vec()].concat()
}

pub fn twox64_concat(key: &[u8]) -> Vec<u8> {
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

/// The full finney metadata (runtime spec 393) shipped with the crate.
pub fn spec393_metadata() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/metadata/finney-spec393.scale"
    ))
    .unwrap()
}

/// A JSON-RPC error the node answers a submission with.
#[derive(Clone)]
pub struct RpcRefusal {
    pub code: i32,
    pub message: String,
    pub data: Option<String>,
}

pub struct NodeState {
    pub best: u64,
    pub storage: BTreeMap<Vec<u8>, Vec<u8>>,
    pub neurons: Vec<u8>,
    pub events: Vec<u8>,
    pub submitted: Vec<Vec<u8>>,
    pub calls: Vec<String>,
    pub metadata: Vec<u8>,
    pub spec_version: u32,
    /// Connections opened before the last drop are dead.
    pub connection_epoch: u64,
    /// Connection attempts still to refuse.
    pub refuse_connects: u32,
    /// Connection attempts seen.
    pub connects: u32,
    /// Kill every connection after this many more requests.
    pub drop_after_requests: Option<u32>,
    /// Kill the connection when a submission arrives.
    pub drop_on_submit: bool,
    /// Answer the next submission with this JSON-RPC error.
    pub refuse_submission: Option<RpcRefusal>,
}

impl Default for NodeState {
    fn default() -> Self {
        Self {
            best: 0,
            storage: BTreeMap::new(),
            neurons: compact(0),
            events: compact(0),
            submitted: Vec::new(),
            calls: Vec::new(),
            metadata: spec393_metadata(),
            spec_version: SPEC_VERSION,
            connection_epoch: 0,
            refuse_connects: 0,
            connects: 0,
            drop_after_requests: None,
            drop_on_submit: false,
            refuse_submission: None,
        }
    }
}

#[derive(Clone, Default)]
pub struct MockNode(pub Arc<Mutex<NodeState>>);

impl MockNode {
    pub fn state(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.0.lock().unwrap()
    }

    pub fn set(&self, key: Vec<u8>, value: Vec<u8>) {
        self.state().storage.insert(key, value);
    }

    pub fn submitted(&self) -> Vec<Vec<u8>> {
        self.state().submitted.clone()
    }

    /// Close every open connection (like the node restarting).
    pub fn drop_connections(&self) {
        self.state().connection_epoch += 1;
    }

    /// A connection to the node as it is now.
    pub fn connection(&self) -> MockConnection {
        MockConnection {
            node: self.clone(),
            epoch: self.state().connection_epoch,
        }
    }

    /// How `SubxtChain::connect_with` reaches this node; fails while `refuse_connects` > 0.
    pub fn connector(&self) -> Connector {
        let node = self.clone();
        Arc::new(move || {
            let node = node.clone();
            Box::pin(async move {
                let refused = {
                    let mut state = node.state();
                    state.connects += 1;
                    if state.refuse_connects > 0 {
                        state.refuse_connects -= 1;
                        true
                    } else {
                        false
                    }
                };
                if refused {
                    return Err(subxt::rpcs::Error::Client("connection refused".into()));
                }
                Ok(RpcClient::new(node.connection()))
            })
        })
    }

    fn runtime_version(spec_version: u32) -> Vec<u8> {
        [
            scale_string("node-subtensor"),
            scale_string("node-subtensor"),
            1u32.to_le_bytes().to_vec(),
            spec_version.to_le_bytes().to_vec(),
            1u32.to_le_bytes().to_vec(),
            compact(0),
            TX_VERSION.to_le_bytes().to_vec(),
            vec![1],
        ]
        .concat()
    }

    fn state_call(&self, name: &str, hash: &Value) -> Option<Vec<u8>> {
        let state = self.state();
        match name {
            "Core_version" => Some(Self::runtime_version(state.spec_version)),
            // No Metadata_metadata_versions: subxt falls back to the V14+ `Metadata_metadata`.
            "Metadata_metadata" => Some(
                [
                    compact(state.metadata.len() as u128),
                    state.metadata.clone(),
                ]
                .concat(),
            ),
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
        self.state().calls.push(method.to_owned());
        let param = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
        Some(match method {
            "rpc_methods" => {
                json!({"methods": ["chain_getHeader", "state_call", "state_getStorage"]})
            }
            // No hash for a block the node has not produced yet.
            "chain_getBlockHash" => match param(0).as_u64() {
                Some(n) if n > self.state().best => Value::Null,
                _ => json!(hex0x(&GENESIS)),
            },
            "chain_getFinalizedHead" => json!(hex0x(&FINALIZED)),
            "chain_getHeader" => match param(0) {
                Value::Null => header(self.state().best, [0; 32]),
                hash if unhex(&hash) == INCLUSION => header(FINALIZED_NUMBER + 1, FINALIZED),
                _ => header(FINALIZED_NUMBER, [0; 32]),
            },
            "chain_getBlock" => {
                let state = self.state();
                // The inclusion block holds the latest submission only (index 0, which the
                // injected events refer to).
                let extrinsics: Vec<String> = state
                    .submitted
                    .last()
                    .map(|x| hex0x(x))
                    .into_iter()
                    .collect();
                json!({
                    "block": {"header": header(FINALIZED_NUMBER + 1, FINALIZED), "extrinsics": extrinsics},
                    "justifications": null,
                })
            }
            "state_call" => json!(hex0x(&self.state_call(param(0).as_str()?, &param(2))?)),
            "state_getStorage" => {
                let key = unhex(&param(0));
                let state = self.state();
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
                let state = self.state();
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
                let state = self.state();
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

fn connection_reset() -> subxt::rpcs::Error {
    subxt::rpcs::Error::Client("connection reset by peer".into())
}

/// One connection to a [`MockNode`]; dead once the node drops its connections.
pub struct MockConnection {
    node: MockNode,
    epoch: u64,
}

impl MockConnection {
    /// False when the connection is dead (counts the request towards a scheduled drop).
    fn alive(&self) -> bool {
        let mut state = self.node.state();
        if state.connection_epoch != self.epoch {
            return false;
        }
        if let Some(left) = state.drop_after_requests.as_mut() {
            if *left == 0 {
                state.drop_after_requests = None;
                state.connection_epoch += 1;
                return false;
            }
            *left -= 1;
        }
        true
    }
}

impl RpcClientT for MockConnection {
    fn request_raw<'a>(
        &'a self,
        method: &'a str,
        params: Option<Box<RawValue>>,
    ) -> RawRpcFuture<'a, Box<RawValue>> {
        let alive = self.alive();
        let result = alive.then(|| self.node.handle(method, &params_vec(params)));
        Box::pin(async move {
            match result {
                None => Err(connection_reset()),
                Some(answer) => answer.map(raw).ok_or_else(|| {
                    subxt::rpcs::Error::User(subxt::rpcs::UserError::method_not_found())
                }),
            }
        })
    }

    fn subscribe_raw<'a>(
        &'a self,
        sub: &'a str,
        params: Option<Box<RawValue>>,
        _unsub: &'a str,
    ) -> RawRpcFuture<'a, RawRpcSubscription> {
        assert_eq!(sub, "author_submitAndWatchExtrinsic");
        let alive = self.alive();
        let tx = unhex(&params_vec(params)[0]);
        let outcome = {
            let mut state = self.node.state();
            if !alive {
                Err(connection_reset())
            } else if state.drop_on_submit {
                state.drop_on_submit = false;
                state.connection_epoch += 1;
                Err(connection_reset())
            } else if let Some(refusal) = state.refuse_submission.take() {
                Err(subxt::rpcs::Error::User(subxt::rpcs::UserError {
                    code: refusal.code,
                    message: refusal.message,
                    data: refusal
                        .data
                        .map(|d| RawValue::from_string(json!(d).to_string()).unwrap()),
                }))
            } else {
                state.submitted.push(tx);
                Ok(())
            }
        };
        let updates = vec![
            Ok(raw(json!("ready"))),
            Ok(raw(json!({"inBlock": hex0x(&INCLUSION)}))),
            Ok(raw(json!({"finalized": hex0x(&INCLUSION)}))),
        ];
        Box::pin(async move {
            outcome?;
            Ok(RawRpcSubscription {
                stream: futures::stream::iter(updates).boxed(),
                id: Some("sub-1".into()),
            })
        })
    }
}

/// Storage key of a `SubtensorModule` map entry with an `Identity` hasher on the netuid.
pub fn sm_key(entry: &str, netuid: u16) -> Vec<u8> {
    [
        storage_prefix("SubtensorModule", entry),
        netuid.to_le_bytes().to_vec(),
    ]
    .concat()
}

/// The settings of a subnet on the mock node.
pub struct SubnetState {
    pub commit_reveal: bool,
    pub rate_limit: u64,
    pub last_update: u64,
    pub version_key: u64,
    pub min_allowed_weights: u16,
    pub max_weights_limit: u16,
    pub tempo: u16,
    pub reveal_period: u64,
    pub subnet_n: u16,
}

impl Default for SubnetState {
    fn default() -> Self {
        Self {
            commit_reveal: false,
            rate_limit: 100,
            last_update: 0,
            version_key: 0,
            min_allowed_weights: 1,
            max_weights_limit: u16::MAX,
            tempo: 99,
            reveal_period: 1,
            subnet_n: 2,
        }
    }
}

/// A node where `validator` is uid 0 (with a validator permit) on [`NETUID`] and the best
/// block is `best`.
pub fn node_with(validator: &Keypair, best: u64, subnet: &SubnetState) -> MockNode {
    let node = MockNode::default();
    node.state().best = best;
    let netuid = NETUID.to_le_bytes().to_vec();
    node.set(
        [
            storage_prefix("SubtensorModule", "Uids"),
            netuid.clone(),
            blake2_128_concat(&validator.public_key()),
        ]
        .concat(),
        0u16.to_le_bytes().to_vec(),
    );
    node.set(sm_key("NetworksAdded", NETUID), vec![1]);
    node.set(
        sm_key("CommitRevealWeightsEnabled", NETUID),
        vec![u8::from(subnet.commit_reveal)],
    );
    node.set(
        sm_key("WeightsVersionKey", NETUID),
        subnet.version_key.to_le_bytes().to_vec(),
    );
    node.set(
        sm_key("WeightsSetRateLimit", NETUID),
        subnet.rate_limit.to_le_bytes().to_vec(),
    );
    node.set(
        sm_key("MinAllowedWeights", NETUID),
        subnet.min_allowed_weights.to_le_bytes().to_vec(),
    );
    node.set(
        sm_key("MaxWeightsLimit", NETUID),
        subnet.max_weights_limit.to_le_bytes().to_vec(),
    );
    node.set(sm_key("Tempo", NETUID), subnet.tempo.to_le_bytes().to_vec());
    node.set(
        sm_key("SubnetworkN", NETUID),
        subnet.subnet_n.to_le_bytes().to_vec(),
    );
    node.set(
        [
            storage_prefix("SubtensorModule", "RevealPeriodEpochs"),
            twox64_concat(&netuid),
        ]
        .concat(),
        subnet.reveal_period.to_le_bytes().to_vec(),
    );
    node.set(
        storage_prefix("SubtensorModule", "CommitRevealWeightsVersion"),
        4u16.to_le_bytes().to_vec(),
    );
    let n = usize::from(subnet.subnet_n);
    let mut permits = compact(n as u128);
    permits.push(1);
    permits.extend(std::iter::repeat_n(0, n.saturating_sub(1)));
    node.set(sm_key("ValidatorPermit", NETUID), permits);
    let mut last_updates = compact(n as u128);
    last_updates.extend_from_slice(&subnet.last_update.to_le_bytes());
    for _ in 1..n {
        last_updates.extend_from_slice(&5u64.to_le_bytes());
    }
    node.set(sm_key("LastUpdate", NETUID), last_updates);
    node
}

/// `node_with` for a subnet with commit-reveal off, rate limit 100 and the validator's last
/// update at `last_update`.
pub fn node(validator: &Keypair, best: u64, last_update: u64) -> MockNode {
    node_with(
        validator,
        best,
        &SubnetState {
            last_update,
            ..SubnetState::default()
        },
    )
}

/// The `System.Events` of a block whose extrinsic 0 failed with a pallet error
/// (`pallet_index`, `error_index`).
pub fn extrinsic_failed_events(pallet_index: u8, error_index: u8) -> Vec<u8> {
    [
        compact(1),
        vec![0x00],                                     // Phase::ApplyExtrinsic
        0u32.to_le_bytes().to_vec(),                    // extrinsic index 0
        vec![0x00, 0x01], // RuntimeEvent::System, Event::ExtrinsicFailed
        vec![0x03, pallet_index, error_index, 0, 0, 0], // DispatchError::Module
        compact(1000),    // weight.ref_time
        compact(0),       // weight.proof_size
        vec![0x00, 0x00], // DispatchClass::Normal, Pays::Yes
        compact(0),       // topics
    ]
    .concat()
}
