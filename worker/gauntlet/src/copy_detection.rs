//! Copy detection by overlap of top-k selections.
//!
//! Every honest peer trains on its own data shard and keeps its own error
//! feedback, so the (tensor, chunk, index) entries its top-k compression
//! selects overlap only partly with another peer's. A peer that re-uploads
//! someone else's gradient (possibly with perturbed values) reproduces the
//! selection almost exactly. Rule: when the overlap of two peers' selections
//! exceeds the threshold (default 0.6), the peer that uploaded later is the
//! copier (it needed the original to exist first); with equal upload times the
//! order is unknowable here and both are flagged (the validator settles such
//! pairs by which peer's assigned data the update was trained on).
//!
//! The overlap is `|A ∩ B| / min(|A|, |B|)`, so padding a copy with extra
//! entries does not dilute it.

use serde::{Deserialize, Serialize};

use crate::outcome::{Outcome, PeerOutcome};

/// Packs one selected entry as `tensor << 48 | chunk << 16 | index`.
pub fn fingerprint_entry(tensor: u16, chunk: u32, index: u16) -> u64 {
    (u64::from(tensor) << 48) | (u64::from(chunk) << 16) | u64::from(index)
}

/// A peer's top-k selection for one window, with its upload time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    uid: u16,
    uploaded_at: u64,
    entries: Vec<u64>,
}

impl Fingerprint {
    /// Builds a fingerprint; `entries` are sorted and de-duplicated here.
    /// `uploaded_at` is any monotone time (e.g. the object's last-modified in ms).
    pub fn new(uid: u16, uploaded_at: u64, mut entries: Vec<u64>) -> Self {
        entries.sort_unstable();
        entries.dedup();
        Self {
            uid,
            uploaded_at,
            entries,
        }
    }

    /// The peer's uid.
    pub fn uid(&self) -> u16 {
        self.uid
    }

    /// The upload time.
    pub fn uploaded_at(&self) -> u64 {
        self.uploaded_at
    }

    /// The sorted, unique selected entries.
    pub fn entries(&self) -> &[u64] {
        &self.entries
    }
}

/// One detected copy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CopyFlag {
    /// The peer judged to have copied.
    pub copier: u16,
    /// The peer it copied from.
    pub original: u16,
    /// The measured overlap in [0, 1].
    pub overlap: f64,
}

/// `|A ∩ B| / min(|A|, |B|)` of two sorted, unique slices; 0 if either is empty.
pub fn overlap_fraction(a: &[u64], b: &[u64]) -> f64 {
    let smaller = a.len().min(b.len());
    if smaller == 0 {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / smaller as f64
}

/// Flags copies among `fingerprints` whose pairwise overlap exceeds `threshold`.
pub fn detect_copies(fingerprints: &[Fingerprint], threshold: f64) -> Vec<CopyFlag> {
    let uploads: Vec<(u16, u64)> = fingerprints
        .iter()
        .map(|f| (f.uid, f.uploaded_at))
        .collect();
    detect_copies_with(&uploads, threshold, |i, j| {
        match (fingerprints.get(i), fingerprints.get(j)) {
            (Some(a), Some(b)) => overlap_fraction(&a.entries, &b.entries),
            _ => 0.0,
        }
    })
}

/// Generic form of [`detect_copies`]: `uploads[i] = (uid, upload time)` and
/// `overlap(i, j)` measures the similarity of peers `i` and `j` in [0, 1].
/// Every pair is compared once; for a pair above `threshold` the later
/// uploader is flagged, or both on equal times. Flags are sorted by
/// (copier, original).
pub fn detect_copies_with(
    uploads: &[(u16, u64)],
    threshold: f64,
    overlap: impl Fn(usize, usize) -> f64,
) -> Vec<CopyFlag> {
    let mut flags = Vec::new();
    for (i, &(uid_a, time_a)) in uploads.iter().enumerate() {
        for (j, &(uid_b, time_b)) in uploads.iter().enumerate().skip(i + 1) {
            if uid_a == uid_b {
                continue;
            }
            let o = overlap(i, j);
            tracing::debug!(uid_a, uid_b, overlap = o, "top-k index overlap");
            if o.is_nan() || o <= threshold {
                continue;
            }
            tracing::warn!(
                uid_a,
                uid_b,
                overlap = o,
                "gradients overlap beyond copy threshold"
            );
            if time_a >= time_b {
                flags.push(CopyFlag {
                    copier: uid_a,
                    original: uid_b,
                    overlap: o,
                });
            }
            if time_b >= time_a {
                flags.push(CopyFlag {
                    copier: uid_b,
                    original: uid_a,
                    overlap: o,
                });
            }
        }
    }
    flags.sort_by_key(|f| (f.copier, f.original));
    flags
}

/// Replaces the outcome of every flagged copier with `Outcome::Copy`, naming
/// the original with the highest overlap; adds an outcome for a copier that
/// had none.
pub fn apply_copy_flags(outcomes: &mut Vec<PeerOutcome>, flags: &[CopyFlag]) {
    let mut best: std::collections::BTreeMap<u16, CopyFlag> = std::collections::BTreeMap::new();
    for flag in flags {
        let entry = best.entry(flag.copier).or_insert(*flag);
        if flag.overlap > entry.overlap {
            *entry = *flag;
        }
    }
    for (copier, flag) in best {
        let copy = Outcome::Copy { of: flag.original };
        match outcomes.iter_mut().find(|o| o.uid == copier) {
            Some(o) => o.outcome = copy,
            None => outcomes.push(PeerOutcome::new(copier, copy)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// k distinct indices in [0, 4096) per chunk for `chunks` chunks of one tensor.
    fn random_selection(rng: &mut SplitMix64, chunks: u32, k: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for chunk in 0..chunks {
            let mut picked = std::collections::BTreeSet::new();
            while picked.len() < k {
                picked.insert((rng.next_u64() % 4096) as u16);
            }
            out.extend(picked.into_iter().map(|i| fingerprint_entry(0, chunk, i)));
        }
        out
    }

    #[test]
    fn entry_packing_is_injective_over_fields() {
        assert_eq!(fingerprint_entry(1, 2, 3), (1 << 48) | (2 << 16) | 3);
        assert_ne!(fingerprint_entry(0, 1, 0), fingerprint_entry(0, 0, 1));
        assert_ne!(fingerprint_entry(1, 0, 0), fingerprint_entry(0, 1 << 31, 0));
    }

    #[test]
    fn overlap_fraction_counts_common_entries() {
        assert_eq!(overlap_fraction(&[1, 2, 3, 4], &[3, 4, 5, 6]), 0.5);
        assert_eq!(overlap_fraction(&[1, 2], &[1, 2, 3, 4, 5]), 1.0);
        assert_eq!(overlap_fraction(&[], &[1]), 0.0);
        assert_eq!(overlap_fraction(&[7], &[7]), 1.0);
    }

    #[test]
    fn copier_is_later_uploader_and_honest_peers_are_not_flagged() {
        let mut rng = SplitMix64::new(11);
        let honest: Vec<Vec<u64>> = (0..5).map(|_| random_selection(&mut rng, 16, 64)).collect();
        let mut fps: Vec<Fingerprint> = honest
            .iter()
            .enumerate()
            .map(|(i, e)| Fingerprint::new(i as u16, 1_000 + i as u64, e.clone()))
            .collect();
        // uid 9 copies uid 2, replacing 3 % of the entries, uploads later.
        let mut copied = honest[2].clone();
        let n = copied.len();
        for e in copied.iter_mut().take(n * 3 / 100) {
            *e = fingerprint_entry(5, 0, (*e & 0xFFFF) as u16);
        }
        fps.push(Fingerprint::new(9, 5_000, copied));
        let flags = detect_copies(&fps, 0.9);
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!((flags[0].copier, flags[0].original), (9, 2));
        assert!(flags[0].overlap > 0.95);
        // Honest pairs overlap about k / 4096 = 1.6 %.
        let honest_overlap = overlap_fraction(fps[0].entries(), fps[1].entries());
        assert!(honest_overlap < 0.1, "{honest_overlap}");
    }

    #[test]
    fn equal_upload_times_flag_both() {
        let mut rng = SplitMix64::new(3);
        let e = random_selection(&mut rng, 4, 64);
        let fps = vec![
            Fingerprint::new(4, 77, e.clone()),
            Fingerprint::new(8, 77, e),
        ];
        let flags = detect_copies(&fps, 0.9);
        let pairs: Vec<(u16, u16)> = flags.iter().map(|f| (f.copier, f.original)).collect();
        assert_eq!(pairs, vec![(4, 8), (8, 4)]);
    }

    #[test]
    fn generic_form_uses_supplied_overlap_and_strict_threshold() {
        let uploads = [(1, 10), (2, 20), (3, 30)];
        let flags = detect_copies_with(
            &uploads,
            0.9,
            |i, j| if (i, j) == (0, 2) { 0.95 } else { 0.9 },
        );
        assert_eq!(
            flags,
            vec![CopyFlag {
                copier: 3,
                original: 1,
                overlap: 0.95
            }]
        );
    }

    #[test]
    fn apply_flags_rewrites_outcomes() {
        let mut outcomes = vec![
            PeerOutcome::new(1, Outcome::Missing),
            PeerOutcome::new(3, Outcome::Late),
        ];
        let flags = [
            CopyFlag {
                copier: 3,
                original: 1,
                overlap: 0.92,
            },
            CopyFlag {
                copier: 3,
                original: 2,
                overlap: 0.99,
            },
            CopyFlag {
                copier: 5,
                original: 1,
                overlap: 0.91,
            },
        ];
        apply_copy_flags(&mut outcomes, &flags);
        assert_eq!(
            outcomes,
            vec![
                PeerOutcome::new(1, Outcome::Missing),
                PeerOutcome::new(3, Outcome::Copy { of: 2 }),
                PeerOutcome::new(5, Outcome::Copy { of: 1 }),
            ]
        );
    }
}
