//! Helpers shared by the integration tests: hand-written SCALE and the full finney metadata.
#![allow(dead_code)]

pub mod mock_node;

use std::sync::Arc;

/// SCALE compact encoding, written out by hand (not via parity-scale-codec) so tests compare
/// against an independent encoder.
pub fn compact(n: u128) -> Vec<u8> {
    if n < 1 << 6 {
        vec![(n as u8) << 2]
    } else if n < 1 << 14 {
        (((n as u16) << 2) | 0b01).to_le_bytes().to_vec()
    } else if n < 1 << 30 {
        (((n as u32) << 2) | 0b10).to_le_bytes().to_vec()
    } else {
        let bytes = n.to_le_bytes();
        let len = 16 - (n.leading_zeros() as usize / 8);
        let mut out = vec![(((len - 4) as u8) << 2) | 0b11];
        out.extend_from_slice(&bytes[..len]);
        out
    }
}

/// `Vec<u16>`.
pub fn vec_u16(values: &[u16]) -> Vec<u8> {
    let mut out = compact(values.len() as u128);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The full finney metadata (runtime spec 393) shipped with the crate.
pub fn full_metadata() -> Arc<subxt::Metadata> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/metadata/finney-spec393.scale"
    ))
    .expect("read metadata");
    Arc::new(subxt::Metadata::decode_from(&bytes[..]).expect("decode metadata"))
}

/// The fields of a `NeuronInfoLite` the tests vary; the rest get fixed values.
pub struct Lite {
    pub hotkey: [u8; 32],
    pub coldkey: [u8; 32],
    pub uid: u16,
    pub netuid: u16,
    pub active: bool,
    pub stake: Vec<([u8; 32], u64)>,
    pub emission: u64,
    pub incentive: u16,
    pub last_update: u64,
    pub validator_permit: bool,
}

/// Field order and types of `pallet_subtensor::rpc_info::neuron_info::NeuronInfoLite` in
/// spec 393: hotkey, coldkey, uid (Compact<u16>), netuid (Compact<u16>), active, axon_info,
/// prometheus_info, stake (Vec<(AccountId32, Compact<u64>)>), rank, emission, incentive,
/// consensus, trust, validator_trust, dividends, last_update, validator_permit, pruning_score.
pub fn encode_neuron_lite(n: &Lite) -> Vec<u8> {
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

#[test]
fn compact_matches_the_scale_spec_examples() {
    // Examples from the SCALE codec documentation.
    assert_eq!(compact(0), [0x00]);
    assert_eq!(compact(1), [0x04]);
    assert_eq!(compact(42), [0xa8]);
    assert_eq!(compact(69), [0x15, 0x01]);
    assert_eq!(compact(65535), [0xfe, 0xff, 0x03, 0x00]);
    assert_eq!(
        compact(100_000_000_000_000),
        [0x0b, 0x00, 0x40, 0x7a, 0x10, 0xf3, 0x5a]
    );
}
