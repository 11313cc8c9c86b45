//! Wallet files written by the `bittensor-wallet` PyPI package (the repo's .venv, see
//! scripts/setup.sh) load to the same keys: plain hotkey JSON, `$NACL`-encrypted coldkey
//! (Argon2i + XSalsa20-Poly1305) and `coldkeypub.txt`; signatures verify in both directions.

use std::path::PathBuf;
use std::process::Command;

use worker_chain::wallet::{Password, Wallet, WalletError};
use worker_chain::{AccountId, verify};

const COLD_PHRASE: &str =
    "legal winner thank year wave sausage worth useful legal winner thank yellow";
const HOT_PHRASE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const PASSWORD: &str = "correct horse battery staple 9!";

const GENERATE: &str = r#"
import sys
from bittensor_wallet import Wallet, Keypair
path, cold, hot, password = sys.argv[1:5]
w = Wallet(name="test", hotkey="miner", path=path)
w.regenerate_coldkey(mnemonic=cold, use_password=True, overwrite=True, suppress=True,
                     coldkey_password=password)
w.regenerate_hotkey(mnemonic=hot, use_password=False, overwrite=True, suppress=True)
print(w.coldkeypub.ss58_address)
print(w.hotkey.ss58_address)
print(w.hotkey.sign(b"gradient digest").hex())
# Verify a signature made by Rust, passed back on stdin.
line = sys.stdin.readline().strip()
if line:
    sig = bytes.fromhex(line)
    print("rust-signature-valid" if Keypair(ss58_address=w.hotkey.ss58_address).verify(b"from rust", sig) else "rust-signature-invalid")
"#;

fn python() -> PathBuf {
    std::env::var_os("WORKER_CHAIN_PYTHON").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.venv/bin/python3"
            ))
        },
        PathBuf::from,
    )
}

/// Run the generator; `rust_signature` (hex) is checked by Python.
fn generate(dir: &std::path::Path, rust_signature: &str) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", GENERATE])
        .arg(dir)
        .args([COLD_PHRASE, HOT_PHRASE, PASSWORD])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run .venv python with bittensor-wallet (scripts/setup.sh installs it)");
    writeln!(child.stdin.take().unwrap(), "{rust_signature}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Encrypting"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn bittensor_wallet_files_load_to_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    // The Rust side signs with a key derived from the same phrase the Python side writes.
    let rust_hot = worker_chain::Keypair::from_phrase(HOT_PHRASE, None).unwrap();
    let rust_sig = hex::encode(rust_hot.sign(b"from rust"));
    let lines = generate(dir.path(), &rust_sig);
    let [cold_ss58, hot_ss58, py_sig, rust_check] = &lines[..] else {
        panic!("unexpected python output: {lines:?}");
    };
    assert_eq!(rust_check, "rust-signature-valid");

    let wallet = Wallet::new(dir.path(), "test");

    let hotkey = wallet.hotkey("miner", None).unwrap();
    assert_eq!(&hotkey.ss58_address(), hot_ss58);
    let sig: [u8; 64] = hex::decode(py_sig).unwrap().try_into().unwrap();
    assert!(verify(&hotkey.public_key(), b"gradient digest", &sig));

    assert_eq!(&wallet.coldkeypub().unwrap().to_ss58(), cold_ss58);

    // The coldkey is $NACL-encrypted: no password / wrong password / right password.
    assert!(matches!(
        wallet.coldkey(None),
        Err(WalletError::PasswordRequired(_))
    ));
    let coldkey = wallet.coldkey(Some(&Password::new(PASSWORD))).unwrap();
    assert_eq!(&coldkey.ss58_address(), cold_ss58);
    assert_eq!(
        coldkey.account_id(),
        cold_ss58.parse::<AccountId>().unwrap()
    );
    // (A wrong password is covered by the unit tests with cheap KDF parameters; each
    // bittensor-strength Argon2i run costs seconds.)
}
