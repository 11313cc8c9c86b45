//! The reconcile loop body: finalizer, validation, pod planning, status (server-side apply),
//! events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::backoff::BackoffPolicy;
use crate::clock::{Clock, SystemClock};
use crate::conditions::{self, StatusContext};
use crate::crd::{Phase, WorkloadStatus};
use crate::error::Error;
use crate::error_backoff::ErrorBackoff;
use crate::events;
use crate::manifest::referenced_config_map;
use crate::metrics::Metrics;
use crate::naming::selector_string;
use crate::observed::{ObservedPod, observe};
use crate::owned_object;
use crate::pod_builder::{desired_claim, desired_manifest_config_map, desired_pod};
use crate::registration::{create_registration_jobs, registration_states};
use crate::rollout::{self, PlanInput, ReplicaTarget};
use crate::validation;
use crate::worker_identity::{apply_worker_identity, desired_worker_identity};
use crate::workload::Workload;

/// Finalizer earlier versions put on every workload; this version removes it.
pub const FINALIZER: &str = "subnet.templar.dev/cleanup";
/// Field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "subnet-operator";

/// Tunables of the reconciler.
#[derive(Clone, Copy, Debug)]
pub struct ReconcilerConfig {
    /// Backoff of failed replicas.
    pub backoff: BackoffPolicy,
    /// Periodic re-check of a healthy workload.
    pub resync: Duration,
    /// Retry delay after a reconcile error; it doubles with each consecutive error of the
    /// same object, up to `error_requeue_max`.
    pub error_requeue: Duration,
    /// Largest retry delay after reconcile errors.
    pub error_requeue_max: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            backoff: BackoffPolicy::default(),
            resync: Duration::from_secs(300),
            error_requeue: Duration::from_secs(1),
            error_requeue_max: Duration::from_secs(300),
        }
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub config: ReconcilerConfig,
    /// Consecutive reconcile errors per object (the error policy's backoff).
    pub errors: ErrorBackoff,
}

impl Context {
    /// A context with the system clock and default tunables.
    pub fn new(client: Client, metrics: Metrics) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER));
        Self {
            client,
            recorder,
            metrics,
            clock: Arc::new(SystemClock),
            config: ReconcilerConfig::default(),
            errors: ErrorBackoff::new(
                ReconcilerConfig::default().error_requeue,
                ReconcilerConfig::default().error_requeue_max,
            ),
        }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the tunables.
    pub fn with_config(mut self, config: ReconcilerConfig) -> Self {
        self.config = config;
        self.errors = ErrorBackoff::new(config.error_requeue, config.error_requeue_max);
        self
    }

    async fn publish<K: Workload>(&self, obj: &K, event: &Event) {
        // Events are best effort: a lost event must not fail the reconcile.
        if let Err(err) = self.recorder.publish(event, &obj.object_ref(&())).await {
            warn!(error = %err, reason = %event.reason, "publishing event failed");
        }
    }
}

/// Reconciles one workload (entry point given to `Controller::run`).
pub async fn reconcile<K: Workload>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&());
    let started = Instant::now();
    ctx.metrics.reconcile_started(&kind);
    let ns = obj.namespace().ok_or(Error::MissingNamespace)?;
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let result = async {
        release_finalizer(&api, &*obj).await?;
        if obj.meta().deletion_timestamp.is_some() {
            // Pods and claims go with their owner references (garbage collector).
            return Ok(Action::await_change());
        }
        apply(&*obj, &ctx).await
    }
    .await;
    ctx.metrics.reconcile_finished(&kind, started.elapsed());
    if result.is_ok() {
        ctx.errors.succeeded(&obj_key(&kind, &ns, &name));
    }
    result
}

fn obj_key(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind}/{ns}/{name}")
}

/// What the controller does after a failed reconcile: count it, retry after this object's
/// exponential backoff (`error_requeue · 2^(n-1)` for its n-th error in a row, at most
/// `error_requeue_max`; a success resets it).
pub fn error_policy<K: Workload>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let kind = K::kind(&());
    let name = obj.name_any();
    let ns = obj.namespace().unwrap_or_default();
    let delay = ctx.errors.failed(&obj_key(&kind, &ns, &name));
    warn!(%kind, %name, %error, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconcile_failed(&kind, &error.metric_label());
    Action::requeue(delay)
}

fn owned_by(pod: &Pod, uid: Option<&str>) -> bool {
    let Some(uid) = uid else { return false };
    pod.owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

async fn owned_pods<K: Workload>(obj: &K, pods: &Api<Pod>) -> Result<Vec<Pod>, Error> {
    let selector = selector_string(K::OWNER_LABEL, &obj.name_any());
    // Served from the apiserver's watch cache (resourceVersion=0): the plan tolerates a
    // slightly stale view (creates answer 409, deletes carry a UID precondition, failures
    // are counted once per pod UID).
    let list = pods
        .list(&ListParams::default().labels(&selector).match_any())
        .await?;
    let uid = obj.meta().uid.as_deref();
    Ok(list
        .items
        .into_iter()
        .filter(|p| owned_by(p, uid))
        .collect())
}

async fn patch_status<K: Workload>(
    api: &Api<K>,
    obj: &K,
    status: &WorkloadStatus,
) -> Result<(), Error> {
    if obj.workload_status() == Some(status) {
        return Ok(());
    }
    let patch = Patch::Apply(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    }));
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &patch,
    )
    .await?;
    Ok(())
}

fn ignore_status(result: Result<(), kube::Error>, code: u16) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == code => Ok(()),
        other => other,
    }
}

async fn delete_pod(pods: &Api<Pod>, name: &str, uid: Option<&str>) -> Result<(), Error> {
    let mut params = DeleteParams::default();
    if let Some(uid) = uid {
        params = params.preconditions(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        });
    }
    // 404: already gone; 409: the precondition failed, a newer pod holds the name.
    let result = pods.delete(name, &params).await.map(|_| ());
    ignore_status(ignore_status(result, 404), 409)?;
    Ok(())
}

/// The ConfigMap `spec.manifest.configMapRef` names (`None` when absent or not referenced).
async fn referenced_manifest<K: Workload>(
    obj: &K,
    ctx: &Context,
    ns: &str,
) -> Result<Option<ConfigMap>, Error> {
    let Some(reference) = referenced_config_map(&obj.workload().manifest) else {
        return Ok(None);
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    Ok(config_maps.get_opt(&reference.name).await?)
}

/// Creates or updates the owned ConfigMap the pods mount the manifest from.
async fn write_manifest_config_map(
    ctx: &Context,
    ns: &str,
    desired: &ConfigMap,
) -> Result<(), Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    owned_object::ensure(&config_maps, desired, |current, desired| {
        current.data == desired.data && current.metadata.annotations == desired.metadata.annotations
    })
    .await
}

async fn apply<K: Workload>(cached: &K, ctx: &Context) -> Result<Action, Error> {
    let name = cached.name_any();
    let ns = cached.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    // Read-your-writes: restarts and backoff (`nextRetry`) live in the status, and the object
    // handed in comes from the informer cache, which can predate this operator's last status
    // write (the pod watch that triggered this pass is a different stream). Planning from a
    // stale status would erase the recorded failure and recreate the replica at once, so the
    // plan starts from a quorum read of the object.
    let fresh = match api.get_status(&name).await {
        Ok(fresh) => fresh,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Action::await_change()),
        Err(err) => return Err(err.into()),
    };
    let obj = &fresh;
    let selector = selector_string(K::OWNER_LABEL, &name);
    let previous = obj.workload_status();
    let status_ctx = StatusContext {
        previous,
        generation: obj.meta().generation,
        selector: &selector,
        now: ctx.clock.now(),
    };

    let config_map = referenced_manifest(obj, ctx, &ns).await?;
    let manifest = match validation::admit(obj, config_map.as_ref()) {
        Ok(manifest) => manifest,
        Err(rejection) => {
            let message = rejection.message();
            info!(kind = %K::kind(&()), %name, reason = rejection.reason, %message, "spec rejected");
            let status = conditions::invalid_status(&status_ctx, rejection.reason, &message);
            let already_reported =
                conditions::ready_reason(previous) == Some((rejection.reason, message.as_str()));
            patch_status(&api, obj, &status).await?;
            if !already_reported {
                ctx.publish(obj, &events::rejected_event(rejection.reason, &message))
                    .await;
            }
            return Ok(Action::requeue(ctx.config.resync));
        }
    };
    write_manifest_config_map(ctx, &ns, &desired_manifest_config_map(obj, &manifest)?).await?;
    // Before any pod: a pod naming a missing ServiceAccount is refused by admission.
    apply_worker_identity(&ctx.client, &ns, &desired_worker_identity(obj)?).await?;

    let params = obj.workload();
    let desired = if params.suspend {
        Vec::new()
    } else {
        (0..params.replicas)
            .map(|i| desired_pod(obj, i, &manifest))
            .collect::<Result<Vec<_>, _>>()?
    };
    let (registrations, missing_jobs) = if params.suspend {
        Default::default()
    } else {
        registration_states(obj, &ctx.client, &ns, params.replicas).await?
    };
    let targets: Vec<ReplicaTarget> = desired
        .iter()
        .map(|d| ReplicaTarget {
            index: d.index,
            pod_name: d.pod.name_any(),
            config_hash: d.config_hash.clone(),
            hotkey_secret: d.hotkey_secret.clone(),
            registration: registrations.get(&d.index).cloned().unwrap_or_default(),
        })
        .collect();

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let observed: Vec<ObservedPod> = owned_pods(obj, &pods).await?.iter().map(observe).collect();
    let plan = rollout::plan(&PlanInput {
        replicas: params.replicas,
        suspend: params.suspend,
        targets: &targets,
        pods: &observed,
        previous: previous.map_or(&[], |s| s.replica_statuses.as_slice()),
        now: status_ctx.now,
        backoff: &ctx.config.backoff,
    });
    let status = conditions::status_from_plan(&status_ctx, &plan, params.suspend);
    // Status first: restarts / nextRetry are recorded before the failed pod disappears.
    patch_status(&api, obj, &status).await?;

    create_registration_jobs(&ctx.client, &ns, &plan.registering, &missing_jobs).await?;
    for deletion in &plan.delete {
        debug!(pod = %deletion.pod, reason = ?deletion.reason, "deleting pod");
        delete_pod(&pods, &deletion.pod, deletion.uid.as_deref()).await?;
    }
    let mut created = Vec::with_capacity(plan.create.len());
    for &index in &plan.create {
        let Some(desired) = desired.iter().find(|d| d.index == index) else {
            continue;
        };
        if let Some(claim) = desired_claim(obj, index)? {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
            let result = claims
                .create(&PostParams::default(), &claim)
                .await
                .map(|_| ());
            ignore_status(result, 409)?;
        }
        match pods.create(&PostParams::default(), &desired.pod).await {
            Ok(pod) => created.push(events::pod_ref(
                &ns,
                &pod.name_any(),
                pod.metadata.uid.as_deref(),
            )),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }

    let phase = status.phase.unwrap_or(Phase::Pending);
    for event in events::plan_events(&plan, &ns, &created, previous.and_then(|s| s.phase), phase) {
        ctx.publish(obj, &event).await;
    }
    let requeue = plan
        .requeue_after
        .map_or(ctx.config.resync, |d| d.min(ctx.config.resync));
    Ok(Action::requeue(requeue))
}

/// Removes [`FINALIZER`] from objects of earlier versions (merge patch guarded by the
/// resourceVersion it was read at). No finalizer is added any more: it only deleted the pods,
/// which their owner references already do, and it could outlive the operator's access (a
/// deleted namespace takes a `watchNamespace` RoleBinding with it, leaving the namespace
/// Terminating for good).
async fn release_finalizer<K: Workload>(api: &Api<K>, obj: &K) -> Result<(), Error> {
    let finalizers = obj.finalizers();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let patch = serde_json::json!({
        "metadata": {"finalizers": kept, "resourceVersion": obj.resource_version()},
    });
    let result = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ());
    // 404: already gone.
    ignore_status(result, 404)?;
    info!(kind = %K::kind(&()), name = %obj.name_any(), "released the legacy finalizer");
    Ok(())
}
