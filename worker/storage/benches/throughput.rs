//! Upload/download throughput of a ~100 MB gradient set against SeaweedFS on loopback and the
//! LocalStore. Run with `cargo bench -p worker-storage --profile dev`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use worker_storage::testing::{SeaweedFs, unique_name};
use worker_storage::{
    FetchPolicy, LocalStore, ObjectStore, PeerFetch, S3Store, fetch_peers, sha256_hex,
};

const MB: usize = 1_000_000;
const MIB: u64 = 1024 * 1024;
const SMALL_OBJECTS: usize = 20;
const SMALL_SIZE: usize = 5 * MB;
const LARGE_SIZE: usize = 100 * MB;
const REPEATS: usize = 3;

fn payload(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Best of `REPEATS` runs of `op`, in MB/s for `bytes` bytes.
async fn best_rate<F, Fut>(bytes: usize, mut op: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = Duration::MAX;
    for run in 0..REPEATS {
        let started = Instant::now();
        op(run).await;
        best = best.min(started.elapsed());
    }
    bytes as f64 / MB as f64 / best.as_secs_f64()
}

async fn bench_store(name: &str, store: Arc<dyn ObjectStore>, small: &[Bytes], large: &Bytes) {
    let set_bytes = SMALL_OBJECTS * SMALL_SIZE;
    let up = best_rate(set_bytes, |run| {
        let store = Arc::clone(&store);
        async move {
            futures::stream::iter(small.iter().enumerate())
                .map(|(i, body)| {
                    let store = Arc::clone(&store);
                    async move {
                        store
                            .put(&format!("r{run}/g/{i:05}.slc"), body.clone())
                            .await
                    }
                })
                .buffer_unordered(SMALL_OBJECTS)
                .for_each(|result| async move { result.expect("upload") })
                .await;
        }
    })
    .await;
    let down = best_rate(set_bytes, |run| {
        let requests = (0..SMALL_OBJECTS)
            .map(|i| PeerFetch {
                peer: i,
                store: Arc::clone(&store),
                key: format!("r{run}/g/{i:05}.slc"),
            })
            .collect();
        async move {
            let policy = FetchPolicy::new(Duration::from_secs(60), SMALL_SIZE as u64);
            for result in fetch_peers(requests, &policy).await {
                result.result.expect("download");
            }
        }
    })
    .await;
    println!(
        "{name:<34} {SMALL_OBJECTS} x 5 MB   upload {up:>7.0} MB/s   download {down:>7.0} MB/s"
    );

    let up = best_rate(LARGE_SIZE, |run| {
        let store = Arc::clone(&store);
        async move {
            store
                .put(&format!("big/{run}.slc"), large.clone())
                .await
                .expect("upload")
        }
    })
    .await;
    let down = best_rate(LARGE_SIZE, |run| {
        let store = Arc::clone(&store);
        async move {
            store
                .get(&format!("big/{run}.slc"), LARGE_SIZE as u64)
                .await
                .expect("download");
        }
    })
    .await;
    println!("{name:<34} 1 x 100 MB   upload {up:>7.0} MB/s   download {down:>7.0} MB/s");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let small: Vec<Bytes> = (0..SMALL_OBJECTS as u64)
            .map(|i| payload(SMALL_SIZE, i + 1))
            .collect();
        let large = payload(LARGE_SIZE, 99);

        let started = Instant::now();
        let digest = sha256_hex(&large);
        let hash_rate = LARGE_SIZE as f64 / MB as f64 / started.elapsed().as_secs_f64();
        println!("sha256 of 100 MB: {hash_rate:.0} MB/s ({})", &digest[..8]);

        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalStore::open(dir.path()).expect("local store");
        bench_store(
            "LocalStore (tmpfs/disk, fsync)",
            Arc::new(local),
            &small,
            &large,
        )
        .await;

        let Some(server) = SeaweedFs::start().expect("seaweedfs") else {
            return;
        };
        for (part_mib, concurrency) in [(8, 4), (16, 4), (16, 8)] {
            let mut config = server.s3_config(&unique_name("bench"));
            config.part_size = part_mib * MIB;
            config.upload_concurrency = concurrency;
            let store = S3Store::new(config).expect("s3 store");
            store.ensure_bucket().await.expect("bucket");
            let name = format!("S3 SeaweedFS part {part_mib} MiB x{concurrency}");
            bench_store(&name, Arc::new(store), &small, &large).await;
        }
    });
}
