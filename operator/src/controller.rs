//! Wires the reconcilers into `kube::runtime::Controller`s (one per kind, each owning pods and
//! registration Jobs, and watching the ConfigMaps its objects read their run manifest from or render it into).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, warn};

use crate::crd::{TrainingRun, ValidatorSet};
use crate::manifest::references;
use crate::naming::{MANAGER, manifest_config_map_name};
use crate::reconciler::{Context, error_policy, reconcile};
use crate::registration_job::registration_job_selector;
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

/// The workloads a ConfigMap event concerns: those reading their manifest from it and the
/// one it was rendered for.
pub fn workloads_for_config_map<K: Workload>(
    workloads: &[std::sync::Arc<K>],
    config_map: &ConfigMap,
) -> Vec<ObjectRef<K>> {
    let name = config_map.name_any();
    let namespace = config_map.namespace().unwrap_or_default();
    workloads
        .iter()
        .filter(|obj| {
            let ns = obj.namespace().unwrap_or_default();
            references(&obj.workload().manifest, &ns, &namespace, &name)
                || (ns == namespace && manifest_config_map_name(&obj.name_any()) == name)
        })
        .map(|obj| ObjectRef::from_obj(obj.as_ref()))
        .collect()
}

async fn run_kind<K: Workload>(client: Client, ctx: Arc<Context>, options: ControllerOptions) {
    let ns = options.namespace.as_deref();
    let pod_selector = format!(
        "app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/component={}",
        K::ROLE.as_str()
    );
    let controller = Controller::new(
        api::<K>(client.clone(), ns),
        watcher::Config::default().any_semantic(),
    );
    let store: Store<K> = controller.store();
    controller
        .watches(
            api::<ConfigMap>(client.clone(), ns),
            watcher::Config::default().any_semantic(),
            move |config_map| workloads_for_config_map(&store.state(), &config_map),
        )
        .owns(
            api::<Pod>(client.clone(), ns),
            watcher::Config::default()
                .labels(&pod_selector)
                .any_semantic(),
        )
        .owns(
            api::<Job>(client, ns),
            watcher::Config::default()
                .labels(&registration_job_selector())
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
