//! Reports a node's uid, last window and score on its own pod, as the annotations the
//! operator reads into the run's status ([`REPORT_UID_ANNOTATION`],
//! [`REPORT_WINDOW_ANNOTATION`], [`REPORT_SCORE_ANNOTATION`]).
//!
//! The pod is named by [`ENV_POD_NAME`] and [`ENV_POD_NAMESPACE`] (downward API); the
//! client is the pod's service account (in-cluster config), which the operator's Role lets
//! get and patch only that pod. Reports go out from a task of their own after each
//! completed window: a failure is logged once per report and never stops the role.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Config};
use run_manifest::deployment::{
    ENV_POD_NAME, ENV_POD_NAMESPACE, REPORT_SCORE_ANNOTATION, REPORT_UID_ANNOTATION,
    REPORT_WINDOW_ANNOTATION,
};
use serde_json::json;
use tokio::sync::watch;

/// How long one patch may take before it counts as failed.
const PATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a report (or the reporter) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no in-cluster Kubernetes config: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("patching the pod took longer than {0:?}")]
    Timeout(Duration),
}

/// The pod a node reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub namespace: String,
    pub name: String,
}

impl PodTarget {
    /// The pod named by [`ENV_POD_NAME`] and [`ENV_POD_NAMESPACE`], when both are set.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Some(Self {
            namespace: var(ENV_POD_NAMESPACE)?,
            name: var(ENV_POD_NAME)?,
        })
    }
}

/// What a node reports: its uid when its role starts, then after each window the window
/// and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodReport {
    pub uid: u16,
    /// The completed window (`None`: the role just started, only the uid is reported).
    pub window: Option<u64>,
    /// The node's score, when it has one (a non-finite score is not reported).
    pub score: Option<f64>,
}

impl PodReport {
    /// The uid alone, when the role starts (the last window and score, from an earlier
    /// container of this pod, stay until the next window replaces them).
    pub fn started(uid: u16) -> Self {
        Self {
            uid,
            window: None,
            score: None,
        }
    }

    /// After `window`, with the node's `score` then.
    pub fn window(uid: u16, window: u64, score: Option<f64>) -> Self {
        Self {
            uid,
            window: Some(window),
            score,
        }
    }

    /// The merge patch setting the report annotations. A window report without a score
    /// removes the score annotation, so no stale score stays behind.
    pub fn patch(&self) -> serde_json::Value {
        let mut annotations = serde_json::Map::new();
        annotations.insert(REPORT_UID_ANNOTATION.into(), self.uid.to_string().into());
        if let Some(window) = self.window {
            annotations.insert(REPORT_WINDOW_ANNOTATION.into(), window.to_string().into());
            let score = self
                .score
                .filter(|s| s.is_finite())
                .map_or(serde_json::Value::Null, |s| s.to_string().into());
            annotations.insert(REPORT_SCORE_ANNOTATION.into(), score);
        }
        json!({ "metadata": { "annotations": annotations } })
    }
}

/// Patches one pod's report annotations.
#[derive(Clone)]
pub struct PodReporter {
    pods: Api<Pod>,
    target: PodTarget,
}

impl std::fmt::Debug for PodReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodReporter")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PodReporter {
    /// A reporter for `target` through `client`.
    pub fn new(client: Client, target: PodTarget) -> Self {
        Self {
            pods: Api::namespaced(client, &target.namespace),
            target,
        }
    }

    /// A reporter for `target` with the pod's service account (in-cluster config).
    pub fn in_cluster(target: PodTarget) -> Result<Self, ReportError> {
        let client = Client::try_from(Config::incluster()?)?;
        Ok(Self::new(client, target))
    }

    pub fn target(&self) -> &PodTarget {
        &self.target
    }

    /// Merge-patches the pod's report annotations.
    pub async fn report(&self, report: &PodReport) -> Result<(), ReportError> {
        let patch = Patch::Merge(report.patch());
        let params = PatchParams::default();
        let request = self.pods.patch(&self.target.name, &params, &patch);
        match tokio::time::timeout(PATCH_TIMEOUT, request).await {
            Ok(result) => result.map(|_| ()).map_err(ReportError::from),
            Err(_) => Err(ReportError::Timeout(PATCH_TIMEOUT)),
        }
    }

    /// Sends reports from a task of its own on the current runtime; returns where to post
    /// them. Only the latest report waiting is sent (a slow API server never queues up
    /// windows). The task ends when the returned sender is dropped.
    pub fn spawn(self) -> ReportSender {
        let (tx, mut rx) = watch::channel(None::<PodReport>);
        tokio::spawn(async move {
            let mut failing = false;
            while rx.changed().await.is_ok() {
                let Some(report) = *rx.borrow_and_update() else {
                    continue;
                };
                match self.report(&report).await {
                    Ok(()) => {
                        if failing {
                            tracing::info!(pod = %self.target.name, window = ?report.window, "pod report delivered again");
                        }
                        failing = false;
                    }
                    Err(err) => {
                        // One report per window, so at most one warning per window.
                        tracing::warn!(pod = %self.target.name, window = ?report.window, %err, "pod report failed; the role goes on");
                        failing = true;
                    }
                }
            }
        });
        ReportSender { tx }
    }
}

/// Where role events post pod reports (see [`PodReporter::spawn`]).
#[derive(Debug)]
pub struct ReportSender {
    tx: watch::Sender<Option<PodReport>>,
}

impl ReportSender {
    /// Queues `report`, replacing one not sent yet; never blocks.
    pub fn send(&self, report: PodReport) {
        // Fails only once the task ended (its runtime shut down): nothing left to report to.
        let _ = self.tx.send(Some(report));
    }
}

/// The reporter for this pod when [`ENV_POD_NAME`] and [`ENV_POD_NAMESPACE`] are set and
/// an in-cluster config is available; `None` (logged) otherwise.
pub fn from_environment() -> Option<PodReporter> {
    let target = PodTarget::from_env()?;
    match PodReporter::in_cluster(target) {
        Ok(reporter) => Some(reporter),
        Err(err) => {
            tracing::warn!(%err, "not reporting to the pod: no usable in-cluster config");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_sets_all_three_annotations_and_drops_a_missing_score() {
        let patch = PodReport::window(12, 345, Some(0.125)).patch();
        let annotations = &patch["metadata"]["annotations"];
        assert_eq!(annotations[REPORT_UID_ANNOTATION], "12");
        assert_eq!(annotations[REPORT_WINDOW_ANNOTATION], "345");
        assert_eq!(annotations[REPORT_SCORE_ANNOTATION], "0.125");
        for score in [None, Some(f64::NAN), Some(f64::INFINITY)] {
            let patch = PodReport::window(1, 2, score).patch();
            let annotations = patch["metadata"]["annotations"].as_object().unwrap();
            // Present as null: a merge patch deletes the annotation.
            assert!(annotations[REPORT_SCORE_ANNOTATION].is_null());
        }
    }

    #[test]
    fn the_start_report_touches_only_the_uid() {
        let patch = PodReport::started(9).patch();
        let annotations = patch["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations[REPORT_UID_ANNOTATION], "9");
    }
}
