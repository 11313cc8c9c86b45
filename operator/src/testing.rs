//! Fixtures for the unit tests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{
    CredentialsSecretRef, Hyperparameters, ModelSpec, PullPolicy, StorageSpec, TrainingRun,
    TrainingRunSpec, ValidatorSet, ValidatorSetSpec, WalletSpec,
};

pub fn storage() -> StorageSpec {
    StorageSpec {
        endpoint: "https://s3.example.com".into(),
        bucket: "grads-bucket".into(),
        region: "auto".into(),
        credentials_secret: CredentialsSecretRef {
            name: "s3-creds".into(),
            access_key_id_key: "accessKeyId".into(),
            secret_access_key_key: "secretAccessKey".into(),
        },
        read_credentials_secret: None,
    }
}

pub fn wallet_template() -> WalletSpec {
    WalletSpec {
        coldkey_secret: None,
        coldkey_key: "coldkey".into(),
        hotkey_secrets: None,
        hotkey_secret_template: Some("miner-hotkey-{index}".into()),
        hotkey_key: "hotkey".into(),
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("subnet".into()),
        uid: Some("1111-2222".into()),
        generation: Some(1),
        ..ObjectMeta::default()
    }
}

/// A valid TrainingRun as read from the API (uid set).
pub fn run(replicas: i32) -> TrainingRun {
    let mut run = TrainingRun::new(
        "run",
        TrainingRunSpec {
            netuid: 3,
            chain_endpoint: "ws://subtensor:9944".into(),
            image: "worker:1".into(),
            image_pull_policy: PullPolicy::IfNotPresent,
            image_pull_secrets: vec![],
            replicas,
            gpus_per_replica: 8,
            resources: None,
            model: ModelSpec {
                preset: Some("llama-1b".into()),
                ..ModelSpec::default()
            },
            hyperparameters: Hyperparameters::default(),
            storage: storage(),
            wallet: wallet_template(),
            checkpoint: None,
            node_selector: Default::default(),
            tolerations: vec![],
            affinity: None,
            priority_class_name: None,
            service_account_name: None,
            extra_env: vec![],
            extra_args: vec![],
            suspend: false,
        },
    );
    run.metadata = meta("run");
    run
}

/// A valid ValidatorSet as read from the API.
pub fn validators(replicas: i32) -> ValidatorSet {
    let mut vs = ValidatorSet::new(
        "vs",
        ValidatorSetSpec {
            netuid: 3,
            chain_endpoint: "wss://chain:443".into(),
            image: "worker:1".into(),
            image_pull_policy: PullPolicy::Always,
            image_pull_secrets: vec![],
            replicas,
            hotkeys: WalletSpec {
                hotkey_secrets: Some((0..replicas).map(|i| format!("vhk-{i}")).collect()),
                hotkey_secret_template: None,
                ..wallet_template()
            },
            evaluation: Default::default(),
            weight_interval_windows: 3,
            gpus_per_replica: 1,
            resources: None,
            model: ModelSpec {
                preset: Some("tiny".into()),
                ..ModelSpec::default()
            },
            storage: storage(),
            checkpoint: None,
            node_selector: Default::default(),
            tolerations: vec![],
            affinity: None,
            priority_class_name: None,
            service_account_name: None,
            extra_env: vec![],
            extra_args: vec![],
            suspend: false,
        },
    );
    vs.metadata = meta("vs");
    vs
}
