//! The operator against a real control plane (tests/kube-harness: etcd, kube-apiserver,
//! controller-manager, scheduler, kwok GPU nodes), built by scripts/setup-k8s.sh. These tests
//! fail, never skip, when the control plane cannot start.
//!
//! - the CRDs from crds/ install, become Established and serve status + scale;
//! - the apiserver itself rejects invalid resources with the CRDs' documented messages (CEL) and
//!   applies the schema defaults;
//! - the operator, authenticated as the chart's ServiceAccount (so the chart's RBAC is what is
//!   exercised), reconciles manifests/examples onto the kwok GPU nodes: owner references,
//!   scheduling, `Insufficient nvidia.com/gpu` in the status, the scale subresource, deletion
//!   with garbage collection by the controller-manager;
//! - a pod that fails (kwok exit stage) is recreated only after its recorded backoff, even when
//!   the reconcile is handed a stale cached object (the race of issue 15);
//! - with a coldkey, each replica is registered by a one-shot Job (run by the real Job
//!   controller) before its pod exists; the pod never mounts the coldkey and runs as a
//!   ServiceAccount that may patch exactly its own workload's pods.

mod operator;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use operator::cluster::*;
use serde_json::{Value, json};
use subnet_operator::controller::{ControllerOptions, run_controllers};
use subnet_operator::crd::{ReplicaPhase, TrainingRun, ValidatorSet};
use subnet_operator::metrics::Metrics;
use subnet_operator::{Context, Workload, reconcile};

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn crds_install_become_established_and_serve_status_and_scale() {
    let cluster = kube_harness::cluster()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let crds = cluster
        .install_crds(&root().join("crds"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = crds.iter().map(|c| c.name_any()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "trainingruns.subnet.templar.dev",
            "validatorsets.subnet.templar.dev"
        ]
    );
    for crd in &crds {
        let status = crd.status.as_ref().unwrap();
        let established = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Established")
            .unwrap();
        assert_eq!(established.status, "True", "{}", crd.name_any());
        let served = crd.spec.versions.iter().find(|v| v.served).unwrap();
        let sub = served.subresources.as_ref().unwrap();
        assert!(sub.status.is_some(), "{}", crd.name_any());
        let scale = sub.scale.as_ref().unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    }
}

#[tokio::test]
async fn the_apiserver_rejects_invalid_runs_with_the_documented_messages() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "invalid").await;
    let admin = ns.admin().await.unwrap();
    let ar = resource::<TrainingRun>();
    let base = example_doc("trainingrun.yaml", "TrainingRun", &ns);

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "negative replicas",
            json!({"spec": {"replicas": -1}}),
            "replicas must be >= 0",
        ),
        (
            "empty image",
            json!({"spec": {"image": ""}}),
            "image must not be empty",
        ),
        (
            "negative GPUs",
            json!({"spec": {"gpusPerReplica": -1}}),
            "gpusPerReplica must be >= 0",
        ),
        (
            "template without {index}",
            json!({"spec": {"wallet": {"hotkeySecretTemplate": "miner-hotkey"}}}),
            "wallet.hotkeySecretTemplate must contain the {index} placeholder",
        ),
        (
            "two hotkey sources",
            json!({"spec": {"wallet": {"hotkeySecrets": ["a", "b"]}}}),
            "set exactly one of wallet.hotkeySecrets or wallet.hotkeySecretTemplate",
        ),
        (
            "hotkey list shorter than replicas",
            json!({"spec": {"wallet": {"hotkeySecretTemplate": null, "hotkeySecrets": ["a"]}}}),
            "wallet.hotkeySecrets must list at least one Secret per replica",
        ),
        (
            "no manifest source",
            json!({"spec": {"manifest": {"configMapRef": null}}}),
            "set exactly one of manifest.configMapRef or manifest.inline",
        ),
        (
            "two checkpoint sources",
            json!({"spec": {"checkpoint": {"existingClaim": "shared"}}}),
            "checkpoint.existingClaim and checkpoint.claimTemplate are mutually exclusive",
        ),
        (
            "an empty shard cache",
            json!({"spec": {"data": {"cacheGib": 0}}}),
            "data.cacheGib must be at least 1",
        ),
        (
            "empty bucket",
            json!({"spec": {"storage": {"bucket": ""}}}),
            "storage.bucket must not be empty",
        ),
    ];
    for (i, (what, change, message)) in cases.iter().enumerate() {
        let mut doc = base.clone();
        json_patch::merge(&mut doc, change);
        doc["metadata"]["name"] = json!(format!("invalid-{i}"));
        match create_raw(&admin, &ns.name, &ar, &doc).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                assert!(
                    status.message.contains(message),
                    "{what}: expected {message:?} in {:?}",
                    status.message
                );
            }
            other => panic!("{what}: the apiserver accepted it: {other:?}"),
        }
    }
    // The unchanged example is accepted.
    create_raw(&admin, &ns.name, &ar, &base).await.unwrap();
}

#[tokio::test]
async fn the_apiserver_applies_schema_defaults() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "defaults").await;
    let admin = ns.admin().await.unwrap();
    let mut doc = example_doc("trainingrun.yaml", "TrainingRun", &ns);
    let spec = doc["spec"].as_object_mut().unwrap();
    for field in ["gpusPerReplica", "imagePullPolicy", "suspend"] {
        spec.remove(field);
    }
    spec["checkpoint"]
        .as_object_mut()
        .unwrap()
        .remove("mountPath");
    spec["storage"].as_object_mut().unwrap().remove("region");
    spec["manifest"]["configMapRef"]
        .as_object_mut()
        .unwrap()
        .remove("key");
    create_raw(&admin, &ns.name, &resource::<TrainingRun>(), &doc)
        .await
        .unwrap();
    let stored: Value = serde_json::to_value(
        Api::<DynamicObject>::namespaced_with(admin, &ns.name, &resource::<TrainingRun>())
            .get("miners")
            .await
            .unwrap(),
    )
    .unwrap();
    let spec = &stored["spec"];
    assert_eq!(spec["gpusPerReplica"], 1);
    assert_eq!(spec["imagePullPolicy"], "IfNotPresent");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["checkpoint"]["mountPath"], "/checkpoints");
    assert_eq!(spec["storage"]["region"], "auto");
    assert_eq!(
        spec["storage"]["credentialsSecret"]["accessKeyIdKey"],
        "accessKeyId"
    );
    assert_eq!(spec["wallet"]["hotkeyKey"], "hotkey");
    assert_eq!(spec["manifest"]["configMapRef"]["key"], "manifest.json");
}

#[tokio::test]
async fn the_operator_with_the_charts_rbac_runs_the_examples_on_gpu_nodes() {
    let cluster = cluster().await;
    // 3 × 8 GPUs: the run's 2 × 8 and the validator's 1 fit; the reserved node is tainted.
    let mut groups = kube_harness::default_groups();
    groups[0].count = 3;
    let ns = cluster
        .namespace_with_nodes("examples", &groups)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let operator_client = install_chart(&ns).await;
    let _operator = start_operator(operator_client, &ns);
    let claims: Vec<String> = (0..2).map(|i| format!("miners-checkpoint-{i}")).collect();
    ns.provision_volumes(&claims, "1Ti").await.unwrap();
    create_examples(
        &ns,
        &[
            "run-manifest.yaml",
            "secrets.yaml",
            "trainingrun.yaml",
            "validatorset.yaml",
        ],
    )
    .await;

    let admin = ns.admin().await.unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let validators: Api<ValidatorSet> = Api::namespaced(admin.clone(), &ns.name);
    let run = runs.get("miners").await.unwrap();
    let vs = validators.get("gauntlet").await.unwrap();
    for (owner_uid, selector, want) in [
        (run.uid().unwrap(), selector_for::<TrainingRun>("miners"), 2),
        (
            vs.uid().unwrap(),
            selector_for::<ValidatorSet>("gauntlet"),
            1,
        ),
    ] {
        let pods = wait_for(&format!("{want} running pods of {selector}"), || {
            let admin = admin.clone();
            let selector = selector.clone();
            let ns = ns.name.clone();
            async move {
                let pods = pods_of(&admin, &ns, &selector).await;
                (pods.len() == want && pods.iter().all(|p| phase(p) == "Running")).then_some(pods)
            }
        })
        .await;
        for pod in &pods {
            let owner = pod
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .unwrap_or_else(|| panic!("{} has no controller reference", pod.name_any()));
            assert_eq!(owner.uid, owner_uid, "{}", pod.name_any());
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
            assert!(
                node.starts_with(&format!("{}-gpu-", ns.name)),
                "{} ran on {node}",
                pod.name_any()
            );
        }
    }
    // Two 8-GPU miners never share an 8-GPU node.
    let miners = pods_of(&admin, &ns.name, &selector_for::<TrainingRun>("miners")).await;
    let nodes: std::collections::BTreeSet<_> = miners
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(nodes.len(), 2);

    let status = wait_for("the run's status to say Running", || {
        let runs = runs.clone();
        async move {
            let s = status_of(&runs, "miners").await?;
            (s.ready_replicas == 2 && s.phase.map(|p| p.as_str()) == Some("Running")).then_some(s)
        }
    })
    .await;
    assert_eq!(status.replicas, 2);
    assert!(status.replica_statuses.iter().all(|r| r.ready));
    // Claim templates became bound claims owned by the run.
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns.name);
    for claim in &claims {
        let pvc = claims_api.get(claim).await.unwrap();
        assert!(
            pvc.owner_references()
                .iter()
                .any(|o| o.uid == run.uid().unwrap())
        );
    }
}

#[tokio::test]
async fn more_gpus_than_exist_stay_pending_and_the_status_says_why() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "insufficient").await;
    let operator_client = install_chart(&ns).await;
    let _operator = start_operator(operator_client, &ns);
    let admin = ns.admin().await.unwrap();
    create_examples(&ns, &["run-manifest.yaml"]).await;
    let mut run = run_without_checkpoint(&ns);
    // Three 8-GPU replicas, two untainted 8-GPU nodes.
    run["spec"]["replicas"] = json!(3);
    create_raw(&admin, &ns.name, &resource::<TrainingRun>(), &run)
        .await
        .unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let ready = wait_for("the Ready condition to name the missing GPUs", || {
        let runs = runs.clone();
        async move {
            let s = status_of(&runs, "miners").await?;
            let ready = s.condition("Ready")?.clone();
            (ready.reason == "Unschedulable" && s.ready_replicas == 2).then_some(ready)
        }
    })
    .await;
    assert!(
        ready.message.contains("Insufficient nvidia.com/gpu"),
        "{}",
        ready.message
    );
    let pods = pods_of(&admin, &ns.name, &selector_for::<TrainingRun>("miners")).await;
    let pending: Vec<_> = pods.iter().filter(|p| phase(p) == "Pending").collect();
    assert_eq!(pending.len(), 1, "one replica cannot be placed");
    assert!(pending[0].spec.as_ref().unwrap().node_name.is_none());
}

#[tokio::test]
async fn scale_subresource_then_delete_garbage_collects_pods_and_claims() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "scale").await;
    let operator_client = install_chart(&ns).await;
    let _operator = start_operator(operator_client, &ns);
    let admin = ns.admin().await.unwrap();
    let claims: Vec<String> = (0..2).map(|i| format!("miners-checkpoint-{i}")).collect();
    ns.provision_volumes(&claims, "1Ti").await.unwrap();
    create_examples(&ns, &["run-manifest.yaml", "trainingrun.yaml"]).await;
    let selector = selector_for::<TrainingRun>("miners");
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let count_running = |want: usize| {
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        move || {
            let admin = admin.clone();
            let selector = selector.clone();
            let ns = ns.clone();
            async move {
                let pods = live(pods_of(&admin, &ns, &selector).await);
                (pods.len() == want && pods.iter().all(|p| phase(p) == "Running")).then_some(())
            }
        }
    };
    wait_for("2 running miners", count_running(2)).await;

    // `kubectl scale tr/miners --replicas=1` is a patch of the scale subresource.
    runs.patch_scale(
        "miners",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_for("1 running miner", count_running(1)).await;
    let remaining = live(pods_of(&admin, &ns.name, &selector).await);
    assert_eq!(
        remaining[0].name_any(),
        "miners-miner-0",
        "scale-down removes the highest index"
    );
    let scale = wait_for("the scale subresource to report 1", || {
        let runs = runs.clone();
        async move {
            let scale = runs.get_scale("miners").await.ok()?;
            (scale.status.as_ref()?.replicas == 1).then_some(scale)
        }
    })
    .await;
    let scale_selector = scale.status.unwrap().selector.unwrap_or_default();
    assert!(
        scale_selector.split(',').any(|term| term == selector),
        "{scale_selector}"
    );

    // Deleting the run: pods and the claim-template PVCs go (the PVCs only through the
    // controller-manager's garbage collector: the operator never deletes claims).
    runs.delete("miners", &DeleteParams::foreground())
        .await
        .unwrap();
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns.name);
    wait_for("the run, its pods and its claims to be gone", || {
        let runs = runs.clone();
        let claims_api = claims_api.clone();
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        async move {
            let run_gone = runs.get_opt("miners").await.ok()?.is_none();
            let pods_gone = pods_of(&admin, &ns, &selector).await.is_empty();
            let claims_gone = claims_api
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty();
            (run_gone && pods_gone && claims_gone).then_some(())
        }
    })
    .await;
}

/// The race of issue 15, step by step with the real reconciler against the real apiserver:
/// the reconcile after a pod failure is handed the object as the informer cached it before the
/// failure was recorded. Planning from that stale status erased `restarts` / `nextRetry` and
/// recreated the replica at once; the reconciler now plans from a fresh read.
#[tokio::test]
async fn a_stale_cached_object_never_erases_the_recorded_backoff() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "race").await;
    let operator_client = install_chart(&ns).await;
    let ctx = Arc::new(
        Context::new(operator_client.clone(), Metrics::default()).with_config(quick_config()),
    );
    let admin = ns.admin().await.unwrap();
    create_examples(&ns, &["run-manifest.yaml"]).await;
    create_raw(
        &admin,
        &ns.name,
        &resource::<TrainingRun>(),
        &one_replica_run(&ns),
    )
    .await
    .unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let selector = selector_for::<TrainingRun>("miners");
    let pass = |obj: TrainingRun| {
        let ctx = ctx.clone();
        async move { reconcile(Arc::new(obj), ctx).await.unwrap() }
    };

    // Reconcile until the replica runs (finalizer, create, status).
    let stale = wait_for("the replica to run", || {
        let runs = runs.clone();
        let pass = &pass;
        async move {
            let run = runs.get("miners").await.ok()?;
            pass(run).await;
            let run = runs.get("miners").await.ok()?;
            let running = run.workload_status()?.replica(0)?.phase == ReplicaPhase::Running;
            running.then_some(run)
        }
    })
    .await;
    assert_eq!(
        stale
            .workload_status()
            .unwrap()
            .replica(0)
            .unwrap()
            .restarts,
        0
    );

    // The pod fails; a reconcile with a fresh object records it and deletes the pod.
    make_pod_exit(&admin, &ns.name, "miners-miner-0", 1).await;
    wait_for("the pod to fail", || {
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        async move {
            pods_of(&admin, &ns, &selector)
                .await
                .iter()
                .any(|p| phase(p) == "Failed")
                .then_some(())
        }
    })
    .await;
    pass(runs.get("miners").await.unwrap()).await;
    let recorded = runs.get("miners").await.unwrap();
    let replica = recorded
        .workload_status()
        .unwrap()
        .replica(0)
        .unwrap()
        .clone();
    assert_eq!(replica.restarts, 1);
    let next_retry = replica.next_retry.clone().expect("nextRetry recorded").0;
    wait_for("the failed pod to be deleted", || {
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        async move {
            pods_of(&admin, &ns, &selector)
                .await
                .is_empty()
                .then_some(())
        }
    })
    .await;

    // The next pass gets the pre-failure object from the cache.
    pass(stale.clone()).await;
    let after = runs.get("miners").await.unwrap();
    let status = after.workload_status().unwrap();
    let replica = status.replica(0).unwrap();
    assert_eq!(
        replica.restarts, 1,
        "the restart count survives a stale cache"
    );
    assert_eq!(replica.next_retry.as_ref().map(|t| t.0), Some(next_retry));
    assert_eq!(replica.phase, ReplicaPhase::BackOff);
    assert!(
        pods_of(&admin, &ns.name, &selector).await.is_empty(),
        "the replica must not be recreated before its backoff"
    );
    let degraded = status.condition("Degraded").unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ReplicaFailed")
    );

    // Once the backoff has passed the replica comes back, one restart recorded.
    tokio::time::sleep(Duration::from_secs(5)).await;
    pass(stale).await;
    let pods = pods_of(&admin, &ns.name, &selector).await;
    assert_eq!(pods.len(), 1);
    let created = pods[0].metadata.creation_timestamp.as_ref().unwrap().0;
    // creationTimestamp has second resolution.
    assert!(
        created.as_second() >= next_retry.as_second(),
        "{created} < {next_retry}"
    );
    let replica = runs
        .get("miners")
        .await
        .unwrap()
        .workload_status()
        .unwrap()
        .replica(0)
        .unwrap()
        .clone();
    assert_eq!(replica.restarts, 1);
}

/// The same through the real controller: watches, informer cache and requeues.
#[tokio::test]
async fn the_controller_recreates_a_failed_pod_after_its_backoff() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "backoff").await;
    let operator_client = install_chart(&ns).await;
    let _operator = start_operator(operator_client, &ns);
    let admin = ns.admin().await.unwrap();
    create_examples(&ns, &["run-manifest.yaml"]).await;
    create_raw(
        &admin,
        &ns.name,
        &resource::<TrainingRun>(),
        &one_replica_run(&ns),
    )
    .await
    .unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let selector = selector_for::<TrainingRun>("miners");
    let first = wait_for("the first pod to run", || {
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        async move {
            pods_of(&admin, &ns, &selector)
                .await
                .into_iter()
                .find(|p| phase(p) == "Running")
        }
    })
    .await;
    let failed_at = k8s_openapi::jiff::Timestamp::now();
    make_pod_exit(&admin, &ns.name, "miners-miner-0", 2).await;
    let second = wait_for("a new pod", || {
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        let old = first.uid();
        async move {
            pods_of(&admin, &ns, &selector)
                .await
                .into_iter()
                .find(|p| p.uid() != old && p.metadata.deletion_timestamp.is_none())
        }
    })
    .await;
    let status = runs
        .get("miners")
        .await
        .unwrap()
        .workload_status()
        .unwrap()
        .clone();
    let replica = status.replica(0).unwrap();
    assert_eq!(replica.restarts, 1);
    assert!(
        replica.last_failure.as_deref().unwrap_or("").contains('2'),
        "{:?}",
        replica.last_failure
    );
    // The new pod was created no earlier than the failure plus the initial backoff (4 s;
    // creationTimestamp has second resolution).
    let created = second.metadata.creation_timestamp.unwrap().0;
    assert!(
        created.as_second() - failed_at.as_second() >= 3,
        "recreated {}s after the failure",
        created.as_second() - failed_at.as_second()
    );
}

/// The pods the Job controller created for registration Job `job`.
async fn job_pods(client: &Client, ns: &str, job: &str) -> Vec<Pod> {
    live(pods_of(client, ns, &format!("batch.kubernetes.io/job-name={job}")).await)
}

fn secret_volumes(p: &Pod) -> Vec<String> {
    p.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect()
}

/// Issue 15: the coldkey is mounted only into a one-shot registration Job; the miner pod
/// waits for that Job, never sees the coldkey, and its token may annotate its own pod but no
/// other. A registration the chain refuses (the worker's permanent-failure exit code) fails
/// its Job at once and the status says what to do.
#[tokio::test]
async fn a_registration_job_runs_before_the_miner_and_alone_sees_the_coldkey() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "register").await;
    let operator_client = install_chart(&ns).await;
    let _operator = start_operator(operator_client, &ns);
    let admin = ns.admin().await.unwrap();
    create_examples(&ns, &["run-manifest.yaml"]).await;
    let mut run = one_replica_run(&ns);
    run["spec"]["wallet"]["coldkeySecret"] = json!("miner-coldkey");
    create_raw(&admin, &ns.name, &resource::<TrainingRun>(), &run)
        .await
        .unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let selector = selector_for::<TrainingRun>("miners");

    let register = wait_for("the registration Job's pod to run", || {
        let (admin, ns) = (admin.clone(), ns.name.clone());
        async move {
            job_pods(&admin, &ns, "miners-register-0")
                .await
                .into_iter()
                .find(|p| phase(p) == "Running")
        }
    })
    .await;
    assert!(secret_volumes(&register).contains(&"miner-coldkey".to_owned()));
    assert!(
        pods_of(&admin, &ns.name, &selector).await.is_empty(),
        "no miner pod before its hotkey is registered"
    );
    let status = status_of(&runs, "miners").await.unwrap();
    assert_eq!(status.replica(0).unwrap().phase, ReplicaPhase::Registering);

    make_pod_exit(&admin, &ns.name, &register.name_any(), 0).await;
    let miner = wait_for("the miner pod after the Job completed", || {
        let (admin, ns, selector) = (admin.clone(), ns.name.clone(), selector.clone());
        async move {
            live(pods_of(&admin, &ns, &selector).await)
                .into_iter()
                .next()
        }
    })
    .await;
    assert_eq!(miner.name_any(), "miners-miner-0");
    let volumes = secret_volumes(&miner);
    assert!(
        !volumes.contains(&"miner-coldkey".to_owned()),
        "the long-running pod never mounts the coldkey: {volumes:?}"
    );
    let spec = miner.spec.as_ref().unwrap();
    assert!(
        spec.containers[0]
            .env
            .iter()
            .flatten()
            .all(|e| e.name != "COLDKEY_FILE")
    );
    assert_eq!(spec.service_account_name.as_deref(), Some("miners-worker"));
    let role = Api::<Role>::namespaced(admin.clone(), &ns.name)
        .get("miners-worker-report")
        .await
        .unwrap();
    assert_eq!(
        role.rules.unwrap()[0].resource_names.as_deref().unwrap(),
        ["miners-miner-0"]
    );

    // The worker's own token: it may annotate its pod, and nothing else.
    let worker = ns.service_account_client("miners-worker").await.unwrap();
    let annotate = |pod: String| {
        let worker = worker.clone();
        let ns = ns.name.clone();
        async move {
            Api::<Pod>::namespaced(worker, &ns)
                .patch(
                    &pod,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {
                        subnet_operator::contract::REPORT_WINDOW_ANNOTATION: "7"
                    }}})),
                )
                .await
        }
    };
    annotate("miners-miner-0".into()).await.unwrap();
    match annotate(register.name_any()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("patching another pod must be forbidden: {other:?}"),
    }
    wait_for("the report in the status", || {
        let runs = runs.clone();
        async move {
            let status = status_of(&runs, "miners").await?;
            (status.replica(0)?.last_window == Some(7)).then_some(())
        }
    })
    .await;

    // A second replica whose registration the chain refuses.
    runs.patch(
        "miners",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let refused = wait_for("the second registration Job's pod", || {
        let (admin, ns) = (admin.clone(), ns.name.clone());
        async move {
            job_pods(&admin, &ns, "miners-register-1")
                .await
                .into_iter()
                .find(|p| phase(p) == "Running")
        }
    })
    .await;
    make_pod_exit(
        &admin,
        &ns.name,
        &refused.name_any(),
        run_manifest::deployment::REGISTER_PERMANENT_FAILURE_EXIT_CODE,
    )
    .await;
    let degraded = wait_for("Degraded=RegistrationFailed", || {
        let runs = runs.clone();
        async move {
            let status = status_of(&runs, "miners").await?;
            let degraded = status.condition("Degraded")?.clone();
            (degraded.reason == "RegistrationFailed").then_some(degraded)
        }
    })
    .await;
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("miners-register-1")
            && degraded
                .message
                .contains("kubectl logs job/miners-register-1"),
        "{}",
        degraded.message
    );
    let pods = live(pods_of(&admin, &ns.name, &selector).await);
    assert_eq!(
        pods.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["miners-miner-0"],
        "no pod for the unregistered replica"
    );
    // One failed pod, not backoffLimit + 1: the policy failed the Job on the exit code.
    let job = Api::<Job>::namespaced(admin.clone(), &ns.name)
        .get("miners-register-1")
        .await
        .unwrap();
    assert_eq!(job.status.unwrap().failed, Some(1));
}

#[tokio::test]
async fn an_image_change_rolls_one_pod_at_a_time_then_suspend_and_resume() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "rollout").await;
    let operator_client = install_chart(&ns).await;
    let _operator = start_operator(operator_client, &ns);
    let admin = ns.admin().await.unwrap();
    create_examples(&ns, &["run-manifest.yaml"]).await;
    let mut run = run_without_checkpoint(&ns);
    run["spec"]["gpusPerReplica"] = json!(4);
    run["spec"]["replicas"] = json!(3);
    create_raw(&admin, &ns.name, &resource::<TrainingRun>(), &run)
        .await
        .unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let selector = selector_for::<TrainingRun>("miners");
    let old_image = "ghcr.io/templar/subnet-worker:0.1.0";
    let new_image = "ghcr.io/templar/subnet-worker:0.2.0";
    wait_ready_with_image(&admin, &ns.name, &selector, 3, old_image).await;

    runs.patch(
        "miners",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": new_image}})),
    )
    .await
    .unwrap();
    // Sample the rollout: never more than one replica down.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut replaced_seen = std::collections::BTreeSet::new();
    loop {
        let pods = pods_of(&admin, &ns.name, &selector).await;
        let up = pods.iter().filter(|p| is_ready(p)).count();
        assert!(
            up >= 2,
            "two replicas down at once: {:?}",
            pods.iter()
                .map(|p| (p.name_any(), phase(p).to_owned(), image(p).to_owned()))
                .collect::<Vec<_>>()
        );
        for p in pods.iter().filter(|p| image(p) == new_image) {
            replaced_seen.insert(p.name_any());
        }
        if pods.len() == 3 && pods.iter().all(|p| is_ready(p) && image(p) == new_image) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(replaced_seen.len(), 3);
    let status = wait_for("updatedReplicas 3", || {
        let runs = runs.clone();
        async move {
            let s = status_of(&runs, "miners").await?;
            (s.updated_replicas == 3 && s.ready_replicas == 3).then_some(s)
        }
    })
    .await;
    assert_eq!(status.condition("Progressing").unwrap().reason, "Complete");

    // Suspend deletes every pod and says so; resume brings them back.
    runs.patch(
        "miners",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    wait_for("suspended with no pods", || {
        let runs = runs.clone();
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        async move {
            let s = status_of(&runs, "miners").await?;
            let suspended = s.phase.map(|p| p.as_str()) == Some("Suspended");
            (suspended && pods_of(&admin, &ns, &selector).await.is_empty()).then_some(())
        }
    })
    .await;
    runs.patch(
        "miners",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    wait_ready_with_image(&admin, &ns.name, &selector, 3, new_image).await;
}

/// Issue 15: an operator restarted in the middle of a rollout (new process: empty caches,
/// nothing remembered) finishes it without a duplicate or an extra replacement: every replica
/// had exactly two pods over the whole test (the old one and its one replacement), as seen by
/// a watch on every pod event, and never more than one replica was down.
#[tokio::test]
async fn an_operator_restarted_mid_rollout_creates_no_duplicate_pods() {
    let cluster = cluster().await;
    let ns = namespace(&cluster, "restart").await;
    let operator_client = install_chart(&ns).await;
    let operator = start_operator(operator_client.clone(), &ns);
    let admin = ns.admin().await.unwrap();
    create_examples(&ns, &["run-manifest.yaml"]).await;
    let mut run = run_without_checkpoint(&ns);
    run["spec"]["gpusPerReplica"] = json!(4);
    run["spec"]["replicas"] = json!(3);
    create_raw(&admin, &ns.name, &resource::<TrainingRun>(), &run)
        .await
        .unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    let selector = selector_for::<TrainingRun>("miners");

    // Every pod the replicas ever had, from the watch (a sampled list could miss one).
    let seen: Arc<
        std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>>,
    > = Arc::default();
    let watch = {
        let seen = seen.clone();
        let pods = Api::<Pod>::namespaced(admin.clone(), &ns.name);
        let config = kube::runtime::watcher::Config::default().labels(&selector);
        tokio::spawn(async move {
            use futures::StreamExt;
            use kube::runtime::watcher::Event;
            let mut events = kube::runtime::watcher(pods, config).boxed();
            while let Some(event) = events.next().await {
                if let Ok(Event::Apply(p) | Event::InitApply(p)) = event {
                    seen.lock()
                        .unwrap()
                        .entry(p.name_any())
                        .or_default()
                        .insert(format!(
                            "{} {} created {:?}",
                            p.uid().unwrap_or_default(),
                            image(&p),
                            p.metadata.creation_timestamp.as_ref().map(|t| t.0)
                        ));
                }
            }
        })
    };
    let old_image = "ghcr.io/templar/subnet-worker:0.1.0";
    let new_image = "ghcr.io/templar/subnet-worker:0.2.0";
    wait_ready_with_image(&admin, &ns.name, &selector, 3, old_image).await;
    runs.patch(
        "miners",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": new_image}})),
    )
    .await
    .unwrap();
    wait_for("the first replacement", || {
        let (admin, ns, selector) = (admin.clone(), ns.name.clone(), selector.clone());
        async move {
            pods_of(&admin, &ns, &selector)
                .await
                .iter()
                .any(|p| image(p) == new_image)
                .then_some(())
        }
    })
    .await;
    // Kill the operator mid-rollout and start a fresh one.
    drop(operator);
    let _operator = start_operator(operator_client, &ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = pods_of(&admin, &ns.name, &selector).await;
        assert!(
            pods.iter().filter(|p| is_ready(p)).count() >= 2,
            "two replicas down at once"
        );
        if pods.len() == 3 && pods.iter().all(|p| is_ready(p) && image(p) == new_image) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted operator did not finish the rollout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settle a little: a late extra replacement would show up here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        ["miners-miner-0", "miners-miner-1", "miners-miner-2"]
    );
    for (name, uids) in &seen {
        assert_eq!(
            uids.len(),
            2,
            "{name} had {} pods (the old one and one replacement expected): {uids:?}",
            uids.len()
        );
    }
}

/// The operator installed cluster-wide in its own namespace (as `helm install -n
/// subnet-system` does) is stopped and the workload namespace deleted: nothing waits for the
/// operator (no finalizer; pods go with their owner references).
#[tokio::test]
async fn deleting_the_namespace_while_the_operator_is_down_does_not_get_stuck() {
    namespace_deletion_with_the_operator_down(false).await;
}

/// The same with the chart's `watchNamespace`: the namespace controller deletes the operator's
/// RoleBinding with the namespace. With the finalizer of earlier versions the restarted
/// operator could no longer release it and the namespace stayed Terminating for good.
#[tokio::test]
async fn deleting_a_watched_namespace_while_the_operator_is_down_does_not_get_stuck() {
    namespace_deletion_with_the_operator_down(true).await;
}

async fn namespace_deletion_with_the_operator_down(role_binding_in_the_namespace: bool) {
    let cluster = cluster().await;
    let system = cluster
        .namespace_with_nodes("op-system", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace(&cluster, "nsdelete").await;
    let values = if role_binding_in_the_namespace {
        json!({"watchNamespace": ns.name})
    } else {
        json!({})
    };
    let operator_client = install_chart_with(&system, &values).await;
    let operator = start_operator_in(operator_client.clone(), &ns.name);
    let admin = ns.admin().await.unwrap();
    create_examples(&ns, &["run-manifest.yaml"]).await;
    create_raw(
        &admin,
        &ns.name,
        &resource::<TrainingRun>(),
        &one_replica_run(&ns),
    )
    .await
    .unwrap();
    let selector = selector_for::<TrainingRun>("miners");
    wait_for("the pod to run", || {
        let admin = admin.clone();
        let selector = selector.clone();
        let ns = ns.name.clone();
        async move {
            let pods = pods_of(&admin, &ns, &selector).await;
            pods.iter().any(|p| phase(p) == "Running").then_some(())
        }
    })
    .await;
    drop(operator);

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces
        .delete(&ns.name, &DeleteParams::default())
        .await
        .unwrap();
    // Nothing waits for the stopped operator.
    wait_for("the namespace to be gone", || {
        let namespaces = namespaces.clone();
        let name = ns.name.clone();
        async move {
            namespaces
                .get_opt(&name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
}

/// Two operator replicas with leader election (the chart's lease Role): only the leader
/// reconciles; stopping it hands over to the standby, which carries on (a rollout) without
/// ever creating a second pod for a replica.
#[tokio::test]
async fn a_standby_replica_takes_over_when_the_leader_stops() {
    use subnet_operator::leader::{LeaderConfig, acquire};
    let cluster = cluster().await;
    let ns = namespace(&cluster, "leader").await;
    let client = install_chart_with(
        &ns,
        &json!({"watchNamespace": ns.name, "replicaCount": 2, "leaderElection": {"enabled": true}}),
    )
    .await;
    let replica = |identity: &'static str| {
        let client = client.clone();
        let namespace = ns.name.clone();
        Operator(tokio::spawn(async move {
            let config = LeaderConfig {
                lease_name: "subnet-operator-leader".into(),
                namespace: namespace.clone(),
                identity: identity.into(),
                duration_secs: 4,
                grace_secs: 1,
            };
            let Ok(leadership) = acquire(client.clone(), &config).await else {
                return;
            };
            let ctx = Arc::new(
                Context::new(client.clone(), Metrics::default()).with_config(quick_config()),
            );
            let options = ControllerOptions {
                namespace: Some(namespace),
                concurrency: 4,
            };
            tokio::select! {
                () = run_controllers(client, ctx, options) => {}
                () = leadership.lost() => {}
            }
        }))
    };
    let admin = ns.admin().await.unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), &ns.name);
    let holder = |want: &'static str| {
        let leases = leases.clone();
        move || {
            let leases = leases.clone();
            async move {
                let lease = leases.get_opt("subnet-operator-leader").await.ok()??;
                let h = lease.spec?.holder_identity?;
                (h == want).then_some(())
            }
        }
    };
    let first = replica("first");
    wait_for("the first replica to lead", holder("first")).await;
    let _second = replica("second");

    create_examples(&ns, &["run-manifest.yaml"]).await;
    let run = run_without_checkpoint(&ns);
    create_raw(&admin, &ns.name, &resource::<TrainingRun>(), &run)
        .await
        .unwrap();
    let selector = selector_for::<TrainingRun>("miners");
    wait_ready_with_image(
        &admin,
        &ns.name,
        &selector,
        2,
        "ghcr.io/templar/subnet-worker:0.1.0",
    )
    .await;

    drop(first);
    wait_for("the standby to take the lease", holder("second")).await;
    let runs: Api<TrainingRun> = Api::namespaced(admin.clone(), &ns.name);
    runs.patch(
        "miners",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": "ghcr.io/templar/subnet-worker:0.2.0"}})),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = live(pods_of(&admin, &ns.name, &selector).await);
        assert!(
            pods.len() <= 2,
            "a replica has two pods: {:?}",
            pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        if pods.len() == 2
            && pods
                .iter()
                .all(|p| is_ready(p) && image(p) == "ghcr.io/templar/subnet-worker:0.2.0")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader did not roll the pods"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A grace period not below the lease duration could let two leaders overlap: refused.
    let overlapping = LeaderConfig {
        lease_name: "subnet-operator-leader".into(),
        namespace: ns.name.clone(),
        identity: "third".into(),
        duration_secs: 4,
        grace_secs: 4,
    };
    assert!(acquire(client.clone(), &overlapping).await.is_err());
}
