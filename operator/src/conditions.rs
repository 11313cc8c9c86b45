//! Turns a plan (or a rejected spec) into the workload's status. Pure: no API calls.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{Phase, ReplicaPhase, WorkloadStatus};
use crate::rollout::{Counts, Plan};

/// Condition type: every replica is up to date and ready.
pub const READY: &str = "Ready";
/// Condition type: pods are being created, deleted or replaced.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: a replica exited and is backing off.
pub const DEGRADED: &str = "Degraded";
/// Reason of `Ready=False` for a rejected spec.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Reason of `Ready=False` while the ConfigMap (or key) holding the run manifest is missing.
pub const REASON_MANIFEST_NOT_FOUND: &str = "ManifestNotFound";

/// Inputs shared by the status builders.
#[derive(Clone, Copy, Debug)]
pub struct StatusContext<'a> {
    /// Status currently stored.
    pub previous: Option<&'a WorkloadStatus>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Label selector of the pods.
    pub selector: &'a str,
    /// Current time (for `lastTransitionTime`).
    pub now: Timestamp,
}

struct ConditionSpec<'a> {
    type_: &'a str,
    status: bool,
    reason: &'a str,
    message: String,
}

fn condition(ctx: &StatusContext<'_>, spec: ConditionSpec<'_>) -> Condition {
    let status = if spec.status { "True" } else { "False" };
    let previous = ctx.previous.and_then(|s| s.condition(spec.type_));
    let last_transition_time = previous
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(ctx.now));
    Condition {
        type_: spec.type_.to_owned(),
        status: status.to_owned(),
        reason: spec.reason.to_owned(),
        message: spec.message,
        observed_generation: ctx.generation,
        last_transition_time,
    }
}

/// Phase implied by the counts.
pub fn phase_of(counts: &Counts, suspended: bool) -> Phase {
    if suspended {
        Phase::Suspended
    } else if counts.failing > 0 {
        Phase::Degraded
    } else if counts.ready == counts.desired
        && counts.updated == counts.desired
        && counts.existing == counts.desired
        && counts.terminating == 0
    {
        Phase::Running
    } else if counts.ready == 0 && counts.outdated == 0 {
        Phase::Pending
    } else {
        Phase::Progressing
    }
}

fn join(indices: &[i32]) -> String {
    indices
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Status after executing `plan`.
pub fn status_from_plan(ctx: &StatusContext<'_>, plan: &Plan, suspended: bool) -> WorkloadStatus {
    let c = &plan.counts;
    let phase = phase_of(c, suspended);
    let ready_msg = format!("{}/{} replicas ready", c.ready, c.desired);
    let ready = if suspended {
        ConditionSpec {
            type_: READY,
            status: false,
            reason: "Suspended",
            message: "spec.suspend is true; all pods are deleted".to_owned(),
        }
    } else if phase == Phase::Running {
        ConditionSpec {
            type_: READY,
            status: true,
            reason: "AllReplicasReady",
            message: ready_msg,
        }
    } else if let Some((index, why)) = plan.unschedulable.first() {
        ConditionSpec {
            type_: READY,
            status: false,
            reason: "Unschedulable",
            message: format!("{ready_msg}; replica {index} cannot be scheduled: {why}"),
        }
    } else if !plan.registering.is_empty() {
        ConditionSpec {
            type_: READY,
            status: false,
            reason: "Registering",
            message: format!(
                "{ready_msg}; replicas [{}] wait for their hotkey registration Job",
                join(&plan.registering)
            ),
        }
    } else {
        ConditionSpec {
            type_: READY,
            status: false,
            reason: "ReplicasNotReady",
            message: ready_msg,
        }
    };
    let progressing = if suspended {
        ConditionSpec {
            type_: PROGRESSING,
            status: false,
            reason: "Suspended",
            message: "suspended".to_owned(),
        }
    } else if c.outdated > 0 {
        ConditionSpec {
            type_: PROGRESSING,
            status: true,
            reason: "RollingUpdate",
            message: format!(
                "{}/{} replicas updated; replacing one pod at a time",
                c.updated, c.desired
            ),
        }
    } else if !plan.create.is_empty()
        || !plan.delete.is_empty()
        || c.terminating > 0
        || c.existing != c.desired
    {
        ConditionSpec {
            type_: PROGRESSING,
            status: true,
            reason: "Scaling",
            message: format!("{} pods exist, {} desired", c.existing, c.desired),
        }
    } else {
        ConditionSpec {
            type_: PROGRESSING,
            status: false,
            reason: "Complete",
            message: "all replicas are up to date".to_owned(),
        }
    };
    let indices = |phases: &[ReplicaPhase]| -> Vec<i32> {
        plan.replicas
            .iter()
            .filter(|r| phases.contains(&r.phase))
            .map(|r| r.index)
            .collect()
    };
    let exited = indices(&[ReplicaPhase::Failed, ReplicaPhase::BackOff]);
    let unregistered = indices(&[ReplicaPhase::RegistrationFailed]);
    let degraded = if suspended || (exited.is_empty() && unregistered.is_empty()) {
        ConditionSpec {
            type_: DEGRADED,
            status: false,
            reason: "AsExpected",
            message: "no replica is failing".to_owned(),
        }
    } else if !unregistered.is_empty() {
        let why = plan
            .replicas
            .iter()
            .find(|r| r.phase == ReplicaPhase::RegistrationFailed)
            .and_then(|r| r.last_failure.clone())
            .unwrap_or_default();
        ConditionSpec {
            type_: DEGRADED,
            status: true,
            reason: "RegistrationFailed",
            message: format!(
                "hotkey registration of replicas [{}] failed: {why}",
                join(&unregistered)
            ),
        }
    } else {
        ConditionSpec {
            type_: DEGRADED,
            status: true,
            reason: "ReplicaFailed",
            message: format!(
                "replicas [{}] exited; recreating with exponential backoff",
                join(&exited)
            ),
        }
    };
    WorkloadStatus {
        phase: Some(phase),
        conditions: vec![
            condition(ctx, ready),
            condition(ctx, progressing),
            condition(ctx, degraded),
        ],
        observed_generation: ctx.generation,
        replicas: c.existing,
        ready_replicas: c.ready,
        updated_replicas: c.updated,
        selector: Some(ctx.selector.to_owned()),
        replica_statuses: plan.replicas.clone(),
    }
}

/// Status of a workload that was rejected: pods untouched, `Ready=False` with `reason`
/// (`InvalidSpec` or `ManifestNotFound`).
pub fn invalid_status(ctx: &StatusContext<'_>, reason: &str, message: &str) -> WorkloadStatus {
    let mut status = ctx.previous.cloned().unwrap_or_default();
    status.phase = Some(Phase::Invalid);
    status.observed_generation = ctx.generation;
    status.selector = Some(ctx.selector.to_owned());
    let keep_degraded = ctx
        .previous
        .and_then(|s| s.condition(DEGRADED))
        .cloned()
        .map(|mut c| {
            c.observed_generation = ctx.generation;
            c
        });
    status.conditions = vec![
        condition(
            ctx,
            ConditionSpec {
                type_: READY,
                status: false,
                reason,
                message: message.to_owned(),
            },
        ),
        condition(
            ctx,
            ConditionSpec {
                type_: PROGRESSING,
                status: false,
                reason,
                message: "spec rejected; pods are left as they are".to_owned(),
            },
        ),
    ];
    status.conditions.extend(keep_degraded);
    status
}

/// `Ready` condition's reason and message in `status`, if any.
pub fn ready_reason(status: Option<&WorkloadStatus>) -> Option<(&str, &str)> {
    status
        .and_then(|s| s.condition(READY))
        .map(|c| (c.reason.as_str(), c.message.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Plan;
    use k8s_openapi::jiff::SignedDuration;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn counts(desired: i32, existing: i32, ready: i32, updated: i32) -> Counts {
        Counts {
            desired,
            existing,
            ready,
            updated,
            outdated: existing - updated,
            ..Counts::default()
        }
    }

    #[test]
    fn phase_matrix() {
        assert_eq!(phase_of(&counts(3, 3, 3, 3), false), Phase::Running);
        assert_eq!(phase_of(&counts(0, 0, 0, 0), false), Phase::Running);
        assert_eq!(phase_of(&counts(3, 3, 0, 3), false), Phase::Pending);
        assert_eq!(phase_of(&counts(3, 3, 1, 3), false), Phase::Progressing);
        assert_eq!(phase_of(&counts(3, 3, 3, 2), false), Phase::Progressing);
        let failing = Counts {
            failing: 1,
            ..counts(3, 3, 2, 3)
        };
        assert_eq!(phase_of(&failing, false), Phase::Degraded);
        assert_eq!(phase_of(&failing, true), Phase::Suspended);
    }

    #[test]
    fn ready_says_why_a_replica_cannot_be_scheduled() {
        let ctx = StatusContext {
            previous: None,
            generation: Some(1),
            selector: "s",
            now: t0(),
        };
        let plan = Plan {
            counts: counts(3, 3, 2, 3),
            unschedulable: vec![(
                2,
                "0/3 nodes are available: 1 Insufficient nvidia.com/gpu.".into(),
            )],
            ..Plan::default()
        };
        let status = status_from_plan(&ctx, &plan, false);
        let ready = status.condition(READY).unwrap();
        assert_eq!(ready.reason, "Unschedulable");
        assert_eq!(
            ready.message,
            "2/3 replicas ready; replica 2 cannot be scheduled: 0/3 nodes are available: 1 Insufficient nvidia.com/gpu."
        );
    }

    #[test]
    fn transition_time_only_moves_when_the_status_flips() {
        let ctx0 = StatusContext {
            previous: None,
            generation: Some(1),
            selector: "s",
            now: t0(),
        };
        let pending = Plan {
            counts: counts(2, 2, 0, 2),
            ..Plan::default()
        };
        let s0 = status_from_plan(&ctx0, &pending, false);
        let ready0 = s0.condition(READY).unwrap().clone();
        assert_eq!(
            (ready0.status.as_str(), ready0.last_transition_time.0),
            ("False", t0())
        );

        let later = t0().checked_add(SignedDuration::from_secs(60)).unwrap();
        let half = Plan {
            counts: counts(2, 2, 1, 2),
            ..Plan::default()
        };
        let ctx1 = StatusContext {
            previous: Some(&s0),
            generation: Some(1),
            selector: "s",
            now: later,
        };
        let s1 = status_from_plan(&ctx1, &half, false);
        let ready1 = s1.condition(READY).unwrap();
        assert_eq!(ready1.message, "1/2 replicas ready");
        assert_eq!(
            ready1.last_transition_time.0,
            t0(),
            "still False: time kept"
        );

        let full = Plan {
            counts: counts(2, 2, 2, 2),
            ..Plan::default()
        };
        let ctx2 = StatusContext {
            previous: Some(&s1),
            generation: Some(2),
            selector: "s",
            now: later,
        };
        let s2 = status_from_plan(&ctx2, &full, false);
        let ready2 = s2.condition(READY).unwrap();
        assert_eq!(
            (ready2.status.as_str(), ready2.reason.as_str()),
            ("True", "AllReplicasReady")
        );
        assert_eq!(ready2.last_transition_time.0, later);
        assert_eq!(ready2.observed_generation, Some(2));
        assert_eq!(s2.observed_generation, Some(2));
    }

    #[test]
    fn invalid_status_keeps_replicas_and_explains() {
        let ctx = StatusContext {
            previous: None,
            generation: Some(1),
            selector: "s",
            now: t0(),
        };
        let running = status_from_plan(
            &ctx,
            &Plan {
                counts: counts(1, 1, 1, 1),
                ..Plan::default()
            },
            false,
        );
        let ctx = StatusContext {
            previous: Some(&running),
            generation: Some(2),
            selector: "s",
            now: t0(),
        };
        let invalid = invalid_status(&ctx, REASON_INVALID_SPEC, "spec.image: bad");
        assert_eq!(invalid.phase, Some(Phase::Invalid));
        assert_eq!(invalid.ready_replicas, 1);
        assert_eq!(
            ready_reason(Some(&invalid)),
            Some((REASON_INVALID_SPEC, "spec.image: bad"))
        );
        assert_eq!(
            invalid.condition(DEGRADED).unwrap().observed_generation,
            Some(2)
        );
    }
}
