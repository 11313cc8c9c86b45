//! Gloo collectives across real processes: exact results on 1, 2 and 4 ranks, rendezvous
//! over a file and a TCP store, and bounded failure when a rank dies, hangs or never joins.

mod ranks;

use std::time::{Duration, Instant};

use ranks::{RankEnv, run_ok, spawn, wait_all};
use tch::{Kind, Tensor};
use worker_distributed::{DistributedError, ProcessGroup, ReduceOp, Store};

const TIMEOUT: Duration = Duration::from_secs(5);

fn join(env: &RankEnv) -> ProcessGroup {
    let store = match std::env::var("WD_TEST_TCP_PORT") {
        Ok(port) => Store::tcp(
            "127.0.0.1",
            port.parse().expect("port"),
            env.rank == 0,
            env.world,
            TIMEOUT,
        )
        .expect("tcp store"),
        Err(_) => Store::file(&env.store_path(), env.world, TIMEOUT).expect("file store"),
    };
    ProcessGroup::gloo(&store, env.rank, env.world, TIMEOUT, "127.0.0.1").expect("gloo group")
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.reshape([-1])).expect("f32 tensor")
}

/// Every collective on values whose results are exact in fp32 / int64.
fn check_collectives(env: &RankEnv) {
    let group = join(env);
    let (r, w) = (env.rank as f64, env.world as f64);
    let n = 10i64;
    let base = Tensor::arange(n, (Kind::Float, tch::Device::Cpu));

    let mut sum = &base * (r + 1.0);
    group.all_reduce(&mut sum, ReduceOp::Sum).unwrap();
    assert_eq!(floats(&sum), floats(&(&base * (w * (w + 1.0) / 2.0))));

    let mut avg = &base * (r + 1.0);
    group.all_reduce(&mut avg, ReduceOp::Avg).unwrap();
    assert_eq!(floats(&avg), floats(&(&base * ((w + 1.0) / 2.0))));

    let mut max = &base + r;
    group.all_reduce(&mut max, ReduceOp::Max).unwrap();
    assert_eq!(floats(&max), floats(&(&base + (w - 1.0))));

    let mut ints = Tensor::from_slice(&[env.rank as i64, 1, 1 << 40]);
    group.all_reduce(&mut ints, ReduceOp::Sum).unwrap();
    let world = env.world as i64;
    assert_eq!(
        Vec::<i64>::try_from(&ints).unwrap(),
        vec![world * (world - 1) / 2, world, world << 40]
    );

    // reduce-scatter: rank r contributes (r + 1) * [0, 1, ..., w*n); gets its block summed.
    let whole = Tensor::arange(n * world, (Kind::Float, tch::Device::Cpu)) * (r + 1.0);
    let mut block = Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
    group
        .reduce_scatter(&whole, &mut block, ReduceOp::Sum)
        .unwrap();
    let expected = Tensor::arange_start(
        env.rank as i64 * n,
        (env.rank as i64 + 1) * n,
        (Kind::Float, tch::Device::Cpu),
    ) * (w * (w + 1.0) / 2.0);
    assert_eq!(floats(&block), floats(&expected));
    let mut mean_block = Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
    group
        .reduce_scatter(&whole, &mut mean_block, ReduceOp::Avg)
        .unwrap();
    assert_eq!(floats(&mean_block), floats(&(expected / w)));

    // all-gather: rank r sends [r*100 + 0..n); the result is every block in rank order.
    let mine = &base + r * 100.0;
    let mut gathered = Tensor::zeros([n * world], (Kind::Float, tch::Device::Cpu));
    group.all_gather(&mine, &mut gathered).unwrap();
    let expected: Vec<f32> = (0..env.world)
        .flat_map(|k| (0..n).map(move |i| k as f32 * 100.0 + i as f32))
        .collect();
    assert_eq!(floats(&gathered), expected);

    // broadcast from the last rank.
    let root = env.world - 1;
    let mut value = if env.rank == root {
        Tensor::from_slice(&[7.5f32, -1.0, 3.25])
    } else {
        Tensor::zeros([3], (Kind::Float, tch::Device::Cpu))
    };
    group.broadcast(&mut value, root).unwrap();
    assert_eq!(floats(&value), vec![7.5, -1.0, 3.25]);

    group.barrier().unwrap();

    // Refused before reaching the wire, and the group stays usable.
    let mut strided = Tensor::zeros([4, 4], (Kind::Float, tch::Device::Cpu)).transpose(0, 1);
    assert!(matches!(
        group.all_reduce(&mut strided, ReduceOp::Sum),
        Err(DistributedError::Invalid { .. })
    ));
    let mut wrong = Tensor::zeros([n + 1], (Kind::Float, tch::Device::Cpu));
    assert!(matches!(
        group.all_gather(&mine, &mut wrong),
        Err(DistributedError::Invalid { .. })
    ));
    group.barrier().unwrap();
}

/// The last rank leaves (exits, or stalls without calling); the others' next collective
/// must fail within the timeout. Each survivor records how it failed.
fn lose_a_rank(env: &RankEnv, how: &str) {
    let group = join(env);
    group.barrier().unwrap();
    let last = env.world - 1;
    if env.rank == last {
        match how {
            "exit" => std::process::exit(3),
            _ => std::thread::sleep(Duration::from_secs(600)),
        }
    }
    let start = Instant::now();
    let mut t = Tensor::ones([1000], (Kind::Float, tch::Device::Cpu));
    let error = group
        .all_reduce(&mut t, ReduceOp::Sum)
        .expect_err("all-reduce with a missing rank must fail");
    let took = start.elapsed();
    let kind = match &error {
        DistributedError::Failed { .. } => "failed",
        DistributedError::Timeout { .. } => "timeout",
        _ => "other",
    };
    // A second call reports the poisoned group immediately.
    let again = group.barrier().expect_err("poisoned");
    assert!(matches!(again, DistributedError::Poisoned(_)), "{again}");
    std::fs::write(
        env.dir.join(format!("error-{}", env.rank)),
        format!("{kind}\n{}\n{error}", took.as_millis()),
    )
    .unwrap();
    // Leave without running destructors that could wait on the dead peer.
    std::process::exit(0);
}

#[test]
#[ignore = "a rank's body: run by the other tests with WD_TEST_* set"]
fn rank_body() {
    tch::set_num_threads(1);
    let env = RankEnv::from_env();
    match env.scenario.as_str() {
        "collectives" => check_collectives(&env),
        "exit" | "stall" => lose_a_rank(&env, &env.scenario.clone()),
        "join_alone" => {
            let start = Instant::now();
            let store = Store::file(&env.store_path(), env.world, TIMEOUT).unwrap();
            let error = ProcessGroup::gloo(&store, env.rank, env.world, TIMEOUT, "127.0.0.1")
                .expect_err("a group missing a rank cannot form");
            assert!(
                matches!(error, DistributedError::Rendezvous { .. }),
                "{error}"
            );
            assert!(start.elapsed() < TIMEOUT * 3, "took {:?}", start.elapsed());
            eprintln!("rendezvous error after {:?}: {error}", start.elapsed());
            std::process::exit(0);
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn collectives_are_exact_on_one_two_and_four_ranks() {
    for world in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        run_ok(
            "collectives",
            world,
            dir.path(),
            &[],
            Duration::from_secs(60),
        );
    }
}

#[test]
fn tcp_store_rendezvous_works() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        "collectives",
        2,
        dir.path(),
        &[("WD_TEST_TCP_PORT", port.to_string())],
        Duration::from_secs(60),
    );
}

fn check_survivors(scenario: &str, world: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut children = spawn(scenario, world, dir.path(), &[]);
    let survivors = &mut children[..world - 1];
    let (statuses, took) = wait_all(survivors, TIMEOUT * 4);
    let (_, _) = wait_all(&mut children[world - 1..], Duration::from_millis(10));
    for (rank, status) in statuses.iter().enumerate() {
        assert!(
            status.is_some_and(|s| s.success()),
            "{scenario}: rank {rank} did not fail cleanly within {took:?}: {status:?}"
        );
    }
    (0..world - 1)
        .map(|rank| std::fs::read_to_string(dir.path().join(format!("error-{rank}"))).unwrap())
        .collect()
}

#[test]
fn a_rank_that_dies_fails_the_others_within_the_timeout() {
    for world in [2, 4] {
        for report in check_survivors("exit", world) {
            eprintln!("world {world}: {report}");
            let mut lines = report.lines();
            let kind = lines.next().unwrap();
            let millis: u128 = lines.next().unwrap().parse().unwrap();
            assert!(kind == "failed" || kind == "timeout", "{report}");
            assert!(millis <= TIMEOUT.as_millis() + 2000, "{report}");
        }
    }
}

#[test]
fn a_rank_that_hangs_times_the_others_out() {
    for report in check_survivors("stall", 2) {
        eprintln!("{report}");
        let mut lines = report.lines();
        assert_eq!(lines.next(), Some("timeout"), "{report}");
        let millis: u128 = lines.next().unwrap().parse().unwrap();
        assert!(millis <= TIMEOUT.as_millis() + 2000, "{report}");
    }
}

#[test]
fn a_group_missing_a_rank_fails_to_form_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Only rank 0 of 2 starts.
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "rank_body",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ranks::RANK, "0")
        .env(ranks::WORLD, "2")
        .env(ranks::SCENARIO, "join_alone")
        .env(ranks::DIR, dir.path())
        .spawn()
        .unwrap();
    let (statuses, took) = wait_all(std::slice::from_mut(&mut child), TIMEOUT * 4);
    assert!(
        statuses[0].is_some_and(|s| s.success()),
        "lonely rank: {statuses:?} after {took:?}"
    );
}
