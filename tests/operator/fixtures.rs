//! Sample custom resources and a harness driving the reconciler against [`FakeApi`].

use std::sync::Arc;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use run_manifest::RunManifest;
use subnet_operator::clock::ManualClock;
use subnet_operator::crd::{
    CredentialsSecretRef, ManifestConfigMapRef, ManifestSource, PullPolicy, StorageSpec,
    TrainingRun, TrainingRunSpec, ValidatorSet, ValidatorSetSpec, WalletSpec, WorkloadSpec,
};
use subnet_operator::metrics::Metrics;
use subnet_operator::{Context, ReconcilerConfig, Workload, reconcile};

use super::fake_api::FakeApi;

/// Namespace of every fixture.
pub const NS: &str = "subnet";

/// Storage settings every fixture uses.
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

/// The run manifest of the fixtures.
pub fn manifest() -> RunManifest {
    RunManifest::reference("fixture-run", "tiny")
}

/// An inline manifest source.
pub fn inline(manifest: &RunManifest) -> ManifestSource {
    ManifestSource {
        config_map_ref: None,
        inline: Some(serde_json::to_value(manifest).unwrap()),
        sha256: None,
    }
}

/// A source reading key `manifest.json` of ConfigMap `name`.
pub fn from_config_map(name: &str) -> ManifestSource {
    ManifestSource {
        config_map_ref: Some(ManifestConfigMapRef {
            name: name.into(),
            key: "manifest.json".into(),
        }),
        inline: None,
        sha256: None,
    }
}

/// A ConfigMap in [`NS`] holding `text` under `manifest.json`.
pub fn manifest_config_map(name: &str, text: &str) -> ConfigMap {
    let mut cm = ConfigMap {
        data: Some(BTreeMap::from([(
            "manifest.json".to_owned(),
            text.to_owned(),
        )])),
        ..ConfigMap::default()
    };
    cm.metadata.name = Some(name.into());
    cm.metadata.namespace = Some(NS.into());
    cm
}

fn workload(replicas: i32, wallet: WalletSpec) -> WorkloadSpec {
    WorkloadSpec {
        netuid: 3,
        chain_endpoint: "ws://subtensor:9944".into(),
        manifest: inline(&manifest()),
        image: "ghcr.io/example/worker:1.0".into(),
        image_pull_policy: PullPolicy::IfNotPresent,
        replicas,
        gpus_per_replica: 8,
        storage: storage(),
        wallet,
        // No resources, checkpoint, scheduling constraints or extras; not suspended.
        ..WorkloadSpec::default()
    }
}

/// A valid TrainingRun with `replicas` miners using the hotkey template.
pub fn training_run(name: &str, replicas: i32) -> TrainingRun {
    let wallet = WalletSpec {
        coldkey_secret: None,
        coldkey_key: "coldkey".into(),
        hotkey_secrets: None,
        hotkey_secret_template: Some("miner-hotkey-{index}".into()),
        hotkey_key: "hotkey".into(),
    };
    let mut run = TrainingRun::new(
        name,
        TrainingRunSpec {
            overlap: false,
            workload: workload(replicas, wallet),
        },
    );
    run.metadata.namespace = Some(NS.into());
    run
}

/// A valid ValidatorSet with `replicas` validators and listed hotkeys.
pub fn validator_set(name: &str, replicas: i32) -> ValidatorSet {
    let wallet = WalletSpec {
        coldkey_secret: Some("validator-coldkey".into()),
        coldkey_key: "coldkey".into(),
        hotkey_secrets: Some(
            (0..replicas)
                .map(|i| format!("validator-hotkey-{i}"))
                .collect(),
        ),
        hotkey_secret_template: None,
        hotkey_key: "hotkey".into(),
    };
    let mut spec = workload(replicas, wallet);
    spec.image_pull_policy = PullPolicy::Always;
    spec.gpus_per_replica = 1;
    let mut vs = ValidatorSet::new(name, ValidatorSetSpec { workload: spec });
    vs.metadata.namespace = Some(NS.into());
    vs
}

/// A fake API, a manual clock and a reconciler context wired together.
pub struct Harness {
    /// The in-memory API server.
    pub api: FakeApi,
    /// The reconciler's clock.
    pub clock: Arc<ManualClock>,
    /// The reconciler's context.
    pub ctx: Arc<Context>,
}

impl Harness {
    /// A harness with default tunables.
    pub fn new() -> Self {
        Self::with_config(ReconcilerConfig::default())
    }

    /// A harness with the given tunables.
    pub fn with_config(config: ReconcilerConfig) -> Self {
        let api = FakeApi::new();
        // Whole seconds: `metav1.Time` (and so `nextRetry`) has second precision.
        let start = Timestamp::from_second(Timestamp::now().as_second()).expect("valid time");
        let clock = Arc::new(ManualClock::new(start));
        let ctx = Context::new(api.client(), Metrics::default())
            .with_clock(clock.clone())
            .with_config(config);
        Self {
            api,
            clock,
            ctx: Arc::new(ctx),
        }
    }

    /// Reconciles the stored object once (as the controller would after a watch event).
    pub async fn reconcile<K: Workload>(
        &self,
        name: &str,
    ) -> Result<Action, subnet_operator::Error> {
        let obj: K = self.api.get(NS, name).expect("object stored");
        reconcile(Arc::new(obj), self.ctx.clone()).await
    }

    /// Reconciles until the object has the finalizer and a status, then returns the last action.
    pub async fn settle<K: Workload>(&self, name: &str) -> Action {
        let mut last = None;
        for _ in 0..2 {
            last = Some(self.reconcile::<K>(name).await.expect("reconcile"));
        }
        last.expect("reconciled")
    }

    /// The stored object.
    pub fn get<K: Workload>(&self, name: &str) -> K {
        self.api.get(NS, name).expect("object stored")
    }

    /// Names of the stored pods, sorted.
    pub fn pod_names(&self) -> Vec<String> {
        self.api
            .list::<Pod>(NS)
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// Stored pod by name.
    pub fn pod(&self, name: &str) -> Pod {
        self.api
            .get(NS, name)
            .unwrap_or_else(|| panic!("pod {name} stored"))
    }

    /// Marks every stored pod Running and Ready.
    pub fn all_pods_ready(&self) {
        for name in self.pod_names() {
            self.api.set_pod_phase(NS, &name, "Running", true);
        }
    }

    /// Event reasons published so far (events.k8s.io/v1), in creation order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/events") && r.method == http::Method::POST)
            .filter_map(|r| r.body?.get("reason")?.as_str().map(str::to_owned))
            .collect()
    }

    /// Notes of published events with `reason`.
    pub fn event_notes(&self, reason: &str) -> Vec<String> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/events") && r.method == http::Method::POST)
            .filter_map(|r| {
                let body = r.body?;
                (body.get("reason")?.as_str()? == reason)
                    .then(|| body.get("note")?.as_str().map(str::to_owned))?
            })
            .collect()
    }
}
