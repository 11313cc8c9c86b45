//! Exponential backoff for recreating replicas whose pod exited.

use std::time::Duration;

/// How long to wait before recreating a failed replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A replica that has been Ready this long is considered healthy again (failures reset).
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            stable_after: Duration::from_secs(600),
        }
    }
}

impl BackoffPolicy {
    /// Delay after the `consecutive_failures`-th failure in a row: `initial * 2^(n-1)`,
    /// capped at `max`; zero when there was no failure.
    pub fn delay(&self, consecutive_failures: i32) -> Duration {
        let Ok(n) = u32::try_from(consecutive_failures) else {
            return Duration::ZERO;
        };
        if n == 0 {
            return Duration::ZERO;
        }
        let factor = 2u32.checked_pow(n - 1).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_initial_and_caps_at_max() {
        let p = BackoffPolicy::default();
        assert_eq!(p.delay(0), Duration::ZERO);
        assert_eq!(p.delay(-3), Duration::ZERO);
        assert_eq!(p.delay(1), Duration::from_secs(10));
        assert_eq!(p.delay(2), Duration::from_secs(20));
        assert_eq!(p.delay(3), Duration::from_secs(40));
        assert_eq!(p.delay(5), Duration::from_secs(160));
        assert_eq!(p.delay(6), Duration::from_secs(300));
        assert_eq!(p.delay(1000), Duration::from_secs(300));
    }

    #[test]
    fn delay_is_monotonic() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(7),
            max: Duration::from_secs(3600),
            stable_after: Duration::from_secs(1),
        };
        let delays: Vec<_> = (0..64).map(|n| p.delay(n)).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[63], p.max);
    }
}
