//! Runs N ranks as real processes: the test binary re-executes itself with the ignored
//! `rank_body` test selected and the scenario in the environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub const RANK: &str = "WD_TEST_RANK";
pub const WORLD: &str = "WD_TEST_WORLD";
pub const SCENARIO: &str = "WD_TEST_SCENARIO";
pub const DIR: &str = "WD_TEST_DIR";

/// What a rank process sees.
pub struct RankEnv {
    pub rank: usize,
    pub world: usize,
    pub scenario: String,
    pub dir: PathBuf,
}

impl RankEnv {
    /// Reads the environment a parent test set; panics (the rank fails) without it.
    pub fn from_env() -> RankEnv {
        let get = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("rank_body is run by the other tests ({name} unset)"))
        };
        RankEnv {
            rank: get(RANK).parse().expect("rank"),
            world: get(WORLD).parse().expect("world"),
            scenario: get(SCENARIO),
            dir: PathBuf::from(get(DIR)),
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.join("store")
    }
}

/// Starts `world` ranks of `scenario` with `dir` as their shared directory.
pub fn spawn(scenario: &str, world: usize, dir: &Path, extra: &[(&str, String)]) -> Vec<Child> {
    let exe = std::env::current_exe().expect("test binary path");
    (0..world)
        .map(|rank| {
            let mut command = Command::new(&exe);
            command
                .args([
                    "rank_body",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(RANK, rank.to_string())
                .env(WORLD, world.to_string())
                .env(SCENARIO, scenario)
                .env(DIR, dir);
            for (key, value) in extra {
                command.env(key, value);
            }
            command.spawn().expect("spawn rank")
        })
        .collect()
}

/// Waits for every child, killing all of them at `deadline`; returns each exit status
/// (`None`: killed at the deadline) and how long the wait took.
pub fn wait_all(children: &mut [Child], deadline: Duration) -> (Vec<Option<ExitStatus>>, Duration) {
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
    loop {
        for (child, status) in children.iter_mut().zip(statuses.iter_mut()) {
            if status.is_none() {
                *status = child.try_wait().expect("try_wait");
            }
        }
        if statuses.iter().all(Option::is_some) || start.elapsed() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (child, status) in children.iter_mut().zip(&statuses) {
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    (statuses, start.elapsed())
}

/// Runs `scenario` on `world` ranks and asserts that every rank exits 0 within `deadline`.
pub fn run_ok(
    scenario: &str,
    world: usize,
    dir: &Path,
    extra: &[(&str, String)],
    deadline: Duration,
) {
    let mut children = spawn(scenario, world, dir, extra);
    let (statuses, took) = wait_all(&mut children, deadline);
    for (rank, status) in statuses.iter().enumerate() {
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("{scenario}: rank {rank} of {world} failed: {s}"),
            None => panic!("{scenario}: rank {rank} of {world} still running after {took:?}"),
        }
    }
}
