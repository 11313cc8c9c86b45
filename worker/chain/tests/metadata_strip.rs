//! The static codegen (`src/subtensor/api.rs`) reads `metadata/subtensor-stripped.scale`, a
//! copy of the full finney metadata cut down to the pallet items and runtime APIs this crate
//! uses, so that the `#[subxt]` macro and the code it generates compile quickly.
//!
//! These tests regenerate the stripped file from `metadata/finney-spec393.scale` and check the
//! committed copy is byte-identical, and that every kept call / storage entry / runtime API
//! keeps the exact hash subxt validates against the live node.
//!
//! To regenerate after changing [`KEEP`]:
//! `WORKER_CHAIN_WRITE_METADATA=1 cargo test -p worker-chain --test metadata_strip`

use std::collections::{BTreeMap, BTreeSet};

use scale_info::form::PortableForm;
use scale_info::interner::UntrackedSymbol;
use scale_info::{PortableRegistry, TypeDef};
use subxt::ext::codec::{Decode, Encode};
use subxt::ext::frame_metadata::v16::{EnumDeprecationInfo, RuntimeMetadataV16, StorageEntryType};
use subxt::ext::frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};

const FULL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/metadata/finney-spec393.scale");
const STRIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/metadata/subtensor-stripped.scale"
);

/// What to keep of one pallet.
struct PalletKeep {
    name: &'static str,
    calls: &'static [&'static str],
    storage: &'static [&'static str],
    constants: &'static [&'static str],
}

/// Everything the static API uses. Events and errors are dropped: subxt decodes them at run
/// time with the node's own metadata.
const KEEP: &[PalletKeep] = &[
    PalletKeep {
        name: "SubtensorModule",
        calls: &[
            "set_weights",
            "commit_weights",
            "reveal_weights",
            "burned_register",
            "commit_timelocked_weights",
        ],
        storage: &[
            "Burn",
            "CommitRevealWeightsEnabled",
            "CommitRevealWeightsVersion",
            "LastUpdate",
            "MaxAllowedUids",
            "MaxWeightsLimit",
            "MinAllowedWeights",
            "NetworksAdded",
            "RevealPeriodEpochs",
            "SubnetworkN",
            "Tempo",
            "TimelockedWeightCommits",
            "Uids",
            "ValidatorPermit",
            "WeightsSetRateLimit",
            "WeightsVersionKey",
        ],
        constants: &[],
    },
    PalletKeep {
        name: "Timestamp",
        calls: &[],
        storage: &["Now"],
        constants: &[],
    },
    PalletKeep {
        name: "Commitments",
        calls: &["set_commitment"],
        storage: &["CommitmentOf", "LastCommitment"],
        constants: &["MaxFields"],
    },
];

const KEEP_APIS: &[(&str, &[&str])] = &[("NeuronInfoRuntimeApi", &["get_neurons_lite"])];

type Sym = UntrackedSymbol<std::any::TypeId>;

fn keep_variants(
    types: &mut PortableRegistry,
    id: u32,
    keep: impl Fn(&str) -> bool,
) -> BTreeSet<u8> {
    let ty = &mut types.types[id as usize].ty;
    let TypeDef::Variant(def) = &mut ty.type_def else {
        panic!("type {id} is not an enum");
    };
    def.variants.retain(|v| keep(&v.name));
    def.variants.iter().map(|v| v.index).collect()
}

fn keep_deprecations(info: &mut EnumDeprecationInfo<PortableForm>, kept: &BTreeSet<u8>) {
    info.0.retain(|index, _| kept.contains(index));
}

fn remap(sym: &mut Sym, map: &BTreeMap<u32, u32>) {
    let new = *map
        .get(&sym.id)
        .unwrap_or_else(|| panic!("type {} was not retained", sym.id));
    *sym = new.into();
}

fn storage_types(ty: &mut StorageEntryType<PortableForm>) -> Vec<&mut Sym> {
    match ty {
        StorageEntryType::Plain(value) => vec![value],
        StorageEntryType::Map { key, value, .. } => vec![key, value],
    }
}

/// Every type id the kept metadata refers to directly.
fn root_types(md: &mut RuntimeMetadataV16) -> Vec<&mut Sym> {
    let mut roots: Vec<&mut Sym> = Vec::new();
    for pallet in &mut md.pallets {
        if let Some(calls) = &mut pallet.calls {
            roots.push(&mut calls.ty);
        }
        if let Some(storage) = &mut pallet.storage {
            for entry in &mut storage.entries {
                roots.extend(storage_types(&mut entry.ty));
            }
        }
        for constant in &mut pallet.constants {
            roots.push(&mut constant.ty);
        }
    }
    for api in &mut md.apis {
        for method in &mut api.methods {
            for input in &mut method.inputs {
                roots.push(&mut input.ty);
            }
            roots.push(&mut method.output);
        }
    }
    let ex = &mut md.extrinsic;
    roots.push(&mut ex.address_ty);
    roots.push(&mut ex.call_ty);
    roots.push(&mut ex.signature_ty);
    for ext in &mut ex.transaction_extensions {
        roots.push(&mut ext.ty);
        roots.push(&mut ext.implicit);
    }
    let outer = &mut md.outer_enums;
    roots.push(&mut outer.call_enum_ty);
    roots.push(&mut outer.event_enum_ty);
    roots.push(&mut outer.error_enum_ty);
    roots
}

fn strip_type_docs(types: &mut PortableRegistry) {
    for ty in &mut types.types {
        ty.ty.docs.clear();
        match &mut ty.ty.type_def {
            TypeDef::Composite(c) => c.fields.iter_mut().for_each(|f| f.docs.clear()),
            TypeDef::Variant(v) => {
                for variant in &mut v.variants {
                    variant.docs.clear();
                    variant.fields.iter_mut().for_each(|f| f.docs.clear());
                }
            }
            _ => {}
        }
    }
}

/// Cut the full metadata down to [`KEEP`] / [`KEEP_APIS`].
fn strip(full: &[u8]) -> Vec<u8> {
    let RuntimeMetadataPrefixed(magic, metadata) =
        RuntimeMetadataPrefixed::decode(&mut &full[..]).expect("decode full metadata");
    let RuntimeMetadata::V16(mut md) = metadata else {
        panic!("expected metadata V16");
    };

    md.pallets.retain(|p| KEEP.iter().any(|k| k.name == p.name));
    let mut pallets_with_calls = BTreeSet::new();
    for pallet in &mut md.pallets {
        let keep = KEEP.iter().find(|k| k.name == pallet.name).expect("kept");
        if let Some(calls) = &mut pallet.calls {
            let kept = keep_variants(&mut md.types, calls.ty.id, |n| keep.calls.contains(&n));
            assert_eq!(
                kept.len(),
                keep.calls.len(),
                "missing call in {}",
                pallet.name
            );
            keep_deprecations(&mut calls.deprecation_info, &kept);
            pallets_with_calls.insert(pallet.name.clone());
        }
        if let Some(storage) = &mut pallet.storage {
            storage
                .entries
                .retain(|e| keep.storage.contains(&e.name.as_str()));
            assert_eq!(
                storage.entries.len(),
                keep.storage.len(),
                "missing storage in {}",
                pallet.name
            );
            storage.entries.iter_mut().for_each(|e| e.docs.clear());
        }
        pallet
            .constants
            .retain(|c| keep.constants.contains(&c.name.as_str()));
        pallet.constants.iter_mut().for_each(|c| c.docs.clear());
        pallet.event = None;
        pallet.error = None;
        pallet.associated_types.clear();
        pallet.view_functions.clear();
        pallet.docs.clear();
    }

    md.apis
        .retain(|api| KEEP_APIS.iter().any(|(name, _)| *name == api.name));
    for api in &mut md.apis {
        let (_, methods) = KEEP_APIS
            .iter()
            .find(|(n, _)| *n == api.name)
            .expect("kept");
        api.methods.retain(|m| methods.contains(&m.name.as_str()));
        api.methods.iter_mut().for_each(|m| m.docs.clear());
        api.docs.clear();
    }

    // The outer enums list every pallet; keep only the pallets whose calls we kept and no
    // events/errors (we dropped those above).
    let call_enum = md.outer_enums.call_enum_ty.id;
    keep_variants(&mut md.types, call_enum, |n| pallets_with_calls.contains(n));
    keep_variants(&mut md.types, md.outer_enums.event_enum_ty.id, |_| false);
    keep_variants(&mut md.types, md.outer_enums.error_enum_ty.id, |_| false);
    md.custom.map.clear();

    let mut keep_ids: BTreeSet<u32> = root_types(&mut md).into_iter().map(|s| s.id).collect();
    // subxt-metadata finds DispatchError by path; keep it so the stripped file stays usable.
    keep_ids.extend(
        md.types
            .types
            .iter()
            .filter(|t| t.ty.path.segments == ["sp_runtime", "DispatchError"])
            .map(|t| t.id),
    );
    let map = md.types.retain(|id| keep_ids.contains(&id));
    for sym in root_types(&mut md) {
        remap(sym, &map);
    }
    strip_type_docs(&mut md.types);

    RuntimeMetadataPrefixed(magic, RuntimeMetadata::V16(md)).encode()
}

#[test]
fn stripped_metadata_is_regenerated_identically() {
    let full = std::fs::read(FULL).expect("read full metadata");
    let stripped = strip(&full);
    if std::env::var_os("WORKER_CHAIN_WRITE_METADATA").is_some() {
        std::fs::write(STRIPPED, &stripped).expect("write stripped metadata");
    }
    let committed = std::fs::read(STRIPPED).expect("read committed stripped metadata");
    assert!(
        committed == stripped,
        "metadata/subtensor-stripped.scale is stale: rerun with WORKER_CHAIN_WRITE_METADATA=1"
    );
    assert!(
        stripped.len() * 10 < full.len(),
        "stripping should cut >90%"
    );
}

#[test]
fn kept_items_validate_like_the_full_metadata() {
    let full = subxt::Metadata::decode_from(&std::fs::read(FULL).unwrap()[..]).unwrap();
    let stripped = subxt::Metadata::decode_from(&std::fs::read(STRIPPED).unwrap()[..]).unwrap();
    assert_eq!(stripped.pallets().len(), KEEP.len());
    for keep in KEEP {
        let f = full.pallet_by_name(keep.name).unwrap();
        let s = stripped.pallet_by_name(keep.name).unwrap();
        assert_eq!(f.call_index(), s.call_index());
        for call in keep.calls {
            assert_eq!(f.call_hash(call), s.call_hash(call), "{}.{call}", keep.name);
            assert!(s.call_hash(call).is_some());
            assert_eq!(
                f.call_variant_by_name(call).map(|v| v.index),
                s.call_variant_by_name(call).map(|v| v.index)
            );
        }
        for entry in keep.storage {
            assert!(s.storage_hash(entry).is_some(), "{}.{entry}", keep.name);
            assert_eq!(
                f.storage_hash(entry),
                s.storage_hash(entry),
                "{}.{entry}",
                keep.name
            );
        }
        for constant in keep.constants {
            assert!(s.constant_hash(constant).is_some());
            assert_eq!(f.constant_hash(constant), s.constant_hash(constant));
        }
        // Dropped items are really gone.
        assert!(s.call_variants().unwrap().len() == keep.calls.len());
    }
    for (api, methods) in KEEP_APIS {
        let f = full.runtime_api_trait_by_name(api).unwrap();
        let s = stripped.runtime_api_trait_by_name(api).unwrap();
        for method in *methods {
            let fm = f.method_by_name(method).unwrap();
            let sm = s.method_by_name(method).unwrap();
            assert_eq!(fm.hash(), sm.hash(), "{api}.{method}");
        }
    }
    assert!(stripped.dispatch_error_ty().is_some());
}
