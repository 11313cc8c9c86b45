//! Per-object exponential backoff of failed reconciles: each object's consecutive errors
//! double its retry delay (`initial · 2^(n-1)`, capped), a successful reconcile resets it, and
//! one object failing never slows down another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::backoff::BackoffPolicy;

/// Consecutive reconcile errors per object.
#[derive(Debug)]
pub struct ErrorBackoff {
    policy: BackoffPolicy,
    failures: Mutex<HashMap<String, i32>>,
}

impl ErrorBackoff {
    /// Delays from `initial`, doubling, at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            policy: BackoffPolicy {
                initial,
                max,
                stable_after: Duration::ZERO,
            },
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        self.policy.delay(*n)
    }

    /// Forgets the failures of `key` (its reconcile succeeded).
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &str) -> i32 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_per_object_and_resets_on_success() {
        let b = ErrorBackoff::new(Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(b.failed("a"), Duration::from_secs(1));
        assert_eq!(b.failed("a"), Duration::from_secs(2));
        assert_eq!(b.failed("a"), Duration::from_secs(4));
        assert_eq!(b.failed("a"), Duration::from_secs(5));
        // Another object starts from the initial delay.
        assert_eq!(b.failed("b"), Duration::from_secs(1));
        assert_eq!(b.failures("a"), 4);
        b.succeeded("a");
        assert_eq!(b.failures("a"), 0);
        assert_eq!(b.failed("a"), Duration::from_secs(1));
        assert_eq!(b.failures("b"), 1);
    }
}
