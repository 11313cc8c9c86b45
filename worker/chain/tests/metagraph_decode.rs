//! `NeuronInfoRuntimeApi_get_neurons_lite` output, built by hand in SCALE, decodes through the
//! real finney metadata into the expected metagraph.

mod support;

use support::{Lite, compact, encode_neuron_lite, full_metadata};
use worker_chain::subtensor::decode_neurons_lite;
use worker_chain::{AccountId, ChainError};

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
        bytes.extend(encode_neuron_lite(n));
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
