//! The seam operator -> pod -> worker, with the real code on both sides: for every example
//! in manifests/examples and a table of edge cases, the operator renders the desired pods,
//! their mounted files are written to a temp dir, and exactly that command, environment and
//! those files are parsed by the worker's own CLI (`worker::cli::Cli`) and manifest loader.
//! Everything the operator accepts, the worker starts with (up to the chain connection);
//! everything the worker would refuse, the operator reports as invalid, naming the field.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use k8s_openapi::api::core::v1::ConfigMap;
use run_manifest::{ManifestHash, RunManifest};
use subnet_operator::crd::{TrainingRun, ValidatorSet};
use subnet_operator::rendered::{RenderError, RenderedPod, rendered_files};
use worker::cli::{Cli, Command};
use worker::manifest_source::manifest_from_args;
use worker::network::NodeArgs;
use worker::settings::TrainingSettings;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples")
}

fn read<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let text = std::fs::read_to_string(examples().join(file)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{file}: {err}"))
}

fn config_maps() -> Vec<ConfigMap> {
    vec![read("run-manifest.yaml")]
}

/// The worker's view of a rendered pod: its files under `root`, its env turned into the
/// flags the worker's CLI reads those variables into, parsed by that CLI.
fn parse_pod(rendered: &RenderedPod, root: &Path) -> Result<Cli, clap::Error> {
    let mut env = rendered.env.clone();
    for (path, contents) in &rendered.files {
        let local = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, contents).unwrap();
        // Variables that point at a mounted file point at its copy.
        for value in env.values_mut() {
            if value == path {
                *value = local.display().to_string();
            }
        }
    }
    let mut argv: Vec<String> = rendered.command.clone();
    argv.extend(rendered.args.iter().cloned());
    let subcommand = argv.get(1).cloned().unwrap_or_default();
    let cli = Cli::command();
    let sub = cli
        .find_subcommand(&subcommand)
        .unwrap_or_else(|| panic!("pod runs unknown subcommand {subcommand:?}"));
    // Exactly the variables the CLI declares; anything else the pod sets is the container's.
    for arg in sub.get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let Some(value) = env.get(name.to_str().unwrap()) else {
            continue;
        };
        if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            if value == "true" {
                argv.push(format!("--{long}"));
            }
        } else {
            argv.push(format!("--{long}"));
            argv.push(value.clone());
        }
    }
    Cli::try_parse_from(argv)
}

fn node_args(cli: Cli) -> NodeArgs {
    match cli.command {
        Command::Miner(args) => args,
        Command::Validator(args) => args.node,
        other => panic!("pod runs {other:?}"),
    }
}

/// Renders replica 0 and starts the worker on it as far as it goes without a chain.
fn start(rendered: &RenderedPod) -> TrainingSettings {
    let dir = tempfile::tempdir().unwrap();
    let cli = parse_pod(rendered, dir.path()).expect("the worker parses the pod");
    let args = node_args(cli);
    // The worker serves its health endpoints (from the pod's HEALTH_ADDR) on the container
    // port the pod's probes target.
    let container = &rendered.pod.spec.as_ref().unwrap().containers[0];
    let probe_port = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|g| g.port.clone())
        .expect("a readiness probe");
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| {
            probe_port
                == k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                    p.name.clone().unwrap_or_default(),
                )
        })
        .map(|p| p.container_port)
        .expect("the probe names a container port");
    assert!(
        matches!(args.health_addr, worker::health_server::HealthAddr::Listen(addr)
            if i32::from(addr.port()) == port
                && addr.port() == run_manifest::deployment::WORKER_HEALTH_PORT),
        "health endpoints on {}, probes on port {port}",
        args.health_addr
    );
    let run = manifest_from_args(&args)
        .expect("the worker loads the mounted manifest")
        .expect("the pod names a manifest");
    assert_eq!(
        Some(run.hash().to_hex()),
        rendered.env.get("RUN_MANIFEST_SHA256").cloned(),
        "the pinned hash is the manifest's"
    );
    TrainingSettings::from_manifest(&run)
}

#[test]
fn example_pods_start_and_miners_and_validators_agree_on_every_protocol_number() {
    let maps = config_maps();
    let miners: TrainingRun = read("trainingrun.yaml");
    let validators: ValidatorSet = read("validatorset.yaml");
    let miner = start(&rendered_files(&miners, 0, &maps).unwrap());
    let validator = start(&rendered_files(&validators, 0, &maps).unwrap());
    // One manifest: the same run, the same identity, the same protocol numbers.
    assert_eq!(miner.manifest_hash(), validator.manifest_hash());
    assert_eq!(miner.manifest().manifest(), validator.manifest().manifest());
    assert_eq!(miner.samples_per_window(), validator.samples_per_window());
    assert_eq!(miner.sparseloco(), validator.sparseloco());
    assert_eq!(miner.model_config(), validator.model_config());
    // And it is the ConfigMap's manifest, as the worker's loader reads it.
    let text = maps[0].data.as_ref().unwrap()["manifest.json"].clone();
    let expected = run_manifest::parse(&text, "example", None).unwrap();
    assert_eq!(miner.manifest_hash(), expected.hash());
    assert_ne!(miner.run_id, "devnet", "the run id reaches the pods");
}

fn manifest_text() -> String {
    config_maps()[0].data.as_ref().unwrap()["manifest.json"].clone()
}

fn with_manifest(change: impl Fn(&mut serde_json::Value)) -> Vec<ConfigMap> {
    let mut value: serde_json::Value = serde_json::from_str(&manifest_text()).unwrap();
    change(&mut value);
    let mut maps = config_maps();
    maps[0]
        .data
        .as_mut()
        .unwrap()
        .insert("manifest.json".into(), value.to_string());
    maps
}

/// What the worker's own loader says about a manifest text.
fn worker_verdict(text: &str) -> Result<ManifestHash, String> {
    run_manifest::parse(text, "pod", None)
        .map(|run| run.hash())
        .map_err(|err| err.to_string())
}

#[test]
fn what_the_worker_refuses_the_operator_refuses_naming_the_field() {
    let miners: TrainingRun = read("trainingrun.yaml");
    type Change = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "model.preset",
            Box::new(|m| m["model"]["preset"] = "llama-1b".into()),
        ),
        (
            "sparseloco.chunk",
            Box::new(|m| m["sparseloco"]["chunk"] = 128.into()),
        ),
        (
            "sparseloco.quantizationBits",
            Box::new(|m| m["sparseloco"]["quantizationBits"] = 4.into()),
        ),
        (
            "training.batchSize",
            Box::new(|m| m["training"]["batchSize"] = 0.into()),
        ),
        (
            "sparseloco.topkk",
            Box::new(|m| m["sparseloco"]["topkk"] = 1.into()),
        ),
        ("runId", Box::new(|m| m["runId"] = "a/b".into())),
    ];
    for (field, change) in cases {
        let maps = with_manifest(change);
        let text = maps[0].data.as_ref().unwrap()["manifest.json"].clone();
        let worker = worker_verdict(&text).expect_err("the worker refuses it");
        assert!(
            worker.contains(field),
            "worker message for {field}: {worker}"
        );
        match rendered_files(&miners, 0, &maps) {
            Err(RenderError::Rejected(rejection)) => {
                let message = rejection.message();
                assert!(
                    message.contains(field),
                    "operator message for {field}: {message}"
                );
                assert_eq!(rejection.reason, "InvalidSpec");
            }
            other => panic!("operator accepted what the worker refuses ({field}): {other:?}"),
        }
    }

    // Deployment settings follow the same rules on both sides.
    let mut https = miners.clone();
    https.spec.workload.chain_endpoint = "https://entrypoint-finney.opentensor.ai".into();
    match rendered_files(&https, 0, &config_maps()) {
        Err(RenderError::Rejected(rejection)) => {
            assert!(
                rejection.message().contains("chainEndpoint"),
                "{}",
                rejection.message()
            )
        }
        other => panic!("operator accepted an https chain endpoint: {other:?}"),
    }
    let ok = rendered_files(&miners, 0, &config_maps()).unwrap();
    let mut bad = ok.clone();
    bad.env.insert(
        "CHAIN_ENDPOINT".into(),
        "https://entrypoint-finney.opentensor.ai".into(),
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(
        parse_pod(&bad, dir.path()).is_err(),
        "the worker refuses it too"
    );

    // A pinned hash that does not match is refused by both.
    let mut pinned = miners.clone();
    pinned.spec.workload.manifest.sha256 = Some("00".repeat(32));
    assert!(matches!(
        rendered_files(&pinned, 0, &config_maps()),
        Err(RenderError::Rejected(_))
    ));
    let mut wrong_pin = ok.clone();
    wrong_pin
        .env
        .insert("RUN_MANIFEST_SHA256".into(), "00".repeat(32));
    let dir = tempfile::tempdir().unwrap();
    let args = node_args(parse_pod(&wrong_pin, dir.path()).unwrap());
    let err = manifest_from_args(&args).unwrap_err().to_string();
    assert!(err.contains("pinned"), "{err}");
}

#[test]
fn every_reference_manifest_the_worker_writes_the_operator_accepts() {
    let miners: TrainingRun = read("trainingrun.yaml");
    for preset in run_manifest::PRESET_NAMES {
        let manifest = RunManifest::reference("contract", preset);
        let maps = with_manifest(|m| *m = serde_json::to_value(&manifest).unwrap());
        let rendered = rendered_files(&miners, 0, &maps)
            .unwrap_or_else(|err| panic!("{preset}: operator refused the template: {err}"));
        let settings = start(&rendered);
        assert_eq!(
            settings.model_config(),
            run_manifest::LlamaConfig::preset(preset).unwrap()
        );
    }
}

/// The registration Job's container (the only one with the coldkey) is parsed by the worker's
/// own `register` command: the netuid, endpoint, hotkey and coldkey files it names are the
/// ones the Job mounts.
#[test]
fn the_registration_job_runs_worker_register_with_the_mounted_keys() {
    let mut miners: TrainingRun = read("trainingrun.yaml");
    assert!(
        subnet_operator::rendered::rendered_registration(&miners, 0)
            .unwrap()
            .is_none(),
        "no coldkey, no registration Job"
    );
    miners.spec.workload.wallet.coldkey_secret = Some("miner-coldkey".into());
    let rendered = subnet_operator::rendered::rendered_registration(&miners, 1)
        .unwrap()
        .expect("a Job with a coldkey");
    let dir = tempfile::tempdir().unwrap();
    let cli = parse_pod(&rendered, dir.path()).expect("the worker parses the Job's pod");
    let Command::Register(args) = cli.command else {
        panic!("the Job runs {:?}", cli.command);
    };
    assert_eq!(args.chain.netuid, miners.spec.workload.netuid);
    assert!(args.chain.json, "the Job's log is the JSON report");
    let contents = |path: &Path| std::fs::read_to_string(path).unwrap();
    assert_eq!(
        contents(&args.coldkey_file),
        subnet_operator::rendered::secret_placeholder("miner-coldkey", "coldkey")
    );
    assert_eq!(
        contents(args.hotkey.hotkey_file.as_deref().unwrap()),
        subnet_operator::rendered::secret_placeholder("miner-hotkey-1", "hotkey")
    );
}

/// A run manifest naming a dataset on S3 or in a directory: the operator refuses a spec that
/// cannot reach it (naming `spec.data`), and otherwise the worker parses from the pod exactly
/// the read credentials, the bounded cache and the mounted directory it will read.
#[test]
fn a_dataset_on_s3_or_a_volume_reaches_the_worker_as_the_pod_provides_it() {
    use subnet_operator::crd::{CredentialsSecretRef, DataSpec};
    let dataset = |uri: &str| {
        let uri = uri.to_owned();
        with_manifest(move |m| {
            m["data"] = serde_json::json!({"dataset": {
                "uri": uri,
                "sha256": "ab".repeat(32),
                "sampling": {"wholeDataset": {}},
            }});
            if uri.starts_with("s3://") {
                m["data"]["dataset"]["endpoint"] = serde_json::json!("http://seaweedfs:8333");
            }
        })
    };
    let on_s3 = dataset("s3://datasets/fineweb/v1");
    let mut miners: TrainingRun = read("trainingrun.yaml");
    match rendered_files(&miners, 0, &on_s3) {
        Err(RenderError::Rejected(r)) => assert!(
            r.message().contains("spec.data.credentialsSecret: the run manifest's dataset s3://datasets/fineweb/v1 needs read credentials"),
            "{}",
            r.message()
        ),
        other => panic!("an s3:// dataset without credentials must be refused: {other:?}"),
    }
    miners.spec.workload.data = Some(DataSpec {
        credentials_secret: Some(CredentialsSecretRef {
            name: "dataset-read".into(),
            access_key_id_key: "accessKeyId".into(),
            secret_access_key_key: "secretAccessKey".into(),
        }),
        cache_gib: 50,
        ..DataSpec::default()
    });
    let rendered = rendered_files(&miners, 0, &on_s3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = node_args(parse_pod(&rendered, dir.path()).unwrap());
    let placeholder = subnet_operator::rendered::secret_placeholder;
    assert_eq!(
        args.data.data_access_key_id,
        Some(placeholder("dataset-read", "accessKeyId"))
    );
    assert_eq!(
        args.data.data_secret_access_key,
        Some(placeholder("dataset-read", "secretAccessKey"))
    );
    assert_eq!(args.data.data_cache_gib, 50);
    let cache_dir = args.data.data_cache_dir.clone().expect("a cache directory");
    let spec = rendered.pod.spec.as_ref().unwrap();
    let mounts = spec.containers[0].volume_mounts.clone().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| Path::new(&m.mount_path) == cache_dir && m.read_only != Some(true)),
        "the cache directory is a writable mount: {mounts:?}"
    );

    // A directory dataset: its claim is mounted read-only where the manifest says.
    let on_volume = dataset("/data/fineweb/v1");
    miners.spec.workload.data = Some(DataSpec {
        volume_claim: Some("fineweb".into()),
        ..DataSpec::default()
    });
    let rendered = rendered_files(&miners, 0, &on_volume).unwrap();
    let settings = start(&rendered);
    let run_manifest::sections::DataSection::Dataset(reference) =
        &settings.manifest().manifest().data
    else {
        panic!("the pod's manifest names the dataset");
    };
    let run_manifest::DatasetUri::Dir(path) =
        run_manifest::DatasetUri::parse(&reference.uri).unwrap()
    else {
        panic!("a directory dataset");
    };
    let spec = rendered.pod.spec.as_ref().unwrap();
    let mount = spec.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| Path::new(&m.mount_path) == path)
        .expect("the dataset directory is mounted");
    assert_eq!(mount.read_only, Some(true));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "fineweb"
    );
}

/// Operator -> pod -> worker for the GPUs: a miner pod granted 8 GPUs makes the worker train
/// on 8 ranks (ZeRO-1, the default) with the NCCL settings and a memory `/dev/shm` sized for
/// them; a CPU miner pod runs one process without NCCL settings; the validator pod asks for
/// no ranks (it evaluates on one device).
#[test]
fn a_miner_pod_trains_on_as_many_ranks_as_it_is_granted_gpus() {
    use worker::rank_control::RankSharding;
    let maps = config_maps();
    let miners: TrainingRun = read("trainingrun.yaml");
    assert_eq!(miners.spec.workload.gpus_per_replica, 8);
    let rendered = rendered_files(&miners, 0, &maps).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = node_args(parse_pod(&rendered, dir.path()).unwrap());
    let pod = rendered.pod.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    let granted = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("nvidia.com/gpu"))
        .map(|q| q.0.clone());
    assert_eq!(granted.as_deref(), Some("8"));
    assert_eq!(args.ranks.world_size, Some(8), "one rank per granted GPU");
    assert_eq!(args.ranks.optimizer_sharding, RankSharding::Zero1);
    for name in ["NCCL_DEBUG", "TORCH_NCCL_ASYNC_ERROR_HANDLING"] {
        assert!(rendered.env.contains_key(name), "{name} missing");
    }
    let shm = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/dev/shm")
        .expect("/dev/shm is mounted");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == shm.name)
        .and_then(|v| v.empty_dir.as_ref())
        .expect("/dev/shm is an emptyDir");
    assert_eq!(volume.medium.as_deref(), Some("Memory"));
    assert_eq!(
        volume.size_limit.as_ref().map(|q| q.0.as_str()),
        Some("16Gi")
    );

    let mut cpu = miners.clone();
    cpu.spec.workload.gpus_per_replica = 0;
    let rendered = rendered_files(&cpu, 0, &maps).unwrap();
    let args = node_args(parse_pod(&rendered, dir.path()).unwrap());
    assert_eq!(args.ranks.world_size, Some(1));
    assert!(!rendered.env.contains_key("NCCL_DEBUG"));

    let validators: ValidatorSet = read("validatorset.yaml");
    let rendered = rendered_files(&validators, 0, &maps).unwrap();
    let args = node_args(parse_pod(&rendered, dir.path()).unwrap());
    assert_eq!(args.ranks.world_size, None);
}

/// A TrainingRun's `spec.overlap` reaches the worker: its pod's environment, parsed by the
/// worker's own CLI, asks for overlapped windows; the example (without it) for sequential.
#[test]
fn a_training_run_with_overlap_runs_overlapped_miners() {
    let maps = config_maps();
    let mut miners: TrainingRun = read("trainingrun.yaml");
    assert!(!miners.spec.overlap);
    let dir = tempfile::tempdir().unwrap();
    let parse = |run: &TrainingRun| {
        let rendered = rendered_files(run, 0, &maps).unwrap();
        node_args(parse_pod(&rendered, dir.path()).unwrap())
    };
    assert!(!parse(&miners).overlap);
    miners.spec.overlap = true;
    assert!(parse(&miners).overlap);
}
