//! Prometheus metrics of the reconcilers (`prometheus-client`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `TrainingRun` or `ValidatorSet`.
    pub kind: String,
}

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `TrainingRun` or `ValidatorSet`.
    pub kind: String,
    /// Short error class (see `Error::metric_label`).
    pub error: String,
}

type HistogramCtor = fn() -> Histogram;

fn duration_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Reconcile counters and latency, by kind.
#[derive(Clone, Debug)]
pub struct Metrics {
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabels, Histogram, HistogramCtor>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as HistogramCtor),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the `subnet_operator` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("subnet_operator");
        sub.register(
            "reconciles",
            "Reconciliations started, by kind",
            metrics.reconciles.clone(),
        );
        sub.register(
            "reconcile_failures",
            "Reconciliations that returned an error, by kind and error",
            metrics.failures.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations, by kind",
            metrics.duration.clone(),
        );
        metrics
    }

    fn kind(kind: &str) -> KindLabels {
        KindLabels {
            kind: kind.to_owned(),
        }
    }

    /// Counts one reconcile of `kind`.
    pub fn reconcile_started(&self, kind: &str) {
        self.reconciles.get_or_create(&Self::kind(kind)).inc();
    }

    /// Records how long one reconcile of `kind` took.
    pub fn reconcile_finished(&self, kind: &str, elapsed: Duration) {
        self.duration
            .get_or_create(&Self::kind(kind))
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one failed reconcile.
    pub fn reconcile_failed(&self, kind: &str, error: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.to_owned(),
                error: error.to_owned(),
            })
            .inc();
    }

    /// Reconciles of `kind` counted so far.
    pub fn reconciles(&self, kind: &str) -> u64 {
        self.reconciles.get_or_create(&Self::kind(kind)).get()
    }

    /// Failures of `kind` with error class `error` counted so far.
    pub fn failures(&self, kind: &str, error: &str) -> u64 {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.to_owned(),
                error: error.to_owned(),
            })
            .get()
    }
}

/// Text exposition of `registry` (OpenMetrics format).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histograms_are_exposed_by_kind() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reconcile_started("TrainingRun");
        m.reconcile_started("TrainingRun");
        m.reconcile_finished("TrainingRun", Duration::from_millis(3));
        m.reconcile_failed("ValidatorSet", "kube");
        assert_eq!(m.reconciles("TrainingRun"), 2);
        assert_eq!(m.failures("ValidatorSet", "kube"), 1);
        let text = encode(&registry).unwrap();
        assert!(
            text.contains("subnet_operator_reconciles_total{kind=\"TrainingRun\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "subnet_operator_reconcile_duration_seconds_count{kind=\"TrainingRun\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("subnet_operator_reconcile_duration_seconds_bucket{le=\"0.004\",kind=\"TrainingRun\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
