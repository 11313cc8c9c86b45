//! `worker weights`: what this validator would set now — the Gauntlet's weights from its
//! persisted state, as `u16` values, checked against the subnet's rules the way
//! `Chain::submit_weights` checks them, with the reveal round when commit-reveal is on.
//! Nothing is submitted.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use worker_chain::{AccountId, Chain, ChainError, WeightsError, WeightsPlan, plan_weights};
use worker_gauntlet::{Gauntlet, GauntletConfig};

use crate::cli_common::{ChainArgs, HotkeyArgs, print_report};
use crate::error::{NodeError, Result};

/// Options of `worker weights`.
#[derive(Debug, Clone, Args)]
pub struct WeightsArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub hotkey: HotkeyArgs,
    /// The validator's Gauntlet state (default: CHECKPOINT_DIR/gauntlet.json).
    #[arg(long, env = "GAUNTLET_STATE")]
    pub state: Option<PathBuf>,
    /// The validator's checkpoint directory.
    #[arg(long, env = "CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Version key the validator sends.
    #[arg(long, env = "WEIGHTS_VERSION_KEY", default_value_t = 0)]
    pub version_key: u64,
    /// Moving-average factor of the assigned-vs-random indicator (as the validator runs).
    #[arg(long, env = "BINARY_SCORE_ALPHA")]
    pub binary_score_alpha: Option<f64>,
    /// Steps behind at which the sync score reaches 0 (as the validator runs).
    #[arg(long, env = "SYNC_MAX_STEPS_BEHIND")]
    pub sync_max_steps_behind: Option<f64>,
}

impl WeightsArgs {
    fn state_path(&self) -> Result<PathBuf> {
        match (&self.state, &self.checkpoint_dir) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(dir)) => Ok(dir.join("gauntlet.json")),
            (None, None) => Err(NodeError::Config(
                "pass --state (GAUNTLET_STATE) or --checkpoint-dir (CHECKPOINT_DIR)".into(),
            )),
        }
    }

    fn gauntlet_config(&self) -> GauntletConfig {
        let defaults = GauntletConfig::default();
        GauntletConfig {
            binary_ma_alpha: self.binary_score_alpha.unwrap_or(defaults.binary_ma_alpha),
            sync_max_steps_behind: self
                .sync_max_steps_behind
                .unwrap_or(defaults.sync_max_steps_behind),
            ..defaults
        }
    }
}

/// The Gauntlet's current weights from a persisted state (`gauntlet.json`).
pub fn gauntlet_weights(config: GauntletConfig, state_json: &str) -> Result<Vec<(u16, f32)>> {
    Ok(Gauntlet::from_json(config, state_json)?.weights())
}

/// One uid's weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightRow {
    /// Destination uid.
    pub uid: u16,
    /// The Gauntlet's weight (sums to 1).
    pub weight: f32,
    /// The `u16` sent (absent when it rounds to 0 and is dropped).
    pub value: Option<u16>,
}

/// `worker weights` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsReport {
    /// Subnet.
    pub netuid: u16,
    /// Validator hotkey (SS58).
    pub hotkey: String,
    /// Every uid the Gauntlet knows.
    pub rows: Vec<WeightRow>,
    /// The dry run (absent when every weight is 0: nothing would be sent).
    pub plan: Option<WeightsPlan>,
}

/// Plan `weights` for `hotkey` without submitting them.
pub async fn weights_report(
    chain: &dyn Chain,
    netuid: u16,
    hotkey: &AccountId,
    weights: &[(u16, f32)],
    version_key: u64,
) -> Result<WeightsReport> {
    let (uids, values): (Vec<u16>, Vec<f32>) = weights.iter().copied().unzip();
    let plan = match plan_weights(chain, netuid, hotkey, &uids, &values, version_key).await {
        Ok(plan) => Some(plan),
        Err(ChainError::InvalidWeights(WeightsError::AllZero)) => None,
        Err(err) => return Err(err.into()),
    };
    let value_of = |uid: u16| {
        let plan = plan.as_ref()?;
        let i = plan.weights.uids.iter().position(|&u| u == uid)?;
        plan.weights.values.get(i).copied()
    };
    let mut rows: Vec<WeightRow> = weights
        .iter()
        .map(|&(uid, weight)| WeightRow {
            uid,
            weight,
            value: value_of(uid),
        })
        .collect();
    rows.sort_by_key(|r| r.uid);
    Ok(WeightsReport {
        netuid,
        hotkey: hotkey.to_string(),
        rows,
        plan,
    })
}

impl fmt::Display for WeightsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "validator {} on netuid {}: {} uids",
            self.hotkey,
            self.netuid,
            self.rows.len()
        )?;
        let Some(plan) = &self.plan else {
            return write!(f, "  every weight is 0: nothing would be set");
        };
        let total: f64 = plan.weights.values.iter().map(|&v| f64::from(v)).sum();
        writeln!(
            f,
            "  {:>5}  {:>8}  {:>6}  {:>7}",
            "uid", "weight", "u16", "share"
        )?;
        for row in &self.rows {
            match row.value {
                Some(value) => writeln!(
                    f,
                    "  {:>5}  {:>8.4}  {:>6}  {:>6.2}%",
                    row.uid,
                    row.weight,
                    value,
                    100.0 * f64::from(value) / total
                )?,
                None => writeln!(
                    f,
                    "  {:>5}  {:>8.4}  {:>6}  {:>7}",
                    row.uid, row.weight, "-", "-"
                )?,
            }
        }
        let policy = &plan.context.policy;
        match &plan.reveal {
            Some(reveal) => writeln!(
                f,
                "  commit-reveal on: timelocked to beacon round {}, revealed from block {} \
                 (reveal period {} epochs of {} blocks)",
                reveal.reveal_round,
                reveal.first_reveal_block,
                policy.reveal_period_epochs,
                u32::from(policy.tempo) + 1
            )?,
            None => writeln!(f, "  commit-reveal off: set_weights")?,
        }
        writeln!(
            f,
            "  rules: MinAllowedWeights {}, MaxWeightsLimit {}, WeightsVersionKey {}, rate limit {} \
             blocks (last update {}, next allowed {})",
            policy.min_allowed_weights,
            policy.max_weight_limit,
            policy.weights_version_key,
            policy.weights_rate_limit,
            plan.context.last_update,
            plan.context.next_allowed_block()
        )?;
        match (&plan.refusal, plan.refusal_class) {
            (None, _) => write!(f, "  the chain would accept these weights now"),
            (Some(reason), Some(class)) => {
                write!(f, "  the chain would refuse them now ({class}): {reason}")
            }
            (Some(reason), None) => write!(f, "  the chain would refuse them now: {reason}"),
        }
    }
}

/// `worker weights`.
pub async fn run(args: &WeightsArgs) -> Result<()> {
    let hotkey = args.hotkey.account(args.chain.password().as_ref())?;
    let path = args.state_path()?;
    let json = std::fs::read_to_string(&path)
        .map_err(|e| NodeError::Config(format!("reading {}: {e}", path.display())))?;
    let weights = gauntlet_weights(args.gauntlet_config(), &json)?;
    let chain = args.chain.connect().await?;
    let report = weights_report(
        &chain,
        args.chain.netuid,
        &hotkey,
        &weights,
        args.version_key,
    )
    .await?;
    print_report(&report, args.chain.json)
}
