//! Interop with the bittensor SDK's own timelock implementation, PyPI `bittensor-drand`
//! (installed in `.venv` by `scripts/setup.sh`; `WORKER_CHAIN_PYTHON` overrides the
//! interpreter). The tests fail when the interpreter or the package is missing.
//!
//! - a commit we encrypt for quicknet round 1000 decrypts with its `decrypt_with_signature`
//!   given that round's published signature;
//! - a payload it encrypts (`encrypt_at_round`) decrypts with ours;
//! - for a table of chain states our reveal round equals its `get_encrypted_commit`'s.
//!
//! The pulse (round 1000, published by drand at `https://api.drand.sh/52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971/public/1000`)
//! is the fixed vector of the `tle` crate's quicknet test (github.com/ideal-lab5/timelock,
//! `tle/src/tlock.rs`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rand::SeedableRng;
use serde_json::{Value, json};
use subxt::ext::codec::{Decode, Encode};
use worker_chain::timelock::{
    self, Beacon, Ciphertext, QUICKNET_PUBLIC_KEY, RevealSchedule, WeightsTlockPayload,
};

const ROUND: u64 = 1000;
const SIGNATURE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

/// Reads one JSON request on stdin, answers one JSON object on stdout.
const HELPER: &str = r#"
import json, sys, time
import bittensor_drand as bd
req = json.load(sys.stdin)
out = {}
if "decrypt" in req:
    d = req["decrypt"]
    out["decrypted"] = bd.decrypt_with_signature(bytes.fromhex(d["user_data"]), d["signature"]).hex()
if "encrypt" in req:
    e = req["encrypt"]
    blob, rnd = bd.encrypt_at_round(bytes.fromhex(e["data"]), e["round"])
    out["encrypted"] = {"user_data": blob.hex(), "round": rnd}
rows = []
for r in req.get("commits", []):
    before = time.time()
    ct, rnd = bd.get_encrypted_commit(r["uids"], r["values"], r["version_key"], r["tempo"],
        r["current_block"], r["netuid"], r["reveal_period"], r["block_time"], bytes.fromhex(r["hotkey"]))
    after = time.time()
    rows.append({"before": before, "after": after, "round": rnd, "commit": ct.hex()})
out["commits"] = rows
json.dump(out, sys.stdout)
"#;

fn python() -> PathBuf {
    std::env::var_os("WORKER_CHAIN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.venv/bin/python"
            ))
        })
}

fn run_helper(request: &Value) -> Value {
    let python = python();
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(HELPER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run scripts/setup.sh to create .venv with bittensor-drand",
                python.display()
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "bittensor-drand helper failed (is bittensor-drand installed in {}? run scripts/setup.sh):\n{}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn our_commit_decrypts_with_bittensor_drand_and_theirs_with_ours() {
    let payload = WeightsTlockPayload {
        hotkey: (0..32).collect(),
        uids: vec![0, 3, 17, 300],
        values: vec![65535, 1234, 1, 40000],
        version_key: 4242,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let ours =
        timelock::encrypt(&QUICKNET_PUBLIC_KEY, ROUND, &payload.to_bytes(), &mut rng).unwrap();
    // bittensor-drand's ciphertext envelope: SCALE (encrypted_data: Vec<u8>, reveal_round: u64).
    let user_data = (ours.clone(), ROUND).encode();
    let their_payload = WeightsTlockPayload {
        hotkey: vec![0xee; 32],
        uids: vec![5, 6],
        values: vec![7, 65535],
        version_key: 1,
    };
    let answer = run_helper(&json!({
        "decrypt": {"user_data": hex::encode(&user_data), "signature": SIGNATURE},
        "encrypt": {"data": hex::encode(their_payload.to_bytes()), "round": ROUND},
    }));

    // Theirs decrypted ours into exactly our SCALE payload.
    let decrypted = hex::decode(answer["decrypted"].as_str().unwrap()).unwrap();
    assert_eq!(WeightsTlockPayload::from_bytes(&decrypted), Some(payload));

    // Ours decrypts theirs.
    let blob = hex::decode(answer["encrypted"]["user_data"].as_str().unwrap()).unwrap();
    let (theirs, round) = <(Vec<u8>, u64)>::decode(&mut &blob[..]).unwrap();
    assert_eq!(round, ROUND);
    let signature = hex::decode(SIGNATURE).unwrap();
    let opened = timelock::decrypt(&theirs, &signature).unwrap();
    assert_eq!(
        WeightsTlockPayload::from_bytes(&opened),
        Some(their_payload)
    );
}

/// `(tempo, current_block, netuid, reveal_period_epochs, block_time)`.
const TABLE: &[(u64, u64, u16, u64, f64)] = &[
    (360, 5_000_000, 3, 1, 12.0), // finney-like subnet
    (360, 5_000_000, 3, 3, 12.0), // longer reveal period
    (99, 1000, 1, 2, 12.0),       // bittensor-drand's own test case
    (10, 100, 1, 2, 0.25),        // fast-block localnet
    (100, 96, 3, 1, 12.0),        // last block of an epoch: (96 + 4) % 101 = 100
    (100, 97, 3, 1, 12.0),        // first block of the next epoch
    (360, 0, 0, 1, 12.0),         // genesis, netuid 0
    (1, 12_345, 65_535, 1, 12.0), // smallest tempo, largest netuid
    (4_000, 7_654_321, 120, 5, 12.0),
    (10, 8, 1, 1, 0.2), // the devnet's subnet
];

#[test]
fn reveal_round_matches_get_encrypted_commit_for_a_table_of_chain_states() {
    let hotkey = [0x42u8; 32];
    let commits: Vec<Value> = TABLE
        .iter()
        .map(
            |&(tempo, current_block, netuid, reveal_period, block_time)| {
                json!({
                    "uids": [1, 2], "values": [65535, 3], "version_key": 9,
                    "tempo": tempo, "current_block": current_block, "netuid": netuid,
                    "reveal_period": reveal_period, "block_time": block_time,
                    "hotkey": hex::encode(hotkey),
                })
            },
        )
        .collect();
    let answer = run_helper(&json!({ "commits": commits }));
    let rows = answer["commits"].as_array().unwrap();
    assert_eq!(rows.len(), TABLE.len());
    let quicknet = Beacon::quicknet();
    for (row, &(tempo, current_block, netuid, reveal_period_epochs, block_time)) in
        rows.iter().zip(TABLE)
    {
        let schedule = RevealSchedule {
            netuid,
            tempo,
            reveal_period_epochs,
            current_block,
            block_time,
        };
        let theirs = row["round"].as_u64().unwrap();
        // It read the clock between `before` and `after`; ours at both ends must bracket it,
        // and be equal to it whenever the two ends agree.
        let early = schedule.reveal_round(row["before"].as_f64().unwrap(), &quicknet);
        let late = schedule.reveal_round(row["after"].as_f64().unwrap(), &quicknet);
        assert!(
            (early..=late).contains(&theirs),
            "{schedule:?}: bittensor-drand {theirs}, ours {early}..={late}"
        );
        if early == late {
            assert_eq!(theirs, early, "{schedule:?}");
        }
        // Their commit parses with our layout (it is for a future round, so neither side can
        // open it yet).
        let commit = hex::decode(row["commit"].as_str().unwrap()).unwrap();
        let parsed = Ciphertext::from_bytes(&commit).unwrap();
        assert_eq!(parsed.to_bytes().unwrap(), commit);
    }
}
