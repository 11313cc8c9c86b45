//! What the I/O layer reports about one peer in one window, and the penalties
//! that follow from it.

use serde::{Deserialize, Serialize};

/// The result of trying to evaluate one peer's gradient for one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerOutcome {
    /// The peer's uid on the subnet.
    pub uid: u16,
    /// What happened.
    pub outcome: Outcome,
}

impl PeerOutcome {
    /// Shorthand constructor.
    pub fn new(uid: u16, outcome: Outcome) -> Self {
        Self { uid, outcome }
    }
}

/// What happened when the validator evaluated a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// The gradient was downloaded, validated and applied to the model.
    Evaluated {
        /// Loss on the peer's assigned data before applying its update.
        loss_before_assigned: f64,
        /// Loss on the peer's assigned data after applying its update.
        loss_after_assigned: f64,
        /// Loss on random data before applying the update.
        loss_before_random: f64,
        /// Loss on random data after applying the update.
        loss_after_random: f64,
        /// How many outer steps the peer's published parameter sample lags behind.
        steps_behind: f64,
        /// Whether the gradient's digest matched the one the peer committed to.
        digest_ok: bool,
    },
    /// No gradient was uploaded for the window.
    Missing,
    /// The gradient was uploaded after the window's deadline.
    Late,
    /// The gradient failed validation (bounds, k, NaN, quantisation, shapes...).
    Invalid {
        /// Human-readable reason, for logs.
        reason: String,
    },
    /// The gradient's signature did not verify against the peer's hotkey.
    BadSignature,
    /// The gradient was flagged as a copy of another peer's (see `detect_copies`).
    Copy {
        /// The peer that was copied.
        of: u16,
    },
}

/// Why a peer was penalised in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyKind {
    /// No gradient uploaded.
    Missing,
    /// Gradient uploaded after the deadline.
    Late,
    /// Gradient failed validation.
    Invalid,
    /// Gradient signature did not verify.
    BadSignature,
    /// Evaluated gradient did not match the committed digest.
    DigestMismatch,
    /// Applying the gradient raised the loss beyond `poison_loss_increase`, or
    /// made it non-finite.
    Poison,
    /// Gradient copied from another peer.
    Copy,
}

/// How hard a penalty hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Plausibly an honest failure (network, slow hardware): moving average
    /// pushed down, last place in the rating update, score zeroed briefly.
    Soft,
    /// Cheating or a broken miner: additionally a strike, the moving average
    /// clamped to at most 0, and a long zeroed period.
    Hard,
}

impl PenaltyKind {
    /// The severity class of this penalty.
    pub fn severity(self) -> Severity {
        match self {
            PenaltyKind::Missing | PenaltyKind::Late => Severity::Soft,
            PenaltyKind::Invalid
            | PenaltyKind::BadSignature
            | PenaltyKind::DigestMismatch
            | PenaltyKind::Poison
            | PenaltyKind::Copy => Severity::Hard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_is_tagged() {
        let o = PeerOutcome::new(7, Outcome::Copy { of: 3 });
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"{"uid":7,"outcome":{"kind":"copy","of":3}}"#);
        assert_eq!(serde_json::from_str::<PeerOutcome>(&json).unwrap(), o);
    }

    #[test]
    fn only_missing_and_late_are_soft() {
        assert_eq!(PenaltyKind::Missing.severity(), Severity::Soft);
        assert_eq!(PenaltyKind::Late.severity(), Severity::Soft);
        for k in [
            PenaltyKind::Invalid,
            PenaltyKind::BadSignature,
            PenaltyKind::DigestMismatch,
            PenaltyKind::Poison,
            PenaltyKind::Copy,
        ] {
            assert_eq!(k.severity(), Severity::Hard);
        }
    }
}
