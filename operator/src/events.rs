//! Which Kubernetes events a reconcile publishes. Pure: the reconciler sends them.
//!
//! Pod events name a pod (with its UID) as the event's `related` object, so the recorder's
//! series aggregation (keyed by reason and objects, not by note) never merges two different
//! actions into one event with a stale note.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};

use crate::crd::Phase;
use crate::rollout::{DeleteReason, Plan};

/// Longest event note (the API allows 1 KiB).
const MAX_NOTE: usize = 1000;

fn event(
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    related: Option<ObjectReference>,
) -> Event {
    let note = if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &note[..cut])
    } else {
        note
    };
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: related,
    }
}

/// Reference to pod `name` in `namespace`.
pub fn pod_ref(namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        uid: uid.map(str::to_owned),
        ..ObjectReference::default()
    }
}

const MAX_NAMES: usize = 10;

fn names<'a>(pods: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = pods.collect();
    let mut text = all
        .iter()
        .take(MAX_NAMES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > MAX_NAMES {
        text.push_str(&format!(" and {} more", all.len() - MAX_NAMES));
    }
    text
}

/// Events for one reconcile: pods created / deleted (one event per kind of action, naming
/// the pods, related to the first one), exits seen (one per pod), phase changes.
pub fn plan_events(
    plan: &Plan,
    namespace: &str,
    created: &[ObjectReference],
    previous_phase: Option<Phase>,
    phase: Phase,
) -> Vec<Event> {
    let mut out = Vec::new();
    if let Some(first) = created.first() {
        out.push(event(
            EventType::Normal,
            "PodsCreated",
            "Create",
            format!(
                "created {} pod(s): {}",
                created.len(),
                names(created.iter().filter_map(|p| p.name.as_deref()))
            ),
            Some(first.clone()),
        ));
    }
    for (kind, reason, why) in [
        (
            DeleteReason::ScaleDown,
            "ScaledDown",
            "index above spec.replicas",
        ),
        (
            DeleteReason::Rollout,
            "RollingUpdate",
            "config outdated; recreated next",
        ),
        (
            DeleteReason::Suspend,
            "Suspended",
            "the workload is suspended",
        ),
        (
            DeleteReason::Stray,
            "StrayPodDeleted",
            "no valid replica index",
        ),
    ] {
        let pods: Vec<_> = plan.delete.iter().filter(|d| d.reason == kind).collect();
        let Some(first) = pods.first() else { continue };
        out.push(event(
            EventType::Normal,
            reason,
            "Delete",
            format!(
                "deleted {} pod(s) ({why}): {}",
                pods.len(),
                names(pods.iter().map(|d| d.pod.as_str()))
            ),
            Some(pod_ref(namespace, &first.pod, first.uid.as_deref())),
        ));
    }
    for f in &plan.failures {
        out.push(event(
            EventType::Warning,
            "PodFailed",
            "Recreate",
            format!(
                "pod {} exited ({}); restart {} of replica {}, recreating in {}s",
                f.pod,
                if f.reason.is_empty() {
                    "no reason"
                } else {
                    &f.reason
                },
                f.restarts,
                f.index,
                f.retry_in.as_secs()
            ),
            Some(pod_ref(namespace, &f.pod, f.uid.as_deref())),
        ));
    }
    if previous_phase != Some(phase) {
        let from = previous_phase.map_or("None", Phase::as_str);
        let type_ = if phase == Phase::Degraded {
            EventType::Warning
        } else {
            EventType::Normal
        };
        out.push(event(
            type_,
            "PhaseChanged",
            "Reconcile",
            format!("phase {from} -> {}", phase.as_str()),
            None,
        ));
    }
    out
}

/// Warning for a rejected workload; `reason` is the `Ready` condition's reason
/// (`InvalidSpec` or `ManifestNotFound`).
pub fn rejected_event(reason: &str, message: &str) -> Event {
    event(
        EventType::Warning,
        reason,
        "Validate",
        message.to_owned(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Deletion, Failure};
    use std::time::Duration;

    #[test]
    fn one_event_per_pod_action_and_phase_change() {
        let plan = Plan {
            delete: vec![
                Deletion {
                    pod: "r-miner-3".into(),
                    uid: Some("u3".into()),
                    index: Some(3),
                    reason: DeleteReason::ScaleDown,
                },
                Deletion {
                    pod: "r-miner-1".into(),
                    uid: Some("u1".into()),
                    index: Some(1),
                    reason: DeleteReason::Exited,
                },
            ],
            failures: vec![Failure {
                index: 1,
                pod: "r-miner-1".into(),
                uid: Some("u1".into()),
                reason: "exit code 1 (Error)".into(),
                restarts: 2,
                retry_in: Duration::from_secs(20),
            }],
            ..Plan::default()
        };
        let created = [pod_ref("ns", "r-miner-0", Some("u0"))];
        let events = plan_events(&plan, "ns", &created, Some(Phase::Running), Phase::Degraded);
        let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["PodsCreated", "ScaledDown", "PodFailed", "PhaseChanged"]
        );
        assert_eq!(
            events[0].note.as_deref(),
            Some("created 1 pod(s): r-miner-0")
        );
        assert_eq!(
            events[1].note.as_deref(),
            Some("deleted 1 pod(s) (index above spec.replicas): r-miner-3")
        );
        assert_eq!(
            events[1].secondary.as_ref().unwrap().uid.as_deref(),
            Some("u3")
        );
        assert_eq!(events[2].type_, EventType::Warning);
        assert_eq!(
            events[2].note.as_deref(),
            Some(
                "pod r-miner-1 exited (exit code 1 (Error)); restart 2 of replica 1, recreating in 20s"
            )
        );
        assert_eq!(
            events[2].secondary.as_ref().unwrap().uid.as_deref(),
            Some("u1")
        );
        assert_eq!(
            events[3].type_,
            EventType::Warning,
            "entering Degraded warns"
        );
        assert_eq!(events[3].note.as_deref(), Some("phase Running -> Degraded"));
        assert!(
            plan_events(
                &Plan::default(),
                "ns",
                &[],
                Some(Phase::Running),
                Phase::Running
            )
            .is_empty()
        );
    }

    #[test]
    fn many_pods_are_listed_compactly() {
        let created: Vec<_> = (0..12)
            .map(|i| pod_ref("ns", &format!("p-{i}"), None))
            .collect();
        let events = plan_events(
            &Plan::default(),
            "ns",
            &created,
            Some(Phase::Pending),
            Phase::Pending,
        );
        assert_eq!(
            events[0].note.as_deref(),
            Some("created 12 pod(s): p-0, p-1, p-2, p-3, p-4, p-5, p-6, p-7, p-8, p-9 and 2 more")
        );
        assert_eq!(
            events[0].secondary.as_ref().unwrap().name.as_deref(),
            Some("p-0")
        );
    }

    #[test]
    fn long_notes_are_truncated_on_a_char_boundary() {
        let ev = rejected_event("InvalidSpec", &"é".repeat(800));
        let note = ev.note.unwrap();
        assert!(note.len() <= MAX_NOTE + 3);
        assert!(note.ends_with('…'));
    }
}
