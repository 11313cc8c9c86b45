//! Golden-byte tests: the static calls encode against the real finney metadata exactly like
//! hand-written SCALE, and an offline-signed transaction carries a valid sr25519 signature.

mod support;

use subxt::OfflineClient;
use subxt::client::{ClientAtBlock, OfflineClientAtBlockImpl};
use subxt::config::DefaultExtrinsicParamsBuilder;
use subxt::config::substrate::{SpecVersionForRange, SubstrateConfig};
use subxt::utils::H256;
use support::{compact, full_metadata, vec_u16};
use worker_chain::subtensor::SubtensorConfig;
use worker_chain::subtensor::calls;
use worker_chain::{
    AccountId, ChainError, Keypair, NormalizedWeights, TimelockedCommit, WeightsReveal, verify,
};

const SPEC_VERSION: u32 = 393;
const TX_VERSION: u32 = 1;
const GENESIS: [u8; 32] = [0x2f; 32];

type Offline = ClientAtBlock<SubtensorConfig, OfflineClientAtBlockImpl<SubtensorConfig>>;

fn offline() -> Offline {
    let config = SubstrateConfig::builder()
        .set_genesis_hash(H256(GENESIS))
        .set_spec_version_for_block_ranges([SpecVersionForRange {
            block_range: 0..u64::MAX,
            spec_version: SPEC_VERSION,
            transaction_version: TX_VERSION,
        }])
        .set_metadata_for_spec_versions([(SPEC_VERSION, full_metadata())])
        .build();
    OfflineClient::new_with_config(SubtensorConfig::from_substrate(config))
        .at_block(1_000u64)
        .expect("offline client at block")
}

/// `[pallet index, call index]` looked up in the metadata, also pinned to the values seen in
/// spec 393 so a metadata swap that renumbers calls is noticed.
fn call_prefix(pallet: &str, call: &str, expected: [u8; 2]) -> Vec<u8> {
    let md = full_metadata();
    let p = md.pallet_by_name(pallet).unwrap();
    let index = p.call_variant_by_name(call).unwrap().index;
    assert_eq!([p.call_index(), index], expected, "{pallet}.{call}");
    expected.to_vec()
}

#[test]
fn set_weights_call_data() {
    let weights = NormalizedWeights {
        uids: vec![0, 1, 300],
        values: vec![65535, 1, 32768],
    };
    let call = calls::set_weights(3, &weights, 77);
    let got = offline().tx().call_data(&call).unwrap();
    let mut want = call_prefix("SubtensorModule", "set_weights", [7, 0]);
    want.extend_from_slice(&3u16.to_le_bytes());
    want.extend(vec_u16(&[0, 1, 300]));
    want.extend(vec_u16(&[65535, 1, 32768]));
    want.extend_from_slice(&77u64.to_le_bytes());
    assert_eq!(hex::encode(got), hex::encode(want));
}

#[test]
fn burned_register_call_data() {
    let hotkey = [0xab; 32];
    let call = calls::burned_register(3, &AccountId(hotkey));
    let got = offline().tx().call_data(&call).unwrap();
    let mut want = call_prefix("SubtensorModule", "burned_register", [7, 7]);
    want.extend_from_slice(&3u16.to_le_bytes());
    want.extend_from_slice(&hotkey);
    assert_eq!(hex::encode(got), hex::encode(want));
}

#[test]
fn commit_and_reveal_weights_call_data() {
    let hash = [0x5a; 32];
    let commit = calls::commit_weights(3, hash);
    let got = offline().tx().call_data(&commit).unwrap();
    let mut want = call_prefix("SubtensorModule", "commit_weights", [7, 96]);
    want.extend_from_slice(&3u16.to_le_bytes());
    want.extend_from_slice(&hash);
    assert_eq!(hex::encode(got), hex::encode(want));

    let reveal = calls::reveal_weights(
        3,
        &WeightsReveal {
            uids: vec![2, 5],
            values: vec![65535, 9],
            salt: vec![11, 12, 13],
            version_key: 4242,
        },
    );
    let got = offline().tx().call_data(&reveal).unwrap();
    let mut want = call_prefix("SubtensorModule", "reveal_weights", [7, 97]);
    want.extend_from_slice(&3u16.to_le_bytes());
    want.extend(vec_u16(&[2, 5]));
    want.extend(vec_u16(&[65535, 9]));
    want.extend(vec_u16(&[11, 12, 13]));
    want.extend_from_slice(&4242u64.to_le_bytes());
    assert_eq!(hex::encode(got), hex::encode(want));
}

fn commitment_call(data: &[u8]) -> Vec<u8> {
    let call = calls::set_commitment(3, data).unwrap();
    offline().tx().call_data(&call).unwrap()
}

#[test]
fn set_commitment_raw128_call_data() {
    let data: Vec<u8> = (0..128u8).collect();
    let got = commitment_call(&data);
    let mut want = call_prefix("Commitments", "set_commitment", [18, 0]);
    want.extend_from_slice(&3u16.to_le_bytes());
    want.extend(compact(1)); // one field
    // Data::None is variant 0 and RawN is variant N + 1, so Raw128 is 129.
    let md = full_metadata();
    let data_ty = md
        .types()
        .types
        .iter()
        .find(|t| t.ty.path.segments == ["pallet_commitments", "types", "Data"])
        .unwrap();
    let scale_info::TypeDef::Variant(def) = &data_ty.ty.type_def else {
        panic!("Data is an enum")
    };
    let raw128 = def.variants.iter().find(|v| v.name == "Raw128").unwrap();
    assert_eq!(raw128.index, 129);
    want.push(129);
    want.extend_from_slice(&data);
    assert_eq!(hex::encode(got), hex::encode(want));
}

#[test]
fn offline_signed_transaction_has_a_valid_signature() {
    let signer = Keypair::from_dev_name("validator-hotkey");
    let weights = NormalizedWeights {
        uids: vec![1],
        values: vec![65535],
    };
    let call = calls::set_weights(3, &weights, 0);
    let at = offline();
    let call_data = at.tx().call_data(&call).unwrap();
    let params = DefaultExtrinsicParamsBuilder::<SubtensorConfig>::new()
        .nonce(5)
        .immortal()
        .build();
    let mut signable = at.tx().create_signable_offline(&call, params).unwrap();

    // Signer payload = call ++ extra (era, nonce, tip, metadata-hash mode) ++ implicit
    // (spec version, tx version, genesis, era birth block = genesis, metadata hash None),
    // in the metadata's extension order; subtensor's own extensions are empty.
    let extra = [vec![0x00], compact(5), compact(0), vec![0x00]].concat();
    let implicit = [
        SPEC_VERSION.to_le_bytes().to_vec(),
        TX_VERSION.to_le_bytes().to_vec(),
        GENESIS.to_vec(),
        GENESIS.to_vec(),
        vec![0x00],
    ]
    .concat();
    let payload = [call_data.clone(), extra.clone(), implicit].concat();
    assert!(payload.len() <= 256, "short payloads are signed unhashed");
    assert_eq!(signable.signer_payload().unwrap(), payload);

    let tx = signable.sign(&signer).unwrap();
    let bytes = tx.encoded();
    // compact(len) ++ 0x84 (signed v4) ++ MultiAddress::Id ++ MultiSignature::Sr25519 ++ extra ++ call
    let body_len = 1 + 33 + 65 + extra.len() + call_data.len();
    let prefix = compact(body_len as u128);
    assert_eq!(bytes.len(), prefix.len() + body_len);
    let body = &bytes[prefix.len()..];
    assert_eq!(&bytes[..prefix.len()], &prefix[..]);
    assert_eq!(body[0], 0x84);
    assert_eq!(body[1], 0x00);
    assert_eq!(&body[2..34], &signer.public_key());
    assert_eq!(body[34], 0x01);
    let signature: [u8; 64] = body[35..99].try_into().unwrap();
    assert_eq!(&body[99..99 + extra.len()], &extra[..]);
    assert_eq!(&body[99 + extra.len()..], &call_data[..]);
    assert!(verify(&signer.public_key(), &payload, &signature));
    let mut tampered = payload.clone();
    tampered[2] ^= 1;
    assert!(!verify(&signer.public_key(), &tampered, &signature));
}

#[test]
fn short_commitments_use_the_matching_raw_variant_and_long_ones_are_refused() {
    // Raw5 is variant 6.
    let got = commitment_call(b"hello");
    let want = [vec![18, 0, 3, 0], compact(1), vec![6], b"hello".to_vec()].concat();
    assert_eq!(got, want);
    assert!(matches!(
        calls::set_commitment(3, &[0u8; 129]),
        Err(ChainError::CommitmentTooLarge { len: 129, max: 128 })
    ));
}

#[test]
fn commit_timelocked_weights_call_data() {
    // A real-size commit: 295 bytes, what a two-weight payload encrypts to.
    let commit = TimelockedCommit {
        commit: (0..295u32).map(|i| (i * 31 % 251) as u8).collect(),
        reveal_round: 22_554_321,
        commit_reveal_version: 4,
    };
    let call = calls::commit_timelocked_weights(3, &commit).unwrap();
    let got = offline().tx().call_data(&call).unwrap();
    // commit_timelocked_weights(netuid: u16, commit: BoundedVec<u8, 5000>, reveal_round: u64,
    // commit_reveal_version: u16), call index 113 of SubtensorModule (pallet 7).
    let mut want = call_prefix("SubtensorModule", "commit_timelocked_weights", [7, 113]);
    want.extend_from_slice(&3u16.to_le_bytes());
    want.extend(compact(295));
    want.extend_from_slice(&commit.commit);
    want.extend_from_slice(&22_554_321u64.to_le_bytes());
    want.extend_from_slice(&4u16.to_le_bytes());
    assert_eq!(hex::encode(got), hex::encode(want));

    // The argument names and types are those of spec 393.
    let md = full_metadata();
    let variant = md
        .pallet_by_name("SubtensorModule")
        .unwrap()
        .call_variant_by_name("commit_timelocked_weights")
        .unwrap();
    let names: Vec<_> = variant
        .fields
        .iter()
        .map(|f| f.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["netuid", "commit", "reveal_round", "commit_reveal_version"]
    );

    let too_big = TimelockedCommit {
        commit: vec![0; 5001],
        ..commit
    };
    assert!(matches!(
        calls::commit_timelocked_weights(3, &too_big),
        Err(ChainError::CommitTooLarge {
            len: 5001,
            max: 5000
        })
    ));
}

#[test]
fn spec_393_has_no_next_epoch_runtime_api() {
    // The reveal round is derived from Tempo (bittensor-drand's stateless formula) because
    // this runtime offers no `get_next_epoch_start_block`; when the bundled metadata gains
    // one, switch `RevealSchedule` to it.
    let md = full_metadata();
    let has_api = md
        .runtime_api_traits()
        .any(|api| api.methods().any(|m| m.name().contains("next_epoch_start")));
    assert!(!has_api);
}
