//! Inner learning-rate schedule: linear warmup, then cosine decay to a floor.

use serde::{Deserialize, Serialize};

/// Linear warmup from `peak / warmup_steps` to `peak` over `warmup_steps`, then cosine decay
/// to `min_ratio * peak` at `total_steps`, constant afterwards. Steps count inner optimizer
/// steps over the whole run (they continue across windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warmup length in inner steps.
    pub warmup_steps: u64,
    /// Step at which the cosine reaches its floor.
    pub total_steps: u64,
    /// Floor as a fraction of the peak (0.1 in the reference setup).
    pub min_ratio: f64,
}

impl LrSchedule {
    /// Learning rate of inner step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_floor() {
        let s = LrSchedule {
            peak: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            min_ratio: 0.1,
        };
        assert!((s.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(60) - 0.55).abs() < 1e-12);
        assert!((s.lr_at(110) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(10_000) - 0.1).abs() < 1e-12);
        let mut previous = f64::INFINITY;
        for step in 10..120 {
            assert!(s.lr_at(step) <= previous);
            previous = s.lr_at(step);
        }
    }
}
