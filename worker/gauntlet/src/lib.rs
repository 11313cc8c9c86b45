//! Gauntlet validator scoring core.
//!
//! Pure decision logic of the Gauntlet validator, free of any I/O: the layer
//! that downloads gradients and evaluates losses hands this crate one
//! [`PeerOutcome`] per evaluated peer and window, and reads back
//! chain weights ([`Gauntlet::weights`]) and the next aggregation peer list
//! ([`Gauntlet::peer_list`]).
//!
//! Scoring per window (see `README.md` for the full rules):
//! - `gradient_score` = relative loss improvement on random data,
//! - assignment evidence = a shrunk t statistic of the peer's assignment advantages
//!   (assigned-data improvement minus random-data improvement, over the window's median
//!   random-data improvement), mapped to a factor in [0, 1] and cut when the advantage
//!   stays well below the window's median positive advantage; the binary indicator (+1 if
//!   the assigned improvement beats the random one, else -1) is kept as a moving average
//!   for reports,
//! - sync score = `(1 - min(steps_behind, 3) / 3) ^ 2.5`,
//! - OpenSkill Plackett-Luce rating over the window's peers ranked by
//!   gradient score,
//! - final score = shifted ordinal x assignment factor x sync score,
//! - penalties for missing, late, invalid, unsigned, mismatched, poisoned or
//!   copied gradients, consistent non-improvement and inactivity.

mod assignment_evidence;
mod config;
mod copy_detection;
mod error;
mod gauntlet;
mod metrics;
mod openskill;
mod outcome;
mod peer_list;
mod peer_state;
mod rng;
mod sampling;
mod weights;

pub use assignment_evidence::{
    AssignmentEvidence, EvidenceRules, assignment_advantage, cohort_scale, window_scale,
};
pub use config::{GauntletConfig, OpenSkillConfig};
pub use copy_detection::{
    CopyFlag, Fingerprint, apply_copy_flags, detect_copies, detect_copies_with, fingerprint_entry,
    overlap_fraction,
};
pub use error::GauntletError;
pub use gauntlet::{Gauntlet, GauntletState, PeerReport, STATE_SCHEMA_VERSION, WindowReport};
pub use metrics::{binary_indicator, relative_improvement, sync_score, update_moving_average};
pub use openskill::{Rating, rate_plackett_luce};
pub use outcome::{Outcome, PeerOutcome, PenaltyKind, Severity};
pub use peer_list::{PEER_LIST_SCHEMA_VERSION, PeerList};
pub use peer_state::{PeerState, PenaltyRecord, ScoreRecord};
pub use weights::normalise_weights;
