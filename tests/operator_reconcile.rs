//! Reconciler behaviour against the real control plane (tests/kube-harness): the fixtures of
//! `tests/operator/fixtures.rs` are created in a namespace of their own, each reconcile runs as
//! the chart's ServiceAccount (so the chart's RBAC is what is exercised) with a manual clock,
//! and kwok runs, readies and fails the pods on the namespace's GPU nodes. The apiserver does
//! the admission, defaulting, server-side apply, resourceVersion checks and (with the
//! controller-manager) garbage collection. What a real apiserver cannot do (injected API
//! failures, recorded requests) is in `operator_api_faults.rs`.

mod operator;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use operator::cluster::{ClusterHarness, wait_for};
use operator::fixtures::{
    from_config_map, inline, manifest, manifest_config_map, training_run, validator_set,
};
use run_manifest::RunManifest;
use serde_json::json;
use subnet_operator::FINALIZER;
use subnet_operator::clock::Clock;
use subnet_operator::crd::{
    CheckpointSpec, Phase, ReplicaPhase, TrainingRun, ValidatorSet, WorkloadStatus,
};

async fn status(h: &ClusterHarness, name: &str) -> WorkloadStatus {
    h.get::<TrainingRun>(name)
        .await
        .status
        .expect("status written")
}

fn condition(s: &WorkloadStatus, type_: &str) -> (String, String, String) {
    let c = s
        .condition(type_)
        .unwrap_or_else(|| panic!("condition {type_}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn ready(h: &ClusterHarness, name: &str) -> (String, String, String) {
    condition(&status(h, name).await, "Ready")
}

fn env_value(pod: &Pod, name: &str) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap()
}

fn requeue(secs: u64) -> Action {
    Action::requeue(Duration::from_secs(secs))
}

#[tokio::test]
async fn no_finalizer_is_added_and_a_legacy_one_is_released() {
    let h = ClusterHarness::new("finalizer").await;
    h.create(&training_run("run", 2)).await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert!(h.get::<TrainingRun>("run").await.finalizers().is_empty());
    assert_eq!(
        h.pod_names().await.len(),
        2,
        "the first pass already creates the pods"
    );

    // An object of an earlier version still carries the finalizer: the reconcile removes it
    // and leaves the others.
    h.edit::<TrainingRun>("run", |r| {
        r["metadata"]["finalizers"] = json!([FINALIZER, "example.com/other"]);
    })
    .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        h.get::<TrainingRun>("run").await.finalizers(),
        ["example.com/other".to_owned()]
    );
    // Without the other finalizer deletion is immediate and the pods follow their owner.
    h.edit::<TrainingRun>("run", |r| r["metadata"]["finalizers"] = json!([]))
        .await;
    kube::Api::<TrainingRun>::namespaced(h.admin.clone(), &h.ns.name)
        .delete("run", &Default::default())
        .await
        .unwrap();
    wait_for("the run and its pods to be gone", || async {
        let gone = h.get_opt::<TrainingRun>("run").await.is_none();
        (gone && h.list::<Pod>().await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn creates_one_gpu_pod_per_replica_with_secrets_security_and_env() {
    let h = ClusterHarness::new("pods").await;
    let run = h.create(&training_run("run", 3)).await;
    h.settle::<TrainingRun>("run").await;

    assert_eq!(
        h.pod_names().await,
        ["run-miner-0", "run-miner-1", "run-miner-2"]
    );
    let pod = h.pod("run-miner-1").await;
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, run.metadata.uid.clone().unwrap());
    assert_eq!(owner.kind, "TrainingRun");
    assert_eq!(owner.controller, Some(true));
    assert!(
        pod.annotations()
            .contains_key("subnet.templar.dev/config-hash")
    );

    let spec = pod.spec.as_ref().unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.command.as_deref(), Some(&["worker".to_owned()][..]));
    assert_eq!(c.args.as_deref(), Some(&["miner".to_owned()][..]));
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.limits.as_ref().unwrap()["nvidia.com/gpu"].0, "8");
    assert_eq!(res.requests.as_ref().unwrap()["nvidia.com/gpu"].0, "8");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert_eq!(
        spec.security_context
            .as_ref()
            .unwrap()
            .seccomp_profile
            .as_ref()
            .unwrap()
            .type_,
        "RuntimeDefault"
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));

    let volumes = spec.volumes.as_ref().unwrap();
    let hotkey = volumes.iter().find(|v| v.name == "hotkey").unwrap();
    assert_eq!(
        hotkey.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("miner-hotkey-1")
    );
    let mounts = c.volume_mounts.as_ref().unwrap();
    let hotkey_mount = mounts.iter().find(|m| m.name == "hotkey").unwrap();
    assert_eq!(hotkey_mount.read_only, Some(true));
    assert!(
        volumes
            .iter()
            .any(|v| v.name == "tmp" && v.empty_dir.is_some())
    );
    assert!(mounts.iter().any(|m| m.mount_path == "/tmp"));

    assert_eq!(env_value(&pod, "NETUID").as_deref(), Some("3"));
    assert_eq!(env_value(&pod, "REPLICA_INDEX").as_deref(), Some("1"));
    assert_eq!(
        env_value(&pod, "HOTKEY_FILE").as_deref(),
        Some("/var/run/secrets/subnet/hotkey/hotkey")
    );
    assert_eq!(
        env_value(&pod, "STORAGE_BUCKET").as_deref(),
        Some("grads-bucket")
    );
    let expected = run_manifest::verify(manifest(), "fixture", None).unwrap();
    assert_eq!(
        env_value(&pod, "RUN_MANIFEST").as_deref(),
        Some("/etc/subnet/run-manifest.json")
    );
    assert_eq!(
        env_value(&pod, "RUN_MANIFEST_SHA256"),
        Some(expected.hash().to_hex())
    );
    for gone in ["INNER_STEPS", "TOPK", "CHUNK", "MODEL_PRESET", "BATCH_SIZE"] {
        assert_eq!(env_value(&pod, gone), None, "{gone}");
    }
    let manifest_volume = volumes.iter().find(|v| v.name == "run-manifest").unwrap();
    assert_eq!(
        manifest_volume.config_map.as_ref().unwrap().name,
        "run-run-manifest"
    );
    let rendered: ConfigMap = h.get("run-run-manifest").await;
    assert_eq!(
        rendered.data.unwrap()["manifest.json"],
        expected.canonical(),
        "the pods mount the canonical manifest"
    );
    assert_eq!(
        rendered.metadata.owner_references.unwrap()[0].uid,
        run.metadata.uid.clone().unwrap()
    );
    let key_ref = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "STORAGE_SECRET_ACCESS_KEY")
        .unwrap();
    let sel = key_ref
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (sel.name.as_str(), sel.key.as_str()),
        ("s3-creds", "secretAccessKey")
    );
    assert!(
        key_ref.value.is_none(),
        "credentials never appear in plain text"
    );

    assert_eq!(h.event_reasons().await, ["PodsCreated", "PhaseChanged"]);
    assert_eq!(
        h.event_notes("PodsCreated").await,
        ["created 3 pod(s): run-miner-0, run-miner-1, run-miner-2"]
    );
    assert_eq!(
        h.event_notes("PhaseChanged").await,
        ["phase None -> Pending"]
    );
}

#[tokio::test]
async fn status_is_server_side_applied_and_tracks_readiness() {
    let h = ClusterHarness::new("status").await;
    h.create(&training_run("run", 2)).await;
    h.settle::<TrainingRun>("run").await;

    let run = h.get::<TrainingRun>("run").await;
    let managers: Vec<(String, String)> = run
        .managed_fields()
        .iter()
        .filter_map(|m| {
            Some((
                m.manager.clone()?,
                m.subresource.clone().unwrap_or_default(),
            ))
        })
        .collect();
    assert!(
        managers.contains(&("subnet-operator".into(), "status".into())),
        "the status is applied by the operator's field manager: {managers:?}"
    );
    let s = run.status.unwrap();
    assert_eq!(s.replicas, 2);
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        s.selector.as_deref(),
        Some("app.kubernetes.io/managed-by=subnet-operator,subnet.templar.dev/trainingrun=run")
    );

    // kwok runs the pods on the namespace's GPU nodes.
    h.pods_ready().await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let s = status(&h, "run").await;
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(
        condition(&s, "Ready"),
        (
            "True".into(),
            "AllReplicasReady".into(),
            "2/2 replicas ready".into()
        )
    );
    assert_eq!(condition(&s, "Progressing").1, "Complete");
    assert_eq!(condition(&s, "Degraded").0, "False");
    assert_eq!((s.ready_replicas, s.updated_replicas), (2, 2));
    assert!(
        s.replica_statuses
            .iter()
            .all(|r| r.ready && r.phase == ReplicaPhase::Running)
    );

    // Nothing changed: a further pass writes nothing (the object's resourceVersion stays).
    let before = h.get::<TrainingRun>("run").await.resource_version();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.get::<TrainingRun>("run").await.resource_version(), before);
}

/// A failed pod: recorded, deleted, recreated only once its backoff has passed by the
/// reconciler's clock; the next failure in a row doubles the delay.
#[tokio::test]
async fn failed_pod_is_recreated_with_exponential_backoff() {
    let h = ClusterHarness::new("backoff").await;
    h.create(&training_run("run", 2)).await;
    h.settle::<TrainingRun>("run").await;
    h.pods_ready().await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let healthy = uid(&h.pod("run-miner-0").await);

    h.end_pod("run-miner-1", 137, "OOMKilled").await;
    let action = h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(action, requeue(10));
    let s = status(&h, "run").await;
    let r1 = s.replica(1).unwrap();
    assert_eq!((r1.restarts, r1.consecutive_failures), (1, 1));
    assert_eq!(r1.phase, ReplicaPhase::Failed);
    assert_eq!(
        r1.last_failure.as_deref(),
        Some("exit code 137 (OOMKilled)")
    );
    let retry = r1.next_retry.clone().unwrap().0;
    assert_eq!(retry.duration_since(h.clock.now()).as_secs(), 10);
    assert_eq!(s.phase, Some(Phase::Degraded));
    assert_eq!(condition(&s, "Degraded").1, "ReplicaFailed");
    assert!(h.event_notes("PodFailed").await[0].contains("exit code 137 (OOMKilled)"));
    h.pod_gone("run-miner-1").await;

    // The failure is not counted twice.
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(status(&h, "run").await.replica(1).unwrap().restarts, 1);

    // Gone, but the backoff has not expired: no new pod.
    h.clock.advance(Duration::from_secs(4));
    let action = h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(action, requeue(6));
    assert_eq!(h.pod_names().await, ["run-miner-0"]);
    assert_eq!(
        status(&h, "run").await.replica(1).unwrap().phase,
        ReplicaPhase::BackOff
    );

    // Expired: recreated.
    h.clock.advance(Duration::from_secs(6));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.pod_names().await, ["run-miner-0", "run-miner-1"]);
    assert_eq!(
        uid(&h.pod("run-miner-0").await),
        healthy,
        "healthy replica untouched"
    );

    // Second failure in a row doubles the delay.
    h.pods_ready().await;
    h.end_pod("run-miner-1", 1, "Error").await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let r1 = status(&h, "run").await.replica(1).unwrap().clone();
    assert_eq!((r1.restarts, r1.consecutive_failures), (2, 2));
    assert_eq!(
        r1.next_retry
            .unwrap()
            .0
            .duration_since(h.clock.now())
            .as_secs(),
        20
    );
}

#[tokio::test]
async fn stable_replica_resets_the_backoff() {
    let h = ClusterHarness::new("stable").await;
    h.create(&training_run("run", 1)).await;
    h.settle::<TrainingRun>("run").await;
    h.pods_ready().await;
    h.end_pod("run-miner-0", 1, "Error").await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    h.pod_gone("run-miner-0").await;
    h.clock.advance(Duration::from_secs(10));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    h.pods_ready().await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        status(&h, "run")
            .await
            .replica(0)
            .unwrap()
            .consecutive_failures,
        1
    );
    // kwok stamps startTime with the wall clock, which the manual clock started from; 11
    // minutes later by that clock the pod has been Ready for longer than `stable_after`.
    h.clock.advance(Duration::from_secs(660));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let r0 = status(&h, "run").await.replica(0).unwrap().clone();
    assert_eq!((r0.restarts, r0.consecutive_failures), (1, 0));
}

#[tokio::test]
async fn suspend_deletes_pods_and_keeps_status() {
    let h = ClusterHarness::new("suspend").await;
    h.create(&training_run("run", 2)).await;
    h.settle::<TrainingRun>("run").await;
    h.annotate_pod(
        "run-miner-0",
        json!({subnet_operator::contract::REPORT_UID_ANNOTATION: "17"}),
    )
    .await;
    h.pods_ready().await;
    h.reconcile::<TrainingRun>("run").await.unwrap();

    h.edit::<TrainingRun>("run", |r| r["spec"]["suspend"] = json!(true))
        .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    wait_for("no pods", || async {
        h.list::<Pod>().await.is_empty().then_some(())
    })
    .await;
    let s = status(&h, "run").await;
    assert_eq!(s.phase, Some(Phase::Suspended));
    assert_eq!(condition(&s, "Ready").1, "Suspended");
    assert_eq!(s.replica_statuses.len(), 2, "replica entries kept");
    assert_eq!(s.replica(0).unwrap().uid, Some(17));
    assert!(
        s.replica_statuses
            .iter()
            .all(|r| r.phase == ReplicaPhase::Suspended && r.pod.is_none())
    );
    assert!(h.event_reasons().await.contains(&"Suspended".to_owned()));

    h.edit::<TrainingRun>("run", |r| r["spec"]["suspend"] = json!(false))
        .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.pod_names().await, ["run-miner-0", "run-miner-1"]);
    assert_eq!(status(&h, "run").await.replica(0).unwrap().uid, Some(17));
}

#[tokio::test]
async fn scaling_creates_and_deletes_the_highest_indices() {
    let h = ClusterHarness::new("scaling").await;
    h.create(&training_run("run", 3)).await;
    h.settle::<TrainingRun>("run").await;
    let mut before = Vec::new();
    for name in h.pod_names().await {
        before.push(uid(&h.pod(&name).await));
    }

    h.edit::<TrainingRun>("run", |r| r["spec"]["replicas"] = json!(5))
        .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        h.pod_names().await,
        [
            "run-miner-0",
            "run-miner-1",
            "run-miner-2",
            "run-miner-3",
            "run-miner-4"
        ]
    );
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(uid(&h.pod(&format!("run-miner-{i}")).await));
    }
    assert_eq!(before, after, "existing replicas untouched by scale-up");

    h.edit::<TrainingRun>("run", |r| r["spec"]["replicas"] = json!(2))
        .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    for gone in ["run-miner-2", "run-miner-3", "run-miner-4"] {
        h.pod_gone(gone).await;
    }
    assert_eq!(h.pod_names().await, ["run-miner-0", "run-miner-1"]);
    let s = status(&h, "run").await;
    assert_eq!(
        s.replica_statuses
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(
        h.event_notes("ScaledDown").await,
        ["deleted 3 pod(s) (index above spec.replicas): run-miner-2, run-miner-3, run-miner-4"]
    );
}

/// What CEL cannot check is the operator's: a clear condition, one event, no pods. Scaling a
/// hotkey list goes through the scale subresource, within the list.
#[tokio::test]
async fn invalid_spec_is_rejected_with_a_clear_condition_and_no_pods() {
    let h = ClusterHarness::new("invalid").await;
    let mut run = training_run("bad", 3);
    run.spec.workload.wallet.hotkey_secret_template = None;
    run.spec.workload.wallet.hotkey_secrets =
        Some(vec!["hk-a".into(), "hk-b".into(), "hk-a".into()]);
    // Read credentials equal to the write credentials would be published on chain in clear.
    run.spec.workload.storage.read_credentials_secret =
        Some(run.spec.workload.storage.credentials_secret.clone());
    h.create(&run).await;
    h.settle::<TrainingRun>("bad").await;
    h.reconcile::<TrainingRun>("bad").await.unwrap();

    assert!(h.pod_names().await.is_empty());
    let s = status(&h, "bad").await;
    assert_eq!(s.phase, Some(Phase::Invalid));
    let (st, reason, message) = condition(&s, "Ready");
    assert_eq!((st.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.wallet.hotkeySecrets[2]: \"hk-a\" is used by two replicas"),
        "{message}"
    );
    assert!(
        message.contains("spec.storage.readCredentialsSecret: names the same Secret"),
        "{message}"
    );
    assert_eq!(
        h.event_notes("InvalidSpec").await,
        [message],
        "one Warning event, not one per reconcile"
    );

    // Fixing the spec recovers.
    h.edit::<TrainingRun>("bad", |r| {
        r["spec"]["wallet"]["hotkeySecrets"] = json!(["hk-a", "hk-b", "hk-c"]);
        r["spec"]["storage"]
            .as_object_mut()
            .unwrap()
            .remove("readCredentialsSecret");
    })
    .await;
    h.reconcile::<TrainingRun>("bad").await.unwrap();
    assert_eq!(
        h.pod_names().await,
        ["bad-miner-0", "bad-miner-1", "bad-miner-2"]
    );

    // `kubectl scale` within the list is accepted by the apiserver (CEL) and the operator;
    // beyond it, the apiserver refuses with the documented message.
    let runs = kube::Api::<TrainingRun>::namespaced(h.admin.clone(), &h.ns.name);
    let scale = |replicas: i32| {
        let runs = runs.clone();
        async move {
            runs.patch_scale(
                "bad",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
        }
    };
    match scale(4).await {
        Err(kube::Error::Api(e)) => assert!(
            e.message
                .contains("wallet.hotkeySecrets must list at least one Secret per replica"),
            "{e:?}"
        ),
        other => panic!("scaling past the hotkey list must be refused: {other:?}"),
    }
    scale(2).await.unwrap();
    h.reconcile::<TrainingRun>("bad").await.unwrap();
    h.pod_gone("bad-miner-2").await;
    assert_eq!(h.pod_names().await, ["bad-miner-0", "bad-miner-1"]);
    assert_eq!(
        h.pod("bad-miner-1")
            .await
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .find(|v| v.name == "hotkey")
            .unwrap()
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("hk-b")
    );
    assert_eq!(condition(&status(&h, "bad").await, "Degraded").0, "False");
}

/// The validator set's hotkeys are registered by one-shot Jobs (run by the real Job
/// controller, their pods run by kwok) before its pods exist.
#[tokio::test]
async fn validator_set_pods_carry_the_runs_manifest_and_keys() {
    let h = ClusterHarness::new("validators").await;
    h.create(&validator_set("vs", 2)).await;
    h.create(&training_run("run", 1)).await;
    h.settle::<ValidatorSet>("vs").await;
    h.settle::<TrainingRun>("run").await;
    let workload_pods = |pods: Vec<String>| -> Vec<String> {
        pods.into_iter()
            .filter(|p| !p.contains("-register-"))
            .collect()
    };
    assert_eq!(workload_pods(h.pod_names().await), ["run-miner-0"]);
    let jobs: Vec<String> = h.list::<Job>().await.iter().map(|j| j.name_any()).collect();
    assert_eq!(jobs, ["vs-register-0", "vs-register-1"]);
    let job: Job = h.get("vs-register-1").await;
    let template = job.spec.unwrap().template.spec.unwrap();
    let job_secrets: Vec<String> = template
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert_eq!(job_secrets, ["validator-hotkey-1", "validator-coldkey"]);
    let s = h.get::<ValidatorSet>("vs").await.status.unwrap();
    assert_eq!(s.replica(1).unwrap().phase, ReplicaPhase::Registering);

    // The registrations succeed: the Jobs' pods exit 0 and the Job controller completes them.
    let h = &h;
    for job in ["vs-register-0", "vs-register-1"] {
        let pod = wait_for(&format!("the pod of {job} to run"), || async move {
            h.live_pods().await.into_iter().find(|p| {
                p.labels()
                    .get("batch.kubernetes.io/job-name")
                    .map(String::as_str)
                    == Some(job)
                    && operator::cluster::phase(p) == "Running"
            })
        })
        .await;
        h.end_pod(&pod.name_any(), 0, "Completed").await;
    }
    wait_for("both Jobs complete", || async {
        let jobs = h.list::<Job>().await;
        jobs.iter()
            .all(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
            .then_some(())
    })
    .await;
    h.settle::<ValidatorSet>("vs").await;
    assert_eq!(
        workload_pods(h.pod_names().await),
        ["run-miner-0", "vs-validator-0", "vs-validator-1"]
    );
    let miner_hash = env_value(&h.pod("run-miner-0").await, "RUN_MANIFEST_SHA256");
    assert!(miner_hash.is_some());
    let pod = h.pod("vs-validator-1").await;
    assert_eq!(
        pod.spec.as_ref().unwrap().containers[0].args.as_deref(),
        Some(&["validator".to_owned()][..])
    );
    assert_eq!(env_value(&pod, "WORKER_ROLE").as_deref(), Some("validator"));
    assert_eq!(
        env_value(&pod, "RUN_MANIFEST_SHA256"),
        miner_hash,
        "miners and validators of one manifest run with one hash"
    );
    assert_eq!(env_value(&pod, "PEERS_PER_WINDOW"), None);
    assert_eq!(
        env_value(&pod, "COLDKEY_FILE"),
        None,
        "the long-running validator never sees the coldkey"
    );
    let volumes = pod.spec.as_ref().unwrap().volumes.clone().unwrap();
    let secrets: Vec<String> = volumes
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert_eq!(secrets, ["validator-hotkey-1"]);
    assert_eq!(pod.labels()["subnet.templar.dev/validatorset"], "vs");
    let s = h.get::<ValidatorSet>("vs").await.status.unwrap();
    assert_eq!(
        s.replica(1).unwrap().hotkey_secret.as_deref(),
        Some("validator-hotkey-1")
    );
}

#[tokio::test]
async fn worker_reports_flow_into_replica_status() {
    use subnet_operator::contract::{
        REPORT_SCORE_ANNOTATION, REPORT_UID_ANNOTATION, REPORT_WINDOW_ANNOTATION,
    };
    let h = ClusterHarness::new("reports").await;
    h.create(&training_run("run", 1)).await;
    h.settle::<TrainingRun>("run").await;
    h.annotate_pod(
        "run-miner-0",
        json!({
            REPORT_UID_ANNOTATION: "42",
            REPORT_WINDOW_ANNOTATION: "1234",
            REPORT_SCORE_ANNOTATION: "0.75",
        }),
    )
    .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let r = status(&h, "run").await.replica(0).unwrap().clone();
    assert_eq!(
        (r.uid, r.last_window, r.last_score),
        (Some(42), Some(1234), Some(0.75))
    );
}

#[tokio::test]
async fn claim_template_creates_one_checkpoint_claim_per_replica() {
    let h = ClusterHarness::new("claims").await;
    let mut run = training_run("run", 2);
    let template: k8s_openapi::api::core::v1::PersistentVolumeClaimSpec =
        serde_json::from_value(json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "100Gi"}},
        }))
        .unwrap();
    run.spec.workload.checkpoint = Some(CheckpointSpec {
        existing_claim: None,
        claim_template: Some(template),
        mount_path: "/ckpt".into(),
    });
    h.create(&run).await;
    h.settle::<TrainingRun>("run").await;
    let claims: Vec<String> = h
        .list::<PersistentVolumeClaim>()
        .await
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(claims, ["run-checkpoint-0", "run-checkpoint-1"]);
    let pod = h.pod("run-miner-1").await;
    let vol = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "checkpoints")
        .unwrap()
        .clone();
    assert_eq!(
        vol.persistent_volume_claim.unwrap().claim_name,
        "run-checkpoint-1"
    );
    assert_eq!(env_value(&pod, "CHECKPOINT_DIR").as_deref(), Some("/ckpt"));
}

#[tokio::test]
async fn pods_of_other_owners_are_ignored() {
    let h = ClusterHarness::new("owners").await;
    h.create(&training_run("a", 1)).await;
    h.create(&training_run("b", 1)).await;
    h.settle::<TrainingRun>("a").await;
    h.settle::<TrainingRun>("b").await;
    h.edit::<TrainingRun>("a", |r| r["spec"]["replicas"] = json!(0))
        .await;
    h.reconcile::<TrainingRun>("a").await.unwrap();
    h.pod_gone("a-miner-0").await;
    assert_eq!(h.pod_names().await, ["b-miner-0"]);
}

/// Manifests the worker refuses get `InvalidSpec` naming the field, and no pods.
#[tokio::test]
async fn bad_manifests_are_invalid_specs_naming_the_field() {
    type Edit = Box<dyn Fn(&mut TrainingRun)>;
    let with = |edit: fn(&mut RunManifest)| -> Edit {
        Box::new(move |r: &mut TrainingRun| {
            let mut m = manifest();
            edit(&mut m);
            r.spec.workload.manifest = inline(&m);
        })
    };
    let cases: Vec<(&str, Edit)> = vec![
        (
            "spec.manifest.inline.model.preset: unknown preset \"llama-1b\" (expected one of tiny, 150m, 1b, 8b, 70b)",
            with(|m| m.model.preset = Some("llama-1b".into())),
        ),
        (
            "spec.manifest.inline.sparseloco.chunk: must be in 1..=64, got 128",
            with(|m| m.sparseloco.chunk = 128),
        ),
        (
            "spec.manifest.inline.sparseloco.quantizationBits: the wire format encodes 2-bit codes only, got 4",
            with(|m| m.sparseloco.quantization_bits = 4),
        ),
        (
            "spec.manifest.inline.training.batchSize: 10 is not a positive multiple of microBatchSize 4",
            with(|m| {
                m.training.batch_size = 10;
                m.training.micro_batch_size = 4;
            }),
        ),
        (
            "spec.chainEndpoint: unknown network \"https://chain.example:443\"",
            Box::new(|r| r.spec.workload.chain_endpoint = "https://chain.example:443".into()),
        ),
        (
            "spec.manifest.sha256: pins ffffffff",
            Box::new(|r| r.spec.workload.manifest.sha256 = Some("f".repeat(64))),
        ),
        (
            "spec.manifest.inline.sparseloco.blockSize: unknown field `blockSize`",
            Box::new(|r| {
                let inline = r.spec.workload.manifest.inline.as_mut().unwrap();
                inline["sparseloco"]["blockSize"] = json!(8);
            }),
        ),
    ];
    let h = ClusterHarness::new("bad-manifests").await;
    for (i, (expected, edit)) in cases.iter().enumerate() {
        let name = format!("run-{i}");
        let mut run = training_run(&name, 1);
        edit(&mut run);
        h.create(&run).await;
        h.settle::<TrainingRun>(&name).await;
        let (st, reason, message) = ready(&h, &name).await;
        assert_eq!(
            (st.as_str(), reason.as_str()),
            ("False", "InvalidSpec"),
            "{expected}"
        );
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
    assert!(h.list::<Pod>().await.is_empty(), "no pods");
    assert!(
        h.list::<ConfigMap>()
            .await
            .iter()
            .all(|c| !c.name_any().ends_with("-run-manifest")),
        "nothing rendered"
    );
}

/// The same manifest inline and in a ConfigMap is the same run: one hash, one rendered file.
#[tokio::test]
async fn inline_and_config_map_manifests_give_the_same_hash() {
    let h = ClusterHarness::new("manifest-hash").await;
    h.create(&manifest_config_map("shared", &manifest().to_json_pretty()))
        .await;
    let mut from_cm = training_run("from-cm", 1);
    from_cm.spec.workload.manifest = from_config_map("shared");
    h.create(&from_cm).await;
    h.create(&training_run("inline", 1)).await;
    h.settle::<TrainingRun>("from-cm").await;
    h.settle::<TrainingRun>("inline").await;
    let a = env_value(&h.pod("from-cm-miner-0").await, "RUN_MANIFEST_SHA256");
    let b = env_value(&h.pod("inline-miner-0").await, "RUN_MANIFEST_SHA256");
    assert_eq!(a, b);
    let expected = run_manifest::verify(manifest(), "t", None).unwrap();
    assert_eq!(a, Some(expected.hash().to_hex()));
    let text = |cm: ConfigMap| cm.data.unwrap()["manifest.json"].clone();
    assert_eq!(
        text(h.get("from-cm-run-manifest").await),
        text(h.get("inline-run-manifest").await)
    );

    // A pin of the right hash (either spelling) is accepted.
    let pin = format!("sha256:{}", expected.hash());
    h.edit::<TrainingRun>("from-cm", |r| r["spec"]["manifest"]["sha256"] = json!(pin))
        .await;
    h.reconcile::<TrainingRun>("from-cm").await.unwrap();
    assert_ne!(ready(&h, "from-cm").await.1, "InvalidSpec");
    h.edit::<TrainingRun>("from-cm", |r| {
        r["spec"]["manifest"]["sha256"] = json!("0".repeat(64));
    })
    .await;
    h.reconcile::<TrainingRun>("from-cm").await.unwrap();
    let (_, reason, message) = ready(&h, "from-cm").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.starts_with(&format!(
            "spec.manifest.sha256: pins {}, but the manifest in ConfigMap {}/shared key manifest.json has SHA-256 {}",
            "0".repeat(64),
            h.ns.name,
            expected.hash()
        )),
        "{message}"
    );
}

/// A missing ConfigMap or key is `ManifestNotFound`; a broken one names ConfigMap and key.
#[tokio::test]
async fn config_map_problems_are_reported_and_recovered_from() {
    let h = ClusterHarness::new("manifest-cm").await;
    let ns = h.ns.name.clone();
    let mut run = training_run("run", 1);
    run.spec.workload.manifest = from_config_map("shared");
    h.create(&run).await;
    h.settle::<TrainingRun>("run").await;
    assert_eq!(
        ready(&h, "run").await,
        (
            "False".into(),
            "ManifestNotFound".into(),
            format!("spec.manifest.configMapRef: ConfigMap {ns}/shared not found")
        )
    );
    assert_eq!(status(&h, "run").await.phase, Some(Phase::Invalid));
    assert_eq!(
        h.event_reasons().await.last().map(String::as_str),
        Some("ManifestNotFound")
    );

    let mut bad = manifest();
    bad.sparseloco.chunk = 128;
    h.create(&manifest_config_map("shared", &bad.to_json_pretty()))
        .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let (_, reason, message) = ready(&h, "run").await;
    assert_eq!(
        message,
        format!(
            "ConfigMap {ns}/shared key manifest.json: sparseloco.chunk: must be in 1..=64, got 128"
        )
    );
    assert_eq!(reason, "InvalidSpec");

    h.edit::<ConfigMap>("shared", |cm| cm["data"] = json!({"other.json": "{}"}))
        .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        ready(&h, "run").await.2,
        format!("spec.manifest.configMapRef: ConfigMap {ns}/shared has no key manifest.json")
    );

    let good = manifest().to_json_pretty();
    h.edit::<ConfigMap>("shared", |cm| {
        cm["data"] = json!({"manifest.json": good});
    })
    .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.pod_names().await, ["run-miner-0"]);
}

/// Changing any protocol field changes the rendered manifest and rolls the pods.
#[tokio::test]
async fn protocol_change_rolls_the_pods() {
    let h = ClusterHarness::new("protocol").await;
    h.create(&manifest_config_map("shared", &manifest().to_json_pretty()))
        .await;
    let mut run = training_run("run", 2);
    run.spec.workload.manifest = from_config_map("shared");
    h.create(&run).await;
    h.settle::<TrainingRun>("run").await;
    h.pods_ready().await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let hash = |p: Pod| p.annotations()["subnet.templar.dev/config-hash"].clone();
    let before = hash(h.pod("run-miner-0").await);

    let mut changed = manifest();
    changed.training.outer_lr = 0.7;
    let text = changed.to_json_pretty();
    h.edit::<ConfigMap>("shared", |cm| cm["data"]["manifest.json"] = json!(text))
        .await;
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let verified = run_manifest::verify(changed, "t", None).unwrap();
    let rendered: ConfigMap = h.get("run-run-manifest").await;
    assert_eq!(
        rendered.data.unwrap()["manifest.json"],
        verified.canonical()
    );
    h.pod_gone("run-miner-0").await;
    assert_eq!(
        h.pod_names().await,
        ["run-miner-1"],
        "rolling update started"
    );
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let pod = h.pod("run-miner-0").await;
    assert_ne!(hash(pod.clone()), before);
    assert_eq!(
        env_value(&pod, "RUN_MANIFEST_SHA256"),
        Some(verified.hash().to_hex())
    );
}

/// The controller's ConfigMap watch: a run whose manifest ConfigMap does not exist yet waits
/// with `ManifestNotFound`, and starts as soon as the ConfigMap appears (no requeue timer in
/// between: the default error requeue is minutes).
#[tokio::test]
async fn a_run_waiting_for_its_manifest_config_map_starts_when_it_appears() {
    use operator::cluster::{install_chart, start_operator};
    let h = ClusterHarness::new("cm-watch").await;
    let _operator = start_operator(install_chart(&h.ns).await, &h.ns);
    let mut waiting = training_run("waiting", 1);
    waiting.spec.workload.manifest = from_config_map("shared");
    h.create(&waiting).await;
    wait_for("ManifestNotFound", || async {
        let s = h.get::<TrainingRun>("waiting").await.status?;
        (s.condition("Ready")?.reason == "ManifestNotFound").then_some(())
    })
    .await;
    h.create(&manifest_config_map("shared", &manifest().to_json_pretty()))
        .await;
    wait_for("the pod once the ConfigMap appears", || async {
        h.pod_names()
            .await
            .contains(&"waiting-miner-0".to_owned())
            .then_some(())
    })
    .await;
}
