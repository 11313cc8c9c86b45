//! Reconciler behaviour against the in-memory API server (`tests/operator/fake_api.rs`).

mod operator;

use std::time::Duration;

use http::Method;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use operator::fixtures::{
    Harness, NS, from_config_map, inline, manifest, manifest_config_map, training_run,
    validator_set,
};
use run_manifest::RunManifest;
use serde_json::json;
use subnet_operator::clock::Clock;
use subnet_operator::crd::{
    CheckpointSpec, Phase, ReplicaPhase, TrainingRun, ValidatorSet, WorkloadStatus,
};
use subnet_operator::{FINALIZER, error_policy};

fn status(h: &Harness, name: &str) -> WorkloadStatus {
    h.get::<TrainingRun>(name).status.expect("status written")
}

fn condition(s: &WorkloadStatus, type_: &str) -> (String, String, String) {
    let c = s
        .condition(type_)
        .unwrap_or_else(|| panic!("condition {type_}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
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

#[tokio::test]
async fn no_finalizer_is_added_and_a_legacy_one_is_released() {
    let h = Harness::new();
    h.api.create(&training_run("run", 2));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert!(h.get::<TrainingRun>("run").finalizers().is_empty());
    assert_eq!(
        h.pod_names().len(),
        2,
        "the first pass already creates the pods"
    );

    // An object of an earlier version still carries the finalizer: one merge patch, guarded
    // by its resourceVersion, removes it.
    h.api.edit::<TrainingRun>(NS, "run", |r| {
        r["metadata"]["finalizers"] = serde_json::json!([FINALIZER, "example.com/other"]);
    });
    h.api.clear_requests();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        h.get::<TrainingRun>("run").finalizers(),
        ["example.com/other".to_owned()]
    );
    let patch = h
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path.ends_with("/trainingruns/run"))
        .expect("finalizer patch");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert!(patch.body.unwrap()["metadata"]["resourceVersion"].is_string());
}

#[tokio::test]
async fn creates_one_gpu_pod_per_replica_with_secrets_security_and_env() {
    let h = Harness::new();
    let run = h.api.create(&training_run("run", 3));
    h.settle::<TrainingRun>("run").await;

    assert_eq!(h.pod_names(), ["run-miner-0", "run-miner-1", "run-miner-2"]);
    let pod = h.pod("run-miner-1");
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
    let rendered: ConfigMap = h
        .api
        .get(NS, "run-run-manifest")
        .expect("rendered manifest");
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

    assert_eq!(h.event_reasons(), ["PodsCreated", "PhaseChanged"]);
    assert_eq!(
        h.event_notes("PodsCreated"),
        ["created 3 pod(s): run-miner-0, run-miner-1, run-miner-2"]
    );
    assert_eq!(h.event_notes("PhaseChanged"), ["phase None -> Pending"]);
}

#[tokio::test]
async fn status_is_server_side_applied_and_tracks_readiness() {
    let h = Harness::new();
    h.api.create(&training_run("run", 2));
    h.settle::<TrainingRun>("run").await;

    let apply = h
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path.ends_with("/trainingruns/run/status"))
        .expect("status patch");
    assert_eq!(apply.method, Method::PATCH);
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert!(
        apply.query.contains("fieldManager=subnet-operator"),
        "{}",
        apply.query
    );
    assert!(apply.query.contains("force=true"), "{}", apply.query);
    let body = apply.body.unwrap();
    assert_eq!(body["apiVersion"], "subnet.templar.dev/v1alpha1");
    assert_eq!(body["kind"], "TrainingRun");

    let s = status(&h, "run");
    assert_eq!(s.phase, Some(Phase::Pending));
    assert_eq!(condition(&s, "Ready").0, "False");
    assert_eq!(s.replicas, 2);
    assert_eq!(s.ready_replicas, 0);
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        s.selector.as_deref(),
        Some("app.kubernetes.io/managed-by=subnet-operator,subnet.templar.dev/trainingrun=run")
    );

    h.all_pods_ready();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let s = status(&h, "run");
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

    // Nothing changed: no writes; the object is re-read (read-your-writes: the backoff state
    // lives in its status), the rendered manifest and the workers' identity (ServiceAccount,
    // Role, RoleBinding) are read and the pods listed.
    h.api.clear_requests();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let reqs = h.api.requests();
    assert!(reqs.iter().all(|r| r.method == Method::GET), "{reqs:?}");
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    let ends = [
        "/trainingruns/run/status",
        "/configmaps/run-run-manifest",
        "/serviceaccounts/run-worker",
        "/roles/run-worker-report",
        "/rolebindings/run-worker-report",
        "/pods",
    ];
    assert_eq!(
        paths.len(),
        ends.len(),
        "steady state only reads: {paths:?}"
    );
    for (path, end) in paths.iter().zip(ends) {
        assert!(path.ends_with(end), "{path} is not {end}: {paths:?}");
    }
}

#[tokio::test]
async fn failed_pod_is_recreated_with_exponential_backoff() {
    let h = Harness::new();
    h.api.set_graceful_pod_deletion(true);
    h.api.create(&training_run("run", 2));
    h.settle::<TrainingRun>("run").await;
    h.all_pods_ready();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let healthy = uid(&h.pod("run-miner-0"));

    h.api.fail_pod(NS, "run-miner-1", 137, "OOMKilled");
    let action = h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(10))
    );
    let s = status(&h, "run");
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
    assert!(h.event_notes("PodFailed")[0].contains("exit code 137 (OOMKilled)"));
    assert!(
        h.pod("run-miner-1").metadata.deletion_timestamp.is_some(),
        "failed pod deleted"
    );

    // The terminating failed pod is not counted twice.
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(status(&h, "run").replica(1).unwrap().restarts, 1);

    // Gone, but the backoff has not expired: no new pod.
    h.api.finish_pod_deletions();
    h.clock.advance(Duration::from_secs(4));
    let action = h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(6))
    );
    assert_eq!(h.pod_names(), ["run-miner-0"]);
    assert_eq!(
        status(&h, "run").replica(1).unwrap().phase,
        ReplicaPhase::BackOff
    );

    // Expired: recreated.
    h.clock.advance(Duration::from_secs(6));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.pod_names(), ["run-miner-0", "run-miner-1"]);
    assert_eq!(
        uid(&h.pod("run-miner-0")),
        healthy,
        "healthy replica untouched"
    );

    // Second failure in a row doubles the delay.
    h.api.fail_pod(NS, "run-miner-1", 1, "Error");
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let r1 = status(&h, "run").replica(1).unwrap().clone();
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
    let h = Harness::new();
    h.api.create(&training_run("run", 1));
    h.settle::<TrainingRun>("run").await;
    h.api.fail_pod(NS, "run-miner-0", 1, "Error");
    h.reconcile::<TrainingRun>("run").await.unwrap();
    h.clock.advance(Duration::from_secs(10));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    h.all_pods_ready();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        status(&h, "run").replica(0).unwrap().consecutive_failures,
        1
    );
    // set_pod_phase stamps startTime with the wall clock; the manual clock started at the
    // same moment, so 11 minutes later the pod has been Ready for longer than `stable_after`.
    h.clock.advance(Duration::from_secs(660));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let r0 = status(&h, "run").replica(0).unwrap().clone();
    assert_eq!((r0.restarts, r0.consecutive_failures), (1, 0));
}

#[tokio::test]
async fn suspend_deletes_pods_and_keeps_status() {
    let h = Harness::new();
    h.api.create(&training_run("run", 2));
    h.settle::<TrainingRun>("run").await;
    h.api.edit::<Pod>(NS, "run-miner-0", |p| {
        p["metadata"]["annotations"]["subnet.templar.dev/chain-uid"] = json!("17");
    });
    h.all_pods_ready();
    h.reconcile::<TrainingRun>("run").await.unwrap();

    h.api
        .edit::<TrainingRun>(NS, "run", |r| r["spec"]["suspend"] = json!(true));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert!(h.pod_names().is_empty());
    let s = status(&h, "run");
    assert_eq!(s.phase, Some(Phase::Suspended));
    assert_eq!(condition(&s, "Ready").1, "Suspended");
    assert_eq!(s.replica_statuses.len(), 2, "replica entries kept");
    assert_eq!(s.replica(0).unwrap().uid, Some(17));
    assert!(
        s.replica_statuses
            .iter()
            .all(|r| r.phase == ReplicaPhase::Suspended && r.pod.is_none())
    );
    assert!(h.event_reasons().contains(&"Suspended".to_owned()));

    h.api
        .edit::<TrainingRun>(NS, "run", |r| r["spec"]["suspend"] = json!(false));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.pod_names(), ["run-miner-0", "run-miner-1"]);
    assert_eq!(status(&h, "run").replica(0).unwrap().uid, Some(17));
}

#[tokio::test]
async fn scaling_creates_and_deletes_the_highest_indices() {
    let h = Harness::new();
    h.api.create(&training_run("run", 3));
    h.settle::<TrainingRun>("run").await;
    let before: Vec<String> = h.pod_names().iter().map(|n| uid(&h.pod(n))).collect();

    h.api
        .edit::<TrainingRun>(NS, "run", |r| r["spec"]["replicas"] = json!(5));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        h.pod_names(),
        [
            "run-miner-0",
            "run-miner-1",
            "run-miner-2",
            "run-miner-3",
            "run-miner-4"
        ]
    );
    let after: Vec<String> = (0..3)
        .map(|i| uid(&h.pod(&format!("run-miner-{i}"))))
        .collect();
    assert_eq!(before, after, "existing replicas untouched by scale-up");

    h.api
        .edit::<TrainingRun>(NS, "run", |r| r["spec"]["replicas"] = json!(2));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.pod_names(), ["run-miner-0", "run-miner-1"]);
    let s = status(&h, "run");
    assert_eq!(
        s.replica_statuses
            .iter()
            .map(|r| r.index)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(
        h.event_notes("ScaledDown"),
        ["deleted 3 pod(s) (index above spec.replicas): run-miner-2, run-miner-3, run-miner-4"]
    );
}

#[tokio::test]
async fn spec_change_rolls_pods_one_at_a_time() {
    let h = Harness::new();
    h.api.create(&training_run("run", 3));
    h.settle::<TrainingRun>("run").await;
    h.all_pods_ready();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let hash =
        |h: &Harness, n: &str| h.pod(n).annotations()["subnet.templar.dev/config-hash"].clone();
    let old_hashes: Vec<String> = (0..3)
        .map(|i| hash(&h, &format!("run-miner-{i}")))
        .collect();

    h.api.edit::<TrainingRun>(NS, "run", |r| {
        r["spec"]["image"] = json!("ghcr.io/example/worker:2.0")
    });
    let image = |h: &Harness, n: &str| h.pod(n).spec.unwrap().containers[0].image.clone().unwrap();
    for step in 0..3 {
        // Replace pod `step`: delete, then recreate on the next pass.
        h.reconcile::<TrainingRun>("run").await.unwrap();
        let names = h.pod_names();
        assert_eq!(
            names.len(),
            2,
            "step {step}: exactly one pod replaced at a time: {names:?}"
        );
        assert!(!names.contains(&format!("run-miner-{step}")));
        let s = status(&h, "run");
        assert_eq!(condition(&s, "Progressing").1, "RollingUpdate");
        h.reconcile::<TrainingRun>("run").await.unwrap();
        assert_eq!(
            image(&h, &format!("run-miner-{step}")),
            "ghcr.io/example/worker:2.0"
        );
        // While the new pod is not ready, nothing else is touched.
        h.reconcile::<TrainingRun>("run").await.unwrap();
        assert_eq!(
            h.pod_names().len(),
            3,
            "step {step}: waits for the new pod to be Ready"
        );
        assert_ne!(hash(&h, &format!("run-miner-{step}")), old_hashes[step]);
        for (later, old) in old_hashes.iter().enumerate().skip(step + 1) {
            assert_eq!(&hash(&h, &format!("run-miner-{later}")), old, "step {step}");
        }
        h.all_pods_ready();
    }
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let s = status(&h, "run");
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(s.updated_replicas, 3);
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(h.event_notes("RollingUpdate").len(), 3);
}

#[tokio::test]
async fn deletion_leaves_the_pods_to_the_garbage_collector() {
    let h = Harness::new();
    h.api.create(&training_run("run", 2));
    h.settle::<TrainingRun>("run").await;
    assert_eq!(h.pod_names().len(), 2);

    // No finalizer: the object goes at once and its pods follow their owner reference.
    h.api.delete::<TrainingRun>(NS, "run");
    assert!(h.api.get::<TrainingRun>(NS, "run").is_none());
    assert!(h.pod_names().is_empty());
}

#[tokio::test]
async fn invalid_spec_is_rejected_with_a_clear_condition_and_no_pods() {
    let h = Harness::new();
    let mut run = training_run("bad", 3);
    run.spec.workload.wallet.hotkey_secret_template = None;
    run.spec.workload.wallet.hotkey_secrets = Some(vec!["hk-a".into(), "hk-b".into()]);
    run.spec.workload.storage.bucket = String::new();
    h.api.create(&run);
    h.settle::<TrainingRun>("bad").await;
    h.reconcile::<TrainingRun>("bad").await.unwrap();

    assert!(h.pod_names().is_empty());
    let s = h.get::<TrainingRun>("bad").status.unwrap();
    assert_eq!(s.phase, Some(Phase::Invalid));
    let (st, reason, message) = condition(&s, "Ready");
    assert_eq!((st.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.wallet.hotkeySecrets: lists 2 Secrets but replicas is 3"),
        "{message}"
    );
    assert!(
        message.contains("spec.storage.bucket: must not be empty"),
        "{message}"
    );
    assert_eq!(
        h.event_notes("InvalidSpec"),
        [message],
        "one Warning event, not one per reconcile"
    );

    // Fixing the spec recovers.
    h.api.edit::<TrainingRun>(NS, "bad", |r| {
        r["spec"]["replicas"] = json!(2);
        r["spec"]["storage"]["bucket"] = json!("fixed-bucket");
    });
    h.reconcile::<TrainingRun>("bad").await.unwrap();
    assert_eq!(h.pod_names(), ["bad-miner-0", "bad-miner-1"]);
    assert_eq!(
        h.pod("bad-miner-1")
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
}

#[tokio::test]
async fn validator_set_pods_carry_the_runs_manifest_and_keys() {
    let h = Harness::new();
    h.api.create(&validator_set("vs", 2));
    h.api.create(&training_run("run", 1));
    h.settle::<ValidatorSet>("vs").await;
    h.settle::<TrainingRun>("run").await;
    // The validator set has a coldkey: its hotkeys are registered by one-shot Jobs first, and
    // no validator pod exists before its Job has completed.
    assert_eq!(h.pod_names(), ["run-miner-0"]);
    let jobs: Vec<String> = h
        .api
        .list::<Job>(NS)
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert_eq!(jobs, ["vs-register-0", "vs-register-1"]);
    let job = h.api.get::<Job>(NS, "vs-register-1").unwrap();
    let template = job.spec.unwrap().template.spec.unwrap();
    let job_secrets: Vec<String> = template
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert_eq!(job_secrets, ["validator-hotkey-1", "validator-coldkey"]);
    let s = h.get::<ValidatorSet>("vs").status.unwrap();
    assert_eq!(s.replica(1).unwrap().phase, ReplicaPhase::Registering);
    for name in ["vs-register-0", "vs-register-1"] {
        h.api.edit::<Job>(NS, name, |j| {
            j["status"] = json!({
                "succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True"}]
            });
        });
    }
    h.settle::<ValidatorSet>("vs").await;
    assert_eq!(
        h.pod_names(),
        ["run-miner-0", "vs-validator-0", "vs-validator-1"]
    );
    let miner_hash = env_value(&h.pod("run-miner-0"), "RUN_MANIFEST_SHA256");
    assert!(miner_hash.is_some());
    let pod = h.pod("vs-validator-1");
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
    let s = h.get::<ValidatorSet>("vs").status.unwrap();
    assert_eq!(
        s.replica(1).unwrap().hotkey_secret.as_deref(),
        Some("validator-hotkey-1")
    );
}

#[tokio::test]
async fn worker_reports_flow_into_replica_status() {
    let h = Harness::new();
    h.api.create(&training_run("run", 1));
    h.settle::<TrainingRun>("run").await;
    h.api.edit::<Pod>(NS, "run-miner-0", |p| {
        let a = &mut p["metadata"]["annotations"];
        a["subnet.templar.dev/chain-uid"] = json!("42");
        a["subnet.templar.dev/last-window"] = json!("1234");
        a["subnet.templar.dev/last-score"] = json!("0.75");
    });
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let r = status(&h, "run").replica(0).unwrap().clone();
    assert_eq!(
        (r.uid, r.last_window, r.last_score),
        (Some(42), Some(1234), Some(0.75))
    );
}

#[tokio::test]
async fn claim_template_creates_one_checkpoint_claim_per_replica() {
    let h = Harness::new();
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
    h.api.create(&run);
    h.settle::<TrainingRun>("run").await;
    let claims: Vec<String> = h
        .api
        .list::<PersistentVolumeClaim>(NS)
        .into_iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(claims, ["run-checkpoint-0", "run-checkpoint-1"]);
    let pod = h.pod("run-miner-1");
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

    // Claims survive pod recreation and are garbage-collected with the run.
    h.api.delete::<TrainingRun>(NS, "run");
    assert_eq!(h.api.count("persistentvolumeclaims"), 0);
}

#[tokio::test]
async fn api_failure_fails_the_reconcile_and_bumps_the_failure_metric() {
    let h = Harness::new();
    let run = h.api.create(&training_run("run", 1));
    h.settle::<TrainingRun>("run").await;
    h.api.fail_next(Method::GET, "/pods", 500, 1);
    let err = h.reconcile::<TrainingRun>("run").await.unwrap_err();
    let run = std::sync::Arc::new(run);
    let requeue = |secs| kube::runtime::controller::Action::requeue(Duration::from_secs(secs));
    // Per-object exponential backoff: 1 s, then 2 s for the next error in a row.
    assert_eq!(error_policy(run.clone(), &err, h.ctx.clone()), requeue(1));
    assert_eq!(error_policy(run.clone(), &err, h.ctx.clone()), requeue(2));
    assert_eq!(h.ctx.metrics.failures("TrainingRun", "api_500"), 2);
    assert_eq!(h.ctx.metrics.reconciles("TrainingRun"), 3);
    // Recovers on the next pass, which resets the backoff.
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(error_policy(run, &err, h.ctx.clone()), requeue(1));
}

#[tokio::test]
async fn pods_of_other_owners_are_ignored() {
    let h = Harness::new();
    h.api.create(&training_run("a", 1));
    h.api.create(&training_run("b", 1));
    h.settle::<TrainingRun>("a").await;
    h.settle::<TrainingRun>("b").await;
    h.api
        .edit::<TrainingRun>(NS, "a", |r| r["spec"]["replicas"] = json!(0));
    h.reconcile::<TrainingRun>("a").await.unwrap();
    assert_eq!(h.pod_names(), ["b-miner-0"]);
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The real `Controller` wiring (`run_controllers`): watches on the workloads and on their
/// pods (`owns`) drive the reconciles, with no direct `reconcile` call from the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_react_to_workload_and_pod_watch_events() {
    use subnet_operator::controller::{ControllerOptions, run_controllers};
    let h = Harness::new();
    let options = ControllerOptions {
        namespace: Some(NS.into()),
        concurrency: 4,
    };
    let controllers = tokio::spawn(run_controllers(h.api.client(), h.ctx.clone(), options));
    eventually("a workload, a pod and a ConfigMap watch per kind", || {
        h.api.watchers() >= 6
    })
    .await;

    h.api.create(&training_run("run", 2));
    eventually("pods created from the TrainingRun watch", || {
        h.pod_names().len() == 2
    })
    .await;

    h.all_pods_ready();
    let phase = |h: &Harness| {
        h.api
            .get::<TrainingRun>(NS, "run")
            .and_then(|r| r.status)
            .and_then(|s| s.phase)
    };
    eventually("Running after pod watch events", || {
        phase(&h) == Some(Phase::Running)
    })
    .await;

    h.api.fail_pod(NS, "run-miner-1", 1, "Error");
    eventually("failed pod replaced by a backoff", || {
        h.pod_names() == ["run-miner-0"]
            && h.api
                .get::<TrainingRun>(NS, "run")
                .and_then(|r| r.status)
                .and_then(|s| s.replica(1).map(|r| r.restarts))
                == Some(1)
    })
    .await;

    // A run whose manifest ConfigMap does not exist yet starts once it appears.
    let mut waiting = training_run("waiting", 1);
    waiting.spec.workload.manifest = from_config_map("shared");
    h.api.create(&waiting);
    let reason = |h: &Harness| {
        h.api
            .get::<TrainingRun>(NS, "waiting")
            .and_then(|r| r.status)
            .and_then(|s| s.condition("Ready").map(|c| c.reason.clone()))
    };
    eventually("ManifestNotFound", || {
        reason(&h).as_deref() == Some("ManifestNotFound")
    })
    .await;
    h.api
        .create(&manifest_config_map("shared", &manifest().to_json_pretty()));
    eventually("pods once the ConfigMap appears (ConfigMap watch)", || {
        h.pod_names().contains(&"waiting-miner-0".to_owned())
    })
    .await;
    h.api.delete::<TrainingRun>(NS, "waiting");

    h.api.delete::<TrainingRun>(NS, "run");
    eventually("deletion and garbage collection", || {
        h.api.get::<TrainingRun>(NS, "run").is_none()
            && h.api.get::<TrainingRun>(NS, "waiting").is_none()
            && h.pod_names().is_empty()
    })
    .await;
    assert!(h.ctx.metrics.reconciles("TrainingRun") >= 5);
    controllers.abort();
}

/// Leader election against the fake API: the lease is created and held by this identity, using
/// only the verbs the chart grants on leases (get, create, patch).
#[tokio::test]
async fn leader_election_acquires_the_lease_with_granted_verbs() {
    use k8s_openapi::api::coordination::v1::Lease;
    use subnet_operator::leader::{LeaderConfig, acquire};
    let h = Harness::new();
    let config = LeaderConfig {
        lease_name: "subnet-operator-leader".into(),
        namespace: "subnet-system".into(),
        identity: "operator-pod-a".into(),
        duration_secs: 15,
        grace_secs: 5,
    };
    let leadership =
        tokio::time::timeout(Duration::from_secs(10), acquire(h.api.client(), &config))
            .await
            .expect("leadership in time")
            .expect("lease acquired");
    let lease: Lease = h
        .api
        .get("subnet-system", "subnet-operator-leader")
        .expect("lease created");
    let spec = lease.spec.expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("operator-pod-a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    for r in h
        .api
        .requests()
        .iter()
        .filter(|r| r.path.contains("/leases"))
    {
        assert!(
            [Method::GET, Method::POST, Method::PATCH].contains(&r.method),
            "lease verb outside get/create/patch: {} {}",
            r.method,
            r.path
        );
    }
    drop(leadership);

    let bad = LeaderConfig {
        grace_secs: 15,
        ..config
    };
    assert!(acquire(h.api.client(), &bad).await.is_err());
}

fn ready(h: &Harness, name: &str) -> (String, String, String) {
    condition(&status(h, name), "Ready")
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
    for (expected, edit) in cases {
        let h = Harness::new();
        let mut run = training_run("run", 1);
        edit(&mut run);
        h.api.create(&run);
        h.settle::<TrainingRun>("run").await;
        let (st, reason, message) = ready(&h, "run");
        assert_eq!(
            (st.as_str(), reason.as_str()),
            ("False", "InvalidSpec"),
            "{expected}"
        );
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
        assert!(h.pod_names().is_empty(), "{expected}: no pods");
        assert_eq!(h.api.count("configmaps"), 0, "{expected}: nothing rendered");
    }
}

/// The same manifest inline and in a ConfigMap is the same run: one hash, one rendered file.
#[tokio::test]
async fn inline_and_config_map_manifests_give_the_same_hash() {
    let h = Harness::new();
    h.api
        .create(&manifest_config_map("shared", &manifest().to_json_pretty()));
    let mut from_cm = training_run("from-cm", 1);
    from_cm.spec.workload.manifest = from_config_map("shared");
    h.api.create(&from_cm);
    h.api.create(&training_run("inline", 1));
    h.settle::<TrainingRun>("from-cm").await;
    h.settle::<TrainingRun>("inline").await;
    let a = env_value(&h.pod("from-cm-miner-0"), "RUN_MANIFEST_SHA256");
    let b = env_value(&h.pod("inline-miner-0"), "RUN_MANIFEST_SHA256");
    assert_eq!(a, b);
    let expected = run_manifest::verify(manifest(), "t", None).unwrap();
    assert_eq!(a, Some(expected.hash().to_hex()));
    let text = |name: &str| {
        h.api.get::<ConfigMap>(NS, name).unwrap().data.unwrap()["manifest.json"].clone()
    };
    assert_eq!(text("from-cm-run-manifest"), text("inline-run-manifest"));

    // A pin of the right hash (either spelling) is accepted.
    h.api.edit::<TrainingRun>(NS, "from-cm", |r| {
        r["spec"]["manifest"]["sha256"] = json!(format!("sha256:{}", expected.hash()));
    });
    h.reconcile::<TrainingRun>("from-cm").await.unwrap();
    assert_eq!(status(&h, "from-cm").phase, Some(Phase::Pending));
    h.api.edit::<TrainingRun>(NS, "from-cm", |r| {
        r["spec"]["manifest"]["sha256"] = json!("0".repeat(64));
    });
    h.reconcile::<TrainingRun>("from-cm").await.unwrap();
    let (_, reason, message) = ready(&h, "from-cm");
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.starts_with(&format!(
            "spec.manifest.sha256: pins {}, but the manifest in ConfigMap subnet/shared key manifest.json has SHA-256 {}",
            "0".repeat(64),
            expected.hash()
        )),
        "{message}"
    );
}

/// A missing ConfigMap or key is `ManifestNotFound`; a broken one names ConfigMap and key.
#[tokio::test]
async fn config_map_problems_are_reported_and_recovered_from() {
    let h = Harness::new();
    let mut run = training_run("run", 1);
    run.spec.workload.manifest = from_config_map("shared");
    h.api.create(&run);
    h.settle::<TrainingRun>("run").await;
    assert_eq!(
        ready(&h, "run"),
        (
            "False".into(),
            "ManifestNotFound".into(),
            "spec.manifest.configMapRef: ConfigMap subnet/shared not found".into()
        )
    );
    assert_eq!(status(&h, "run").phase, Some(Phase::Invalid));
    assert_eq!(
        h.event_reasons().last().map(String::as_str),
        Some("ManifestNotFound")
    );

    let mut bad = manifest();
    bad.sparseloco.chunk = 128;
    h.api
        .create(&manifest_config_map("shared", &bad.to_json_pretty()));
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        ready(&h, "run").2,
        "ConfigMap subnet/shared key manifest.json: sparseloco.chunk: must be in 1..=64, got 128"
    );
    assert_eq!(ready(&h, "run").1, "InvalidSpec");

    h.api.edit::<ConfigMap>(NS, "shared", |cm| {
        cm["data"] = json!({"other.json": "{}"});
    });
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(
        ready(&h, "run").2,
        "spec.manifest.configMapRef: ConfigMap subnet/shared has no key manifest.json"
    );

    h.api.edit::<ConfigMap>(NS, "shared", |cm| {
        cm["data"] = json!({"manifest.json": manifest().to_json_pretty()});
    });
    h.reconcile::<TrainingRun>("run").await.unwrap();
    assert_eq!(h.pod_names(), ["run-miner-0"]);
}

/// Changing any protocol field changes the rendered manifest and rolls the pods.
#[tokio::test]
async fn protocol_change_rolls_the_pods() {
    let h = Harness::new();
    h.api
        .create(&manifest_config_map("shared", &manifest().to_json_pretty()));
    let mut run = training_run("run", 2);
    run.spec.workload.manifest = from_config_map("shared");
    h.api.create(&run);
    h.settle::<TrainingRun>("run").await;
    h.all_pods_ready();
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let hash =
        |h: &Harness, n: &str| h.pod(n).annotations()["subnet.templar.dev/config-hash"].clone();
    let before = hash(&h, "run-miner-0");

    let mut changed = manifest();
    changed.training.outer_lr = 0.7;
    h.api.edit::<ConfigMap>(NS, "shared", |cm| {
        cm["data"]["manifest.json"] = json!(changed.to_json_pretty());
    });
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let verified = run_manifest::verify(changed, "t", None).unwrap();
    let rendered: ConfigMap = h.api.get(NS, "run-run-manifest").unwrap();
    assert_eq!(
        rendered.data.unwrap()["manifest.json"],
        verified.canonical()
    );
    assert_eq!(h.pod_names(), ["run-miner-1"], "rolling update started");
    h.reconcile::<TrainingRun>("run").await.unwrap();
    let pod = h.pod("run-miner-0");
    assert_ne!(hash(&h, "run-miner-0"), before);
    assert_eq!(
        env_value(&pod, "RUN_MANIFEST_SHA256"),
        Some(verified.hash().to_hex())
    );
}
