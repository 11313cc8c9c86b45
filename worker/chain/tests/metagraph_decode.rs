//! `NeuronInfoRuntimeApi_get_neurons_lite` output, built by hand in SCALE, decodes through the
//! real finney metadata into the expected metagraph.

mod support;

use support::{compact, full_metadata};
use worker_chain::subtensor::decode_neurons_lite;
use worker_chain::{AccountId, ChainError};

struct Lite {
    hotkey: [u8; 32],
    coldkey: [u8; 32],
    uid: u16,
    netuid: u16,
    active: bool,
    stake: Vec<([u8; 32], u64)>,
    emission: u64,
    incentive: u16,
    last_update: u64,
    validator_permit: bool,
}

/// Field order and types of `pallet_subtensor::rpc_info::neuron_info::NeuronInfoLite` in
/// spec 393: hotkey, coldkey, uid (Compact<u16>), netuid (Compact<u16>), active, axon_info,
/// prometheus_info, stake (Vec<(AccountId32, Compact<u64>)>), rank, emission, incentive,
/// consensus, trust, validator_trust, dividends, last_update, validator_permit, pruning_score.
fn encode(n: &Lite) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&n.hotkey);
    out.extend_from_slice(&n.coldkey);
    out.extend(compact(n.uid.into()));
    out.extend(compact(n.netuid.into()));
    out.push(u8::from(n.active));
    // AxonInfo { block u64, version u32, ip u128, port u16, ip_type u8, protocol u8, p1 u8, p2 u8 }
    out.extend_from_slice(&123u64.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0x7f00_0001u128.to_le_bytes());
    out.extend_from_slice(&8091u16.to_le_bytes());
    out.extend_from_slice(&[4, 0, 0, 0]);
    // PrometheusInfo { block u64, version u32, ip u128, port u16, ip_type u8 }
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u128.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.push(0);
    out.extend(compact(n.stake.len() as u128));
    for (who, amount) in &n.stake {
        out.extend_from_slice(who);
        out.extend(compact((*amount).into()));
    }
    out.extend(compact(11)); // rank
    out.extend(compact(n.emission.into()));
    out.extend(compact(n.incentive.into()));
    out.extend(compact(12)); // consensus
    out.extend(compact(13)); // trust
    out.extend(compact(14)); // validator_trust
    out.extend(compact(15)); // dividends
    out.extend(compact(n.last_update.into()));
    out.push(u8::from(n.validator_permit));
    out.extend(compact(65535)); // pruning_score
    out
}

fn neurons() -> Vec<Lite> {
    vec![
        Lite {
            hotkey: [2; 32],
            coldkey: [3; 32],
            uid: 1,
            netuid: 3,
            active: false,
            stake: vec![([4; 32], 1_000_000_000_000), ([5; 32], 5)],
            emission: 1 << 40,
            incentive: 32768,
            last_update: 5_000_000,
            validator_permit: true,
        },
        Lite {
            hotkey: [1; 32],
            coldkey: [9; 32],
            uid: 0,
            netuid: 3,
            active: true,
            stake: vec![],
            emission: 0,
            incentive: 65535,
            last_update: 7,
            validator_permit: false,
        },
    ]
}

fn encode_all(list: &[Lite]) -> Vec<u8> {
    let mut bytes = compact(list.len() as u128);
    for n in list {
        bytes.extend(encode(n));
    }
    bytes
}

#[test]
fn hand_built_neurons_decode_into_a_sorted_metagraph() {
    let md = full_metadata();
    let mg = decode_neurons_lite(3, 99, &encode_all(&neurons()), &md).unwrap();
    assert_eq!(mg.netuid, 3);
    assert_eq!(mg.block, 99);
    assert_eq!(mg.len(), 2);
    let first = &mg.neurons[0];
    assert_eq!(first.uid, 0);
    assert_eq!(first.hotkey, AccountId([1; 32]));
    assert_eq!(first.coldkey, AccountId([9; 32]));
    assert_eq!(first.stake, 0);
    assert_eq!(first.incentive, 1.0);
    assert!(first.active);
    assert!(!first.validator_permit);
    assert_eq!(first.last_update, 7);
    let second = &mg.neurons[1];
    assert_eq!(second.uid, 1);
    assert_eq!(second.hotkey, AccountId([2; 32]));
    assert_eq!(second.stake, 1_000_000_000_005);
    assert!((second.incentive - 32768.0 / 65535.0).abs() < 1e-12);
    assert!(!second.active);
    assert!(second.validator_permit);
    assert_eq!(second.last_update, 5_000_000);
    assert_eq!(mg.uid_of(&AccountId([2; 32])), Some(1));
}

#[test]
fn truncated_or_padded_bytes_are_decode_errors() {
    let md = full_metadata();
    let bytes = encode_all(&neurons());
    assert!(matches!(
        decode_neurons_lite(3, 0, &bytes[..bytes.len() - 1], &md),
        Err(ChainError::Decode(_))
    ));
    let mut padded = bytes.clone();
    padded.push(0);
    assert!(matches!(
        decode_neurons_lite(3, 0, &padded, &md),
        Err(ChainError::Decode(_))
    ));
    // An empty subnet.
    assert!(decode_neurons_lite(3, 0, &[0], &md).unwrap().is_empty());
}
