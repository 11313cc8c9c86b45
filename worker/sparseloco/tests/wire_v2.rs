//! Wire format v2: identical reconstruction to v1, size, independent writer, and typed
//! rejection of every non-canonical or malformed stream.

mod common;

use common::{RawPayload, RawTensor, random_tensors, refresh_crc, small_specs, strided_pick};
use tch::{Device, Kind, Tensor};
use worker_sparseloco::{
    ErrorFeedback, GradientPayload, ParamSpec, SparseLocoConfig, WIRE_VERSION, WireError,
    WireVersion, decode, decode_with_config, decompress, dense_bytes, encode, encode_as,
    encoded_len, encoded_len_as, wire_version,
};

fn k_of(spec: &ParamSpec) -> usize {
    worker_sparseloco::ChunkGeometry::new(spec, &Default::default())
        .unwrap()
        .k()
}

fn raw_v2(specs: &[ParamSpec]) -> RawPayload {
    let tensors = specs
        .iter()
        .map(|s| {
            RawTensor::valid(s, strided_pick(3, k_of(s)), |e| {
                [1, 3, 3, 1, 0, 3, 2, 1][e % 8]
            })
        })
        .collect();
    RawPayload::new_v2(5, 9, tensors)
}

/// Like [`raw_v2`] with nearly binary codes (one 0 or 2 in 20): plane coded.
fn raw_v2_plane(specs: &[ParamSpec]) -> RawPayload {
    let tensors = specs
        .iter()
        .map(|s| {
            RawTensor::valid(s, strided_pick(3, k_of(s)), |e| match e % 40 {
                19 => 0,
                39 => 2,
                _ if e % 3 == 0 => 3,
                _ => 1,
            })
        })
        .collect();
    RawPayload::new_v2(5, 9, tensors)
}

fn reject_plane(mutate: &dyn Fn(&mut RawTensor), tensor: usize) -> WireError {
    let specs = small_specs();
    let mut bad = raw_v2_plane(&specs);
    assert_eq!(bad.tensors[tensor].canonical_code_coder(), 1);
    mutate(&mut bad.tensors[tensor]);
    decode(&bad.to_bytes(), &specs).expect_err("accepted a malformed plane record")
}

fn dense_bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = Vec::try_from(&t.reshape([-1])).unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

/// Compression settings at the edges: the default, k = 1, tiny chunks, k = chunk size, and
/// a dense-ish k.
fn configs() -> [SparseLocoConfig; 5] {
    [
        SparseLocoConfig::default(),
        SparseLocoConfig {
            topk: 1,
            ..Default::default()
        },
        SparseLocoConfig {
            topk: 17,
            chunk: 8,
            ..Default::default()
        },
        SparseLocoConfig {
            topk: 4096,
            ..Default::default()
        },
        SparseLocoConfig {
            topk: 2000,
            chunk: 64,
            ..Default::default()
        },
    ]
}

/// Every kind of shape the geometry supports: scalars, vectors shorter and longer than a
/// chunk, primes (1-element blocks), divisors below 64, k == chunk size, 3-D and 4-D.
fn all_shapes() -> Vec<ParamSpec> {
    let shapes: Vec<Vec<i64>> = vec![
        vec![],
        vec![1],
        vec![7],
        vec![64],
        vec![67],
        vec![2048],
        vec![50, 100],
        vec![96, 128],
        vec![128, 192],
        vec![67, 71],
        vec![1, 4096],
        vec![300, 1],
        vec![3, 5, 7],
        vec![2, 3, 100],
        vec![4, 4, 4, 4],
        vec![256, 2048],
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, s)| ParamSpec::new(format!("p{i}"), s))
        .collect()
}

#[test]
fn encode_writes_v2_and_both_versions_decode_to_the_same_payload() {
    assert_eq!(WIRE_VERSION, 2);
    let specs = small_specs();
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
    let p = GradientPayload {
        window: 3,
        uid: 4,
        tensors: ef.compress(&random_tensors(&specs, 11)).unwrap(),
    };
    let v2 = encode(&p);
    let v1 = encode_as(&p, WireVersion::V1);
    assert_eq!(wire_version(&v2), Ok(WireVersion::V2));
    assert_eq!(wire_version(&v1), Ok(WireVersion::V1));
    assert_eq!(v2.len(), encoded_len(&p));
    assert_eq!(v1.len(), encoded_len_as(&p, WireVersion::V1));
    assert!(v2.len() < v1.len());
    assert_eq!(decode(&v2, &specs).unwrap(), p);
    assert_eq!(decode(&v1, &specs).unwrap(), p);
}

#[test]
fn reconstruction_is_bit_identical_to_v1_for_every_shape_and_config() {
    let specs = all_shapes();
    let configs = configs();
    for (c, config) in configs.iter().enumerate() {
        let mut ef = ErrorFeedback::with_config(&specs, *config, Device::Cpu).unwrap();
        for round in 0..3 {
            let grads = random_tensors(&specs, 100 + 10 * c as i64 + round);
            let p = GradientPayload {
                window: round as u64,
                uid: 1,
                tensors: ef.compress(&grads).unwrap(),
            };
            let from_v1 =
                decode_with_config(&encode_as(&p, WireVersion::V1), &specs, config).unwrap();
            let v2_bytes = encode(&p);
            assert_eq!(v2_bytes.len(), encoded_len(&p));
            let from_v2 = decode_with_config(&v2_bytes, &specs, config).unwrap();
            assert_eq!(from_v2, from_v1, "config {c} round {round}");
            for ((a, b), original) in from_v1.tensors.iter().zip(&from_v2.tensors).zip(&p.tensors) {
                let dense_v1 = dense_bits(&decompress(a, Device::Cpu).unwrap());
                let dense_v2 = dense_bits(&decompress(b, Device::Cpu).unwrap());
                assert_eq!(dense_v1, dense_v2, "{} config {c}", a.name());
                assert_eq!(
                    dense_v2,
                    dense_bits(&decompress(original, Device::Cpu).unwrap())
                );
            }
        }
    }
}

#[test]
fn a_4096_square_tensor_is_at_least_200x_smaller_than_fp32() {
    let specs = vec![ParamSpec::new("model.layers.0.mlp.w", [4096, 4096])];
    tch::manual_seed(3);
    let g = Tensor::randn([4096, 4096], (Kind::Float, Device::Cpu));
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
    let p = GradientPayload {
        window: 0,
        uid: 0,
        tensors: ef.compress(&[g]).unwrap(),
    };
    let bytes = encode(&p);
    let ratio = dense_bytes(&specs, 4) as f64 / bytes.len() as f64;
    // Rice gaps cost ~7.5 bits per index (the subset bound is 7.44), the codes of
    // Gaussian data are nearly binary (~1 bit): far below v1's 14 bits per entry.
    assert!(ratio >= 200.0, "ratio {ratio}");
    let v1 = encoded_len_as(&p, WireVersion::V1);
    assert!(
        (v1 as f64) / (bytes.len() as f64) > 1.4,
        "v1 {v1} v2 {}",
        bytes.len()
    );
    assert_eq!(decode(&bytes, &specs).unwrap(), p);
}

#[test]
fn independent_writer_produces_the_same_bytes() {
    let specs = small_specs();
    let bytes = raw_v2(&specs).to_bytes();
    let decoded = decode(&bytes, &specs).unwrap();
    assert_eq!(encode(&decoded), bytes);
    assert_eq!(decoded.tensors[2].indices()[..4], [3, 4, 5, 6]);
    // The same record in v1 decodes to the same payload.
    let mut v1 = raw_v2(&specs);
    v1.version = 1;
    assert_eq!(decode(&v1.to_bytes(), &specs).unwrap(), decoded);
}

#[test]
fn every_truncation_is_rejected() {
    let specs = small_specs();
    let mut ef = ErrorFeedback::new(&specs, Device::Cpu).unwrap();
    let p = GradientPayload {
        window: 1,
        uid: 2,
        tensors: ef.compress(&random_tensors(&specs, 4)).unwrap(),
    };
    let bytes = encode(&p);
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len], &specs).is_err(), "prefix {len}");
        let mut fixed = bytes[..len].to_vec();
        refresh_crc(&mut fixed);
        assert!(decode(&fixed, &specs).is_err(), "prefix {len} fixed crc");
    }
}

fn reject(mutate: &dyn Fn(&mut RawTensor), tensor: usize) -> WireError {
    let specs = small_specs();
    let mut bad = raw_v2(&specs);
    mutate(&mut bad.tensors[tensor]);
    decode(&bad.to_bytes(), &specs).expect_err("accepted a malformed v2 record")
}

fn non_canonical(e: &WireError) -> Option<&'static str> {
    match e {
        WireError::NonCanonical { field, .. } => Some(field),
        _ => None,
    }
}

#[test]
fn wrong_rice_parameters_are_rejected() {
    // q_proj: 128 x 128, 64-of-4096 chunks holding 3..67 (all gaps 0 but the first).
    let specs = small_specs();
    let raw = raw_v2(&specs);
    let canonical = raw.tensors[1].rice_stream().0;
    for r in 0..=12u8 {
        if r == canonical {
            continue;
        }
        let e = reject(&|t| t.rice_param = Some(r), 1);
        assert_eq!(non_canonical(&e), Some("rice parameter"), "r {r}: {e}");
    }
    let e = reject(&|t| t.rice_param = Some(13), 1);
    assert_eq!(non_canonical(&e), Some("rice parameter"));
    // A tensor whose chunks are kept whole ("tiny", k = 7 of 7) has no index stream.
    let e = reject(
        &|t| {
            t.rice_param = Some(1);
            t.index_bytes = Some(Vec::new());
        },
        4,
    );
    assert_eq!(non_canonical(&e), Some("rice parameter"), "{e}");
    let e = reject(&|t| t.index_bytes = Some(vec![0]), 4);
    assert!(
        matches!(
            e,
            WireError::LengthOutOfBounds {
                field: "index bytes",
                max: 0,
                actual: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn index_stream_errors() {
    // Nonzero padding: "odd" (50 x 100, chunks of 2500, gaps 3 then 0s) leaves a partial
    // last byte; set its top bit.
    let e = reject(
        &|t| {
            let (_, mut s) = t.rice_stream();
            *s.last_mut().unwrap() |= 0x80;
            t.index_bytes = Some(s);
        },
        2,
    );
    assert!(
        matches!(
            e,
            WireError::NonZeroPadding {
                field: "indices",
                ..
            }
        ),
        "{e}"
    );
    // A trailing zero byte after the last gap.
    let e = reject(
        &|t| {
            let (_, mut s) = t.rice_stream();
            s.push(0);
            t.index_bytes = Some(s);
        },
        2,
    );
    assert_eq!(non_canonical(&e), Some("index bytes"), "{e}");
    // Truncated stream.
    let e = reject(
        &|t| {
            let (_, mut s) = t.rice_stream();
            s.truncate(s.len() - 1);
            t.index_bytes = Some(s);
        },
        2,
    );
    assert_eq!(non_canonical(&e), Some("index bytes"), "{e}");
    // A gap running past the chunk: last index (63) of chunk 0 moved to 2500 = chunk size.
    let e = reject(&|t| t.indices[63] = 2500, 2);
    assert!(
        matches!(
            e,
            WireError::IndexOutOfRange {
                chunk: 0,
                index: 2500,
                limit: 2500,
                ..
            }
        ),
        "{e}"
    );
    // All-zero quotient streams: a unary run that never ends inside the chunk (too short
    // to reach past it: truncated; with r = 6 the 26 bytes the bound allows reach past
    // it: out of range).
    let e = reject(&|t| t.index_bytes = Some(vec![0; 64]), 2);
    assert_eq!(non_canonical(&e), Some("index bytes"), "{e}");
    let e = reject(
        &|t| {
            t.rice_param = Some(6);
            t.index_bytes = Some(vec![0; 26]);
        },
        2,
    );
    assert!(matches!(e, WireError::IndexOutOfRange { .. }), "{e}");
    // Lengths beyond any canonical stream are refused before reading.
    let e = reject(&|t| t.index_len = Some(u32::MAX), 2);
    assert!(
        matches!(
            e,
            WireError::LengthOutOfBounds {
                field: "index bytes",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn code_stream_errors() {
    let e = reject(
        &|t| {
            let mut f = t.canonical_freqs();
            f[0] += 1;
            f[3] -= 1;
            t.freqs = Some(f);
        },
        1,
    );
    assert_eq!(non_canonical(&e), Some("code frequencies"), "{e}");
    let e = reject(&|t| t.freqs = Some([1024, 1024, 1024, 1023]), 1);
    assert_eq!(non_canonical(&e), Some("code frequencies"), "{e}");
    let e = reject(
        &|t| {
            t.code_bytes = Some(common::rans_encode(&t.codes, &t.canonical_freqs()));
            t.freqs = Some([0, 4096, 0, 0]);
        },
        1,
    );
    assert!(non_canonical(&e).is_some(), "{e}");
    for (what, edit) in [
        (
            "trailing",
            &(|s: &mut Vec<u8>| s.push(0)) as &dyn Fn(&mut Vec<u8>),
        ),
        ("truncated", &|s: &mut Vec<u8>| {
            s.pop();
        }),
        ("state", &|s: &mut Vec<u8>| s[3] ^= 0x80),
        ("empty", &|s: &mut Vec<u8>| s.clear()),
    ] {
        let e = reject(
            &|t| {
                let mut s = common::rans_encode(&t.codes, &t.canonical_freqs());
                edit(&mut s);
                t.code_bytes = Some(s);
            },
            1,
        );
        assert!(non_canonical(&e).is_some(), "{what}: {e}");
    }
    let e = reject(&|t| t.code_len = Some(1 << 30), 1);
    assert!(
        matches!(
            e,
            WireError::LengthOutOfBounds {
                field: "code bytes",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn plane_coded_records_decode_and_every_malformed_plane_is_rejected() {
    let specs = small_specs();
    let good = raw_v2_plane(&specs);
    let payload = decode(&good.to_bytes(), &specs).unwrap();
    for (t, raw) in payload.tensors.iter().zip(&good.tensors) {
        let codes: Vec<u8> = (0..raw.codes.len()).map(|i| t.code(i)).collect();
        assert_eq!(codes, raw.codes, "{}", raw.name);
    }
    // The encoder writes exactly what the documented layout says.
    assert_eq!(encode(&payload), good.to_bytes());

    // The coder must be the one the histogram picks, both ways, and a known one.
    let e = reject_plane(&|t| t.code_coder = Some(0), 1);
    assert_eq!(non_canonical(&e), Some("code coder"), "{e}");
    let e = reject(&|t| t.code_coder = Some(1), 1);
    assert!(
        matches!(
            e,
            WireError::LengthOutOfBounds {
                field: "code exceptions",
                ..
            }
        ),
        "{e}"
    );
    let e = reject_plane(&|t| t.code_coder = Some(2), 1);
    assert_eq!(non_canonical(&e), Some("code coder"), "{e}");
    // Plane padding: "tiny" has 7 codes, so bit 7 of its one plane byte is padding.
    let e = reject_plane(
        &|t| {
            let (mut plane, _, _) = common::plane_encode(&t.codes);
            plane[0] |= 0x80;
            t.plane_bytes = Some(plane);
        },
        4,
    );
    assert!(
        matches!(
            e,
            WireError::NonZeroPadding {
                field: "code plane",
                ..
            }
        ),
        "{e}"
    );
    // Exception count, gap bytes and gap values.
    for (what, edit) in [
        (
            "one more",
            &(|t: &mut RawTensor| t.exceptions = Some(t.exceptions_of() + 1))
                as &dyn Fn(&mut RawTensor),
        ),
        ("one fewer", &|t: &mut RawTensor| {
            t.exceptions = Some(t.exceptions_of() - 1)
        }),
        ("trailing byte", &|t: &mut RawTensor| {
            let (_, _, mut gaps) = common::plane_encode(&t.codes);
            gaps.push(0);
            t.code_bytes = Some(gaps);
        }),
        ("non-minimal gap", &|t: &mut RawTensor| {
            let (_, _, gaps) = common::plane_encode(&t.codes);
            // First gap is 19: 0x93 0x00 is the same value in two bytes.
            assert_eq!(gaps[0], 19);
            let mut long = vec![0x93, 0x00];
            long.extend_from_slice(&gaps[1..]);
            t.code_bytes = Some(long);
        }),
        ("past the end", &|t: &mut RawTensor| {
            let (_, _, mut gaps) = common::plane_encode(&t.codes);
            let last = gaps.len() - 1;
            gaps[last] = 0x7f;
            t.code_bytes = Some(gaps);
        }),
    ] {
        let e = reject_plane(edit, 1);
        assert_eq!(non_canonical(&e), Some("code exceptions"), "{what}: {e}");
    }
    let e = reject_plane(&|t| t.code_len = Some(1 << 30), 1);
    assert!(
        matches!(
            e,
            WireError::LengthOutOfBounds {
                field: "exception bytes",
                ..
            }
        ),
        "{e}"
    );
    // Every truncation of a plane-coded object fails.
    let bytes = good.to_bytes();
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len], &specs).is_err(), "prefix {len}");
    }
}

#[test]
fn v1_only_errors_still_apply_to_v2_records() {
    let e = reject(&|t| t.k = 32, 2);
    assert!(
        matches!(e, WireError::FieldMismatch { field: "k", .. }),
        "{e}"
    );
    let e = reject(&|t| t.centroids.swap(0, 3), 2);
    assert!(matches!(e, WireError::UnorderedCentroids { .. }), "{e}");
    let e = reject(&|t| t.shift = f32::NAN, 2);
    assert!(matches!(e, WireError::NonFiniteQuantParams { .. }), "{e}");
}

mod random_subsets {
    use super::*;
    use proptest::prelude::*;

    fn spec_strategy() -> impl Strategy<Value = ParamSpec> {
        prop_oneof![
            Just(vec![128i64, 128]),
            Just(vec![50, 100]),
            Just(vec![7]),
            Just(vec![2048]),
            Just(vec![96, 64]),
            Just(vec![3, 5, 7]),
        ]
        .prop_map(|s| ParamSpec::new("t", s))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random kept subsets (any density, including clustered ones) and random code
        /// mixes: the independent v2 writer and `encode` agree byte for byte, and v1
        /// decodes to the same payload.
        #[test]
        fn independent_writer_agrees_on_random_subsets(
            spec in spec_strategy(),
            seed in any::<u64>(),
            cluster in 0usize..3,
            code_mix in 0u8..4,
        ) {
            let k = k_of(&spec);
            let pick = move |c: usize, n: usize| -> Vec<u16> {
                let mut state = seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut next = || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                let window = match cluster {
                    0 => n,
                    1 => n.min(k * 2).max(k),
                    _ => k,
                };
                let base = (next() as usize) % (n - window + 1);
                let mut chosen: Vec<u16> = Vec::with_capacity(k);
                let mut taken = vec![false; window];
                while chosen.len() < k {
                    let i = (next() as usize) % window;
                    if !taken[i] {
                        taken[i] = true;
                        chosen.push((base + i) as u16);
                    }
                }
                chosen.sort_unstable();
                chosen
            };
            let code = move |e: usize| -> u8 {
                let h = (e as u64 ^ seed).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 60;
                match (code_mix, h) {
                    (0, _) => (h & 3) as u8,
                    (1, 0..8) => 1,
                    (1, _) => 3,
                    (2, 0) => 0,
                    (2, _) => 2,
                    _ => 3,
                }
            };
            let raw = RawTensor::valid(&spec, pick, code);
            let specs = vec![spec];
            let v2 = RawPayload::new_v2(1, 2, vec![raw.clone()]).to_bytes();
            let decoded = decode(&v2, &specs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(encode(&decoded), v2);
            let v1 = RawPayload::new(1, 2, vec![raw]).to_bytes();
            prop_assert_eq!(decode(&v1, &specs).map_err(|e| TestCaseError::fail(e.to_string()))?, decoded);
        }
    }
}

/// `max_encoded_len` bounds every canonical encoding, v1 and v2, of payloads for the specs
/// (real compressions under several configs, and v2 streams with clustered indices and a
/// skewed or uniform code mix), and stays a useful limit: within 2.5x of v1's exact size.
#[test]
fn max_encoded_len_bounds_every_canonical_object_of_the_shapes() {
    let specs = all_shapes();
    let configs = configs();
    for (c, config) in configs.iter().enumerate() {
        let max = worker_sparseloco::max_encoded_len(&specs, config).unwrap();
        let mut ef = ErrorFeedback::with_config(&specs, *config, Device::Cpu).unwrap();
        for round in 0..3 {
            let p = GradientPayload {
                window: round,
                uid: 1,
                tensors: ef
                    .compress(&random_tensors(&specs, 300 + 10 * c as i64 + round as i64))
                    .unwrap(),
            };
            let v1 = encoded_len_as(&p, WireVersion::V1);
            let v2 = encoded_len_as(&p, WireVersion::V2);
            assert!(
                v1 <= max && v2 <= max,
                "config {c}: v1 {v1}, v2 {v2}, max {max}"
            );
            // The v2 bound is the coders' worst case (13 bits per index plus the rANS
            // stream's cap): about 1.3x v1's 14 bits for 64-of-4096 chunks, 2x for tiny ones.
            assert!(
                max <= 5 * v1 / 2,
                "config {c}: limit {max} is loose against v1's {v1}"
            );
            if round == 0 {
                eprintln!("config {c}: limit {max} B, v1 {v1} B, v2 {v2} B");
            }
        }
    }
    let max = worker_sparseloco::max_encoded_len(&specs, &SparseLocoConfig::default()).unwrap();
    for shift in [0, 1, 7, 1000] {
        for codes in [[1u8, 3, 3, 1, 0, 3, 2, 1], [0, 1, 2, 3, 0, 1, 2, 3]] {
            let tensors = specs
                .iter()
                .map(|s| RawTensor::valid(s, strided_pick(shift, k_of(s)), |e| codes[e % 8]))
                .collect();
            let bytes = RawPayload::new_v2(5, 9, tensors).to_bytes();
            decode(&bytes, &specs).expect("a canonical payload");
            assert!(bytes.len() <= max, "{} > {max}", bytes.len());
        }
    }
    // A shape the geometry refuses has no limit.
    assert!(
        worker_sparseloco::max_encoded_len(
            &[ParamSpec::new("p", [0, 3])],
            &SparseLocoConfig::default()
        )
        .is_err()
    );
}
