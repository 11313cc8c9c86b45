//! Wire format: round trips, exact size, and typed rejection of malformed payloads (v1
//! crafted records; v2 has its own file).

mod common;

use common::{RawPayload, RawTensor, random_tensors, refresh_crc, small_specs, strided_pick};
use tch::{Device, Kind, Tensor};
use worker_sparseloco::{
    ErrorFeedback, GradientPayload, ParamSpec, WireError, WireVersion, decode, decompress,
    dense_bytes, encode, encode_as, encoded_len, encoded_len_as, index_overlap, validate_payload,
};

fn payload(specs: &[ParamSpec], seed: i64) -> GradientPayload {
    let mut ef = ErrorFeedback::new(specs, Device::Cpu).unwrap();
    let tensors = ef.compress(&random_tensors(specs, seed)).unwrap();
    GradientPayload {
        window: 42,
        uid: 7,
        tensors,
    }
}

fn raw_valid(specs: &[ParamSpec]) -> RawPayload {
    let tensors = specs
        .iter()
        .map(|s| RawTensor::valid(s, strided_pick(3, k_of(s)), |e| (e % 4) as u8))
        .collect();
    RawPayload::new(5, 9, tensors)
}

fn k_of(spec: &ParamSpec) -> usize {
    worker_sparseloco::ChunkGeometry::new(spec, &Default::default())
        .unwrap()
        .k()
}

#[test]
fn encode_decode_round_trip_preserves_everything() {
    let specs = small_specs();
    let p = payload(&specs, 1);
    let bytes = encode(&p);
    assert_eq!(bytes.len(), encoded_len(&p));
    let back = decode(&bytes, &specs).unwrap();
    assert_eq!(back, p);
    assert_eq!((back.window, back.uid), (42, 7));
    back.check_origin(42, 7).unwrap();
    assert!(matches!(
        back.check_origin(43, 7),
        Err(WireError::WrongOrigin { .. })
    ));
    validate_payload(&back, &specs, &Default::default()).unwrap();
}

#[test]
fn decoded_entries_are_the_dequantized_top_k() {
    let specs = small_specs();
    let grads = random_tensors(&specs, 2);
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
    let tensors = ef.compress(&grads).unwrap();
    let decoded = decode(
        &encode(&GradientPayload {
            window: 1,
            uid: 1,
            tensors,
        }),
        &specs,
    )
    .unwrap();
    for (t, g) in decoded.tensors.iter().zip(&grads) {
        let dense = decompress(t, Device::Cpu).unwrap();
        assert_eq!(dense.size(), g.size());
        let flat_dense: Vec<f32> = Vec::try_from(&dense.reshape([-1])).unwrap();
        let flat_grad: Vec<f32> = Vec::try_from(&g.reshape([-1])).unwrap();
        let table = t.quant().dequant_table();
        let positions = t.flat_indices();
        assert_eq!(positions.len(), t.geometry().entries());
        for (e, &pos) in positions.iter().enumerate() {
            let pos = pos as usize;
            assert_eq!(flat_dense[pos], table[t.code(e) as usize]);
            // Quantization error is bounded by the bin width of the 2-bit grid.
            let width = (table[3] - table[0]).abs().max(1e-3);
            assert!(
                (flat_dense[pos] - flat_grad[pos]).abs() <= 2.0 * width,
                "{}",
                t.name()
            );
        }
        let nonzero = flat_dense.iter().filter(|v| **v != 0.0).count();
        assert!(nonzero <= positions.len());
        // Compressed entries keep the sign of strong values.
        let strong = positions
            .iter()
            .enumerate()
            .filter(|(e, _)| t.code(*e) == 3)
            .count();
        assert!(strong > 0 || t.entries() < 16);
    }
}

#[test]
fn exact_v1_wire_ratio_of_a_4096_square_tensor_is_at_least_146() {
    let specs = vec![ParamSpec::new("model.layers.0.mlp.w", [4096, 4096])];
    tch::manual_seed(3);
    let g = Tensor::randn([4096, 4096], (Kind::Float, Device::Cpu));
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
    let tensors = ef.compress(&[g]).unwrap();
    let p = GradientPayload {
        window: 0,
        uid: 0,
        tensors,
    };
    let bytes = encode_as(&p, WireVersion::V1);
    // 4096 chunks x 64 entries x (12 + 2) bits, plus framing: header 20, name length 2,
    // name, ndim 1, dims 16, block/k 6, three counts 12, shift + centroids 20, CRC 4.
    let name_len = specs[0].name.len();
    assert_eq!(
        bytes.len(),
        4096 * 64 * 14 / 8 + 20 + 2 + name_len + 1 + 16 + 6 + 12 + 20 + 4
    );
    let ratio = dense_bytes(&specs, 4) as f64 / encoded_len_as(&p, WireVersion::V1) as f64;
    assert!(ratio >= 146.0, "ratio {ratio}");
    assert!(ratio < 146.3, "ratio {ratio}");
}

#[test]
fn independent_writer_produces_the_same_bytes() {
    let specs = small_specs();
    let raw = raw_valid(&specs);
    let bytes = raw.to_bytes();
    let decoded = decode(&bytes, &specs).unwrap();
    assert_eq!(encode_as(&decoded, WireVersion::V1), bytes);
    assert_eq!(decoded.tensors[2].indices()[..4], [3, 4, 5, 6]);
}

#[test]
fn every_truncation_is_rejected_with_a_typed_error() {
    let specs = small_specs();
    let bytes = encode(&payload(&specs, 4));
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len], &specs).is_err(),
            "prefix {len} accepted"
        );
        // Even with a valid checksum over the prefix, the structure is incomplete.
        let mut fixed = bytes[..len].to_vec();
        refresh_crc(&mut fixed);
        assert!(
            decode(&fixed, &specs).is_err(),
            "prefix {len} with fixed crc accepted"
        );
    }
    assert!(matches!(
        decode(&bytes[..10], &specs),
        Err(WireError::Truncated { .. })
    ));
}

#[test]
fn header_errors() {
    let specs = small_specs();
    let good = raw_valid(&specs);
    let mut bad = good.clone();
    bad.magic = *b"PK\x03\x04";
    assert!(matches!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::BadMagic(_))
    ));
    let mut bad = good.clone();
    bad.version = 3;
    assert_eq!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::UnsupportedVersion(3))
    );
    let mut bytes = good.to_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    assert!(matches!(
        decode(&bytes, &specs),
        Err(WireError::BadChecksum { .. })
    ));
    let mut bad = good.clone();
    bad.trailing = vec![0];
    assert_eq!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::TrailingBytes(1))
    );
    let mut bad = good.clone();
    bad.count = Some(u32::MAX);
    assert!(matches!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::TensorCount { .. })
    ));
}

#[test]
fn tensor_list_errors() {
    let specs = small_specs();
    let good = raw_valid(&specs);
    let mut bad = good.clone();
    bad.tensors.remove(1);
    assert!(matches!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::TensorCount {
            expected: 5,
            actual: 4
        })
    ));
    let mut bad = good.clone();
    bad.tensors[1] = bad.tensors[0].clone();
    assert_eq!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::DuplicateTensor("embed".into()))
    );
    let mut bad = good.clone();
    bad.tensors[1].name = "lm_head".into();
    assert_eq!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::UnknownTensor("lm_head".into()))
    );
    let mut bad = good.clone();
    bad.tensors[1].name = String::from_utf8_lossy(&[0xff; 3]).into_owned();
    assert!(decode(&bad.to_bytes(), &specs).is_err());
    // Records may come in any order; output follows the specs.
    let mut shuffled = good.clone();
    shuffled.tensors.reverse();
    let decoded = decode(&shuffled.to_bytes(), &specs).unwrap();
    let names: Vec<&str> = decoded.tensors.iter().map(|t| t.name()).collect();
    assert_eq!(names, ["embed", "q_proj", "odd", "norm", "tiny"]);
}

#[test]
fn record_field_errors() {
    let specs = small_specs();
    let good = raw_valid(&specs);
    let check = |mutate: &dyn Fn(&mut RawTensor), what: &str| -> WireError {
        let mut bad = good.clone();
        mutate(&mut bad.tensors[2]);
        decode(&bad.to_bytes(), &specs).expect_err(what)
    };
    assert!(matches!(
        check(&|t| t.dims = vec![100, 50], "shape"),
        WireError::ShapeMismatch { .. }
    ));
    assert!(matches!(
        check(&|t| t.dims = vec![50, 100, 1], "ndim"),
        WireError::FieldMismatch { field: "ndim", .. }
    ));
    assert!(matches!(
        check(&|t| t.k = 32, "k"),
        WireError::FieldMismatch { field: "k", .. }
    ));
    assert!(matches!(
        check(&|t| t.block_cols = 25, "block"),
        WireError::FieldMismatch {
            field: "block_cols",
            ..
        }
    ));
    assert!(matches!(
        check(&|t| t.entries = u32::MAX, "entries"),
        WireError::FieldMismatch {
            field: "entries",
            ..
        }
    ));
    assert!(matches!(
        check(&|t| t.index_len = Some(u32::MAX), "index length"),
        WireError::FieldMismatch {
            field: "index bytes",
            ..
        }
    ));
    assert!(matches!(
        check(&|t| t.code_len = Some(1 << 30), "code length"),
        WireError::FieldMismatch {
            field: "code bytes",
            ..
        }
    ));
    // Chunk size of "odd" is 50 x 50 = 2500: index 3000 is out of range.
    assert!(matches!(
        check(&|t| t.indices[63] = 3000, "range"),
        WireError::IndexOutOfRange {
            index: 3000,
            limit: 2500,
            ..
        }
    ));
    assert!(matches!(
        check(&|t| t.indices[1] = t.indices[0], "duplicate"),
        WireError::IndicesNotIncreasing { chunk: 0, .. }
    ));
    assert!(matches!(
        check(&|t| t.indices.swap(5, 6), "order"),
        WireError::IndicesNotIncreasing { .. }
    ));
    assert!(matches!(
        check(&|t| t.centroids[1] = f32::NAN, "nan"),
        WireError::NonFiniteQuantParams { .. }
    ));
    assert!(matches!(
        check(&|t| t.shift = f32::INFINITY, "inf"),
        WireError::NonFiniteQuantParams { .. }
    ));
    assert!(matches!(
        check(&|t| t.centroids.swap(0, 3), "order"),
        WireError::UnorderedCentroids { .. }
    ));
    assert!(matches!(
        check(&|t| t.name = "x".repeat(5000), "long name"),
        WireError::InvalidName
    ));
}

#[test]
fn padding_bits_must_be_zero() {
    // "tiny" has 7 entries: odd index count and a partial code byte.
    let specs = small_specs();
    let good = raw_valid(&specs);
    let mut bad = good.clone();
    let t = &mut bad.tensors[4];
    let mut codes = vec![0u8; 2];
    codes[1] = 0b1100_0000;
    t.code_bytes = Some(codes);
    assert!(matches!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::NonZeroPadding { field: "codes", .. })
    ));
    let mut bad = good.clone();
    let t = &mut bad.tensors[4];
    let mut idx = vec![0u8; 11];
    for (i, b) in idx.iter_mut().enumerate() {
        *b = i as u8 & 0x0f;
    }
    idx[10] = 0xf0; // upper nibble of the odd last index
    t.index_bytes = Some(idx);
    assert!(matches!(
        decode(&bad.to_bytes(), &specs),
        Err(WireError::NonZeroPadding {
            field: "indices",
            ..
        })
    ));
}

#[test]
fn specs_that_disagree_with_the_payload_are_rejected() {
    let specs = small_specs();
    let bytes = encode(&payload(&specs, 5));
    let mut other = specs.clone();
    other[0].shape = vec![128, 96];
    assert!(matches!(
        decode(&bytes, &other),
        Err(WireError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        decode(&bytes, &specs[..4]),
        Err(WireError::TensorCount { .. })
    ));
    let mut duplicate = specs.clone();
    duplicate[1].name = "embed".into();
    assert!(matches!(
        decode(&bytes, &duplicate),
        Err(WireError::InvalidSpecs(_))
    ));
}

#[test]
fn copy_detection_measures_shared_indices() {
    let specs = small_specs();
    let a = payload(&specs, 6);
    let b = payload(&specs, 7);
    assert_eq!(index_overlap(&a, &a).unwrap(), 1.0);
    let independent = index_overlap(&a, &b).unwrap();
    assert!(independent < 0.5, "{independent}");
    // Crafted payloads: chunk indices 0..k vs 32..32+k share k-32 of k for full chunks.
    let x = decode(&raw_valid(&specs).to_bytes(), &specs).unwrap();
    let shifted: Vec<RawTensor> = specs
        .iter()
        .map(|s| RawTensor::valid(s, strided_pick(3, k_of(s)), |_| 1))
        .collect();
    let y = decode(&RawPayload::new(5, 10, shifted).to_bytes(), &specs).unwrap();
    assert_eq!(index_overlap(&x, &y).unwrap(), 1.0);
    let other: Vec<RawTensor> = specs
        .iter()
        .map(|s| {
            let k = k_of(s);
            RawTensor::valid(s, strided_pick(if k == 64 { 35 } else { 3 }, k), |_| 1)
        })
        .collect();
    let z = decode(&RawPayload::new(5, 11, other).to_bytes(), &specs).unwrap();
    let overlap = index_overlap(&x, &z).unwrap();
    // Tensors with k = 64 and more than 67 elements per chunk share 32 of 64 indices.
    let total: usize = x.entries();
    let expected_shared: usize = x
        .tensors
        .iter()
        .map(|t| {
            if t.geometry().k() == 64 && t.geometry().chunk_elems() > 67 {
                t.entries() / 2
            } else {
                t.entries()
            }
        })
        .sum();
    assert!(
        (overlap - expected_shared as f64 / total as f64).abs() < 1e-12,
        "{overlap}"
    );
}

#[test]
fn norms_match_the_dense_tensors() {
    let specs = small_specs();
    let p = payload(&specs, 8);
    for (t, norm) in p.tensors.iter().zip(p.tensor_norms()) {
        let dense = decompress(t, Device::Cpu).unwrap();
        let expected = dense.to_kind(Kind::Double).norm().double_value(&[]);
        assert!(
            (norm - expected).abs() <= 1e-9 * expected.max(1.0),
            "{norm} vs {expected}"
        );
    }
    assert!(p.norm() > 0.0);
}
