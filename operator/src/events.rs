//! Which Kubernetes events a reconcile publishes. Pure: the reconciler sends them.
//!
//! Per-pod events name the pod as the event's `related` object (with its UID), so the
//! recorder's series aggregation only merges repeats about the very same pod.

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

/// Events for one reconcile: pods created / deleted, exits seen, phase changes.
pub fn plan_events(
    plan: &Plan,
    namespace: &str,
    created: &[ObjectReference],
    previous_phase: Option<Phase>,
    phase: Phase,
) -> Vec<Event> {
    let mut out = Vec::new();
    for pod in created {
        let name = pod.name.as_deref().unwrap_or_default();
        out.push(event(
            EventType::Normal,
            "PodCreated",
            "Create",
            format!("created pod {name}"),
            Some(pod.clone()),
        ));
    }
    for d in &plan.delete {
        let (reason, why) = match d.reason {
            DeleteReason::ScaleDown => ("ScaledDown", "its index is above spec.replicas"),
            DeleteReason::Rollout => (
                "RollingUpdate",
                "its config is outdated; it is recreated next",
            ),
            DeleteReason::Suspend => ("Suspended", "the workload is suspended"),
            DeleteReason::Stray => ("StrayPodDeleted", "it has no valid replica index"),
            DeleteReason::Exited => continue, // reported as PodFailed
        };
        out.push(event(
            EventType::Normal,
            reason,
            "Delete",
            format!("deleted pod {}: {why}", d.pod),
            Some(pod_ref(namespace, &d.pod, d.uid.as_deref())),
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

/// Warning for a rejected spec.
pub fn invalid_spec_event(message: &str) -> Event {
    event(
        EventType::Warning,
        "InvalidSpec",
        "Validate",
        message.to_owned(),
        None,
    )
}

/// Event of finalizer clean-up.
pub fn cleanup_event(deleted: usize) -> Event {
    event(
        EventType::Normal,
        "Cleanup",
        "Delete",
        format!("workload deleted; removed {deleted} pod(s)"),
        None,
    )
}
