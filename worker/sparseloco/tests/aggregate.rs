//! Aggregation: median-norm clipping, per-coordinate mean, outer step.

mod common;

use common::{RawPayload, RawTensor, random_tensors, small_specs};
use tch::{Device, Kind, Tensor};
use worker_sparseloco::{
    DEFAULT_OUTER_LR, ErrorFeedback, GradientPayload, ParamSpec, SparseLocoError, aggregate,
    clip_factors, decode, decompress, decompress_batch, outer_step,
};

fn payload(specs: &[ParamSpec], seed: i64, uid: u16) -> GradientPayload {
    let mut ef = ErrorFeedback::new(specs, Device::Cpu).unwrap();
    GradientPayload {
        window: 3,
        uid,
        tensors: ef.compress(&random_tensors(specs, seed)).unwrap(),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::try_from(&t.reshape([-1])).unwrap()
}

/// One 1x64 vector parameter where the peer sends every element with `code(i)` and the
/// given centroids (shift 0).
fn vector_peer(
    spec: &ParamSpec,
    uid: u16,
    code: impl Fn(usize) -> u8,
    centroids: [f32; 4],
) -> GradientPayload {
    let mut raw = RawTensor::valid(spec, |_, n| (0..n as u16).collect(), code);
    raw.centroids = centroids;
    decode(
        &RawPayload::new(3, uid, vec![raw]).to_bytes(),
        std::slice::from_ref(spec),
    )
    .unwrap()
}

#[test]
fn identical_peers_aggregate_to_the_single_peer() {
    let specs = small_specs();
    let p = payload(&specs, 1, 0);
    let single = aggregate(std::slice::from_ref(&p), &specs, Device::Cpu).unwrap();
    let many: Vec<GradientPayload> = (0..5)
        .map(|uid| GradientPayload { uid, ..p.clone() })
        .collect();
    let agg = aggregate(&many, &specs, Device::Cpu).unwrap();
    for ((a, s), t) in agg.iter().zip(&single).zip(&p.tensors) {
        assert!(a.allclose(s, 1e-6, 1e-7, false));
        assert!(s.allclose(&decompress(t, Device::Cpu).unwrap(), 0.0, 0.0, false));
        assert_eq!(a.size(), t.shape());
    }
}

#[test]
fn coordinates_are_averaged_over_the_peers_that_sent_them() {
    let spec = ParamSpec::new("w", [128, 128]);
    let specs = vec![spec.clone()];
    // Peer A sends locals 0..64 of every chunk with value +1, peer B 32..96 with value +1
    // (equal norms, so no clipping): overlap 32..64 averages to 1, the rest stays 1 or 0.
    let make = |start: u16, uid| {
        let mut raw = RawTensor::valid(&spec, move |_, _| (start..start + 64).collect(), |_| 2);
        raw.centroids = [-1.0, 0.0, 1.0, 2.0];
        decode(&RawPayload::new(3, uid, vec![raw]).to_bytes(), &specs).unwrap()
    };
    let (a, b) = (make(0, 1), make(32, 2));
    let agg = aggregate(&[a.clone(), b], &specs, Device::Cpu).unwrap();
    let flat = values(&agg[0]);
    let geom = a.tensors[0].geometry();
    for chunk in 0..geom.n_chunks() {
        for local in 0..geom.chunk_elems() {
            let v = flat[geom.flat_index(chunk, local)];
            let expected = if local < 96 { 1.0 } else { 0.0 };
            assert_eq!(v, expected, "chunk {chunk} local {local}");
        }
    }
    // Different values on shared coordinates are averaged.
    let spec = ParamSpec::new("v", [64]);
    let p1 = vector_peer(&spec, 1, |_| 3, [-1.0, -0.5, 0.5, 1.0]);
    let p2 = vector_peer(&spec, 2, |_| 0, [-1.0, -0.5, 0.5, 1.0]);
    let p3 = vector_peer(&spec, 3, |_| 2, [-1.0, -0.5, 0.5, 1.0]);
    // Norms 8, 8, 4: median 8, no clipping. Mean of (1, -1, 0.5) = 1/6.
    let agg = aggregate(&[p1, p2, p3], std::slice::from_ref(&spec), Device::Cpu).unwrap();
    for v in values(&agg[0]) {
        assert!((v - 0.5 / 3.0).abs() < 1e-7, "{v}");
    }
}

#[test]
fn peers_above_the_median_norm_are_clipped_to_it() {
    let spec = ParamSpec::new("v", [64]);
    let specs = vec![spec.clone()];
    // Every element: peer 1 sends 1.0, peer 2 sends 2.0, peer 3 sends 10.0 (norms 8, 16, 80).
    let peer = |uid, value: f32| vector_peer(&spec, uid, |_| 3, [0.0, 0.0, 0.0, value]);
    let peers = [peer(1, 1.0), peer(2, 2.0), peer(3, 10.0)];
    let norms: Vec<f64> = peers.iter().map(|p| p.tensor_norms()[0]).collect();
    assert_eq!(norms, [8.0, 16.0, 80.0]);
    assert_eq!(clip_factors(&norms), [1.0, 1.0, 0.2]);
    let agg = aggregate(&peers, &specs, Device::Cpu).unwrap();
    // Peer 3 is scaled to norm 16 (value 2): mean of (1, 2, 2).
    for v in values(&agg[0]) {
        assert!((v - 5.0 / 3.0).abs() < 1e-6, "{v}");
    }
    // Even count: the lower median is used (torch.median semantics).
    assert_eq!(clip_factors(&[1.0, 2.0, 4.0, 8.0]), [1.0, 1.0, 0.5, 0.25]);
    assert!(clip_factors(&[]).is_empty());
}

#[test]
fn batch_decompression_matches_single_decompression() {
    let specs = small_specs();
    let peers: Vec<GradientPayload> = (0..3).map(|i| payload(&specs, 10 + i, i as u16)).collect();
    let batch = decompress_batch(&peers, Device::Cpu).unwrap();
    for (peer, dense) in peers.iter().zip(&batch) {
        for (t, d) in peer.tensors.iter().zip(dense) {
            assert!(d.equal(&decompress(t, Device::Cpu).unwrap()));
            let nonzero = d.ne(0.0).sum(Kind::Int64).int64_value(&[]) as usize;
            assert!(nonzero <= t.entries());
        }
    }
}

#[test]
fn outer_step_moves_parameters_against_the_update() {
    let specs = small_specs();
    let params = random_tensors(&specs, 20);
    let original: Vec<Tensor> = params.iter().map(|p| p.copy()).collect();
    let peers: Vec<GradientPayload> = (0..4).map(|i| payload(&specs, 30 + i, i as u16)).collect();
    let update = aggregate(&peers, &specs, Device::Cpu).unwrap();
    outer_step(&params, &update, DEFAULT_OUTER_LR).unwrap();
    for ((p, o), u) in params.iter().zip(&original).zip(&update) {
        assert!(p.allclose(&(o - u * 0.4), 1e-6, 1e-6, false));
        assert!(!p.equal(o));
    }
    // Leaf parameters that require grad are updated in place too (no_grad inside).
    let leaf = original[0].copy().set_requires_grad(true);
    outer_step(std::slice::from_ref(&leaf), &update[..1], 0.4).unwrap();
    assert!(leaf.allclose(&params[0], 1e-6, 1e-6, false));
    // bf16 parameters are updated in their own dtype.
    let bf16: Vec<Tensor> = original.iter().map(|o| o.to_kind(Kind::BFloat16)).collect();
    outer_step(&bf16, &update, 0.4).unwrap();
    assert_eq!(bf16[0].kind(), Kind::BFloat16);
    assert!(matches!(
        outer_step(&params[..1], &update, 0.4),
        Err(SparseLocoError::TensorCount { .. })
    ));
}

#[test]
fn aggregation_rejects_inconsistent_input() {
    let specs = small_specs();
    assert!(matches!(
        aggregate(&[], &specs, Device::Cpu),
        Err(SparseLocoError::NoPeers)
    ));
    let p = payload(&specs, 40, 0);
    let mut other = specs.clone();
    other[2].shape = vec![100, 50];
    assert!(matches!(
        aggregate(std::slice::from_ref(&p), &other, Device::Cpu),
        Err(SparseLocoError::Payload(_))
    ));
    let mut short = p.clone();
    short.tensors.pop();
    assert!(matches!(
        aggregate(&[p, short], &specs, Device::Cpu),
        Err(SparseLocoError::Payload(_))
    ));
}
