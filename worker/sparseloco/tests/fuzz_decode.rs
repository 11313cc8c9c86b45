//! The decoder never panics on arbitrary or mutated bytes (v1 and v2 seeds), and whatever
//! it accepts is canonical (re-encodes to the same bytes in the same version).

mod common;

use std::sync::OnceLock;

use common::{RawPayload, RawTensor, refresh_crc, small_specs, strided_pick};
use proptest::prelude::*;
use tch::Device;
use worker_sparseloco::{
    ErrorFeedback, GradientPayload, ParamSpec, WireVersion, decode, encode_as, wire_version,
};

fn specs() -> &'static [ParamSpec] {
    static SPECS: OnceLock<Vec<ParamSpec>> = OnceLock::new();
    SPECS.get_or_init(small_specs)
}

fn valid_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| crafted(RawPayload::new))
}

/// A crafted v2 payload (independent writer) with several code values.
fn valid_v2_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| crafted(RawPayload::new_v2))
}

/// A v2 payload of real compressed gradients (irregular gaps, skewed codes).
fn compressed_v2_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut ef = ErrorFeedback::new(specs(), Device::Cpu).unwrap();
        let tensors = ef.compress(&common::random_tensors(specs(), 21)).unwrap();
        encode_as(
            &GradientPayload {
                window: 77,
                uid: 3,
                tensors,
            },
            WireVersion::V2,
        )
    })
}

/// Cases per property: 512, or `SPARSELOCO_FUZZ_CASES` for longer runs.
fn fuzz_cases() -> u32 {
    std::env::var("SPARSELOCO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn seed(which: u8) -> &'static [u8] {
    match which % 3 {
        0 => valid_bytes(),
        1 => valid_v2_bytes(),
        _ => compressed_v2_bytes(),
    }
}

fn crafted(new: fn(u64, u16, Vec<RawTensor>) -> RawPayload) -> Vec<u8> {
    {
        let tensors = specs()
            .iter()
            .map(|s| {
                let k = worker_sparseloco::ChunkGeometry::new(s, &Default::default())
                    .unwrap()
                    .k();
                RawTensor::valid(s, strided_pick(1, k), |e| (e * 5 % 4) as u8)
            })
            .collect();
        new(77, 3, tensors).to_bytes()
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, value: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len().max(1);
    match m {
        Mutation::Flip { at, mask } => {
            if let Some(b) = bytes.get_mut(at % n) {
                *b ^= mask;
            }
        }
        Mutation::Set { at, value } => {
            if let Some(b) = bytes.get_mut(at % n) {
                *b = *value;
            }
        }
        Mutation::Truncate { len } => bytes.truncate(len % n),
        Mutation::Insert { at, bytes: extra } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, extra.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at % n;
            let end = (at + len).min(bytes.len());
            if at < end {
                bytes.drain(at..end);
            }
        }
    }
}

/// Decoding must return (never panic); an accepted payload must be canonical.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(payload) = decode(bytes, specs()) {
        let version = wire_version(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(encode_as(&payload, version), bytes.to_vec());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(decode(&bytes, specs()).is_err());
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048), which: u8) {
        let mut bytes = seed(which)[..20].to_vec();
        bytes.extend_from_slice(&body);
        refresh_crc(&mut bytes);
        check(&bytes)?;
    }

    #[test]
    fn mutated_payloads_never_panic(mutations in proptest::collection::vec(mutation(), 1..4), fix_crc: bool, which: u8) {
        let mut bytes = seed(which).to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if fix_crc {
            refresh_crc(&mut bytes);
        }
        check(&bytes)?;
    }
}

#[test]
fn the_fuzzing_seeds_are_valid() {
    for (which, version) in [
        (0, WireVersion::V1),
        (1, WireVersion::V2),
        (2, WireVersion::V2),
    ] {
        let bytes = seed(which);
        assert_eq!(wire_version(bytes), Ok(version));
        let payload = decode(bytes, specs()).unwrap();
        assert_eq!(encode_as(&payload, version), bytes);
    }
}
