//! Gradient exchange helpers (fetch_peers, retention, on-chain credentials) against SeaweedFS
//! and the LocalStore.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use worker_storage::testing::{ProxyMode, SeaweedFs, TestProxy, unique_name};
use worker_storage::{
    BucketCredentials, FetchPolicy, LocalStore, ObjectKind, ObjectStore, PeerFetch, RunLayout,
    S3Credentials, S3Store, StorageError, UploadWindow, delete_old_windows, fetch_peers,
};

async fn s3_bucket(server: &SeaweedFs) -> S3Store {
    let store = S3Store::new(server.s3_config(&unique_name("x"))).unwrap();
    store.ensure_bucket().await.unwrap();
    store
}

fn gradient(uid: u16, len: usize) -> Bytes {
    Bytes::from(vec![uid as u8; len])
}

#[tokio::test]
async fn fetch_peers_reports_each_peer_separately() {
    let server = SeaweedFs::shared();
    let layout = RunLayout::new("run").unwrap();
    let window = 42;
    let shared = s3_bucket(server).await;
    for uid in [1, 3] {
        shared
            .put(&layout.gradient(window, uid), gradient(uid, 1000))
            .await
            .unwrap();
    }
    shared
        .put(&layout.gradient(window, 4), gradient(4, 5000))
        .await
        .unwrap();
    let local_dir = tempfile::tempdir().unwrap();
    let local = LocalStore::open(local_dir.path()).unwrap();
    local
        .put(&layout.gradient(window, 2), gradient(2, 1000))
        .await
        .unwrap();

    let mut denied = shared.config().clone();
    denied.credentials = S3Credentials::new("nobody", "nothing");
    let blackhole_target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let blackhole = TestProxy::start(
        blackhole_target.local_addr().unwrap(),
        ProxyMode::StallAfter(0),
    )
    .await
    .unwrap();
    let hanging = shared.config().clone().with_endpoint(blackhole.endpoint());

    let shared: Arc<dyn ObjectStore> = Arc::new(shared);
    let request = |uid: u16, store: &Arc<dyn ObjectStore>| PeerFetch {
        peer: uid,
        store: Arc::clone(store),
        key: layout.gradient(window, uid),
    };
    let requests = vec![
        request(1, &shared),
        request(2, &(Arc::new(local) as Arc<dyn ObjectStore>)),
        request(
            3,
            &(Arc::new(S3Store::new(denied).unwrap()) as Arc<dyn ObjectStore>),
        ),
        request(4, &shared),
        request(5, &shared),
        request(
            6,
            &(Arc::new(S3Store::new(hanging).unwrap()) as Arc<dyn ObjectStore>),
        ),
    ];
    let window_start = SystemTime::now() - Duration::from_secs(30);
    let policy = FetchPolicy::new(Duration::from_millis(800), 2000)
        .within(UploadWindow::new(window_start, Duration::from_secs(70)));

    let started = Instant::now();
    let results = fetch_peers(requests, &policy).await;
    let elapsed = started.elapsed();

    let peers: Vec<u16> = results.iter().map(|r| r.peer).collect();
    assert_eq!(peers, [1, 2, 3, 4, 5, 6], "results keep request order");
    assert_eq!(results[0].result.as_ref().unwrap().body, gradient(1, 1000));
    assert_eq!(results[1].result.as_ref().unwrap().body, gradient(2, 1000));
    assert!(matches!(
        results[2].result,
        Err(StorageError::AccessDenied { .. })
    ));
    assert!(matches!(
        results[3].result,
        Err(StorageError::TooLarge { size: 5000, .. })
    ));
    assert!(matches!(
        results[4].result,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        results[5].result,
        Err(StorageError::Timeout { .. })
    ));
    // Concurrent: the slow peer's timeout bounds the whole call.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // The same objects seen from a later window are stale.
    let next_window = FetchPolicy::new(Duration::from_secs(5), 2000).within(UploadWindow::new(
        SystemTime::now() + Duration::from_secs(5),
        Duration::from_secs(70),
    ));
    let stale = fetch_peers(vec![request(1, &shared)], &next_window).await;
    assert!(matches!(
        stale[0].result,
        Err(StorageError::TooEarly { .. })
    ));
}

#[tokio::test]
async fn overall_deadline_stops_every_fetch() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let blackhole = TestProxy::start(target.local_addr().unwrap(), ProxyMode::StallAfter(0))
        .await
        .unwrap();
    let config = worker_storage::S3Config::new("bucket", S3Credentials::new("ak", "sk"))
        .with_endpoint(blackhole.endpoint())
        .with_region("us-east-1");
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(config).unwrap());
    let requests = (0..4u16)
        .map(|uid| PeerFetch {
            peer: uid,
            store: Arc::clone(&store),
            key: format!("g/{uid}"),
        })
        .collect();
    let policy = FetchPolicy::new(Duration::from_secs(30), 100)
        .until(Instant::now() + Duration::from_millis(300));
    let started = Instant::now();
    let results = fetch_peers(requests, &policy).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        results
            .iter()
            .all(|r| matches!(r.result, Err(StorageError::Timeout { .. })))
    );
}

/// Fills windows 1..=6 with gradients of uids 0 and 1, a peer list per window and a foreign
/// object, then keeps the last 2 windows of gradients.
async fn check_retention(store: &dyn ObjectStore) {
    let layout = RunLayout::new("run").unwrap();
    for window in 1..=6 {
        for uid in 0..2 {
            store
                .put(&layout.gradient(window, uid), gradient(uid, 10))
                .await
                .unwrap();
        }
        store
            .put(&layout.peer_list(window, 0), Bytes::from_static(b"[]"))
            .await
            .unwrap();
    }
    store
        .put("run/gradients/notes.txt", Bytes::from_static(b"keep me"))
        .await
        .unwrap();

    let report = delete_old_windows(store, &layout, ObjectKind::Gradient, 6, 2)
        .await
        .unwrap();
    assert_eq!((report.deleted, report.kept, report.failed), (8, 5, 0));

    let remaining: Vec<String> = store
        .list(&layout.kind_prefix(ObjectKind::Gradient))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        remaining,
        [
            layout.gradient(5, 0),
            layout.gradient(5, 1),
            layout.gradient(6, 0),
            layout.gradient(6, 1),
            "run/gradients/notes.txt".to_owned(),
        ]
    );
    // Other kinds are untouched.
    assert_eq!(
        store
            .list(&layout.kind_prefix(ObjectKind::PeerList))
            .await
            .unwrap()
            .len(),
        6
    );
    // A second pass has nothing left to do.
    let again = delete_old_windows(store, &layout, ObjectKind::Gradient, 6, 2)
        .await
        .unwrap();
    assert_eq!(again.deleted, 0);
}

#[tokio::test]
async fn retention_deletes_old_windows_on_s3() {
    let server = SeaweedFs::shared();
    check_retention(&s3_bucket(server).await).await;
}

#[tokio::test]
async fn retention_deletes_old_windows_locally() {
    let dir = tempfile::tempdir().unwrap();
    check_retention(&LocalStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn committed_read_credentials_reach_the_bucket() {
    let server = SeaweedFs::shared();
    // The bucket is named after the account id, as on R2.
    let account_id = unique_name("acct");
    let mut owner_config = server.s3_config(&account_id);
    owner_config.bucket = account_id.clone();
    let owner = S3Store::new(owner_config).unwrap();
    owner.ensure_bucket().await.unwrap();
    let layout = RunLayout::new("run").unwrap();
    owner
        .put(&layout.gradient(7, 9), gradient(9, 64))
        .await
        .unwrap();

    let reader = server.reader_credentials();
    let commitment = BucketCredentials {
        account_id,
        access_key_id: reader.access_key_id,
        secret_access_key: reader.secret_access_key,
    }
    .to_raw128()
    .unwrap();

    // What a validator does with the bytes read from the chain.
    let parsed = BucketCredentials::parse(&commitment).unwrap();
    let peer_store = S3Store::new(
        parsed
            .s3_config(Some(server.endpoint()))
            .with_region("us-east-1"),
    )
    .unwrap();
    let got = peer_store.get(&layout.gradient(7, 9), 1000).await.unwrap();
    assert_eq!(got.body, gradient(9, 64));
    assert!(matches!(
        peer_store.put(&layout.gradient(7, 9), Bytes::new()).await,
        Err(StorageError::AccessDenied { .. })
    ));
}
