//! S3Store against a real SeaweedFS server (one per test binary, a fresh bucket per test).

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use worker_storage::testing::{ProxyMode, SeaweedFs, TestProxy, unique_name};
use worker_storage::{
    GetOptions, ObjectStore, S3Config, S3Credentials, S3Store, SHA256_METADATA_KEY, StorageError,
    UploadWindow, sha256_hex,
};

const MIB: usize = 1024 * 1024;

/// The shared server, or `None` (test skipped, reason printed) when `weed` is not installed.
fn server() -> &'static SeaweedFs {
    SeaweedFs::shared()
}

/// Deterministic non-repeating test bytes.
fn payload(len: usize, seed: u8) -> Bytes {
    let mut state = u64::from(seed) + 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A store on a new, empty bucket.
async fn fresh_store(server: &SeaweedFs, tweak: impl FnOnce(&mut S3Config)) -> S3Store {
    let mut config = server.s3_config(&unique_name("t"));
    tweak(&mut config);
    let store = S3Store::new(config).unwrap();
    store.ensure_bucket().await.unwrap();
    store
}

/// The same bucket reached through `endpoint` (e.g. a proxy) with `tweak` applied.
fn store_via(base: &S3Store, endpoint: String, tweak: impl FnOnce(&mut S3Config)) -> S3Store {
    let mut config = base.config().clone().with_endpoint(endpoint);
    tweak(&mut config);
    S3Store::new(config).unwrap()
}

async fn pending_uploads(store: &S3Store, key: &str) -> usize {
    let listed = store
        .client()
        .list_multipart_uploads()
        .bucket(store.bucket())
        .prefix(key)
        .send()
        .await
        .unwrap();
    listed.uploads().len()
}

async fn wait_for_uploads(store: &S3Store, key: &str, want: impl Fn(usize) -> bool) -> usize {
    // Generous: the background abort runs on a fresh connection, slow on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = pending_uploads(store, key).await;
        if want(count) || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn put_get_head_list_delete_round_trip() {
    let server = server();
    let store = fresh_store(server, |_| {}).await;
    store.ensure_bucket().await.unwrap();
    let before = SystemTime::now() - Duration::from_secs(2);

    store.put("run/a/1.bin", payload(1000, 1)).await.unwrap();
    store.put("run/a/2.bin", payload(10, 2)).await.unwrap();
    store.put("run/b/1.bin", Bytes::new()).await.unwrap();

    let got = store.get("run/a/1.bin", 1000).await.unwrap();
    assert_eq!(got.body, payload(1000, 1));
    assert_eq!(got.size, 1000);
    assert!(got.last_modified >= before && got.last_modified <= SystemTime::now());
    assert!(store.get("run/b/1.bin", 0).await.unwrap().body.is_empty());

    let head = store.head("run/a/2.bin").await.unwrap();
    assert_eq!((head.key.as_str(), head.size), ("run/a/2.bin", 10));

    let listed = store.list("run/a/").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(keys, [("run/a/1.bin", 1000), ("run/a/2.bin", 10)]);
    assert_eq!(store.list("run/").await.unwrap().len(), 3);
    assert!(store.list("other/").await.unwrap().is_empty());

    // Overwrite replaces the body and its checksum.
    store.put("run/a/1.bin", payload(5, 9)).await.unwrap();
    assert_eq!(
        store.get("run/a/1.bin", 100).await.unwrap().body,
        payload(5, 9)
    );

    store.delete("run/a/1.bin").await.unwrap();
    assert!(matches!(
        store.get("run/a/1.bin", 100).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.head("run/a/1.bin").await,
        Err(StorageError::NotFound { .. })
    ));
    store.delete("run/a/1.bin").await.unwrap();
    assert_eq!(store.list("run/").await.unwrap().len(), 2);
}

#[tokio::test]
async fn invalid_keys_are_rejected_before_any_request() {
    let server = server();
    let store = fresh_store(server, |_| {}).await;
    for key in ["../escape", "/abs", "a//b", ""] {
        assert!(matches!(
            store.put(key, Bytes::from_static(b"x")).await,
            Err(StorageError::InvalidKey { .. })
        ));
    }
}

#[tokio::test]
async fn large_objects_use_multipart_and_round_trip() {
    let server = server();
    let store = fresh_store(server, |c| {
        c.multipart_threshold = 6 * MIB as u64;
        c.part_size = 5 * MIB as u64;
        c.upload_concurrency = 2;
    })
    .await;
    let body = payload(13 * MIB, 3);
    store.put("big.slc", body.clone()).await.unwrap();

    // A multipart object's ETag ends in "-<part count>": 13 MiB in 5 MiB parts is 3 parts.
    let head = store
        .client()
        .head_object()
        .bucket(store.bucket())
        .key("big.slc")
        .send()
        .await
        .unwrap();
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    assert!(etag.ends_with("-3"), "etag {etag}");
    assert_eq!(
        head.metadata().and_then(|m| m.get(SHA256_METADATA_KEY)),
        Some(&sha256_hex(&body))
    );

    let got = store.get("big.slc", body.len() as u64).await.unwrap();
    assert_eq!(got.size, body.len() as u64);
    assert!(got.body == body);
    assert_eq!(pending_uploads(&store, "big.slc").await, 0);
}

#[tokio::test]
async fn dropped_multipart_upload_leaves_nothing_readable() {
    let server = server();
    let store = fresh_store(server, |c| {
        c.multipart_threshold = 6 * MIB as u64;
        c.part_size = 5 * MIB as u64;
        c.upload_concurrency = 2;
    })
    .await;
    // Every connection through the proxy stalls after 1 MiB: CreateMultipartUpload passes,
    // the parts hang halfway.
    let proxy = TestProxy::start(server.s3_addr(), ProxyMode::StallAfter(MIB as u64))
        .await
        .unwrap();
    let stalled = store_via(&store, proxy.endpoint(), |_| {});
    let upload = tokio::spawn(async move { stalled.put("killed.slc", payload(12 * MIB, 4)).await });

    assert_eq!(wait_for_uploads(&store, "killed.slc", |n| n == 1).await, 1);
    upload.abort();
    assert!(upload.await.unwrap_err().is_cancelled());

    assert!(matches!(
        store.get("killed.slc", u64::MAX).await,
        Err(StorageError::NotFound { .. })
    ));
    // The dropped upload's guard aborts it in the background (on a fresh connection).
    assert_eq!(wait_for_uploads(&store, "killed.slc", |n| n == 0).await, 0);
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn multipart_upload_past_its_deadline_is_aborted() {
    let server = server();
    let store = fresh_store(server, |c| {
        c.multipart_threshold = 6 * MIB as u64;
        c.part_size = 5 * MIB as u64;
    })
    .await;
    let proxy = TestProxy::start(server.s3_addr(), ProxyMode::StallAfter(MIB as u64))
        .await
        .unwrap();
    let stalled = store_via(&store, proxy.endpoint(), |c| {
        c.upload_timeout = Duration::from_millis(1500)
    });
    let started = Instant::now();
    let result = stalled.put("late.slc", payload(12 * MIB, 5)).await;
    assert!(
        matches!(result, Err(StorageError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The abort is awaited before put returns.
    assert_eq!(pending_uploads(&store, "late.slc").await, 0);
    assert!(matches!(
        store.get("late.slc", u64::MAX).await,
        Err(StorageError::NotFound { .. })
    ));
}

#[tokio::test]
async fn interrupted_single_put_publishes_nothing() {
    let server = server();
    let store = fresh_store(server, |_| {}).await;
    let proxy = TestProxy::start(server.s3_addr(), ProxyMode::StallAfter(256 * 1024))
        .await
        .unwrap();
    let stalled = store_via(&store, proxy.endpoint(), |_| {});
    let deadline = Instant::now() + Duration::from_millis(500);
    let result = stalled
        .put_before("half.slc", payload(2 * MIB, 6), deadline)
        .await;
    assert!(
        matches!(result, Err(StorageError::Timeout { .. })),
        "{result:?}"
    );
    // Cut the half-sent request off at the server too.
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        store.get("half.slc", u64::MAX).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn missing_bucket_is_reported() {
    let server = server();
    let store = S3Store::new(server.s3_config(&unique_name("missing"))).unwrap();
    assert!(matches!(
        store.put("k", Bytes::from_static(b"x")).await,
        Err(StorageError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        store.get("k", 10).await,
        Err(StorageError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        store.list("").await,
        Err(StorageError::NoSuchBucket { .. })
    ));
}

#[tokio::test]
async fn wrong_credentials_are_denied_and_readers_cannot_write() {
    let server = server();
    let store = fresh_store(server, |_| {}).await;
    store.put("k", Bytes::from_static(b"data")).await.unwrap();

    let with = |credentials: S3Credentials| {
        let mut config = store.config().clone();
        config.credentials = credentials;
        S3Store::new(config).unwrap()
    };
    let wrong_secret = with(S3Credentials::new(
        server.admin_credentials().access_key_id,
        "not-the-secret",
    ));
    let unknown_key = with(S3Credentials::new("nobody", "nothing"));
    for bad in [&wrong_secret, &unknown_key] {
        assert!(matches!(
            bad.get("k", 10).await,
            Err(StorageError::AccessDenied { .. })
        ));
        assert!(matches!(
            bad.put("k2", Bytes::from_static(b"x")).await,
            Err(StorageError::AccessDenied { .. })
        ));
    }

    let reader = with(server.reader_credentials());
    assert_eq!(reader.get("k", 10).await.unwrap().body, &b"data"[..]);
    assert_eq!(reader.list("").await.unwrap().len(), 1);
    assert!(matches!(
        reader.put("k", Bytes::from_static(b"evil")).await,
        Err(StorageError::AccessDenied { .. })
    ));
    assert_eq!(store.get("k", 10).await.unwrap().body, &b"data"[..]);
}

#[tokio::test]
async fn oversized_object_is_refused_before_download() {
    let server = server();
    let store = fresh_store(server, |_| {}).await;
    let size = 32 * MIB;
    store.put("huge.slc", payload(size, 7)).await.unwrap();

    let proxy = TestProxy::start(server.s3_addr(), ProxyMode::PassThrough)
        .await
        .unwrap();
    let counted = store_via(&store, proxy.endpoint(), |_| {});
    let result = counted.get("huge.slc", MIB as u64).await;
    match result {
        Err(StorageError::TooLarge {
            limit, size: got, ..
        }) => {
            assert_eq!((limit, got), (MIB as u64, size as u64));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Only what sat in socket buffers crossed the proxy, not the 32 MiB body.
    let transferred = proxy.bytes_to_client();
    eprintln!("refused download moved {transferred} bytes");
    assert!(
        transferred < (size / 2) as u64,
        "{transferred} bytes transferred"
    );
    // Exactly at the limit is fine.
    assert_eq!(
        store.get("huge.slc", size as u64).await.unwrap().size,
        size as u64
    );
}

#[tokio::test]
async fn objects_without_or_with_wrong_checksum_are_rejected() {
    let server = server();
    let store = fresh_store(server, |_| {}).await;
    let raw_put = |key: &'static str, metadata: Option<String>| {
        let mut request = store
            .client()
            .put_object()
            .bucket(store.bucket())
            .key(key)
            .body(ByteStream::from_static(b"gradient bytes"));
        if let Some(digest) = metadata {
            request = request.metadata(SHA256_METADATA_KEY, digest);
        }
        async move { request.send().await.unwrap() }
    };
    raw_put("none", None).await;
    raw_put("wrong", Some(sha256_hex(b"other bytes"))).await;
    raw_put("right", Some(sha256_hex(b"gradient bytes"))).await;

    assert!(matches!(
        store.get("none", 100).await,
        Err(StorageError::Checksum { expected: None, .. })
    ));
    match store.get("wrong", 100).await {
        Err(StorageError::Checksum {
            expected: Some(expected),
            actual,
            ..
        }) => {
            assert_eq!(expected, sha256_hex(b"other bytes"));
            assert_eq!(actual, sha256_hex(b"gradient bytes"));
        }
        other => panic!("expected checksum mismatch, got {other:?}"),
    }
    // Objects written by other tools are fine when they carry the right digest.
    assert_eq!(
        store.get("right", 100).await.unwrap().body,
        &b"gradient bytes"[..]
    );
}

#[tokio::test]
async fn upload_window_is_checked_against_last_modified() {
    let server = server();
    let store = fresh_store(server, |_| {}).await;
    store.put("g.slc", payload(100, 8)).await.unwrap();
    let modified = store.head("g.slc").await.unwrap().last_modified;
    let get_in = |start: SystemTime| {
        let options =
            GetOptions::max_bytes(1000).within(UploadWindow::new(start, Duration::from_secs(70)));
        let store = &store;
        async move { store.get_with("g.slc", &options).await }
    };

    assert!(matches!(
        get_in(modified + Duration::from_secs(5)).await,
        Err(StorageError::TooEarly { .. })
    ));
    assert!(matches!(
        get_in(modified - Duration::from_secs(100)).await,
        Err(StorageError::TooLate { .. })
    ));
    assert_eq!(
        get_in(modified - Duration::from_secs(10))
            .await
            .unwrap()
            .body,
        payload(100, 8)
    );
    // LastModified is truncated to the second: a window opening 0.5 s "after" it still holds
    // an object written in that same second.
    assert!(get_in(modified + Duration::from_millis(500)).await.is_ok());
}

#[tokio::test]
async fn unresponsive_server_times_out() {
    // A proxy that never forwards a byte: connections open, requests hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = TestProxy::start(listener.local_addr().unwrap(), ProxyMode::StallAfter(0))
        .await
        .unwrap();
    let mut config = S3Config::new("bucket", S3Credentials::new("ak", "sk"))
        .with_endpoint(proxy.endpoint())
        .with_region("us-east-1");
    config.attempt_timeout = Duration::from_millis(300);
    config.max_attempts = 2;
    config.initial_backoff = Duration::from_millis(10);
    config.metadata_timeout = Duration::from_secs(5);
    config.download_timeout = Duration::from_secs(5);
    let store = S3Store::new(config).unwrap();

    let started = Instant::now();
    assert!(matches!(
        store.head("k").await,
        Err(StorageError::Timeout { .. })
    ));
    assert!(matches!(
        store.get("k", 10).await,
        Err(StorageError::Timeout { .. })
    ));
    assert!(matches!(
        store.put("k", Bytes::from_static(b"x")).await,
        Err(StorageError::Timeout { .. })
    ));
    // Three operations, two 300 ms attempts each, plus backoff.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
