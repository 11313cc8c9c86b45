//! Decides which pods to create and delete, and the per-replica status. Pure: no API calls.
//!
//! Rules, in order:
//! - suspended: delete every pod, keep the replica entries (phase `Suspended`);
//! - pods of indices `>= replicas` are deleted (scale down removes the highest indices);
//! - a missing pod is created (scale up fills the lowest free indices), unless its replica is
//!   backing off after a failure;
//! - an exited pod (`Failed` / `Succeeded`) is deleted, counted once in `restarts`, and its
//!   replica waits `backoff.delay(consecutiveFailures)` before being recreated;
//! - rolling update: the first pod whose config hash differs from the spec is deleted (and
//!   recreated by a later pass) only when every other replica is Running and Ready.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::backoff::BackoffPolicy;
use crate::crd::{ReplicaPhase, ReplicaStatus};
use crate::observed::{ObservedPod, PodPhase};

/// What replica `index` should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaTarget {
    /// Replica index.
    pub index: i32,
    /// Stable pod name.
    pub pod_name: String,
    /// Config hash of the desired pod.
    pub config_hash: String,
    /// Hotkey Secret of the replica.
    pub hotkey_secret: String,
    /// Whether its hotkey registration allows creating the pod.
    pub registration: Registration,
}

/// State of a replica's one-shot hotkey registration (the Job with the coldkey).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Registration {
    /// The workload has no coldkey: hotkeys are registered out of band.
    #[default]
    NotRequired,
    /// The Job is missing, outdated or still running.
    Pending,
    /// The Job completed: the hotkey is registered.
    Complete,
    /// The Job failed; why, for the status.
    Failed(String),
}

/// Everything the planner looks at.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.suspend`.
    pub suspend: bool,
    /// One target per index `0..replicas` (ignored while suspended).
    pub targets: &'a [ReplicaTarget],
    /// Pods currently owned by the workload.
    pub pods: &'a [ObservedPod],
    /// Replica entries of the current status.
    pub previous: &'a [ReplicaStatus],
    /// Current time.
    pub now: Timestamp,
    /// Backoff policy.
    pub backoff: &'a BackoffPolicy,
}

/// Why a pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its index is `>= replicas`.
    ScaleDown,
    /// It exited and will be recreated after the backoff.
    Exited,
    /// Its config hash is outdated.
    Rollout,
    /// The workload is suspended.
    Suspend,
    /// It has no valid index or another pod holds its index.
    Stray,
}

/// A pod to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// Pod name.
    pub pod: String,
    /// Pod UID (delete precondition).
    pub uid: Option<String>,
    /// Replica index, when known.
    pub index: Option<i32>,
    /// Why.
    pub reason: DeleteReason,
}

/// A pod exit seen for the first time.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Replica index.
    pub index: i32,
    /// Pod name.
    pub pod: String,
    /// Pod UID.
    pub uid: Option<String>,
    /// Why it stopped.
    pub reason: String,
    /// Restarts including this one.
    pub restarts: i32,
    /// Wait before recreating.
    pub retry_in: Duration,
}

/// Aggregate counts for the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Desired replicas (0 while suspended).
    pub desired: i32,
    /// Pods that exist and are not terminating once the plan is executed.
    pub existing: i32,
    /// Desired replicas whose pod is Running and Ready.
    pub ready: i32,
    /// Desired replicas whose pod has the current config hash.
    pub updated: i32,
    /// Desired replicas whose pod has an outdated config hash.
    pub outdated: i32,
    /// Replicas waiting for their backoff or with an exited pod.
    pub failing: i32,
    /// Pods terminating once the plan is executed.
    pub terminating: i32,
}

/// The planner's decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Indices whose pod must be created.
    pub create: Vec<i32>,
    /// Pods to delete.
    pub delete: Vec<Deletion>,
    /// Newly seen pod exits.
    pub failures: Vec<Failure>,
    /// New replica entries.
    pub replicas: Vec<ReplicaStatus>,
    /// Counts.
    pub counts: Counts,
    /// When to look again even if nothing changes (backoff expiry, stability reset).
    pub requeue_after: Option<Duration>,
    /// Replicas whose pod the scheduler cannot place, with its message.
    pub unschedulable: Vec<(i32, String)>,
    /// Replicas waiting for their registration Job before their pod is created.
    pub registering: Vec<i32>,
}

impl Plan {
    fn requeue_in(&mut self, d: Duration) {
        let d = d.max(Duration::from_secs(1));
        self.requeue_after = Some(self.requeue_after.map_or(d, |cur| cur.min(d)));
    }
}

fn add(now: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|sd| now.checked_add(sd).ok())
        .unwrap_or(now)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn carry_over(prev: Option<&ReplicaStatus>, index: i32) -> ReplicaStatus {
    let mut st = prev.cloned().unwrap_or_default();
    st.index = index;
    st.pod = None;
    st.ready = false;
    st.config_hash = None;
    st
}

/// Computes the plan for one workload.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let previous: BTreeMap<i32, &ReplicaStatus> =
        input.previous.iter().map(|r| (r.index, r)).collect();
    let mut out = Plan::default();
    out.counts.terminating = input.pods.iter().filter(|p| p.terminating).count() as i32;
    out.counts.existing = input.pods.iter().filter(|p| !p.terminating).count() as i32;

    if input.suspend {
        for pod in input.pods.iter().filter(|p| !p.terminating) {
            out.delete.push(Deletion {
                pod: pod.name.clone(),
                uid: pod.uid.clone(),
                index: pod.index,
                reason: DeleteReason::Suspend,
            });
        }
        for index in 0..input.replicas.max(0) {
            let mut st = carry_over(previous.get(&index).copied(), index);
            st.phase = ReplicaPhase::Suspended;
            out.replicas.push(st);
        }
        out.counts.terminating += out.delete.len() as i32;
        out.counts.existing = 0;
        return out;
    }

    out.counts.desired = input.replicas.max(0);
    let expected: BTreeMap<i32, &ReplicaTarget> =
        input.targets.iter().map(|t| (t.index, t)).collect();
    let mut by_index: BTreeMap<i32, &ObservedPod> = BTreeMap::new();
    for pod in input.pods {
        let owned_index = pod.index.filter(|i| match expected.get(i) {
            Some(t) => t.pod_name == pod.name,
            None => *i >= input.replicas,
        });
        let reason = match owned_index {
            Some(i) if i >= input.replicas => Some(DeleteReason::ScaleDown),
            Some(i) => {
                by_index.insert(i, pod);
                None
            }
            None => Some(DeleteReason::Stray),
        };
        if let Some(reason) = reason
            && !pod.terminating
        {
            out.delete.push(Deletion {
                pod: pod.name.clone(),
                uid: pod.uid.clone(),
                index: pod.index,
                reason,
            });
        }
    }

    let mut outdated = Vec::new();
    for target in input.targets {
        let index = target.index;
        let prev = previous.get(&index).copied();
        let mut st = carry_over(prev, index);
        st.hotkey_secret = Some(target.hotkey_secret.clone());
        match by_index.get(&index) {
            None => {
                let retry_at = st
                    .next_retry
                    .as_ref()
                    .map(|t| t.0)
                    .filter(|t| *t > input.now);
                if let Some(at) = retry_at {
                    st.phase = ReplicaPhase::BackOff;
                    out.counts.failing += 1;
                    out.requeue_in(until(input.now, at));
                } else if target.registration == Registration::Pending {
                    st.phase = ReplicaPhase::Registering;
                    out.registering.push(index);
                } else if let Registration::Failed(why) = &target.registration {
                    st.phase = ReplicaPhase::RegistrationFailed;
                    st.last_failure = Some(why.clone());
                    out.counts.failing += 1;
                } else {
                    st.phase = ReplicaPhase::Creating;
                    st.pod = Some(target.pod_name.clone());
                    st.config_hash = Some(target.config_hash.clone());
                    st.next_retry = None;
                    out.create.push(index);
                }
            }
            Some(pod) => {
                st.pod = Some(pod.name.clone());
                st.config_hash = pod.config_hash.clone();
                st.uid = pod.report.uid.or(st.uid);
                st.last_window = pod.report.last_window.or(st.last_window);
                st.last_score = pod.report.last_score.or(st.last_score);
                let current = pod.config_hash.as_deref() == Some(target.config_hash.as_str());
                if pod.terminating {
                    st.phase = ReplicaPhase::Terminating;
                } else if pod.phase.is_terminal() {
                    out.counts.failing += 1;
                    if pod.uid.is_none() || st.failed_pod_uid != pod.uid {
                        st.restarts = st.restarts.saturating_add(1);
                        st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                        st.failed_pod_uid = pod.uid.clone();
                        st.last_failure = pod.failure.clone();
                        let delay = input.backoff.delay(st.consecutive_failures);
                        st.next_retry = Some(Time(add(input.now, delay)));
                        out.failures.push(Failure {
                            index,
                            pod: pod.name.clone(),
                            uid: pod.uid.clone(),
                            reason: pod.failure.clone().unwrap_or_default(),
                            restarts: st.restarts,
                            retry_in: delay,
                        });
                    }
                    if let Some(at) = st.next_retry.as_ref().map(|t| t.0) {
                        out.requeue_in(until(input.now, at));
                    }
                    st.phase = ReplicaPhase::Failed;
                    out.delete.push(Deletion {
                        pod: pod.name.clone(),
                        uid: pod.uid.clone(),
                        index: Some(index),
                        reason: DeleteReason::Exited,
                    });
                } else {
                    st.phase = if pod.phase == PodPhase::Running {
                        ReplicaPhase::Running
                    } else {
                        ReplicaPhase::Pending
                    };
                    st.ready = pod.is_ready();
                    st.next_retry = None;
                    if let Some(message) = &pod.unschedulable {
                        out.unschedulable.push((index, message.clone()));
                    }
                    if st.ready {
                        out.counts.ready += 1;
                        if st.consecutive_failures > 0 {
                            let stable_at = pod
                                .started_at
                                .map(|t| add(t, input.backoff.stable_after))
                                .unwrap_or_else(|| add(input.now, input.backoff.stable_after));
                            if stable_at <= input.now {
                                st.consecutive_failures = 0;
                            } else {
                                out.requeue_in(until(input.now, stable_at));
                            }
                        }
                    }
                    if current {
                        out.counts.updated += 1;
                    } else {
                        out.counts.outdated += 1;
                        outdated.push(index);
                    }
                }
            }
        }
        out.replicas.push(st);
    }

    if let Some(&first) = outdated.first() {
        let others_ready = out.create.is_empty()
            && input
                .targets
                .iter()
                .filter(|t| t.index != first)
                .all(|t| by_index.get(&t.index).is_some_and(|p| p.is_ready()));
        if others_ready && let Some(pod) = by_index.get(&first) {
            out.delete.push(Deletion {
                pod: pod.name.clone(),
                uid: pod.uid.clone(),
                index: Some(first),
                reason: DeleteReason::Rollout,
            });
            if let Some(st) = out.replicas.iter_mut().find(|r| r.index == first) {
                st.phase = ReplicaPhase::Updating;
                if st.ready {
                    st.ready = false;
                    out.counts.ready -= 1;
                }
            }
        }
    }
    // The status is written before the actions run: count pods as they will be.
    let deleted = out.delete.len() as i32;
    out.counts.existing = out.counts.existing - deleted + out.create.len() as i32;
    out.counts.terminating += deleted;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::WorkerReport;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn targets(n: i32, hash: &str) -> Vec<ReplicaTarget> {
        (0..n)
            .map(|i| ReplicaTarget {
                index: i,
                pod_name: format!("r-miner-{i}"),
                config_hash: format!("{hash}{i}"),
                hotkey_secret: format!("hk-{i}"),
                registration: Registration::NotRequired,
            })
            .collect()
    }

    fn pod(i: i32, hash: &str, phase: PodPhase, ready: bool) -> ObservedPod {
        ObservedPod {
            name: format!("r-miner-{i}"),
            uid: Some(format!("uid-{i}-{hash}")),
            index: Some(i),
            phase,
            ready,
            terminating: false,
            config_hash: Some(format!("{hash}{i}")),
            started_at: Some(now()),
            failure: None,
            unschedulable: None,
            report: WorkerReport::default(),
        }
    }

    fn run_plan(
        replicas: i32,
        t: &[ReplicaTarget],
        pods: &[ObservedPod],
        prev: &[ReplicaStatus],
    ) -> Plan {
        plan(&PlanInput {
            replicas,
            suspend: false,
            targets: t,
            pods,
            previous: prev,
            now: now(),
            backoff: &BackoffPolicy::default(),
        })
    }

    fn deleted(p: &Plan) -> Vec<(String, DeleteReason)> {
        p.delete.iter().map(|d| (d.pod.clone(), d.reason)).collect()
    }

    #[test]
    fn empty_workload_creates_every_index() {
        let p = run_plan(3, &targets(3, "h"), &[], &[]);
        assert_eq!(p.create, [0, 1, 2]);
        assert!(p.delete.is_empty());
        assert_eq!(p.counts.existing, 3);
        assert!(p.replicas.iter().all(|r| r.phase == ReplicaPhase::Creating));
    }

    #[test]
    fn a_pod_waits_for_its_registration_job() {
        let mut t = targets(3, "h");
        t[0].registration = Registration::Complete;
        t[1].registration = Registration::Pending;
        t[2].registration = Registration::Failed("registration Job r-register-2 failed".into());
        let p = run_plan(3, &t, &[], &[]);
        assert_eq!(p.create, [0], "only the registered replica gets its pod");
        assert_eq!(p.registering, [1]);
        let phase = |i: usize| p.replicas[i].phase;
        assert_eq!(phase(0), ReplicaPhase::Creating);
        assert_eq!(phase(1), ReplicaPhase::Registering);
        assert_eq!(phase(2), ReplicaPhase::RegistrationFailed);
        assert_eq!(
            p.replicas[2].last_failure.as_deref(),
            Some("registration Job r-register-2 failed")
        );
        assert_eq!(p.counts.failing, 1);
        // A running pod is never held back by its registration (e.g. after an upgrade).
        let running = [pod(1, "h", PodPhase::Running, true)];
        let p = run_plan(3, &t, &running, &[]);
        assert_eq!(p.replicas[1].phase, ReplicaPhase::Running);
        assert!(p.registering.is_empty());
    }

    #[test]
    fn scale_down_deletes_highest_indices_once() {
        let mut pods: Vec<_> = (0..4)
            .map(|i| pod(i, "h", PodPhase::Running, true))
            .collect();
        pods[3].terminating = true;
        let p = run_plan(2, &targets(2, "h"), &pods, &[]);
        assert_eq!(
            deleted(&p),
            [("r-miner-2".to_owned(), DeleteReason::ScaleDown)]
        );
        assert!(p.create.is_empty());
        assert_eq!(p.counts.existing, 2);
        assert_eq!(p.counts.terminating, 2);
        assert_eq!(p.replicas.len(), 2);
    }

    #[test]
    fn stray_pods_are_removed() {
        let mut stray = pod(0, "h", PodPhase::Running, true);
        stray.name = "r-miner-0-copy".into();
        let mut no_index = pod(1, "h", PodPhase::Running, true);
        no_index.index = None;
        no_index.name = "odd".into();
        let p = run_plan(1, &targets(1, "h"), &[stray, no_index], &[]);
        assert_eq!(
            deleted(&p),
            [
                ("r-miner-0-copy".to_owned(), DeleteReason::Stray),
                ("odd".to_owned(), DeleteReason::Stray)
            ]
        );
        assert_eq!(p.create, [0]);
    }

    #[test]
    fn rollout_replaces_the_first_outdated_pod_only_when_others_are_ready() {
        let t = targets(3, "new");
        let pods: Vec<_> = (0..3)
            .map(|i| pod(i, "old", PodPhase::Running, true))
            .collect();
        let p = run_plan(3, &t, &pods, &[]);
        assert_eq!(
            deleted(&p),
            [("r-miner-0".to_owned(), DeleteReason::Rollout)]
        );
        assert_eq!(p.replicas[0].phase, ReplicaPhase::Updating);
        assert_eq!((p.counts.outdated, p.counts.ready), (3, 2));

        // Pod 0 replaced but not ready yet: pod 1 waits.
        let mut pods2 = pods.clone();
        pods2[0] = pod(0, "new", PodPhase::Pending, false);
        assert!(run_plan(3, &t, &pods2, &[]).delete.is_empty());
        // Pod 0 ready: pod 1 goes.
        pods2[0] = pod(0, "new", PodPhase::Running, true);
        assert_eq!(
            deleted(&run_plan(3, &t, &pods2, &[])),
            [("r-miner-1".to_owned(), DeleteReason::Rollout)]
        );
        // A missing replica blocks the rollout.
        let p = run_plan(3, &t, &pods2[1..], &[]);
        assert_eq!(p.create, [0]);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn outdated_pending_pod_is_replaced_when_others_are_ready() {
        let t = targets(2, "new");
        let pods = [
            pod(0, "new", PodPhase::Running, true),
            pod(1, "old", PodPhase::Pending, false),
        ];
        assert_eq!(
            deleted(&run_plan(2, &t, &pods, &[])),
            [("r-miner-1".to_owned(), DeleteReason::Rollout)]
        );
    }

    #[test]
    fn failure_is_counted_once_per_pod_uid() {
        let t = targets(2, "h");
        let mut failed = pod(1, "h", PodPhase::Failed, false);
        failed.failure = Some("exit code 1 (Error)".into());
        let pods = [pod(0, "h", PodPhase::Running, true), failed.clone()];
        let p = run_plan(2, &t, &pods, &[]);
        assert_eq!(p.failures.len(), 1);
        assert_eq!(p.failures[0].retry_in, Duration::from_secs(10));
        assert_eq!(
            deleted(&p),
            [("r-miner-1".to_owned(), DeleteReason::Exited)]
        );
        assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));
        let r1 = &p.replicas[1];
        assert_eq!((r1.restarts, r1.consecutive_failures), (1, 1));
        assert_eq!(r1.failed_pod_uid, failed.uid);

        // Same pod seen again (delete still in flight): no second count.
        let again = run_plan(2, &t, &pods, &p.replicas);
        assert!(again.failures.is_empty());
        assert_eq!(again.replicas[1].restarts, 1);
        assert_eq!(again.replicas[1].next_retry, r1.next_retry);
    }

    #[test]
    fn backoff_requeue_is_the_earliest_retry() {
        let t = targets(3, "h");
        let mut prev: Vec<ReplicaStatus> = (0..3)
            .map(|i| ReplicaStatus {
                index: i,
                ..Default::default()
            })
            .collect();
        prev[1].next_retry = Some(Time(
            now().checked_add(SignedDuration::from_secs(40)).unwrap(),
        ));
        prev[2].next_retry = Some(Time(
            now().checked_add(SignedDuration::from_secs(25)).unwrap(),
        ));
        let p = run_plan(3, &t, &[pod(0, "h", PodPhase::Running, true)], &prev);
        assert!(p.create.is_empty());
        assert_eq!(p.requeue_after, Some(Duration::from_secs(25)));
        assert_eq!(p.counts.failing, 2);
        assert!(
            p.replicas[1..]
                .iter()
                .all(|r| r.phase == ReplicaPhase::BackOff)
        );
    }

    #[test]
    fn suspend_deletes_everything_and_keeps_entries() {
        let prev = vec![ReplicaStatus {
            index: 0,
            restarts: 4,
            uid: Some(9),
            ..Default::default()
        }];
        let pods = [
            pod(0, "h", PodPhase::Running, true),
            pod(1, "h", PodPhase::Pending, false),
        ];
        let p = plan(&PlanInput {
            replicas: 2,
            suspend: true,
            targets: &[],
            pods: &pods,
            previous: &prev,
            now: now(),
            backoff: &BackoffPolicy::default(),
        });
        assert_eq!(p.delete.len(), 2);
        assert!(p.delete.iter().all(|d| d.reason == DeleteReason::Suspend));
        assert_eq!(p.replicas.len(), 2);
        assert_eq!((p.replicas[0].restarts, p.replicas[0].uid), (4, Some(9)));
        assert!(
            p.replicas
                .iter()
                .all(|r| r.phase == ReplicaPhase::Suspended)
        );
        assert_eq!(p.counts.existing, 0);
    }
}
