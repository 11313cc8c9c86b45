//! Reconciles 1,000 TrainingRuns x 8 replicas against the in-memory API server and prints
//! total time, per-reconcile latency and peak memory (VmHWM).
//!
//! `cargo bench -p subnet-operator --profile dev --bench reconcile`
//! (`BENCH_RUNS` / `BENCH_REPLICAS` / `BENCH_STEADY_REPEAT` override the sizes).

#[path = "../../tests/operator/mod.rs"]
mod operator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use operator::fixtures::{Harness, NS, training_run};
use serde_json::json;
use subnet_operator::crd::{Phase, TrainingRun};
use subnet_operator::reconcile;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Reconciles every run once, in order, timing each reconcile.
async fn pass(h: &Harness, names: &[String], label: &str) -> usize {
    let served = h.api.served();
    let mut latencies = Vec::with_capacity(names.len());
    let start = Instant::now();
    for name in names {
        let obj: TrainingRun = h.api.get(NS, name).expect("stored");
        let t = Instant::now();
        reconcile(Arc::new(obj), h.ctx.clone())
            .await
            .expect("reconcile");
        latencies.push(t.elapsed());
    }
    let total = start.elapsed();
    latencies.sort();
    let mean = latencies.iter().sum::<Duration>() / names.len().max(1) as u32;
    println!(
        "{label:<34} total {:>8.1} ms | per reconcile mean {:>7.1} us p50 {:>7.1} us p99 {:>7.1} us | {:>6} API calls",
        total.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e6,
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        h.api.served() - served,
    );
    names.len()
}

/// Reconciles every run once with `in_flight` reconciles at a time.
async fn concurrent_pass(h: &Harness, names: &[String], in_flight: usize, label: &str) -> usize {
    let served = h.api.served();
    let start = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let obj: TrainingRun = h.api.get(NS, &name).expect("stored");
            reconcile(Arc::new(obj), h.ctx.clone())
        })
        .buffer_unordered(in_flight)
        .for_each(|r| async move {
            r.expect("reconcile");
        })
        .await;
    let total = start.elapsed();
    println!(
        "{label:<34} total {:>8.1} ms | {:>8.0} reconciles/s | {:>6} API calls",
        total.as_secs_f64() * 1e3,
        names.len() as f64 / total.as_secs_f64(),
        h.api.served() - served,
    );
    names.len()
}

#[tokio::main]
async fn main() {
    let runs = env_or("BENCH_RUNS", 1000);
    let replicas = env_or("BENCH_REPLICAS", 8) as i32;
    let h = Harness::new();
    h.api.set_recording(false);
    h.api.set_drop_events(true);
    let names: Vec<String> = (0..runs).map(|i| format!("run-{i:04}")).collect();
    for name in &names {
        h.api.create(&training_run(name, replicas));
    }
    println!(
        "reconcile benchmark: {runs} TrainingRuns x {replicas} replicas, in-memory API, \
         sequential unless noted; VmHWM after creating the runs {:.1} MiB",
        vm_hwm_mib()
    );
    let start = Instant::now();
    let mut reconciles = 0;
    reconciles += pass(&h, &names, "2. create pods + status + events").await;
    assert_eq!(h.api.count("pods"), runs * replicas as usize);
    h.api.set_all_pods_phase(NS, "Running", true);
    reconciles += pass(&h, &names, "3. all pods ready -> Running").await;
    for _ in 0..env_or("BENCH_STEADY_REPEAT", 1) {
        reconciles += pass(&h, &names, "4. steady state (no change)").await;
    }
    reconciles += concurrent_pass(&h, &names, 16, "4b. steady state, 16 in flight").await;
    for name in &names {
        h.api
            .edit::<TrainingRun>(NS, name, |r| r["spec"]["image"] = json!("worker:2"));
    }
    reconciles += pass(&h, &names, "5. image change: roll pod 0").await;
    reconciles += pass(&h, &names, "6. recreate pod 0").await;
    let elapsed = start.elapsed();

    let rolling = names
        .iter()
        .filter(|n| {
            h.api
                .get::<TrainingRun>(NS, n)
                .and_then(|r| r.status)
                .and_then(|s| s.phase)
                == Some(Phase::Progressing)
        })
        .count();
    assert_eq!(rolling, runs, "every run is mid-rollout");
    let (objects, bytes) = h.api.stored_bytes();
    println!(
        "all passes: {:.2} s for {reconciles} reconciles; peak RSS (VmHWM) {:.1} MiB for the whole \
         process, of which the in-memory API store holds {objects} objects ({:.1} MiB as JSON text)",
        elapsed.as_secs_f64(),
        vm_hwm_mib(),
        bytes as f64 / (1024.0 * 1024.0),
    );
}
