//! Per-window scalar metrics: loss improvement, binary indicator, sync score, moving average.

/// Relative loss improvement `(before - after) / before`.
///
/// Positive when the update lowered the loss. Returns `None` when the numbers
/// cannot be compared (non-finite values or a non-positive `before`).
pub fn relative_improvement(before: f64, after: f64) -> Option<f64> {
    if before.is_finite() && after.is_finite() && before > 0.0 {
        Some((before - after) / before)
    } else {
        None
    }
}

/// Binary indicator: `+1` if the improvement on the peer's assigned data is
/// strictly larger than on random data (the peer trained on what it was told
/// to), else `-1`.
pub fn binary_indicator(assigned_improvement: f64, random_improvement: f64) -> f64 {
    if assigned_improvement > random_improvement {
        1.0
    } else {
        -1.0
    }
}

/// Sync score `(1 - min(steps_behind, max_steps) / max_steps) ^ exponent`.
///
/// Negative steps count as 0 (in sync); NaN counts as fully out of sync.
pub fn sync_score(steps_behind: f64, max_steps: f64, exponent: f64) -> f64 {
    if steps_behind.is_nan() {
        return 0.0;
    }
    let clamped = steps_behind.clamp(0.0, max_steps);
    (1.0 - clamped / max_steps).powf(exponent)
}

/// Exponential moving average step: `(1 - alpha) * average + alpha * sample`.
pub fn update_moving_average(average: f64, sample: f64, alpha: f64) -> f64 {
    (1.0 - alpha) * average + alpha * sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_improvement_signs_and_rejects_garbage() {
        assert_eq!(relative_improvement(4.0, 3.0), Some(0.25));
        assert_eq!(relative_improvement(4.0, 5.0), Some(-0.25));
        assert_eq!(relative_improvement(4.0, 4.0), Some(0.0));
        assert_eq!(relative_improvement(0.0, 1.0), None);
        assert_eq!(relative_improvement(f64::NAN, 1.0), None);
        assert_eq!(relative_improvement(2.0, f64::INFINITY), None);
    }

    #[test]
    fn binary_indicator_requires_strictly_better_assigned() {
        assert_eq!(binary_indicator(0.02, 0.01), 1.0);
        assert_eq!(binary_indicator(0.01, 0.01), -1.0);
        assert_eq!(binary_indicator(0.0, 0.01), -1.0);
    }

    #[test]
    fn sync_score_values_for_zero_to_four_steps() {
        let s = |steps: f64| sync_score(steps, 3.0, 2.5);
        assert_eq!(s(0.0), 1.0);
        assert!((s(1.0) - (2.0f64 / 3.0).powf(2.5)).abs() < 1e-12);
        assert!((s(1.0) - 0.362_887_5).abs() < 1e-6);
        assert!((s(2.0) - 0.064_150_0).abs() < 1e-6);
        assert_eq!(s(3.0), 0.0);
        assert_eq!(s(4.0), 0.0);
        assert_eq!(s(-1.0), 1.0);
        assert_eq!(s(f64::NAN), 0.0);
        // Monotone in between.
        assert!(s(0.5) < 1.0 && s(0.5) > s(1.0));
    }

    #[test]
    fn moving_average_converges_geometrically() {
        let mut ma = 0.0;
        for n in 1..=20 {
            ma = update_moving_average(ma, 1.0, 0.05);
            let expected = 1.0 - 0.95f64.powi(n);
            assert!(
                (ma - expected).abs() < 1e-12,
                "step {n}: {ma} vs {expected}"
            );
        }
        // Alternating samples stay near zero.
        let mut ma = 0.0;
        for n in 0..200 {
            ma = update_moving_average(ma, if n % 2 == 0 { 1.0 } else { -1.0 }, 0.05);
        }
        assert!(ma.abs() <= 0.05 + 1e-12);
        // One step from 0.5 with -1.
        assert!((update_moving_average(0.5, -1.0, 0.05) - 0.425).abs() < 1e-12);
    }
}
