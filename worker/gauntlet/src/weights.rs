//! Turning final scores into chain weights.

/// Normalises non-negative scores to weights summing to 1, keeping the input
/// order. Negative or non-finite scores count as 0. If no score is positive,
/// every weight is 0 (the caller decides whether to skip `set_weights`).
pub fn normalise_weights(scores: &[(u16, f64)]) -> Vec<(u16, f32)> {
    let clean = |s: f64| if s.is_finite() && s > 0.0 { s } else { 0.0 };
    let total: f64 = scores.iter().map(|&(_, s)| clean(s)).sum();
    scores
        .iter()
        .map(|&(uid, s)| {
            let w = if total > 0.0 { clean(s) / total } else { 0.0 };
            (uid, w as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_proportional_and_sum_to_one() {
        let w = normalise_weights(&[(1, 3.0), (2, 1.0), (3, 0.0), (4, -2.0), (5, f64::NAN)]);
        assert_eq!(
            w.iter().map(|&(u, _)| u).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!((w[0].1 - 0.75).abs() < 1e-7);
        assert!((w[1].1 - 0.25).abs() < 1e-7);
        assert_eq!((w[2].1, w[3].1, w[4].1), (0.0, 0.0, 0.0));
        let sum: f32 = w.iter().map(|&(_, x)| x).sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }

    #[test]
    fn all_zero_scores_give_all_zero_weights() {
        let w = normalise_weights(&[(1, 0.0), (2, -1.0)]);
        assert_eq!(w, vec![(1, 0.0), (2, 0.0)]);
        assert!(normalise_weights(&[]).is_empty());
    }
}
