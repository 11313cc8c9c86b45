//! Wires the reconcilers into `kube::runtime::Controller`s (one per kind, each owning pods).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource};
use tracing::{debug, warn};

use crate::crd::{TrainingRun, ValidatorSet};
use crate::naming::MANAGER;
use crate::reconciler::{Context, error_policy, reconcile};
use crate::workload::Workload;

/// Where and how hard the controllers work.
#[derive(Clone, Debug, Default)]
pub struct ControllerOptions {
    /// Watch one namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Reconciles running at once per kind (0 = unbounded).
    pub concurrency: u16,
}

fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Fails when a CRD is not installed (or not readable with the operator's RBAC).
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<(), kube::Error> {
    let probe = ListParams::default().limit(1);
    api::<TrainingRun>(client.clone(), namespace)
        .list(&probe)
        .await?;
    api::<ValidatorSet>(client.clone(), namespace)
        .list(&probe)
        .await?;
    Ok(())
}

async fn run_kind<K: Workload>(client: Client, ctx: Arc<Context>, options: ControllerOptions) {
    let ns = options.namespace.as_deref();
    let pod_selector = format!(
        "app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/component={}",
        K::ROLE.as_str()
    );
    Controller::new(
        api::<K>(client.clone(), ns),
        watcher::Config::default().any_semantic(),
    )
    .owns(
        api::<Pod>(client, ns),
        watcher::Config::default()
            .labels(&pod_selector)
            .any_semantic(),
    )
    .with_config(controller::Config::default().concurrency(options.concurrency))
    .shutdown_on_signal()
    .run(reconcile::<K>, error_policy::<K>, ctx)
    .for_each(|result| async move {
        match result {
            Ok((obj, action)) => debug!(object = %obj, ?action, "reconciled"),
            Err(err) => warn!(error = %err, "controller error"),
        }
    })
    .await;
}

/// Runs the TrainingRun and ValidatorSet controllers until SIGTERM / Ctrl-C.
pub async fn run_controllers(client: Client, ctx: Arc<Context>, options: ControllerOptions) {
    futures::join!(
        run_kind::<TrainingRun>(client.clone(), ctx.clone(), options.clone()),
        run_kind::<ValidatorSet>(client, ctx, options),
    );
}
