//! End-to-end test against a real cluster: runs only when `KUBECONFIG` is set.
//!
//! Applies the CRDs, runs the controllers in-process against one fresh namespace, creates a
//! TrainingRun, waits for its pods and status, deletes it and waits for the clean-up.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use subnet_operator::Context;
use subnet_operator::controller::{ControllerOptions, run_controllers};
use subnet_operator::crd::{
    CredentialsSecretRef, ManifestSource, StorageSpec, TrainingRun, TrainingRunSpec, WalletSpec,
    WorkloadSpec,
};
use subnet_operator::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(90);

async fn poll<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn run(ns: &str) -> TrainingRun {
    let mut run = TrainingRun::new(
        "e2e",
        TrainingRunSpec {
            overlap: false,
            workload: WorkloadSpec {
                netuid: 3,
                chain_endpoint: "ws://subtensor.invalid:9944".into(),
                manifest: ManifestSource {
                    config_map_ref: None,
                    inline: Some(
                        serde_json::to_value(run_manifest::RunManifest::reference("e2e", "tiny"))
                            .expect("manifest JSON"),
                    ),
                    sha256: None,
                },
                image: "busybox:1.36".into(),
                image_pull_policy: Default::default(),
                image_pull_secrets: vec![],
                replicas: 2,
                gpus_per_replica: 0,
                resources: None,
                storage: StorageSpec {
                    endpoint: "http://s3.invalid".into(),
                    bucket: "e2e-bucket".into(),
                    region: "auto".into(),
                    credentials_secret: CredentialsSecretRef {
                        name: "e2e-s3".into(),
                        access_key_id_key: "accessKeyId".into(),
                        secret_access_key_key: "secretAccessKey".into(),
                    },
                    read_credentials_secret: None,
                },
                wallet: WalletSpec {
                    coldkey_secret: None,
                    coldkey_key: "coldkey".into(),
                    hotkey_secrets: None,
                    hotkey_secret_template: Some("e2e-hotkey-{index}".into()),
                    hotkey_key: "hotkey".into(),
                },
                ..WorkloadSpec::default()
            },
        },
    );
    run.metadata.namespace = Some(ns.into());
    run
}

#[tokio::test]
async fn training_run_lifecycle_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("SKIPPED: operator e2e test needs a cluster; set KUBECONFIG to run it");
        return;
    }
    let client = Client::try_default().await.expect("client from KUBECONFIG");

    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply("subnet-operator-e2e").force();
    for crd in subnet_operator::crd::crds() {
        let name = crd.name_any();
        crd_api
            .patch(&name, &apply, &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        tokio::time::timeout(
            TIMEOUT,
            await_condition(crd_api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .expect("watching CRD");
    }

    let ns = format!("subnet-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(ns.clone());
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");

    let ctx = Arc::new(Context::new(client.clone(), Metrics::default()));
    let options = ControllerOptions {
        namespace: Some(ns.clone()),
        concurrency: 4,
    };
    let controllers = tokio::spawn(run_controllers(client.clone(), ctx, options));

    let runs: Api<TrainingRun> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    runs.create(&PostParams::default(), &run(&ns))
        .await
        .expect("create TrainingRun");

    poll("two miner pods", || async {
        let names: Vec<String> = pods
            .list(&ListParams::default().labels("subnet.templar.dev/trainingrun=e2e"))
            .await
            .map(|l| l.items.iter().map(|p| p.name_any()).collect())
            .unwrap_or_default();
        names.contains(&"e2e-miner-0".to_owned()) && names.contains(&"e2e-miner-1".to_owned())
    })
    .await;
    poll("status with observedGeneration", || async {
        runs.get_status("e2e")
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.observed_generation == Some(1) && s.replica_statuses.len() == 2)
    })
    .await;

    runs.delete("e2e", &DeleteParams::default())
        .await
        .expect("delete TrainingRun");
    poll("TrainingRun removed after finalizer clean-up", || async {
        matches!(runs.get_opt("e2e").await, Ok(None))
    })
    .await;
    poll("pods removed", || async {
        pods.list(&ListParams::default().labels("subnet.templar.dev/trainingrun=e2e"))
            .await
            .map(|l| {
                l.items
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_some())
            })
            .unwrap_or(false)
    })
    .await;

    controllers.abort();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}
