//! One test's namespace: its own kwok GPU nodes, service-account clients, pre-bound volumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::control_plane::Endpoint;
use crate::error::HarnessError;
use crate::nodes::{self, NodeGroup, POOL_LABEL};
use crate::{Cluster, WAIT};

/// A namespace and its node pool; deleted (with its nodes and volumes) on drop.
pub struct TestNamespace {
    /// Namespace name (also the value of the nodes' `kube-harness/pool` label).
    pub name: String,
    endpoint: Arc<Endpoint>,
    admin: Client,
    nodes: Vec<String>,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mix = nanos ^ std::process::id().rotate_left(16);
    format!("{:05x}", mix & 0xfffff)
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl TestNamespace {
    pub(crate) async fn create(
        cluster: &Cluster,
        prefix: &str,
        groups: &[NodeGroup],
    ) -> Result<Self, HarnessError> {
        let admin = cluster.admin();
        let prefix: String = prefix.chars().take(40).collect();
        let name = format!("{prefix}-{}", suffix());
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kube-harness/test": "true"}},
        }))
        .map_err(|e| HarnessError::Kubeconfig(e.to_string()))?;
        namespaces.create(&PostParams::default(), &ns).await?;

        let node_api: Api<Node> = Api::all(admin.clone());
        let mut node_names = Vec::new();
        let mut taints = Vec::new();
        for group in groups {
            for node in nodes::nodes(&name, group, &cluster.endpoint().kwok_node)
                .map_err(|e| HarnessError::Kubeconfig(e.to_string()))?
            {
                node_names.push(node.name_any());
                taints.push((
                    node.name_any(),
                    node.spec.as_ref().and_then(|s| s.taints.clone()),
                ));
                node_api.create(&PostParams::default(), &node).await?;
            }
        }
        let this = Self {
            name,
            endpoint: cluster.shared_endpoint(),
            admin,
            nodes: node_names,
        };

        // The serviceaccount controller creates `default`; pods are refused until it exists.
        let sas: Api<ServiceAccount> = Api::namespaced(this.admin.clone(), &this.name);
        poll("the default ServiceAccount", WAIT, || {
            let sas = sas.clone();
            async move { sas.get_opt("default").await.ok().flatten() }
        })
        .await?;
        let selector = format!("{POOL_LABEL}={}", this.name);
        let want = this.nodes.len();
        poll("the kwok nodes to become Ready", WAIT, || {
            let node_api = node_api.clone();
            let selector = selector.clone();
            async move {
                let list = node_api
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?;
                (list.items.iter().filter(|n| node_ready(n)).count() == want).then_some(())
            }
        })
        .await?;
        // The apiserver adds `node.kubernetes.io/not-ready:NoSchedule` to new nodes and the
        // node-lifecycle controller (not run: kwok sends no heartbeats) would lift it once they
        // are Ready; the harness sets the intended taints itself.
        for (node, taints) in taints {
            node_api
                .patch(
                    &node,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"taints": taints}})),
                )
                .await?;
        }
        Ok(this)
    }

    /// A cluster-admin client whose default namespace is this one.
    pub async fn admin(&self) -> Result<Client, HarnessError> {
        self.endpoint.admin_in(&self.name).await
    }

    /// Names of this namespace's nodes.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The node selector that keeps a workload on this namespace's nodes.
    pub fn node_selector(&self) -> BTreeMap<String, String> {
        [(POOL_LABEL.to_owned(), self.name.clone())]
            .into_iter()
            .collect()
    }

    /// A client authenticated as `system:serviceaccount:<ns>:<service_account>` with a token
    /// from the TokenRequest API (signed by the apiserver's service-account key).
    pub async fn service_account_client(
        &self,
        service_account: &str,
    ) -> Result<Client, HarnessError> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), &self.name);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = sas
            .create_token_request(service_account, &PostParams::default(), &request)
            .await?
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| HarnessError::Kubeconfig("TokenRequest returned no token".into()))?;
        self.endpoint.client_with_token(&token, &self.name).await
    }

    /// Creates one `hostPath` PersistentVolume per claim name, pre-bound to that claim in this
    /// namespace (so parallel tests never take each other's volumes), for the PV binder.
    pub async fn provision_volumes(
        &self,
        claims: &[String],
        size: &str,
    ) -> Result<(), HarnessError> {
        let pvs: Api<PersistentVolume> = Api::all(self.admin.clone());
        for claim in claims {
            let pv: PersistentVolume = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("{}-{claim}", self.name),
                    "labels": {POOL_LABEL: self.name},
                },
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": format!("/var/lib/kube-harness/{}/{claim}", self.name)},
                    "claimRef": {"namespace": self.name, "name": claim},
                },
            }))
            .map_err(|e| HarnessError::Kubeconfig(e.to_string()))?;
            pvs.create(&PostParams::default(), &pv).await?;
        }
        Ok(())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Best effort, on a thread of its own: the test's runtime may be shutting down.
        let endpoint = self.endpoint.clone();
        let name = self.name.clone();
        let nodes = std::mem::take(&mut self.nodes);
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(admin) = endpoint.admin().await else {
                    return;
                };
                let dp = DeleteParams::default();
                let _ = Api::<Namespace>::all(admin.clone())
                    .delete(&name, &dp)
                    .await;
                let node_api: Api<Node> = Api::all(admin.clone());
                for node in nodes {
                    let _ = node_api.delete(&node, &dp).await;
                }
                let selector = format!("{POOL_LABEL}={name}");
                let _ = Api::<PersistentVolume>::all(admin)
                    .delete_collection(&dp, &ListParams::default().labels(&selector))
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}
