//! Helpers shared by the integration tests: hand-written SCALE and the full finney metadata.
#![allow(dead_code)]

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
