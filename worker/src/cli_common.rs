//! What the operator commands (`worker register`, `worker status`, `worker weights`) share:
//! chain and hotkey options, connecting, and printing a report as text or JSON.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use worker_chain::wallet::load_keypair;
use worker_chain::{AccountId, Network, Password, SubxtChain, SubxtChainConfig};

use crate::error::{NodeError, Result};

/// The chain and subnet a command talks to.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// Subnet id.
    #[arg(long, env = "NETUID")]
    pub netuid: u16,
    /// finney, test, local or a ws(s):// URL.
    #[arg(long, env = "CHAIN_ENDPOINT", default_value = "finney")]
    pub chain_endpoint: Network,
    /// Environment variable holding the password of encrypted ($NACL) key files.
    #[arg(long, env = "WALLET_PASSWORD_ENV", default_value = "WALLET_PASSWORD")]
    pub wallet_password_env: String,
    /// Print the report as JSON (one object on stdout).
    #[arg(long)]
    pub json: bool,
}

impl ChainArgs {
    /// Connect to the node (reconnecting client; incompatible runtimes are logged).
    pub async fn connect(&self) -> Result<SubxtChain> {
        Ok(SubxtChain::connect(SubxtChainConfig::new(self.chain_endpoint.clone())).await?)
    }

    /// The wallet password, if its variable is set.
    pub fn password(&self) -> Option<Password> {
        Password::from_env(&self.wallet_password_env).ok()
    }
}

/// A hotkey given as a wallet key file or as its SS58 address.
#[derive(Debug, Clone, Args)]
pub struct HotkeyArgs {
    /// Hotkey file (bittensor wallet layout).
    #[arg(long, env = "HOTKEY_FILE", required_unless_present = "hotkey")]
    pub hotkey_file: Option<PathBuf>,
    /// Hotkey SS58 address (instead of the file).
    #[arg(long, env = "HOTKEY_ADDRESS", conflicts_with = "hotkey_file")]
    pub hotkey: Option<AccountId>,
}

impl HotkeyArgs {
    /// The hotkey's account (only the public part is read from a file).
    pub fn account(&self, password: Option<&Password>) -> Result<AccountId> {
        match (&self.hotkey, &self.hotkey_file) {
            (Some(account), _) => Ok(*account),
            (None, Some(file)) => Ok(load_keypair(file, password)?.account_id()),
            (None, None) => Err(NodeError::Config(
                "pass --hotkey-file (HOTKEY_FILE) or --hotkey (HOTKEY_ADDRESS)".into(),
            )),
        }
    }
}

/// Print `report` as pretty JSON or as its text rendering.
pub fn print_report<T: Serialize + std::fmt::Display>(report: &T, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
