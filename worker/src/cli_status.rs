//! `worker status`: a neuron as the chain sees it — uid, stake, validator permit, last
//! weights set or committed, pending timelocked commits, and the bucket commitment (its
//! read secret is never printed).

use std::fmt;

use clap::Args;
use serde::Serialize;
use worker_chain::{AccountId, Chain, PendingCommit};
use worker_storage::BucketCredentials;

use crate::cli_common::{ChainArgs, HotkeyArgs, print_report};
use crate::error::Result;

/// Options of `worker status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub hotkey: HotkeyArgs,
}

/// The bucket a neuron published, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommitmentStatus {
    /// Bucket (R2 account id).
    pub bucket: Option<String>,
    /// Read access key id peers use.
    pub access_key_id: Option<String>,
    /// Raw commitment size in bytes.
    pub bytes: usize,
    /// Set when the commitment is not bucket credentials.
    pub unreadable: Option<String>,
}

/// Weight-setting standing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsStatus {
    /// Weights go through timelocked commits.
    pub commit_reveal: bool,
    /// `WeightsSetRateLimit`.
    pub rate_limit: u64,
    /// First block another update or commit is allowed.
    pub next_allowed_block: u64,
    /// Timelocked commits the chain has not revealed yet.
    pub pending_commits: Vec<PendingCommit>,
}

/// `worker status` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// Subnet.
    pub netuid: u16,
    /// Hotkey (SS58).
    pub hotkey: String,
    /// Block read at.
    pub block: u64,
    /// Uid, when registered.
    pub uid: Option<u16>,
    /// Stake in rao.
    pub stake: Option<u64>,
    /// Validator permit.
    pub validator_permit: Option<bool>,
    /// Share of miner emission in [0, 1].
    pub incentive: Option<f64>,
    /// Block of the last weights set or committed (or of registration).
    pub last_update: Option<u64>,
    /// Weight-setting standing (registered neurons only).
    pub weights: Option<WeightsStatus>,
    /// Published bucket.
    pub commitment: Option<CommitmentStatus>,
}

fn commitment_status(raw: &[u8]) -> CommitmentStatus {
    match BucketCredentials::parse(raw) {
        Ok(credentials) => CommitmentStatus {
            bucket: Some(credentials.account_id.clone()),
            access_key_id: Some(credentials.access_key_id.clone()),
            bytes: raw.len(),
            unreadable: None,
        },
        Err(err) => CommitmentStatus {
            bucket: None,
            access_key_id: None,
            bytes: raw.len(),
            unreadable: Some(err.to_string()),
        },
    }
}

/// Read the status of `hotkey` on `netuid`.
pub async fn status(chain: &dyn Chain, netuid: u16, hotkey: &AccountId) -> Result<StatusReport> {
    let metagraph = chain.metagraph(netuid).await?;
    let neuron = metagraph.by_hotkey(hotkey).cloned();
    let weights = match &neuron {
        Some(_) => {
            let context = chain.weights_context(netuid, hotkey).await?;
            Some(WeightsStatus {
                commit_reveal: context.policy.commit_reveal_enabled,
                rate_limit: context.policy.weights_rate_limit,
                next_allowed_block: context.next_allowed_block(),
                pending_commits: chain.pending_commits(netuid, hotkey).await?,
            })
        }
        None => None,
    };
    let commitment = chain
        .commitments(netuid)
        .await?
        .get(hotkey)
        .map(|raw| commitment_status(raw));
    Ok(StatusReport {
        netuid,
        hotkey: hotkey.to_string(),
        block: chain.current_block().await?,
        uid: neuron.as_ref().map(|n| n.uid),
        stake: neuron.as_ref().map(|n| n.stake),
        validator_permit: neuron.as_ref().map(|n| n.validator_permit),
        incentive: neuron.as_ref().map(|n| n.incentive),
        last_update: neuron.as_ref().map(|n| n.last_update),
        weights,
        commitment,
    })
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hotkey {} on netuid {} (block {})",
            self.hotkey, self.netuid, self.block
        )?;
        let Some(uid) = self.uid else {
            return write!(f, "  not registered");
        };
        writeln!(f, "  uid               {uid}")?;
        writeln!(
            f,
            "  stake             {:.9} ({} rao)",
            self.stake.unwrap_or(0) as f64 / 1e9,
            self.stake.unwrap_or(0)
        )?;
        writeln!(
            f,
            "  validator permit  {}",
            if self.validator_permit == Some(true) {
                "yes"
            } else {
                "no"
            }
        )?;
        writeln!(
            f,
            "  incentive         {:.6}",
            self.incentive.unwrap_or(0.0)
        )?;
        let last = self.last_update.unwrap_or(0);
        writeln!(
            f,
            "  last update       block {last} ({} blocks ago)",
            self.block.saturating_sub(last)
        )?;
        if let Some(w) = &self.weights {
            writeln!(
                f,
                "  weights           {}, rate limit {} blocks, next allowed at block {}",
                if w.commit_reveal {
                    "commit-reveal (timelocked)"
                } else {
                    "set directly"
                },
                w.rate_limit,
                w.next_allowed_block
            )?;
            if w.pending_commits.is_empty() {
                writeln!(f, "  pending commits   none")?;
            }
            for c in &w.pending_commits {
                writeln!(
                    f,
                    "  pending commit    block {} -> beacon round {} (epoch {}, {} bytes)",
                    c.commit_block, c.reveal_round, c.epoch, c.bytes
                )?;
            }
        }
        match &self.commitment {
            None => write!(f, "  bucket            no commitment"),
            Some(CommitmentStatus {
                bucket: Some(bucket),
                access_key_id: Some(key),
                ..
            }) => write!(
                f,
                "  bucket            {bucket} (read key {key}, secret hidden)"
            ),
            Some(c) => write!(
                f,
                "  bucket            {} bytes, not bucket credentials: {}",
                c.bytes,
                c.unreadable.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// `worker status`.
pub async fn run(args: &StatusArgs) -> Result<()> {
    let hotkey = args.hotkey.account(args.chain.password().as_ref())?;
    let chain = args.chain.connect().await?;
    let report = status(&chain, args.chain.netuid, &hotkey).await?;
    print_report(&report, args.chain.json)
}
