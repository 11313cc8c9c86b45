//! End-to-end: a short devnet with one cheater. The loss must fall, honest miners must
//! out-weigh the cheater on chain, every gradient on the wire must decode, nothing panics.

use worker::behaviour::Behaviour;
use worker::devnet::{self, DevnetArgs};
use worker::gradient_object::GradientObject;
use worker_model::{Llama, LlamaConfig};
use worker_sparseloco::{ParamSpec, decode};
use worker_storage::{LocalStore, ObjectStore};

/// The run completed `windows` windows, the shared model's held-out loss fell by more than
/// `drop`, and every miner stayed in lockstep with the validator.
fn assert_learns_in_lockstep(report: &worker::report::DevnetReport, windows: usize, drop: f64) {
    assert_eq!(report.windows.len(), windows);
    assert!(
        report.final_eval_loss() < report.initial_eval_loss - drop,
        "held-out loss {} -> {}",
        report.initial_eval_loss,
        report.final_eval_loss()
    );
    for window in &report.windows {
        assert!(
            window.miners.iter().all(|m| m.in_sync),
            "window {}",
            window.window
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_trains_and_gauntlet_catches_a_poisoner() {
    let dir = tempfile::tempdir().unwrap();
    let args = DevnetArgs {
        miners: 3,
        cheaters: vec![Behaviour::Poisoner],
        windows: 4,
        inner_steps: 8,
        micro_batch_size: 8,
        inner_lr: 3e-3,
        outer_lr: 1.0,
        weights_every: 2,
        seed: 7,
        dir: dir.path().join("devnet"),
        quiet: true,
        // miner-0 trains on two processes (its rank 1 is the worker binary's `worker rank`).
        miner_ranks: 2,
        rank_program: Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_worker"))),
        ..DevnetArgs::default()
    };
    let report = devnet::run(&args).await.expect("devnet run");

    assert_learns_in_lockstep(&report, 4, 0.1);
    // The two-rank miner reported every window and stayed in lockstep with the rest.
    let ranks: Vec<usize> = report.windows[0].miners.iter().map(|m| m.ranks).collect();
    assert_eq!(
        ranks.iter().filter(|&&r| r == 2).count(),
        1,
        "ranks {ranks:?}"
    );
    assert!(ranks.iter().all(|&r| r == 1 || r == 2), "ranks {ranks:?}");

    // Honest miners out-weigh the poisoner, and the poisoner is never aggregated.
    let poisoner = report.windows[0]
        .miners
        .iter()
        .find(|m| m.behaviour == "poisoner")
        .unwrap()
        .uid;
    let weight = |uid| {
        report
            .final_weights
            .iter()
            .find(|(u, _)| *u == uid)
            .map_or(0.0, |(_, w)| *w)
    };
    for miner in report.windows[0]
        .miners
        .iter()
        .filter(|m| m.behaviour == "honest")
    {
        assert!(
            weight(miner.uid) > weight(poisoner),
            "honest uid {} weight {} vs poisoner {}",
            miner.uid,
            weight(miner.uid),
            weight(poisoner)
        );
    }
    assert!(
        report
            .windows
            .iter()
            .all(|w| !w.aggregated_peers.contains(&poisoner))
    );
    let incentive = |uid| {
        report
            .final_incentive
            .iter()
            .find(|(u, _)| *u == uid)
            .map_or(0.0, |(_, i)| *i)
    };
    assert!(incentive(poisoner) < incentive(report.windows[0].miners[0].uid));

    // Every gradient object on the wire parses, carries a valid signature structure and
    // decodes against the model's parameter shapes.
    let model = Llama::new(LlamaConfig::tiny(), tch::Device::Cpu, 0).unwrap();
    let specs: Vec<ParamSpec> = model
        .param_specs()
        .into_iter()
        .map(|(name, shape)| ParamSpec::new(name, shape))
        .collect();
    let mut gradients = 0;
    let mut by_key = std::collections::BTreeMap::new();
    let mut mirrored = Vec::new();
    for bucket in std::fs::read_dir(args.dir.join("buckets")).unwrap() {
        let bucket = bucket.unwrap();
        // The lead validator's bucket holds its copies of the objects it aggregated.
        let lead = bucket.file_name() == "validator";
        let store = LocalStore::open(bucket.path()).unwrap();
        for meta in store.list("devnet/gradients/").await.unwrap() {
            let object = store.get(&meta.key, 1 << 26).await.unwrap();
            let parsed = GradientObject::parse(&object.body, 1 << 26).unwrap();
            let payload = decode(&parsed.payload, &specs).unwrap();
            assert_eq!((payload.uid, payload.window), (parsed.uid, parsed.window));
            if lead {
                mirrored.push((meta.key, object.body));
            } else {
                by_key.insert(meta.key, object.body);
                gradients += 1;
            }
        }
    }
    assert_eq!(gradients, 4 * 4, "one gradient per miner per window");
    assert!(!mirrored.is_empty());
    for (key, body) in &mirrored {
        assert_eq!(
            by_key.get(key),
            Some(body),
            "the mirror of {key} is the miner's object"
        );
    }
    assert_eq!(report.gradients_on_wire, gradients);
}

/// `worker devnet --overlap`: every miner trains window w+1 from its first block while the
/// lead's list of w is still to come (a grace of half the window, so a miner waiting for
/// that list could not start before 3 s), applies w's outer step one window late, and still
/// uploads in sync: every miner matches the validator after every window, every one is
/// aggregated, and the loss falls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapped_miners_train_from_the_window_start_and_stay_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let grace = 3;
    let args = DevnetArgs {
        miners: 3,
        windows: 4,
        inner_steps: 8,
        micro_batch_size: 8,
        outer_lr: 0.5,
        seed: 7,
        upload_grace_secs: Some(grace),
        overlap: true,
        dir: dir.path().join("devnet"),
        quiet: true,
        ..DevnetArgs::default()
    };
    let report = devnet::run(&args).await.expect("devnet run");

    assert_learns_in_lockstep(&report, 4, 0.1);
    for window in &report.windows[1..] {
        for miner in &window.miners {
            // Within the window's first block or two (the start is estimated from the block
            // number), far from the grace a sequential miner waits through.
            assert!(
                miner.train_start_secs < 1.5,
                "window {} uid {}: training started {:.2} s into the window (grace {grace} s)",
                window.window,
                miner.uid,
                miner.train_start_secs
            );
        }
    }
    for miner in &report.windows[0].miners {
        assert!(
            report
                .windows
                .iter()
                .filter(|w| w.aggregated_peers.contains(&miner.uid))
                .count()
                >= 2,
            "uid {} aggregated in fewer than 2 of 4 windows",
            miner.uid
        );
    }
}

/// `worker devnet --s3`: every bucket on a SeaweedFS server, and the run's dataset uploaded
/// there by `worker data`'s upload; every node fetches its shards from that bucket into its
/// own cache (read-only identity) and trains from them. The loss must fall and every miner
/// stay in sync, with nothing read from the bundled directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_over_s3_trains_from_the_uploaded_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let args = DevnetArgs {
        miners: 2,
        windows: 3,
        inner_steps: 8,
        micro_batch_size: 8,
        seed: 11,
        s3: true,
        dir: dir.path().join("devnet"),
        quiet: true,
        ..DevnetArgs::default()
    };
    let report = devnet::run(&args).await.expect("devnet --s3 run");
    assert_learns_in_lockstep(&report, 3, 0.05);
    let manifest = std::fs::read_to_string(args.dir.join("run-manifest.json")).unwrap();
    assert!(manifest.contains("s3://datasets/bundled"), "{manifest}");
    // Each node's cache holds the shards it fetched from the bucket.
    for node in ["validator", "miner-0", "miner-1"] {
        let cache = args.dir.join("data-cache").join(node);
        let shards = walk(&cache)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "shard"))
            .count();
        assert!(
            shards > 0,
            "{node} fetched no shard into {}",
            cache.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
