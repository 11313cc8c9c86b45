//! A real Kubernetes control plane for tests: etcd, kube-apiserver (token authentication, RBAC,
//! a self-signed serving certificate, service-account signing keys), kube-controller-manager
//! (garbage collector, namespaces, service accounts and their tokens, PV binding, pod GC),
//! kube-scheduler and kwok (fake GPU nodes), all built by `scripts/setup-k8s.sh`.
//!
//! One control plane per test binary, started on first use by [`cluster`] on free loopback
//! ports in a fresh temporary directory; its processes die with the test binary. With
//! `KUBE_HARNESS_KUBECONFIG` set, [`cluster`] attaches to that cluster instead and starts only
//! kwok against it (see [`ATTACH_ENV`]), so the same tests run against any cluster. Each test takes
//! its own [`TestNamespace`] with its own pool of kwok GPU nodes, so tests running in parallel
//! never compete for GPUs. A test needing the cluster fails (never skips) when a binary is
//! missing or a component cannot start; the message names `scripts/setup-k8s.sh`.

mod apply;
mod binaries;
mod control_plane;
mod error;
mod helm;
mod kubeconfig;
mod namespace;
mod nodes;
mod pki;
mod process;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use apply::{apply_documents, parse_documents};
pub use binaries::{Binaries, bin_dir, kubernetes_version, kwok_version};
pub use control_plane::{ADMIN_USER, ControlPlane, Endpoint};
pub use error::HarnessError;
pub use helm::render_chart;
pub use namespace::{TestNamespace, poll};
pub use nodes::{
    GPU_PRODUCT, GPU_PRODUCT_LABEL, GPU_RESOURCE, NODE_GROUP_LABEL, NodeGroup, POOL_LABEL,
    RESERVED_TAINT, default_groups,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};

/// Field manager of everything the harness applies.
pub const FIELD_MANAGER: &str = "kube-harness";
/// How long the harness waits for the cluster to act (namespace set-up, CRDs).
pub const WAIT: Duration = Duration::from_secs(60);

/// Environment variable naming an admin kubeconfig: [`cluster`] then attaches to that cluster
/// (kwok, built by `scripts/setup-k8s.sh`, runs locally against it and manages only the nodes
/// the harness creates) instead of starting a control plane.
pub const ATTACH_ENV: &str = "KUBE_HARNESS_KUBECONFIG";

static SHARED: OnceLock<Result<Arc<Endpoint>, String>> = OnceLock::new();

/// Selects rustls's process-wide crypto provider. In a whole-workspace build both `ring`
/// (kube) and `aws-lc-rs` (the S3 SDK) are compiled in, and rustls then refuses to choose.
pub fn install_crypto_provider() {
    // Already installed (by an earlier call or the code under test) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where the shared control plane comes from.
enum Source {
    /// Started here from the binaries.
    Local(Binaries),
    /// An existing cluster, through its admin kubeconfig; only kwok is started.
    Attached { kubeconfig: PathBuf, kwok: PathBuf },
}

impl Source {
    fn from_env() -> Result<Self, HarnessError> {
        match std::env::var_os(ATTACH_ENV) {
            Some(path) if !path.is_empty() => Ok(Self::Attached {
                kubeconfig: PathBuf::from(path),
                kwok: Binaries::locate_kwok()?,
            }),
            _ => Ok(Self::Local(Binaries::locate()?)),
        }
    }

    async fn start(&self) -> Result<ControlPlane, HarnessError> {
        match self {
            Self::Local(bins) => ControlPlane::start(bins).await,
            Self::Attached { kubeconfig, kwok } => ControlPlane::attach(kubeconfig, kwok).await,
        }
    }
}

/// Starts the control plane on a thread that lives as long as the test binary (its children
/// get SIGKILL when that thread ends, i.e. when the process exits).
fn start_shared() -> Result<Arc<Endpoint>, String> {
    install_crypto_provider();
    let source = Source::from_env().map_err(|e| e.to_string())?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kube-harness".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(format!("building a runtime: {e}")));
                    return;
                }
            };
            match runtime.block_on(source.start()) {
                Ok(plane) => {
                    let _ = tx.send(Ok(Arc::new(plane.endpoint.clone())));
                    // Keep the processes (and this thread) alive until the process exits.
                    let _plane = plane;
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| format!("spawning the harness thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the harness thread ended without an answer".to_owned())?
}

/// The control plane of this test binary, started on first use.
pub struct Cluster {
    endpoint: Arc<Endpoint>,
    admin: Client,
}

/// The shared control plane, with an admin client bound to the caller's runtime. Fails with a
/// message pointing at `scripts/setup-k8s.sh` when the binaries are missing or do not start.
pub async fn cluster() -> Result<Cluster, HarnessError> {
    let shared = tokio::task::spawn_blocking(|| SHARED.get_or_init(start_shared))
        .await
        .map_err(|e| HarnessError::Shared(e.to_string()))?;
    let endpoint = shared
        .as_ref()
        .map_err(|e| HarnessError::Shared(e.clone()))?;
    Cluster::on(endpoint.clone()).await
}

/// Attaches to the cluster of an admin kubeconfig (what `KUBE_HARNESS_KUBECONFIG` does for
/// [`cluster`]): the returned [`ControlPlane`] owns the kwok started against it, which dies
/// when the plane is dropped or the calling thread ends.
pub async fn attach(kubeconfig: &Path) -> Result<(Cluster, ControlPlane), HarnessError> {
    install_crypto_provider();
    let plane = ControlPlane::attach(kubeconfig, &Binaries::locate_kwok()?).await?;
    let cluster = Cluster::on(Arc::new(plane.endpoint.clone())).await?;
    Ok((cluster, plane))
}

impl Cluster {
    async fn on(endpoint: Arc<Endpoint>) -> Result<Self, HarnessError> {
        let admin = endpoint.admin().await?;
        Ok(Self { endpoint, admin })
    }

    /// A cluster-admin client.
    pub fn admin(&self) -> Client {
        self.admin.clone()
    }

    /// Address, kubeconfig and log directory.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn shared_endpoint(&self) -> Arc<Endpoint> {
        self.endpoint.clone()
    }

    /// A client authenticated with a bearer token.
    pub async fn client_with_token(
        &self,
        token: &str,
        namespace: &str,
    ) -> Result<Client, HarnessError> {
        self.endpoint.client_with_token(token, namespace).await
    }

    /// Applies every `*.yaml` CRD in `dir` (server-side apply) and waits until each is
    /// Established. Returns them as the apiserver stored them.
    pub async fn install_crds(
        &self,
        dir: &std::path::Path,
    ) -> Result<Vec<CustomResourceDefinition>, HarnessError> {
        let api: Api<CustomResourceDefinition> = Api::all(self.admin.clone());
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(HarnessError::io(format!("reading {}", dir.display())))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        let mut names = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)
                .map_err(HarnessError::io(format!("reading {}", file.display())))?;
            let crd: CustomResourceDefinition =
                serde_yaml::from_str(&text).map_err(|e| HarnessError::Manifest {
                    file: file.clone(),
                    reason: e.to_string(),
                })?;
            let name = crd.name_any();
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await?;
            names.push(name);
        }
        let mut out = Vec::new();
        for name in names {
            let established = await_condition(api.clone(), &name, conditions::is_crd_established());
            match tokio::time::timeout(WAIT, established).await {
                Ok(Ok(Some(crd))) => out.push(crd),
                Ok(Ok(None)) | Err(_) => {
                    return Err(HarnessError::Timeout {
                        what: format!("CRD {name} to become Established"),
                        seconds: WAIT.as_secs(),
                    });
                }
                Ok(Err(e)) => return Err(HarnessError::Kubeconfig(e.to_string())),
            }
        }
        Ok(out)
    }

    /// A fresh namespace `<prefix>-<random>` with its own pool of kwok GPU nodes
    /// ([`default_groups`]), ready for pods (its `default` ServiceAccount exists).
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, HarnessError> {
        TestNamespace::create(self, prefix, &default_groups()).await
    }

    /// Like [`Cluster::namespace`] with other node groups.
    pub async fn namespace_with_nodes(
        &self,
        prefix: &str,
        groups: &[NodeGroup],
    ) -> Result<TestNamespace, HarnessError> {
        TestNamespace::create(self, prefix, groups).await
    }
}
