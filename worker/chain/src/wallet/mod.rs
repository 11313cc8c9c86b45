//! Bittensor wallets on disk: `ROOT/NAME/coldkey`, `ROOT/NAME/coldkeypub.txt`,
//! `ROOT/NAME/hotkeys/HOTKEY` (JSON, optionally `$NACL`-encrypted), as written by `btcli` /
//! the bittensor-wallet package.

mod keyfile;
mod keypair;
pub mod nacl;

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub use keyfile::{KeyfileData, KeyfileError};
pub use keypair::{KeyError, Keypair, verify};

use crate::account::AccountId;

/// Why a wallet key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is encrypted and no password was given.
    #[error("{0} is encrypted; a password is required")]
    PasswordRequired(PathBuf),
    /// Decryption failed.
    #[error("cannot decrypt {path}: {source}")]
    Decrypt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: nacl::NaclError,
    },
    /// Encrypted with a scheme other than `$NACL` (legacy Fernet / Ansible vault).
    #[error("{0} uses an unsupported encryption (only $NACL is supported)")]
    UnsupportedEncryption(PathBuf),
    /// The keyfile content is unusable.
    #[error("bad keyfile {path}: {source}")]
    Keyfile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KeyfileError,
    },
    /// The password source is unusable.
    #[error("password: {0}")]
    Password(String),
}

/// A keyfile password. Zeroed on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wrap a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(Zeroizing::new(password.into()))
    }

    /// Read from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, WalletError> {
        std::env::var(var)
            .map(Self::new)
            .map_err(|_| WalletError::Password(format!("environment variable {var} is not set")))
    }

    /// Read from a file (e.g. a mounted Kubernetes Secret); one trailing newline is removed.
    pub fn from_file(path: &Path) -> Result<Self, WalletError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| WalletError::Io {
                    path: path.to_owned(),
                    source,
                })?,
            );
        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        Ok(Self::new(trimmed))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Read a keyfile, decrypting `$NACL` files with `password`.
pub fn read_keyfile(path: &Path, password: Option<&Password>) -> Result<KeyfileData, WalletError> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(|source| WalletError::Io {
        path: path.to_owned(),
        source,
    })?);
    let keyfile_error = |source| WalletError::Keyfile {
        path: path.to_owned(),
        source,
    };
    if nacl::is_nacl_encrypted(&raw) {
        let password = password.ok_or_else(|| WalletError::PasswordRequired(path.to_owned()))?;
        let plain =
            nacl::decrypt(&raw, password.as_bytes()).map_err(|source| WalletError::Decrypt {
                path: path.to_owned(),
                source,
            })?;
        return KeyfileData::parse(&plain).map_err(keyfile_error);
    }
    if raw.starts_with(b"$ANSIBLE_VAULT") || raw.starts_with(b"gAAAAA") {
        return Err(WalletError::UnsupportedEncryption(path.to_owned()));
    }
    KeyfileData::parse(&raw).map_err(keyfile_error)
}

/// Load an sr25519 key pair from a keyfile.
pub fn load_keypair(path: &Path, password: Option<&Password>) -> Result<Keypair, WalletError> {
    read_keyfile(path, password)?
        .keypair()
        .map_err(|source| WalletError::Keyfile {
            path: path.to_owned(),
            source,
        })
}

/// A named wallet under a wallets root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    root: PathBuf,
    name: String,
}

impl Wallet {
    /// Wallet `name` under `root` (e.g. `~/.bittensor/wallets`).
    pub fn new(root: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            name: name.into(),
        }
    }

    /// `$BT_WALLET_PATH` if set, else `$HOME/.bittensor/wallets`.
    pub fn default_root() -> PathBuf {
        if let Some(path) = std::env::var_os("BT_WALLET_PATH") {
            return PathBuf::from(path);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".bittensor").join("wallets")
    }

    /// The wallet directory.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// Path of the coldkey file.
    pub fn coldkey_path(&self) -> PathBuf {
        self.dir().join("coldkey")
    }

    /// Path of the public coldkey file.
    pub fn coldkeypub_path(&self) -> PathBuf {
        self.dir().join("coldkeypub.txt")
    }

    /// Path of a hotkey file.
    pub fn hotkey_path(&self, hotkey: &str) -> PathBuf {
        self.dir().join("hotkeys").join(hotkey)
    }

    /// Load a hotkey (hotkeys are normally unencrypted; pass a password if it is not).
    pub fn hotkey(
        &self,
        hotkey: &str,
        password: Option<&Password>,
    ) -> Result<Keypair, WalletError> {
        load_keypair(&self.hotkey_path(hotkey), password)
    }

    /// Load the coldkey (normally `$NACL`-encrypted).
    pub fn coldkey(&self, password: Option<&Password>) -> Result<Keypair, WalletError> {
        load_keypair(&self.coldkey_path(), password)
    }

    /// The coldkey's public key from `coldkeypub.txt` (no password needed).
    pub fn coldkeypub(&self) -> Result<AccountId, WalletError> {
        let path = self.coldkeypub_path();
        read_keyfile(&path, None)?
            .account()
            .map_err(|source| WalletError::Keyfile { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let w = Wallet::new("/w", "miner");
        assert_eq!(w.coldkey_path(), PathBuf::from("/w/miner/coldkey"));
        assert_eq!(
            w.coldkeypub_path(),
            PathBuf::from("/w/miner/coldkeypub.txt")
        );
        assert_eq!(
            w.hotkey_path("default"),
            PathBuf::from("/w/miner/hotkeys/default")
        );
    }

    #[test]
    fn password_file_trims_one_newline_and_debug_redacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret \n").unwrap();
        let pw = Password::from_file(&path).unwrap();
        assert_eq!(pw.as_bytes(), b"s3cret ");
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
    }

    #[test]
    fn encrypted_file_without_password_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coldkey");
        std::fs::write(&path, b"$NACL0123456789012345678901234567890123456789").unwrap();
        assert!(matches!(
            load_keypair(&path, None),
            Err(WalletError::PasswordRequired(_))
        ));
    }
}
