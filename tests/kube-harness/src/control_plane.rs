//! Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on free
//! loopback ports in a fresh directory, and waits until the apiserver is ready.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::Client;

use crate::binaries::Binaries;
use crate::error::HarnessError;
use crate::kubeconfig;
use crate::pki;
use crate::process::Process;

/// User name of the harness's own admin token (group `system:masters`).
pub const ADMIN_USER: &str = "kube-harness-admin";
/// Annotation that hands a node to kwok.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

const START_TIMEOUT: Duration = Duration::from_secs(120);
const KWOK_STAGES: &str = include_str!("kwok_stages.yaml");

/// Where a control plane is and how to reach it (the processes are owned elsewhere).
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The apiserver's URL.
    pub server: String,
    /// Directory holding the logs (and, for a local control plane, certificates and etcd data).
    pub dir: PathBuf,
    /// A cluster-admin kubeconfig (for kubectl, the Go components and kwok).
    pub kubeconfig: PathBuf,
    /// Value of the `kwok.x-k8s.io/node` annotation that hands a node to this harness's kwok
    /// (unique per harness, so it never takes over another kwok's nodes or real ones).
    pub kwok_node: String,
}

impl Endpoint {
    /// A client authenticated with `token` only.
    pub async fn client_with_token(
        &self,
        token: &str,
        namespace: &str,
    ) -> Result<Client, HarnessError> {
        kubeconfig::client(&self.kubeconfig, namespace, Some(token)).await
    }

    /// The admin client, default namespace `namespace`.
    pub async fn admin_in(&self, namespace: &str) -> Result<Client, HarnessError> {
        kubeconfig::client(&self.kubeconfig, namespace, None).await
    }

    /// The admin client.
    pub async fn admin(&self) -> Result<Client, HarnessError> {
        self.admin_in("default").await
    }
}

/// A `kwok.x-k8s.io/node` value no other harness in this or another process uses.
fn unique_kwok_node() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("kube-harness-{}-{n}", std::process::id())
}

/// kwok with the harness's stages, managing only the nodes annotated `endpoint.kwok_node`.
fn spawn_kwok(kwok: &Path, endpoint: &Endpoint) -> Result<Process, HarnessError> {
    let stages = endpoint.dir.join("kwok-stages.yaml");
    write(&stages, KWOK_STAGES)?;
    let port = free_port()?;
    Process::spawn(
        "kwok",
        kwok,
        &[
            format!("--kubeconfig={}", endpoint.kubeconfig.display()),
            format!("--config={}", stages.display()),
            "--manage-all-nodes=false".to_owned(),
            format!(
                "--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={}",
                endpoint.kwok_node
            ),
            "--cidr=10.244.0.0/16".to_owned(),
            "--node-ip=10.1.0.1".to_owned(),
            format!("--server-address=127.0.0.1:{port}"),
        ],
        &endpoint.dir,
    )
}

/// A fresh `$TMPDIR/kube-harness-<pid>-*` directory (after removing those of dead processes).
fn harness_dir() -> Result<PathBuf, HarnessError> {
    let parent = std::env::temp_dir();
    sweep_stale_dirs(&parent);
    Ok(tempfile::Builder::new()
        .prefix(&format!("kube-harness-{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(HarnessError::io("creating the cluster directory"))?
        .keep())
}

fn free_port() -> Result<u16, HarnessError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(HarnessError::io("finding a free port"))?
        .port();
    Ok(port)
}

fn random_token() -> Result<String, HarnessError> {
    use std::io::Read;
    let mut buf = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(HarnessError::io("reading /dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(HarnessError::io(format!("writing {}", path.display())))
}

/// Removes directories of earlier harness runs whose process is gone (etcd preallocates
/// 64 MB WAL files, so leftovers add up).
fn sweep_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("kube-harness-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn wait_tcp(process: &mut Process, port: u16) -> Result<(), HarnessError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(reason) = process.exited() {
            return Err(process.failure(reason));
        }
        if Instant::now() > deadline {
            return Err(process.failure(format!("port {port} not open after {START_TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(process: &mut Process, endpoint: &Endpoint) -> Result<Client, HarnessError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let client = endpoint.admin().await?;
    loop {
        let req = http::Request::get("/readyz").body(Vec::new());
        let last = match req {
            Ok(req) => match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(client),
                Ok(body) => body,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if let Some(reason) = process.exited() {
            return Err(process.failure(reason));
        }
        if Instant::now() > deadline {
            return Err(process.failure(format!("/readyz not ok after {START_TIMEOUT:?}: {last}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Running processes of one control plane; dropping it kills them.
pub struct ControlPlane {
    /// Address and credentials.
    pub endpoint: Endpoint,
    processes: Vec<Process>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("endpoint", &self.endpoint)
            .field(
                "processes",
                &self.processes.iter().map(Process::name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ControlPlane {
    /// Any component that has exited since the start, with its log tail.
    pub fn check_alive(&mut self) -> Result<(), HarnessError> {
        for p in &mut self.processes {
            if let Some(reason) = p.exited() {
                return Err(p.failure(reason));
            }
        }
        Ok(())
    }

    /// Starts everything. Must run on a thread that outlives the tests (the children die with
    /// the thread that started them).
    pub async fn start(bins: &Binaries) -> Result<Self, HarnessError> {
        let dir = harness_dir()?;

        let pki = pki::generate()?;
        let ca_file = dir.join("ca.crt");
        let cert_file = dir.join("apiserver.crt");
        let key_file = dir.join("apiserver.key");
        let sa_key_file = dir.join("service-account.key");
        write(&ca_file, &pki.ca_cert)?;
        write(&cert_file, &pki.serving_cert)?;
        write(&key_file, &pki.serving_key)?;
        write(&sa_key_file, &pki.service_account_key)?;
        let sa_pub_file = dir.join("service-account.pub");
        write(&sa_pub_file, &pki.service_account_public_key)?;
        let admin_token = random_token()?;
        let tokens_file = dir.join("tokens.csv");
        write(
            &tokens_file,
            &format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"),
        )?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("admin.kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig::render(&server, &ca_file, &admin_token),
        )?;
        let endpoint = Endpoint {
            server,
            dir: dir.clone(),
            kubeconfig: kubeconfig.clone(),
            kwok_node: unique_kwok_node(),
        };
        let path = |p: &Path| p.display().to_string();
        let mut processes = Vec::new();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd = Process::spawn(
            "etcd",
            &bins.etcd,
            &[
                "--name=harness".to_owned(),
                format!("--data-dir={}", path(&dir.join("etcd"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=harness={peer_url}"),
                "--unsafe-no-fsync=true".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &dir,
        )?;
        wait_tcp(&mut etcd, etcd_port).await?;
        processes.push(etcd);

        let mut apiserver = Process::spawn(
            "kube-apiserver",
            &bins.apiserver,
            &[
                format!("--etcd-servers={etcd_url}"),
                format!("--secure-port={api_port}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--advertise-address=127.0.0.1".to_owned(),
                format!("--tls-cert-file={}", path(&cert_file)),
                format!("--tls-private-key-file={}", path(&key_file)),
                format!("--cert-dir={}", path(&dir.join("apiserver-certs"))),
                format!("--token-auth-file={}", path(&tokens_file)),
                "--authorization-mode=RBAC".to_owned(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
                format!("--service-account-key-file={}", path(&sa_pub_file)),
                format!("--service-account-signing-key-file={}", path(&sa_key_file)),
                "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
                "--endpoint-reconciler-type=none".to_owned(),
                "--enable-priority-and-fairness=false".to_owned(),
                "--allow-privileged=true".to_owned(),
            ],
            &dir,
        )?;
        let admin = wait_ready(&mut apiserver, &endpoint).await?;
        processes.push(apiserver);
        drop(admin);

        let kubeconfig_arg = format!("--kubeconfig={}", path(&kubeconfig));
        let controllers = [
            "garbage-collector-controller",
            "namespace-controller",
            "serviceaccount-controller",
            "serviceaccount-token-controller",
            "persistentvolume-binder-controller",
            "pod-garbage-collector-controller",
            "persistentvolumeclaim-protection-controller",
            "persistentvolume-protection-controller",
            "root-ca-certificate-publisher-controller",
            // The operator's one-shot hotkey registration Jobs.
            "job-controller",
        ];
        processes.push(Process::spawn(
            "kube-controller-manager",
            &bins.controller_manager,
            &[
                kubeconfig_arg.clone(),
                "--leader-elect=false".to_owned(),
                format!("--controllers={}", controllers.join(",")),
                format!("--service-account-private-key-file={}", path(&sa_key_file)),
                format!("--root-ca-file={}", path(&ca_file)),
                // No serving endpoint: nothing scrapes them.
                "--secure-port=0".to_owned(),
            ],
            &dir,
        )?);
        processes.push(Process::spawn(
            "kube-scheduler",
            &bins.scheduler,
            &[
                kubeconfig_arg,
                "--leader-elect=false".to_owned(),
                // No serving endpoint: nothing scrapes them.
                "--secure-port=0".to_owned(),
            ],
            &dir,
        )?);
        processes.push(spawn_kwok(&bins.kwok, &endpoint)?);
        let mut plane = Self {
            endpoint,
            processes,
        };
        // A component that rejects its flags exits within a second or two.
        tokio::time::sleep(Duration::from_secs(2)).await;
        plane.check_alive()?;
        Ok(plane)
    }

    /// Attaches to an existing cluster through an admin kubeconfig: nothing but kwok is
    /// started (against that cluster, managing only the nodes the harness creates there).
    pub async fn attach(kubeconfig: &Path, kwok: &Path) -> Result<Self, HarnessError> {
        let config = kubeconfig::config(kubeconfig).await?;
        let endpoint = Endpoint {
            server: config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
            dir: harness_dir()?,
            kubeconfig: kubeconfig.to_owned(),
            kwok_node: unique_kwok_node(),
        };
        let admin = endpoint.admin().await?;
        admin.apiserver_version().await.map_err(|e| {
            HarnessError::Kubeconfig(format!(
                "{} ({}): {e}",
                kubeconfig.display(),
                endpoint.server
            ))
        })?;
        let mut plane = Self {
            processes: vec![spawn_kwok(kwok, &endpoint)?],
            endpoint,
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        plane.check_alive()?;
        Ok(plane)
    }
}
