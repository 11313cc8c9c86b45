//! What a running node knows about its own health, fed by the role loops (through
//! [`crate::role_events`]) and read by the health server and the pod reporter.
//!
//! The verdicts are pure functions of a [`HealthState`] and the time asked about, so they
//! are tested with a fake clock:
//! * readiness: the chain answers, the replica is in sync with the run, and a window was
//!   completed (or the node caught up) within [`READY_WINDOWS`] windows plus the grace
//!   period;
//! * liveness: a window was completed within [`LIVE_WINDOWS`] windows plus the grace
//!   period; before the first one the node has [`STARTUP_ALLOWANCE`] (connecting, loading
//!   the dataset, catching up).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Windows without a completed window (or a catch-up) after which a node is not ready.
pub const READY_WINDOWS: u32 = 2;
/// Windows without a completed window after which a node is not live.
pub const LIVE_WINDOWS: u32 = 6;
/// How long a node may take to complete its first window before it is not live.
pub const STARTUP_ALLOWANCE: Duration = Duration::from_secs(30 * 60);

/// The role a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Miner,
    Validator,
}

impl NodeRole {
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Miner => "miner",
            NodeRole::Validator => "validator",
        }
    }
}

/// What a role loop says when it starts working.
#[derive(Debug, Clone, Copy)]
pub struct RoleStarted {
    pub role: NodeRole,
    pub uid: u16,
    /// Nominal length of a window.
    pub window: Duration,
    /// The run's grace period after a window closes (its upload deadline).
    pub grace: Duration,
}

/// Everything the verdicts depend on.
#[derive(Debug, Clone)]
pub struct HealthState {
    /// When the process started.
    pub started_at: Instant,
    /// Set once the role loop started.
    pub role: Option<RoleStarted>,
    /// The last window this node completed, when it completed it, and its score then.
    pub last_window: Option<u64>,
    pub last_progress_at: Option<Instant>,
    pub last_score: Option<f64>,
    /// Whether the last chain request answered.
    pub chain_reachable: bool,
    /// Whether the replica holds every window up to the previous one.
    pub in_sync: bool,
    /// When the node last became in sync (a catch-up finished).
    pub synced_at: Option<Instant>,
}

/// A health verdict with the reason an operator reads in the probe's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: String,
}

impl Verdict {
    fn pass(reason: String) -> Self {
        Self { ok: true, reason }
    }

    fn fail(reason: String) -> Self {
        Self { ok: false, reason }
    }
}

impl HealthState {
    /// A node that started at `started_at` and has reported nothing yet.
    pub fn new(started_at: Instant) -> Self {
        Self {
            started_at,
            role: None,
            last_window: None,
            last_progress_at: None,
            last_score: None,
            chain_reachable: false,
            in_sync: false,
            synced_at: None,
        }
    }

    /// `windows` windows plus the grace period (zero before the role started).
    fn windows_and_grace(&self, windows: u32) -> Duration {
        self.role.map_or(Duration::ZERO, |r| {
            r.window.saturating_mul(windows).saturating_add(r.grace)
        })
    }

    /// Ready: chain reachable, in sync, and a window completed (or a catch-up finished)
    /// within [`READY_WINDOWS`] windows plus the grace period before `now`.
    pub fn readiness(&self, now: Instant) -> Verdict {
        let Some(role) = self.role else {
            return Verdict::fail("the role loop has not started yet".into());
        };
        if !self.chain_reachable {
            return Verdict::fail("the chain does not answer".into());
        }
        if !self.in_sync {
            return Verdict::fail("catching up with the run".into());
        }
        let limit = self.windows_and_grace(READY_WINDOWS);
        let reference = match (self.last_progress_at, self.synced_at) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(at) => at,
                None => return Verdict::fail("not in sync yet".into()),
            },
        };
        let idle = now.saturating_duration_since(reference);
        if idle > limit {
            return Verdict::fail(format!(
                "no window completed for {}s (limit {}s)",
                idle.as_secs(),
                limit.as_secs()
            ));
        }
        Verdict::pass(match self.last_window {
            Some(window) => format!(
                "ready: {} uid {}, last window {window}",
                role.role.name(),
                role.uid
            ),
            None => format!("ready: {} uid {}, in sync", role.role.name(), role.uid),
        })
    }

    /// Live: a window completed within [`LIVE_WINDOWS`] windows plus the grace period before
    /// `now`; before the first one, within [`STARTUP_ALLOWANCE`] (or those windows, when
    /// longer) of the start.
    pub fn liveness(&self, now: Instant) -> Verdict {
        let limit = self.windows_and_grace(LIVE_WINDOWS);
        match self.last_progress_at {
            Some(at) => {
                let idle = now.saturating_duration_since(at);
                if idle > limit {
                    Verdict::fail(format!(
                        "no window completed for {}s (limit {}s)",
                        idle.as_secs(),
                        limit.as_secs()
                    ))
                } else {
                    Verdict::pass(format!(
                        "live: last window {}",
                        self.last_window.unwrap_or_default()
                    ))
                }
            }
            None => {
                let limit = limit.max(STARTUP_ALLOWANCE);
                let up = now.saturating_duration_since(self.started_at);
                if up > limit {
                    Verdict::fail(format!(
                        "no window completed {}s after the start (limit {}s)",
                        up.as_secs(),
                        limit.as_secs()
                    ))
                } else {
                    Verdict::pass(format!("live: starting ({}s)", up.as_secs()))
                }
            }
        }
    }
}

/// The shared, updatable health of a node.
#[derive(Debug)]
pub struct NodeHealth {
    state: Mutex<HealthState>,
}

impl NodeHealth {
    /// A node that started at `started_at`.
    pub fn new(started_at: Instant) -> Self {
        Self {
            state: Mutex::new(HealthState::new(started_at)),
        }
    }

    fn update(&self, change: impl FnOnce(&mut HealthState)) {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> HealthState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn role_started(&self, started: RoleStarted) {
        self.update(|s| s.role = Some(started));
    }

    pub fn chain_reachable(&self, reachable: bool) {
        self.update(|s| s.chain_reachable = reachable);
    }

    /// Records whether the node is in sync; becoming in sync at `now` counts for readiness.
    pub fn synced(&self, in_sync: bool, now: Instant) {
        self.update(|s| {
            if in_sync && !s.in_sync {
                s.synced_at = Some(now);
            }
            s.in_sync = in_sync;
        });
    }

    /// Records `window` completed at `now` with this node's `score` then (a completed
    /// window also means the chain answered and the node was in sync).
    pub fn window_completed(&self, window: u64, score: Option<f64>, now: Instant) {
        self.update(|s| {
            s.last_window = Some(window);
            s.last_progress_at = Some(now);
            s.last_score = score.filter(|v| v.is_finite());
            s.chain_reachable = true;
            if !s.in_sync {
                s.synced_at = Some(now);
            }
            s.in_sync = true;
        });
    }

    pub fn readiness(&self, now: Instant) -> Verdict {
        self.snapshot().readiness(now)
    }

    pub fn liveness(&self, now: Instant) -> Verdict {
        self.snapshot().liveness(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(15);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn started(t0: Instant) -> NodeHealth {
        let health = NodeHealth::new(t0);
        health.role_started(RoleStarted {
            role: NodeRole::Miner,
            uid: 3,
            window: WINDOW,
            grace: GRACE,
        });
        health
    }

    #[test]
    fn a_node_is_not_ready_before_its_role_starts_and_until_chain_and_sync_say_so() {
        let t0 = Instant::now();
        let health = NodeHealth::new(t0);
        let verdict = health.readiness(t0 + secs(1));
        assert!(!verdict.ok);
        assert!(verdict.reason.contains("not started"), "{verdict:?}");

        let health = started(t0);
        assert!(health.readiness(t0 + secs(1)).reason.contains("chain"));
        health.chain_reachable(true);
        assert!(
            health
                .readiness(t0 + secs(1))
                .reason
                .contains("catching up")
        );
        health.synced(true, t0 + secs(2));
        assert!(health.readiness(t0 + secs(3)).ok);
        // Two windows plus the grace after catching up, nothing completed: not ready.
        assert!(health.readiness(t0 + secs(2) + WINDOW * 2 + GRACE).ok);
        let late = health.readiness(t0 + secs(3) + WINDOW * 2 + GRACE);
        assert!(!late.ok);
        assert!(late.reason.contains("no window completed"), "{late:?}");
    }

    #[test]
    fn readiness_follows_completed_windows_and_drops_with_the_chain_or_the_sync() {
        let t0 = Instant::now();
        let health = started(t0);
        health.chain_reachable(true);
        health.synced(true, t0);
        let done = t0 + secs(600);
        health.window_completed(7, Some(0.25), done);
        let verdict = health.readiness(done + WINDOW);
        assert!(verdict.ok);
        assert!(verdict.reason.contains("last window 7"), "{verdict:?}");
        assert!(health.readiness(done + WINDOW * 2 + GRACE).ok);
        assert!(!health.readiness(done + WINDOW * 2 + GRACE + secs(1)).ok);

        health.chain_reachable(false);
        assert!(!health.readiness(done + secs(1)).ok);
        health.chain_reachable(true);
        health.synced(false, done + secs(2));
        assert!(!health.readiness(done + secs(3)).ok);
        // Caught up again: ready for two more windows even before the next completes.
        health.synced(true, done + WINDOW * 3);
        assert!(health.readiness(done + WINDOW * 4).ok);
        // Re-reporting "in sync" does not move the reference.
        health.synced(true, done + WINDOW * 5);
        assert!(!health.readiness(done + WINDOW * 6).ok);
    }

    #[test]
    fn liveness_allows_thirty_minutes_before_the_first_window_then_six_windows() {
        let t0 = Instant::now();
        // Connecting: no role yet, still live within the start-up allowance.
        let health = NodeHealth::new(t0);
        assert!(health.liveness(t0 + secs(60)).ok);
        assert!(health.liveness(t0 + STARTUP_ALLOWANCE).ok);
        let stuck = health.liveness(t0 + STARTUP_ALLOWANCE + secs(1));
        assert!(!stuck.ok);
        assert!(stuck.reason.contains("after the start"), "{stuck:?}");

        let health = started(t0);
        let done = t0 + secs(1200);
        health.window_completed(0, None, done);
        assert!(health.liveness(done + WINDOW * 6 + GRACE).ok);
        let dead = health.liveness(done + WINDOW * 6 + GRACE + secs(1));
        assert!(!dead.ok);
        assert!(dead.reason.contains("no window completed"), "{dead:?}");
        // Progress revives it.
        health.window_completed(1, None, done + WINDOW * 7);
        assert!(health.liveness(done + WINDOW * 8).ok);
    }

    #[test]
    fn long_windows_extend_the_start_up_allowance() {
        let t0 = Instant::now();
        let health = NodeHealth::new(t0);
        health.role_started(RoleStarted {
            role: NodeRole::Validator,
            uid: 0,
            window: secs(600),
            grace: secs(60),
        });
        // Six ten-minute windows plus the grace exceed thirty minutes.
        assert!(health.liveness(t0 + secs(3660)).ok);
        assert!(!health.liveness(t0 + secs(3661)).ok);
    }

    #[test]
    fn a_completed_window_records_its_score_and_implies_chain_and_sync() {
        let t0 = Instant::now();
        let health = started(t0);
        health.window_completed(4, Some(0.5), t0 + secs(5));
        let state = health.snapshot();
        assert_eq!(state.last_window, Some(4));
        assert_eq!(state.last_score, Some(0.5));
        assert!(state.chain_reachable && state.in_sync);
        assert!(health.readiness(t0 + secs(6)).ok);
        // A score that is not a number is not reported.
        health.window_completed(5, Some(f64::NAN), t0 + secs(7));
        assert_eq!(health.snapshot().last_score, None);
    }
}
