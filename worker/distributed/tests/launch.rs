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
