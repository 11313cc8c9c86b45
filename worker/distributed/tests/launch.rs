//! Rank 0 (this test process) spawns ranks 1..N of its own binary through `launch::Ranks`,
//! they form a Gloo group with it, and a rank that dies is reported and fails rank 0's
//! collectives within the timeout.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use tch::Tensor;
use worker_distributed::launch::{LaunchError, RankSpec, Ranks};
use worker_distributed::{DistributedError, ProcessGroup, ReduceOp, Store};

const TIMEOUT: Duration = Duration::from_secs(5);

fn rank_args(body: &str) -> Vec<OsString> {
    [
        body,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

fn join(rank: usize, world: usize, store: &std::path::Path) -> ProcessGroup {
    let store = Store::file(store, world, TIMEOUT).unwrap();
    ProcessGroup::gloo(&store, rank, world, TIMEOUT, "127.0.0.1").unwrap()
}

fn sum_of_ranks(group: &ProcessGroup) -> Result<i64, DistributedError> {
    let mut t = Tensor::from_slice(&[group.rank() as i64]);
    group.all_reduce(&mut t, ReduceOp::Sum)?;
    Ok(t.int64_value(&[0]))
}

fn body(die: bool) {
    let spec = RankSpec::from_env()
        .unwrap()
        .expect("spawned with the rank environment");
    let group = join(spec.rank, spec.world_size, &spec.rendezvous);
    let world = spec.world_size as i64;
    assert_eq!(sum_of_ranks(&group).unwrap(), world * (world - 1) / 2);
    if die {
        std::process::exit(7);
    }
    group.barrier().unwrap();
}

#[test]
#[ignore = "a spawned rank's body: run by the other tests through launch::Ranks"]
fn rank_body() {
    body(false);
}

#[test]
#[ignore = "a spawned rank's body: run by the other tests through launch::Ranks"]
fn rank_body_dies() {
    body(true);
}

/// Set for the re-executed rank 0 of the credentials test only.
const SECRET_VAR: &str = "WD_TEST_SECRET_ACCESS_KEY";
const PLAIN_VAR: &str = "WD_TEST_PLAIN_SETTING";

#[test]
#[ignore = "a spawned rank's body: run by the other tests through launch::Ranks"]
fn rank_body_checks_its_environment() {
    assert!(RankSpec::from_env().unwrap().is_some());
    // Exit 3 (a failed rank) unless the credential is withheld and the setting kept.
    let ok =
        std::env::var_os(SECRET_VAR).is_none() && std::env::var(PLAIN_VAR).as_deref() == Ok("kept");
    std::process::exit(if ok { 0 } else { 3 });
}

#[test]
#[ignore = "rank 0 of the credentials test, re-executed with a credential in its environment"]
fn rank_zero_with_a_credential() {
    assert_eq!(std::env::var(SECRET_VAR).as_deref(), Ok("hunter2"));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let ranks = Ranks::spawn(
        &exe,
        &rank_args("rank_body_checks_its_environment"),
        3,
        &store,
    )
    .unwrap();
    ranks.wait().unwrap();
}

#[test]
fn ranks_inherit_settings_but_not_credentials() {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(rank_args("rank_zero_with_a_credential"))
        .env(SECRET_VAR, "hunter2")
        .env(PLAIN_VAR, "kept")
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    for name in [
        "STORAGE_SECRET_ACCESS_KEY",
        "DATA_ACCESS_KEY_ID",
        "aws_session_token",
        "WALLET_PASSWORD",
    ] {
        assert!(
            !worker_distributed::launch::inherited_by_ranks(name),
            "{name}"
        );
    }
    for name in [
        "NCCL_DEBUG",
        "LD_LIBRARY_PATH",
        "RUST_LOG",
        "CUDA_VISIBLE_DEVICES",
    ] {
        assert!(
            worker_distributed::launch::inherited_by_ranks(name),
            "{name}"
        );
    }
}

#[test]
fn rank_zero_spawns_and_joins_its_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let ranks = Ranks::spawn(&exe, &rank_args("rank_body"), 3, &store).unwrap();
    let group = join(0, 3, &store);
    assert_eq!(sum_of_ranks(&group).unwrap(), 3);
    group.barrier().unwrap();
    ranks.wait().unwrap();
}

#[test]
fn a_dead_rank_fails_rank_zero_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut ranks = Ranks::spawn(&exe, &rank_args("rank_body_dies"), 2, &store).unwrap();
    let group = join(0, 2, &store);
    assert_eq!(sum_of_ranks(&group).unwrap(), 1);
    let start = Instant::now();
    let error = group.barrier().expect_err("the peer died");
    assert!(
        start.elapsed() <= TIMEOUT + Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            error,
            DistributedError::Failed { .. } | DistributedError::Timeout { .. }
        ),
        "{error}"
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match ranks.check() {
            Err(LaunchError::RankExited { rank, status }) => {
                assert_eq!((rank, status.code()), (1, Some(7)));
                break;
            }
            _ if Instant::now() > deadline => panic!("the dead rank was not reported"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
