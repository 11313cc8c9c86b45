//! Fixtures for the unit tests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use run_manifest::{RunManifest, VerifiedManifest};

use crate::crd::{
    CredentialsSecretRef, ManifestSource, PullPolicy, StorageSpec, TrainingRun, TrainingRunSpec,
    ValidatorSet, ValidatorSetSpec, WalletSpec, WorkloadSpec,
};

/// The reference manifest of the fixtures.
pub fn reference_manifest() -> RunManifest {
    RunManifest::reference("fixture-run", "tiny")
}

/// An inline manifest source holding `manifest`.
pub fn inline_manifest(manifest: &RunManifest) -> ManifestSource {
    ManifestSource {
        config_map_ref: None,
        inline: Some(serde_json::to_value(manifest).expect("manifest serializes")),
        sha256: None,
    }
}

/// The fixtures' manifest, verified.
pub fn verified() -> VerifiedManifest {
    run_manifest::verify(reference_manifest(), "fixture", None).expect("reference manifest")
}

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

fn workload(replicas: i32, wallet: WalletSpec) -> WorkloadSpec {
    WorkloadSpec {
        netuid: 3,
        chain_endpoint: "ws://subtensor:9944".into(),
        manifest: inline_manifest(&reference_manifest()),
        image: "worker:1".into(),
        image_pull_policy: PullPolicy::IfNotPresent,
        replicas,
        gpus_per_replica: 8,
        storage: storage(),
        wallet,
        // No resources, checkpoint, scheduling constraints or extras; not suspended.
        ..WorkloadSpec::default()
    }
}

/// A valid TrainingRun as read from the API (uid set).
pub fn run(replicas: i32) -> TrainingRun {
    let mut run = TrainingRun::new(
        "run",
        TrainingRunSpec {
            overlap: false,
            workload: workload(replicas, wallet_template()),
        },
    );
    run.metadata = meta("run");
    run
}

/// A valid ValidatorSet as read from the API.
pub fn validators(replicas: i32) -> ValidatorSet {
    let mut wl = workload(
        replicas,
        WalletSpec {
            hotkey_secrets: Some((0..replicas).map(|i| format!("vhk-{i}")).collect()),
            hotkey_secret_template: None,
            ..wallet_template()
        },
    );
    wl.chain_endpoint = "wss://chain:443".into();
    wl.image_pull_policy = PullPolicy::Always;
    wl.gpus_per_replica = 1;
    let mut vs = ValidatorSet::new("vs", ValidatorSetSpec { workload: wl });
    vs.metadata = meta("vs");
    vs
}
