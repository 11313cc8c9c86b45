//! What only the in-memory API server (`tests/operator/fake_api.rs`) can show: injected API
//! failures and the exact requests a reconcile sends. Everything else the reconciler does is
//! tested against the real control plane (`operator_reconcile.rs`, `operator_cluster.rs`).

mod operator;

use std::time::Duration;

use http::Method;
use kube::ResourceExt;
use operator::fixtures::{Harness, NS, training_run};
use subnet_operator::crd::TrainingRun;
use subnet_operator::{FINALIZER, error_policy};

#[tokio::test]
async fn a_legacy_finalizer_is_released_by_a_merge_patch_guarded_by_its_resource_version() {
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
async fn status_is_a_forced_apply_and_the_steady_state_only_reads() {
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

    h.all_pods_ready();
    h.reconcile::<TrainingRun>("run").await.unwrap();
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
