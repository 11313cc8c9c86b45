//! What the operator reads from an existing pod. Pure: no API calls.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::contract::{REPORT_SCORE_ANNOTATION, REPORT_UID_ANNOTATION, REPORT_WINDOW_ANNOTATION};
use crate::naming::{CONFIG_HASH_ANNOTATION, REPLICA_INDEX_LABEL};

/// Phase of a pod as the kubelet reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    /// Not running yet (scheduling, pulling, ...).
    Pending,
    /// At least one container runs.
    Running,
    /// Every container exited 0.
    Succeeded,
    /// A container exited non-zero, or the pod was evicted.
    Failed,
    /// Anything else.
    Unknown,
}

impl PodPhase {
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Pending") | None => PodPhase::Pending,
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            Some(_) => PodPhase::Unknown,
        }
    }

    /// Whether the pod's containers have all stopped for good (`restartPolicy: Never`).
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// Values the worker may report by annotating its own pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerReport {
    /// Metagraph UID.
    pub uid: Option<u16>,
    /// Last completed window.
    pub last_window: Option<u64>,
    /// Last score.
    pub last_score: Option<f64>,
}

/// The facts about one pod the planner needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedPod {
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: Option<String>,
    /// Replica index from the pod's label.
    pub index: Option<i32>,
    /// Kubelet phase.
    pub phase: PodPhase,
    /// `Ready` condition is true.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Config hash annotation.
    pub config_hash: Option<String>,
    /// When the kubelet started the pod.
    pub started_at: Option<Timestamp>,
    /// Why the pod stopped, when it did.
    pub failure: Option<String>,
    /// The scheduler's message while the pod cannot be placed (`PodScheduled=False`,
    /// reason `Unschedulable`), e.g. `0/3 nodes are available: 3 Insufficient nvidia.com/gpu.`
    pub unschedulable: Option<String>,
    /// Worker-reported values.
    pub report: WorkerReport,
}

impl ObservedPod {
    /// Running and Ready.
    pub fn is_ready(&self) -> bool {
        self.phase == PodPhase::Running && self.ready && !self.terminating
    }
}

/// Extracts the planner's view of `pod`.
pub fn observe(pod: &Pod) -> ObservedPod {
    let meta = &pod.metadata;
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key));
    let status = pod.status.as_ref();
    let phase = PodPhase::parse(status.and_then(|s| s.phase.as_deref()));
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ObservedPod {
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
        index: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(REPLICA_INDEX_LABEL))
            .and_then(|v| v.parse().ok())
            .filter(|i: &i32| *i >= 0),
        phase,
        ready,
        terminating: meta.deletion_timestamp.is_some(),
        config_hash: annotation(CONFIG_HASH_ANNOTATION).cloned(),
        started_at: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        failure: phase.is_terminal().then(|| failure_reason(pod)),
        unschedulable: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            })
            .map(|c| c.message.clone().unwrap_or_default()),
        report: WorkerReport {
            uid: annotation(REPORT_UID_ANNOTATION).and_then(|v| v.trim().parse().ok()),
            last_window: annotation(REPORT_WINDOW_ANNOTATION).and_then(|v| v.trim().parse().ok()),
            last_score: annotation(REPORT_SCORE_ANNOTATION)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite()),
        },
    }
}

/// Human-readable reason a terminal pod stopped.
fn failure_reason(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref())
        });
    if let Some(t) = terminated {
        let mut text = format!("exit code {}", t.exit_code);
        if let Some(reason) = &t.reason {
            text.push_str(&format!(" ({reason})"));
        }
        if let Some(message) = t
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            let short: String = message.chars().take(200).collect();
            text.push_str(&format!(": {short}"));
        }
        return text;
    }
    match (
        status.and_then(|s| s.reason.as_deref()),
        status.and_then(|s| s.message.as_deref()),
    ) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(reason), None) => reason.to_owned(),
        (None, Some(message)) => message.to_owned(),
        (None, None) => "pod stopped".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reads_phase_readiness_hash_and_reports() {
        let p = observe(&pod(serde_json::json!({
            "metadata": {
                "name": "r-miner-2", "uid": "u1",
                "labels": {"subnet.templar.dev/replica-index": "2"},
                "annotations": {
                    "subnet.templar.dev/config-hash": "abc",
                    "subnet.templar.dev/chain-uid": " 7 ",
                    "subnet.templar.dev/last-window": "not-a-number",
                    "subnet.templar.dev/last-score": "NaN",
                },
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        })));
        assert_eq!(p.index, Some(2));
        assert!(p.is_ready());
        assert_eq!(p.config_hash.as_deref(), Some("abc"));
        assert_eq!(
            p.report,
            WorkerReport {
                uid: Some(7),
                last_window: None,
                last_score: None
            }
        );
        assert!(p.failure.is_none());
    }

    #[test]
    fn keeps_the_schedulers_message_while_unschedulable() {
        let p = observe(&pod(serde_json::json!({
            "metadata": {"name": "r-miner-0"},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 2 Insufficient nvidia.com/gpu.",
            }]},
        })));
        assert_eq!(
            p.unschedulable.as_deref(),
            Some("0/3 nodes are available: 2 Insufficient nvidia.com/gpu.")
        );
        let scheduled = observe(&pod(serde_json::json!({
            "metadata": {"name": "r-miner-0"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        })));
        assert!(scheduled.unschedulable.is_none());
    }

    #[test]
    fn explains_why_a_pod_stopped() {
        let exited = observe(&pod(serde_json::json!({
            "metadata": {"name": "a"},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "worker", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 2, "reason": "Error", "message": "chain unreachable\n"}},
            }]},
        })));
        assert_eq!(
            exited.failure.as_deref(),
            Some("exit code 2 (Error): chain unreachable")
        );
        let evicted = observe(&pod(serde_json::json!({
            "metadata": {"name": "b", "labels": {"subnet.templar.dev/replica-index": "-1"}},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "node out of memory"},
        })));
        assert_eq!(
            evicted.failure.as_deref(),
            Some("Evicted: node out of memory")
        );
        assert_eq!(evicted.index, None, "negative index rejected");
        assert!(!evicted.is_ready());
    }
}
