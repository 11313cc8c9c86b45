//! The sync check: how many outer steps behind a peer's published parameter sample is,
//! compared with the validator's own samples of its recent model states.

use std::collections::VecDeque;

use run_manifest::ManifestHash;

/// Steps reported when no recent state matches (the Gauntlet caps the penalty at 3).
pub const MAX_STEPS_BEHIND: f64 = 3.0;

/// The validator's own samples, newest first.
#[derive(Debug, Default, Clone)]
pub struct SyncHistory {
    states: VecDeque<Vec<f32>>,
}

impl SyncHistory {
    /// Records the sample of the model state a new window starts from.
    pub fn push(&mut self, sample: Vec<f32>) {
        self.states.push_front(sample);
        self.states.truncate(MAX_STEPS_BEHIND as usize + 1);
    }

    /// Outer steps between the newest state and the peer's sample: the index of the first
    /// recent state it matches within tolerance, else [`MAX_STEPS_BEHIND`].
    pub fn steps_behind(&self, peer: Option<&[f32]>) -> f64 {
        let Some(peer) = peer else {
            return MAX_STEPS_BEHIND;
        };
        self.states
            .iter()
            .position(|own| matches(own, peer))
            .map_or(MAX_STEPS_BEHIND, |i| i as f64)
    }
}

fn matches(own: &[f32], peer: &[f32]) -> bool {
    own.len() == peer.len()
        && own
            .iter()
            .zip(peer)
            .all(|(a, b)| b.is_finite() && (a - b).abs() <= 1e-6 + 1e-4 * a.abs())
}

/// Serialises a sync sample: the run manifest's SHA-256, then little-endian f32s.
pub fn encode_sample(manifest: &ManifestHash, sample: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_sample_len(sample.len()) as usize);
    out.extend_from_slice(&manifest.0);
    out.extend(sample.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// Exact size of an encoded sync sample of `values` values (manifest hash + f32s): the limit
/// a fetch of a peer's sample enforces.
pub fn encoded_sample_len(values: usize) -> u64 {
    32 + 4 * values as u64
}

/// Parses a sync sample of exactly `expected_len` values made under `manifest`; `None` for
/// anything else (a sample of another run says nothing about this one).
pub fn decode_sample(
    bytes: &[u8],
    manifest: &ManifestHash,
    expected_len: usize,
) -> Option<Vec<f32>> {
    let values = bytes.strip_prefix(&manifest.0[..])?;
    if values.len() != expected_len.checked_mul(4)? {
        return None;
    }
    Some(
        values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_steps_behind_newest_state() {
        let mut history = SyncHistory::default();
        for step in 0..6 {
            history.push(vec![step as f32, 1.0]);
        }
        assert_eq!(history.steps_behind(Some(&[5.0, 1.0])), 0.0);
        assert_eq!(history.steps_behind(Some(&[3.0, 1.0])), 2.0);
        // Older than the kept history, unknown, or missing: the maximum.
        assert_eq!(history.steps_behind(Some(&[0.0, 1.0])), MAX_STEPS_BEHIND);
        assert_eq!(history.steps_behind(Some(&[5.5, 1.0])), MAX_STEPS_BEHIND);
        assert_eq!(history.steps_behind(None), MAX_STEPS_BEHIND);
        assert_eq!(
            history.steps_behind(Some(&[f32::NAN, 1.0])),
            MAX_STEPS_BEHIND
        );
    }

    #[test]
    fn sample_round_trip_and_rejects_bad_lengths() {
        let sample = vec![1.5, -2.0, 3.25];
        let run = ManifestHash([1; 32]);
        let bytes = encode_sample(&run, &sample);
        assert_eq!(
            bytes.len() as u64,
            encoded_sample_len(3),
            "the fetch limit is exact"
        );
        assert_eq!(decode_sample(&bytes, &run, 3), Some(sample));
        assert_eq!(decode_sample(&bytes, &run, 2), None);
        assert_eq!(decode_sample(&bytes[..43], &run, 3), None);
        assert_eq!(decode_sample(&bytes, &ManifestHash([2; 32]), 3), None);
    }
}
