//! LocalStore: the directory backend used by the devnet.

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use worker_storage::{GetOptions, LocalStore, ObjectStore, StorageError, UploadWindow};

fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("bucket")).unwrap();
    (dir, store)
}

/// Every regular file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn round_trip_with_s3_semantics() {
    let (_dir, store) = store();
    let before = SystemTime::now() - Duration::from_secs(1);
    store
        .put("run/a/1.bin", Bytes::from_static(b"one"))
        .await
        .unwrap();
    store
        .put("run/a/2.bin", Bytes::from_static(b"second"))
        .await
        .unwrap();
    store.put("run/ab", Bytes::new()).await.unwrap();
    // "run" as an object and "run/..." objects coexist, as on S3.
    store.put("run", Bytes::from_static(b"top")).await.unwrap();

    let got = store.get("run/a/2.bin", 6).await.unwrap();
    assert_eq!((got.body.as_ref(), got.size), (&b"second"[..], 6));
    assert!(got.last_modified >= before && got.last_modified <= SystemTime::now());
    assert_eq!(
        got.last_modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
        0,
        "LastModified has whole-second resolution like S3"
    );
    assert_eq!(store.get("run", 3).await.unwrap().body, &b"top"[..]);
    assert_eq!(store.head("run/a/1.bin").await.unwrap().size, 3);

    let keys = |objects: Vec<worker_storage::ObjectMeta>| {
        objects
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.list("run/a").await.unwrap()),
        [
            ("run/a/1.bin".to_owned(), 3),
            ("run/a/2.bin".to_owned(), 6),
            ("run/ab".to_owned(), 0)
        ]
    );
    assert_eq!(store.list("").await.unwrap().len(), 4);
    assert!(store.list("nothing/").await.unwrap().is_empty());

    store.delete("run/a/1.bin").await.unwrap();
    store.delete("run/a/2.bin").await.unwrap();
    store.delete("run/a/2.bin").await.unwrap();
    assert!(matches!(
        store.get("run/a/1.bin", 10).await,
        Err(StorageError::NotFound { .. })
    ));
    // Emptied directories are pruned.
    assert!(!store.root().join("run/a").exists());
    assert_eq!(store.list("run/").await.unwrap().len(), 1);
}

#[tokio::test]
async fn keys_cannot_escape_the_root() {
    let (dir, store) = store();
    for key in [
        "../outside",
        "/etc/evil",
        "a/../../x",
        ".partial/x",
        "a/./b",
    ] {
        assert!(
            matches!(
                store.put(key, Bytes::from_static(b"x")).await,
                Err(StorageError::InvalidKey { .. })
            ),
            "{key}"
        );
        assert!(matches!(
            store.get(key, 1).await,
            Err(StorageError::InvalidKey { .. })
        ));
    }
    assert!(matches!(
        store.list("../").await,
        Err(StorageError::InvalidKey { .. })
    ));
    assert!(files_under(dir.path()).is_empty());
}

#[tokio::test]
async fn corrupted_or_truncated_files_are_rejected() {
    let (_dir, store) = store();
    store
        .put("g.slc", Bytes::from(vec![7u8; 4096]))
        .await
        .unwrap();
    let path = store.object_path("g.slc").unwrap();

    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        store.get("g.slc", 10_000).await,
        Err(StorageError::Checksum {
            expected: Some(_),
            ..
        })
    ));

    fs::write(&path, &bytes[..20]).unwrap();
    assert!(store.get("g.slc", 10_000).await.is_err());
}

#[tokio::test]
async fn size_and_window_are_checked_before_reading() {
    let (_dir, store) = store();
    store
        .put("g.slc", Bytes::from(vec![1u8; 2000]))
        .await
        .unwrap();
    assert!(matches!(
        store.get("g.slc", 1999).await,
        Err(StorageError::TooLarge {
            limit: 1999,
            size: 2000,
            ..
        })
    ));
    let modified = store.head("g.slc").await.unwrap().last_modified;
    let within = |start| {
        GetOptions::max_bytes(2000).within(UploadWindow::new(start, Duration::from_secs(70)))
    };
    assert!(matches!(
        store
            .get_with("g.slc", &within(modified + Duration::from_secs(2)))
            .await,
        Err(StorageError::TooEarly { .. })
    ));
    assert!(matches!(
        store
            .get_with("g.slc", &within(modified - Duration::from_secs(71)))
            .await,
        Err(StorageError::TooLate { .. })
    ));
    assert!(
        store
            .get_with("g.slc", &within(modified + Duration::from_millis(999)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn missed_deadline_publishes_nothing_and_leaves_no_partial() {
    let (_dir, store) = store();
    let past = Instant::now() - Duration::from_millis(1);
    assert!(matches!(
        store
            .put_before("late.slc", Bytes::from_static(b"x"), past)
            .await,
        Err(StorageError::Timeout { .. })
    ));
    assert!(matches!(
        store.head("late.slc").await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(files_under(store.root()).is_empty());

    let future = Instant::now() + Duration::from_secs(30);
    store
        .put_before("ok.slc", Bytes::from_static(b"x"), future)
        .await
        .unwrap();
    assert_eq!(files_under(store.root()), ["ok.slc.obj"]);
}

#[tokio::test]
async fn partial_writes_are_invisible_and_stale_ones_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let store = LocalStore::open(&root).unwrap();
    let fresh = root.join(".partial/crashed-writer-fresh");
    let stale = root.join(".partial/crashed-writer-stale");
    fs::write(&fresh, b"half").unwrap();
    fs::write(&stale, b"half").unwrap();
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
        .unwrap();
    assert!(store.list("").await.unwrap().is_empty());

    LocalStore::open(&root).unwrap();
    assert!(
        fresh.exists(),
        "an in-progress write of another process is kept"
    );
    assert!(!stale.exists());
}

#[tokio::test]
async fn concurrent_writers_and_readers_only_see_whole_objects() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let bodies: Vec<Bytes> = (0..8u8)
        .map(|i| Bytes::from(vec![i; 256 * 1024 + usize::from(i)]))
        .collect();
    store.put("hot.slc", bodies[0].clone()).await.unwrap();

    let mut tasks = Vec::new();
    for body in bodies.clone() {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                store.put("hot.slc", body.clone()).await.unwrap();
            }
        }));
    }
    for _ in 0..4 {
        let store = Arc::clone(&store);
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let got = store.get("hot.slc", u64::MAX).await.unwrap();
                assert!(bodies.contains(&got.body), "read a mixed or partial object");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(files_under(store.root()), ["hot.slc.obj"]);
}
