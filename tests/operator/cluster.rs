//! The real control plane for operator tests (tests/kube-harness): namespaces with their own
//! kwok GPU nodes, the chart installed into them, the operator's controllers or single
//! reconciles run as the chart's ServiceAccount, and the examples and fixtures created there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use kube_harness::{Cluster, POOL_LABEL, TestNamespace, poll};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use subnet_operator::backoff::BackoffPolicy;
use subnet_operator::clock::ManualClock;
use subnet_operator::controller::{ControllerOptions, run_controllers};
use subnet_operator::crd::WorkloadStatus;
use subnet_operator::metrics::Metrics;
use subnet_operator::{Context, ReconcilerConfig, Workload, reconcile};

pub const WAIT: Duration = Duration::from_secs(90);

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub async fn cluster() -> Cluster {
    let cluster = kube_harness::cluster()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cluster
        .install_crds(&root().join("crds"))
        .await
        .unwrap_or_else(|e| panic!("installing crds/: {e}"));
    cluster
}

pub async fn namespace(cluster: &Cluster, prefix: &str) -> TestNamespace {
    cluster
        .namespace(prefix)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The documents of manifests/examples/<file>, moved into `ns` and pinned to its node pool.
pub fn example(file: &str, ns: &TestNamespace) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("manifests/examples").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| {
            let mut doc: Value = serde_json::to_value(v).unwrap();
            doc["metadata"]["namespace"] = json!(ns.name);
            if doc["spec"].is_object() && doc["kind"] != "Secret" && doc["kind"] != "ConfigMap" {
                doc["spec"]["nodeSelector"][POOL_LABEL] = json!(ns.name);
            }
            doc
        })
        .collect()
}

pub fn example_doc(file: &str, kind: &str, ns: &TestNamespace) -> Value {
    example(file, ns)
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {file}"))
}

pub fn resource<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

pub async fn create_raw(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    doc: &Value,
) -> Result<DynamicObject, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    api.create(&PostParams::default(), &obj).await
}

/// Creates every object of the examples (ConfigMap, Secrets, workloads) as admin.
pub async fn create_examples(ns: &TestNamespace, files: &[&str]) {
    let admin = ns.admin().await.unwrap();
    let docs: Vec<DynamicObject> = files
        .iter()
        .flat_map(|f| example(f, ns))
        .map(|d| serde_json::from_value(d).unwrap())
        .collect();
    kube_harness::apply_documents(&admin, &ns.name, &docs)
        .await
        .unwrap_or_else(|e| panic!("applying {files:?}: {e}"));
}

/// Renders charts/subnet-operator for a namespace-scoped install, applies everything but the
/// CRDs (as `helm install` would) and returns a client holding a token of the chart's
/// ServiceAccount.
pub async fn install_chart(ns: &TestNamespace) -> Client {
    install_chart_with(ns, &json!({"watchNamespace": ns.name})).await
}

/// [`install_chart`] into `ns` with other values.
pub async fn install_chart_with(ns: &TestNamespace, values: &Value) -> Client {
    let release = ns.name.clone();
    let docs = kube_harness::render_chart(
        &root().join("charts/subnet-operator"),
        values,
        &ns.name,
        &release,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let docs: Vec<DynamicObject> = docs
        .into_iter()
        .filter(|d| {
            d.types
                .as_ref()
                .is_some_and(|t| t.kind != "CustomResourceDefinition")
        })
        .collect();
    let admin = ns.admin().await.unwrap();
    let applied = kube_harness::apply_documents(&admin, &ns.name, &docs)
        .await
        .unwrap_or_else(|e| panic!("installing the chart: {e}"));
    let account = applied
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "ServiceAccount"))
        .map(|o| o.name_any())
        .expect("the chart creates a ServiceAccount");
    ns.service_account_client(&account)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The operator's controllers running in this process, stopped on drop.
pub struct Operator(pub tokio::task::JoinHandle<()>);

impl Drop for Operator {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn quick_config() -> ReconcilerConfig {
    ReconcilerConfig {
        backoff: BackoffPolicy {
            initial: Duration::from_secs(4),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(600),
        },
        ..ReconcilerConfig::default()
    }
}

pub fn start_operator(client: Client, ns: &TestNamespace) -> Operator {
    start_operator_in(client, &ns.name)
}

pub fn start_operator_in(client: Client, namespace: &str) -> Operator {
    let ctx =
        Arc::new(Context::new(client.clone(), Metrics::default()).with_config(quick_config()));
    let options = ControllerOptions {
        namespace: Some(namespace.to_owned()),
        concurrency: 4,
    };
    Operator(tokio::spawn(run_controllers(client, ctx, options)))
}

pub async fn pods_of(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn live(pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll(what, WAIT, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn status_of<K>(api: &Api<K>, name: &str) -> Option<WorkloadStatus>
where
    K: Workload,
{
    api.get(name).await.ok()?.workload_status().cloned()
}

pub fn selector_for<K: Workload>(name: &str) -> String {
    format!("{}={name}", K::OWNER_LABEL)
}

/// Marks a pod so kwok's exit stage terminates its container with `code`.
/// Annotation of the harness's kwok stages: the pod's container exits with this code.
pub const EXIT_CODE_ANNOTATION: &str = "kube-harness/exit-code";
/// Annotation of the harness's kwok stages: the termination reason of a non-zero exit.
pub const EXIT_REASON_ANNOTATION: &str = "kube-harness/exit-reason";

pub async fn make_pod_exit(client: &Client, ns: &str, pod: &str, code: i32) {
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch(
            pod,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {EXIT_CODE_ANNOTATION: code.to_string()}}}),
            ),
        )
        .await
        .unwrap();
}

/// The example TrainingRun in `ns` without its checkpoint claim template (no volumes to
/// provision).
pub fn run_without_checkpoint(ns: &TestNamespace) -> Value {
    let mut run = example_doc("trainingrun.yaml", "TrainingRun", ns);
    run["spec"].as_object_mut().unwrap().remove("checkpoint");
    run
}

/// [`run_without_checkpoint`] with one replica.
pub fn one_replica_run(ns: &TestNamespace) -> Value {
    let mut run = run_without_checkpoint(ns);
    run["spec"]["replicas"] = json!(1);
    run
}

/// The fixtures of [`super::fixtures`] reconciled against the real control plane: a namespace
/// with five 8-GPU kwok nodes of its own and the chart installed into it; single reconciles run
/// as the chart's ServiceAccount with a manual clock, edits are made as admin.
pub struct ClusterHarness {
    /// The test's namespace.
    pub ns: TestNamespace,
    /// Cluster-admin client (the test's own edits).
    pub admin: Client,
    /// The reconciler's clock.
    pub clock: Arc<ManualClock>,
    /// The reconciler's context, authenticated as the chart's ServiceAccount.
    pub ctx: Arc<Context>,
}

/// Objects the harness creates and edits.
pub trait Stored:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned
{
}
impl<K> Stored for K where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned
{
}

impl ClusterHarness {
    /// A harness with default tunables.
    pub async fn new(prefix: &str) -> Self {
        Self::with_config(prefix, ReconcilerConfig::default()).await
    }

    /// A harness with the given tunables.
    pub async fn with_config(prefix: &str, config: ReconcilerConfig) -> Self {
        let cluster = cluster().await;
        let mut groups = kube_harness::default_groups();
        groups[0].count = 5;
        let ns = cluster
            .namespace_with_nodes(prefix, &groups)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let operator = install_chart(&ns).await;
        let admin = ns.admin().await.unwrap();
        // Whole seconds: `metav1.Time` (and so `nextRetry`) has second precision.
        let start = Timestamp::from_second(Timestamp::now().as_second()).expect("valid time");
        let clock = Arc::new(ManualClock::new(start));
        let ctx = Context::new(operator, Metrics::default())
            .with_clock(clock.clone())
            .with_config(config);
        Self {
            ns,
            admin,
            clock,
            ctx: Arc::new(ctx),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Stored + Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        Api::namespaced(self.admin.clone(), &self.ns.name)
    }

    /// Creates `obj` in this namespace as admin; workloads are pinned to its node pool.
    pub async fn create<K>(&self, obj: &K) -> K
    where
        K: Stored + Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        let mut value = serde_json::to_value(obj).unwrap();
        value["metadata"]["namespace"] = json!(self.ns.name);
        if value["spec"]["wallet"].is_object() {
            value["spec"]["nodeSelector"][POOL_LABEL] = json!(self.ns.name);
        }
        let obj: K = serde_json::from_value(value).unwrap();
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating {} {}: {e}", K::kind(&()), obj.name_any()))
    }

    /// The stored object, if any.
    pub async fn get_opt<K>(&self, name: &str) -> Option<K>
    where
        K: Stored + Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        self.api::<K>().get_opt(name).await.unwrap()
    }

    /// The stored object.
    pub async fn get<K>(&self, name: &str) -> K
    where
        K: Stored + Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        self.get_opt(name)
            .await
            .unwrap_or_else(|| panic!("{} {name} stored", K::kind(&())))
    }

    /// Every stored object of a kind in this namespace, by name.
    pub async fn list<K>(&self) -> Vec<K>
    where
        K: Stored + Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        let mut items = self
            .api::<K>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        items.sort_by_key(|o| o.name_any());
        items
    }

    /// Edits the stored object as JSON and writes it back (`PUT`, retried on conflicts with
    /// the writers the cluster has: kwok, the controllers).
    pub async fn edit<K>(&self, name: &str, edit: impl Fn(&mut Value))
    where
        K: Stored + Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        for _ in 0..10 {
            let mut value = serde_json::to_value(self.get::<K>(name).await).unwrap();
            edit(&mut value);
            let obj: K = serde_json::from_value(value).unwrap();
            match self
                .api::<K>()
                .replace(name, &PostParams::default(), &obj)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => panic!("editing {} {name}: {e}", K::kind(&())),
            }
        }
        panic!("editing {} {name}: conflicts every time", K::kind(&()));
    }

    /// Patches the pod's annotations (as a worker reporting on its own pod would).
    pub async fn annotate_pod(&self, pod: &str, annotations: Value) {
        self.api::<Pod>()
            .patch(
                pod,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            )
            .await
            .unwrap();
    }

    /// Reconciles the stored object once (as the controller would after a watch event).
    pub async fn reconcile<K>(&self, name: &str) -> Result<Action, subnet_operator::Error>
    where
        K: Workload + Stored,
    {
        let obj: K = self.get(name).await;
        reconcile(Arc::new(obj), self.ctx.clone()).await
    }

    /// Two passes, as after the creation event and the operator's own status write.
    pub async fn settle<K>(&self, name: &str) -> Action
    where
        K: Workload + Stored,
    {
        self.reconcile::<K>(name).await.expect("reconcile");
        self.reconcile::<K>(name).await.expect("reconcile")
    }

    /// Pods of this namespace that are not being deleted, by name.
    pub async fn live_pods(&self) -> Vec<Pod> {
        live(self.list::<Pod>().await)
    }

    /// Names of [`ClusterHarness::live_pods`].
    pub async fn pod_names(&self) -> Vec<String> {
        self.live_pods()
            .await
            .iter()
            .map(|p| p.name_any())
            .collect()
    }

    /// Stored pod by name.
    pub async fn pod(&self, name: &str) -> Pod {
        self.get(name).await
    }

    /// Waits until kwok runs every live pod and each is Ready; returns their names.
    pub async fn pods_ready(&self) -> Vec<String> {
        wait_for("every pod Running and Ready", || async move {
            let pods = self.live_pods().await;
            pods.iter()
                .all(is_ready)
                .then(|| pods.iter().map(|p| p.name_any()).collect())
        })
        .await
    }

    /// Waits until the pod is gone (kwok removes deleted pods at once).
    pub async fn pod_gone(&self, name: &str) {
        wait_for(&format!("pod {name} to be gone"), || async move {
            self.get_opt::<Pod>(name).await.is_none().then_some(())
        })
        .await
    }

    /// Makes kwok terminate the pod's container with `code` and termination `reason`, and
    /// waits for the pod to end (Failed, or Succeeded for 0).
    pub async fn end_pod(&self, name: &str, code: i32, reason: &str) {
        self.annotate_pod(
            name,
            json!({EXIT_CODE_ANNOTATION: code.to_string(), EXIT_REASON_ANNOTATION: reason}),
        )
        .await;
        let want = if code == 0 { "Succeeded" } else { "Failed" };
        wait_for(&format!("pod {name} to be {want}"), || async move {
            let pod = self.get_opt::<Pod>(name).await?;
            (phase(&pod) == want).then_some(())
        })
        .await
    }

    /// The operator's events (not the scheduler's), in creation order.
    async fn events(&self) -> Vec<Value> {
        let ar = ApiResource::erase::<k8s_openapi::api::events::v1::Event>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(self.admin.clone(), &self.ns.name, &ar);
        let mut events: Vec<Value> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .filter(|e| e["reportingController"] == subnet_operator::reconciler::FIELD_MANAGER)
            .collect();
        let version = |e: &Value| {
            e["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        events.sort_by_key(version);
        events
    }

    /// Reasons of the events published so far, in creation order.
    pub async fn event_reasons(&self) -> Vec<String> {
        self.events()
            .await
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// Notes of the published events with `reason`.
    pub async fn event_notes(&self, reason: &str) -> Vec<String> {
        self.events()
            .await
            .iter()
            .filter(|e| e["reason"] == reason)
            .filter_map(|e| e["note"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The image of the pod's first container.
pub fn image(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("")
}

/// Waits until `selector` has exactly `n` pods, each Ready and running `image`.
pub async fn wait_ready_with_image(
    client: &Client,
    ns: &str,
    selector: &str,
    n: usize,
    want: &str,
) {
    wait_for(
        &format!("{n} ready pods of {selector} on {want}"),
        || async move {
            let pods = pods_of(client, ns, selector).await;
            (pods.len() == n && pods.iter().all(|p| is_ready(p) && image(p) == want)).then_some(())
        },
    )
    .await
}

/// Running, Ready and not being deleted.
pub fn is_ready(p: &Pod) -> bool {
    phase(p) == "Running"
        && p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
