use super::*;
use serde_json::{Value, json};

fn reference() -> RunManifest {
    RunManifest::reference("run-1", "tiny")
}

fn verified(m: &RunManifest) -> VerifiedManifest {
    verify(m.clone(), "test", None).unwrap()
}

fn paths(m: RunManifest) -> Vec<String> {
    match verify(m, "test", None) {
        Err(ManifestError::Invalid { errors, .. }) => errors.into_iter().map(|e| e.path).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn every_preset_gives_a_valid_reference_manifest() {
    for preset in PRESET_NAMES {
        let run = verified(&RunManifest::reference("r", preset));
        assert_eq!(run.model(), &LlamaConfig::preset(preset).unwrap());
    }
}

#[test]
fn hash_is_stable_across_serialization_round_trips_and_key_order() {
    let run = verified(&reference());
    let pretty = reference().to_json_pretty();
    assert_eq!(parse(&pretty, "pretty", None).unwrap().hash(), run.hash());
    // The canonical form parses back to the same identity.
    assert_eq!(
        parse(run.canonical(), "canonical", None).unwrap().hash(),
        run.hash()
    );
    // Reversed key order, extra whitespace: same document, same hash.
    let value: Value = serde_json::from_str(&pretty).unwrap();
    let text = reversed_text(&value);
    assert_ne!(text, serde_json::to_string(&value).unwrap());
    assert_eq!(parse(&text, "reversed", None).unwrap().hash(), run.hash());
}

/// `value` as JSON text with every object's keys in reverse order and some whitespace.
fn reversed_text(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            keys.reverse();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{} : {}", Value::String(k.clone()), reversed_text(&map[k])))
                .collect();
            format!("{{ {} }}", items.join(" ,\n"))
        }
        other => other.to_string(),
    }
}

#[test]
fn a_preset_and_its_spelled_out_twin_are_the_same_run() {
    let mut twin = reference();
    twin.model = ModelSection {
        preset: None,
        config: Some(LlamaConfig::tiny()),
    };
    assert_eq!(verified(&twin).hash(), verified(&reference()).hash());
}

/// Every leaf of the document, as a JSON pointer.
fn leaves(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                leaves(item, format!("{prefix}/{key}"), out);
            }
        }
        _ => out.push(prefix),
    }
}

#[test]
fn the_hash_changes_with_every_protocol_field() {
    let base = verified(&reference());
    let document: Value = serde_json::from_str(base.canonical()).unwrap();
    let mut pointers = Vec::new();
    leaves(&document, String::new(), &mut pointers);
    assert!(pointers.len() > 40, "{pointers:?}");
    let mut checked = 0;
    for pointer in &pointers {
        let mut changed = document.clone();
        let leaf = changed.pointer_mut(pointer).unwrap();
        *leaf = match leaf.clone() {
            Value::Bool(b) => Value::Bool(!b),
            Value::String(s) => Value::String(format!("{s}x")),
            Value::Number(n) if n.is_u64() => json!(n.as_u64().unwrap() + 2),
            Value::Number(n) if n.is_i64() => json!(n.as_i64().unwrap() + 2),
            Value::Number(n) => json!(n.as_f64().unwrap() * 0.5),
            Value::Null => json!(7),
            other => panic!("unexpected leaf {other:?} at {pointer}"),
        };
        // Some changes make the manifest invalid (that is fine: it is then refused);
        // every valid one must be a different run.
        if let Ok(run) = parse(&changed.to_string(), pointer, None) {
            assert_ne!(run.hash(), base.hash(), "changing {pointer} kept the hash");
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} valid variations");
}

#[test]
fn unknown_and_missing_fields_are_refused_with_their_path() {
    let mut value: Value = serde_json::from_str(&reference().to_json_pretty()).unwrap();
    value["sparseloco"]["chunkk"] = json!(64);
    let err = parse(&value.to_string(), "m.json", None).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Parse { path, .. } if path == "sparseloco.chunkk"),
        "{err}"
    );
    assert!(err.to_string().contains("chunkk"), "{err}");

    let mut value: Value = serde_json::from_str(&reference().to_json_pretty()).unwrap();
    value["training"].as_object_mut().unwrap().remove("outerLr");
    let err = parse(&value.to_string(), "m.json", None).unwrap_err();
    assert!(err.to_string().contains("outerLr"), "{err}");

    let err = parse("{\"manifestVersion\": 1,", "m.json", None).unwrap_err();
    assert!(matches!(err, ManifestError::Parse { .. }), "{err}");
}

#[test]
fn rules_name_the_field_they_refuse() {
    let mut m = reference();
    m.model = ModelSection::preset("llama-1b");
    assert_eq!(paths(m), ["model.preset"]);

    let mut m = reference();
    m.model.config = Some(LlamaConfig::tiny());
    assert_eq!(paths(m), ["model"]);

    let mut m = reference();
    let mut shape = LlamaConfig::tiny();
    shape.num_key_value_heads = 3;
    m.model = ModelSection {
        preset: None,
        config: Some(shape),
    };
    assert_eq!(paths(m), ["model.config.num_key_value_heads"]);

    let mut m = reference();
    let mut shape = LlamaConfig::tiny();
    shape.vocab_size = 1000;
    shape.eos_token_id = 0;
    m.model = ModelSection {
        preset: None,
        config: Some(shape),
    };
    assert_eq!(paths(m), ["model.config.vocab_size"]);

    let mut m = reference();
    m.sparseloco.chunk = 128;
    assert_eq!(paths(m), ["sparseloco.chunk"]);
    let mut m = reference();
    m.sparseloco.topk = 0;
    assert_eq!(paths(m), ["sparseloco.topk"]);
    let mut m = reference();
    m.sparseloco.quantization_bits = 4;
    m.sparseloco.error_feedback_decay = 1.5;
    assert_eq!(
        paths(m),
        [
            "sparseloco.errorFeedbackDecay",
            "sparseloco.quantizationBits"
        ]
    );

    let mut m = reference();
    m.training.batch_size = 10;
    m.training.micro_batch_size = 4;
    m.training.outer_lr = f64::NAN;
    assert_eq!(paths(m), ["training.batchSize", "training.outerLr"]);

    let mut m = reference();
    m.run_id = "devnet/x".into();
    m.window.blocks_per_window = 0;
    m.weights.interval_windows = 0;
    m.gauntlet.binary_score_alpha = 0.0;
    assert_eq!(
        paths(m),
        [
            "runId",
            "window.blocksPerWindow",
            "gauntlet",
            "weights.intervalWindows"
        ]
    );

    let mut m = reference();
    m.manifest_version = 2;
    assert_eq!(paths(m), ["manifestVersion"]);
}

#[test]
fn a_pinned_hash_must_match() {
    let run = verified(&reference());
    let pin = run.hash();
    assert!(verify(reference(), "t", Some(&pin)).is_ok());
    let mut other = reference();
    other.seeds.run += 1;
    let err = verify(other, "t", Some(&pin)).unwrap_err();
    assert!(matches!(err, ManifestError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&pin.to_hex()), "{err}");

    assert_eq!(
        format!("sha256:{pin}").parse::<ManifestHash>().unwrap(),
        pin
    );
    assert!("abc".parse::<ManifestHash>().is_err());
    assert!("zz".repeat(32).parse::<ManifestHash>().is_err());
}

#[test]
fn load_file_reads_and_pins() {
    let dir = std::env::temp_dir().join(format!("run-manifest-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.json");
    std::fs::write(&path, reference().to_json_pretty()).unwrap();
    let run = load_file(&path, None).unwrap();
    assert_eq!(load_file(&path, Some(&run.hash().to_hex())).unwrap(), run);
    let err = load_file(&path, Some("nothex")).unwrap_err();
    assert!(matches!(err, ManifestError::BadPin(_)), "{err}");
    let err = load_file(&dir.join("absent.json"), None).unwrap_err();
    assert!(err.to_string().contains("absent.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn with_dataset(sampling: Sampling) -> RunManifest {
    let mut m = reference();
    m.data = DataSection::Dataset(DatasetRef {
        uri: "s3://datasets/fineweb/v1".into(),
        sha256: "ab".repeat(32),
        endpoint: Some("http://127.0.0.1:8333".into()),
        region: None,
        sampling,
    });
    m
}

#[test]
fn a_dataset_reference_is_its_own_run_and_round_trips() {
    let whole = with_dataset(Sampling::WholeDataset {});
    let run = verified(&whole);
    assert_ne!(run.hash(), verified(&reference()).hash());
    let text = whole.to_json_pretty();
    assert!(text.contains("\"wholeDataset\""), "{text}");
    assert!(
        !text.contains("region"),
        "absent options are not written: {text}"
    );
    assert_eq!(parse(&text, "t", None).unwrap().hash(), run.hash());
    let windowed = with_dataset(Sampling::ShardWindow {
        shards: 8,
        rotate_every_windows: 455,
    });
    let text = windowed.to_json_pretty();
    assert!(text.contains("\"rotateEveryWindows\": 455"), "{text}");
    assert_ne!(parse(&text, "t", None).unwrap().hash(), run.hash());

    // Every leaf of the dataset reference is part of the identity.
    let document: Value = serde_json::from_str(verified(&windowed).canonical()).unwrap();
    for (pointer, value) in [
        ("/data/dataset/uri", json!("s3://datasets/fineweb/v2")),
        ("/data/dataset/sha256", json!("cd".repeat(32))),
        ("/data/dataset/endpoint", json!("http://127.0.0.1:9000")),
        ("/data/dataset/sampling/shardWindow/shards", json!(9)),
    ] {
        let mut changed = document.clone();
        *changed.pointer_mut(pointer).unwrap() = value;
        let other = parse(&changed.to_string(), pointer, None).unwrap();
        assert_ne!(other.hash(), verified(&windowed).hash(), "{pointer}");
    }
}

#[test]
fn dataset_rules_name_the_field_they_refuse() {
    let mut m = with_dataset(Sampling::ShardWindow {
        shards: 0,
        rotate_every_windows: 0,
    });
    if let DataSection::Dataset(data) = &mut m.data {
        data.uri = "relative/dir".into();
        data.sha256 = "AB".repeat(32);
        data.endpoint = Some("127.0.0.1:8333".into());
    }
    assert_eq!(
        paths(m),
        [
            "data.dataset.uri",
            "data.dataset.sha256",
            "data.dataset.endpoint",
            "data.dataset.endpoint",
            "data.dataset.sampling.shardWindow.shards",
            "data.dataset.sampling.shardWindow.rotateEveryWindows",
        ]
    );
    let mut m = with_dataset(Sampling::WholeDataset {});
    if let DataSection::Dataset(data) = &mut m.data {
        data.uri = "file:///mnt/data".into();
    }
    assert_eq!(paths(m), ["data.dataset.endpoint"]);

    let mut value: Value =
        serde_json::from_str(&with_dataset(Sampling::WholeDataset {}).to_json_pretty()).unwrap();
    value["data"]["dataset"]["secretAccessKey"] = json!("s3cr3t");
    let err = parse(&value.to_string(), "m.json", None).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Parse { path, .. } if path == "data.dataset.secretAccessKey"),
        "credentials have no place in a manifest: {err}"
    );
}
