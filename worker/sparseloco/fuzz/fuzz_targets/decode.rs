//! Feeds arbitrary bytes to the wire decoder (v1 and v2): it must never panic, and any
//! payload it accepts must re-encode to exactly the same bytes in its version. Each input
//! is tried as is and with its CRC32 trailer recomputed, so mutations get past the
//! checksum and reach the record and coder checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worker_sparseloco::{ParamSpec, decode, encode_as, wire_version};

mod specs;

fn check(bytes: &[u8], specs: &[ParamSpec]) {
    if let Ok(payload) = decode(bytes, specs) {
        let version = wire_version(bytes).expect("an accepted payload has a known version");
        assert_eq!(
            encode_as(&payload, version),
            bytes,
            "accepted a non-canonical payload"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let specs = specs::fuzz_specs();
    check(data, &specs);
    if data.len() >= 4 {
        let body = &data[..data.len() - 4];
        let mut fixed = body.to_vec();
        fixed.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        check(&fixed, &specs);
    }
});
