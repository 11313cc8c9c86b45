//! Feeds arbitrary bytes to the wire decoder (v1 and v2): it must never panic, and any
//! payload it accepts must re-encode to exactly the same bytes in its version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worker_sparseloco::{ParamSpec, decode, encode_as, wire_version};

fn specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("embed", [96, 128]),
        ParamSpec::new("q_proj", [128, 128]),
        ParamSpec::new("odd", [50, 100]),
        ParamSpec::new("norm", [128]),
        ParamSpec::new("tiny", [7]),
    ]
}

fuzz_target!(|data: &[u8]| {
    let specs = specs();
    if let Ok(payload) = decode(data, &specs) {
        let version = wire_version(data).expect("an accepted payload has a known version");
        assert_eq!(encode_as(&payload, version), data, "accepted a non-canonical payload");
    }
});
