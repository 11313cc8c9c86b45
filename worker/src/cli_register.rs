//! `worker register`: burn-register a hotkey on a subnet with its coldkey, once. Already
//! registered is success (the command is safe to re-run, e.g. as a Kubernetes Job).

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use worker_chain::wallet::load_keypair;
use worker_chain::{AccountId, Chain, ChainError, Keypair};

use crate::cli_common::{ChainArgs, HotkeyArgs, print_report};
use crate::error::{NodeError, Result};
use run_manifest::deployment::REGISTER_PERMANENT_FAILURE_EXIT_CODE;
use worker_chain::ErrorClass;

/// Options of `worker register`.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub hotkey: HotkeyArgs,
    /// Coldkey file: pays the burn and signs the registration.
    #[arg(long, env = "COLDKEY_FILE")]
    pub coldkey_file: PathBuf,
}

/// Outcome of a registration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisterReport {
    /// Subnet.
    pub netuid: u16,
    /// Registered hotkey (SS58).
    pub hotkey: String,
    /// Paying coldkey (SS58).
    pub coldkey: String,
    /// The hotkey's uid.
    pub uid: u16,
    /// False when it was registered already (nothing was burned).
    pub newly_registered: bool,
}

impl fmt::Display for RegisterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.newly_registered {
            write!(
                f,
                "registered hotkey {} on netuid {} as uid {} (burn paid by coldkey {})",
                self.hotkey, self.netuid, self.uid, self.coldkey
            )
        } else {
            write!(
                f,
                "hotkey {} is already registered on netuid {} as uid {}; nothing to do",
                self.hotkey, self.netuid, self.uid
            )
        }
    }
}

/// Register `hotkey` by burning, signed by `coldkey`; an existing registration is reported,
/// not an error.
pub async fn register(
    chain: &dyn Chain,
    netuid: u16,
    coldkey: &Keypair,
    hotkey: &AccountId,
) -> Result<RegisterReport> {
    let (uid, newly_registered) = match chain.burned_register(netuid, coldkey, hotkey).await {
        Ok(uid) => (uid, true),
        Err(ChainError::AlreadyRegistered { uid, .. }) => (uid, false),
        Err(err) => return Err(err.into()),
    };
    Ok(RegisterReport {
        netuid,
        hotkey: hotkey.to_string(),
        coldkey: coldkey.ss58_address(),
        uid,
        newly_registered,
    })
}

/// The process exit code for a failed `worker register`: 1 when the same call can succeed
/// later (the chain was unreachable or busy), [`REGISTER_PERMANENT_FAILURE_EXIT_CODE`] when
/// it cannot without a change by the user (refused by the chain, unreadable wallet, bad input).
pub fn failure_exit_code(err: &NodeError) -> i32 {
    match err {
        NodeError::Chain(chain) if chain.class() == ErrorClass::Retryable => 1,
        _ => REGISTER_PERMANENT_FAILURE_EXIT_CODE,
    }
}

/// `worker register`.
pub async fn run(args: &RegisterArgs) -> Result<()> {
    let password = args.chain.password();
    let hotkey = args.hotkey.account(password.as_ref())?;
    let coldkey = load_keypair(&args.coldkey_file, password.as_ref())?;
    let chain = args.chain.connect().await?;
    let report = register(&chain, args.chain.netuid, &coldkey, &hotkey).await?;
    print_report(&report, args.chain.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_chain_failures_are_worth_a_retry() {
        let unreachable = NodeError::Chain(ChainError::Rpc("connection refused".into()));
        assert_eq!(failure_exit_code(&unreachable), 1);
        let full = NodeError::Chain(ChainError::SubnetFull {
            netuid: 3,
            capacity: 256,
        });
        assert_eq!(
            failure_exit_code(&full),
            REGISTER_PERMANENT_FAILURE_EXIT_CODE
        );
        let config = NodeError::Config("no coldkey".into());
        assert_eq!(
            failure_exit_code(&config),
            REGISTER_PERMANENT_FAILURE_EXIT_CODE
        );
    }
}
