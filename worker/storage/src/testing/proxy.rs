//! A loopback TCP proxy that can stall uploads mid-request, counts download bytes and can
//! go down (dropping every connection and refusing new ones until it is back up), to test
//! interrupted uploads, timeouts, outages, and that refused downloads are not transferred.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How the proxy treats client-to-server traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward everything in both directions.
    PassThrough,
    /// Forward at most this many client-to-server bytes per connection, then stop reading from
    /// the client (the request hangs, as over a dead link). `StallAfter(0)` is a black hole.
    StallAfter(u64),
}

/// A running proxy; it stops and drops all its connections when dropped.
#[derive(Debug)]
pub struct TestProxy {
    addr: SocketAddr,
    to_client: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    outage: watch::Sender<u64>,
    accept_task: JoinHandle<()>,
}

impl TestProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr, mode: ProxyMode) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let to_client = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&to_client);
        let down = Arc::new(AtomicBool::new(false));
        let refusing = Arc::clone(&down);
        let (outage, outages) = watch::channel(0u64);
        let accept_task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection task.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    // Down: the connection is closed before a byte is exchanged.
                    drop(client);
                    continue;
                }
                let mut outages = outages.clone();
                outages.mark_unchanged();
                let counter = Arc::clone(&counter);
                connections.spawn(async move {
                    tokio::select! {
                        () = relay(client, upstream, mode, counter) => {}
                        _ = outages.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            to_client,
            down,
            outage,
            accept_task,
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for use as an S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the proxy down (every open connection is dropped mid-stream, new ones are
    /// closed at once) or brings it back up.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.outage.send_modify(|n| *n += 1);
        }
    }

    /// Bytes forwarded from the server to clients so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.to_client.load(Ordering::Relaxed)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mode: ProxyMode,
    to_client: Arc<AtomicU64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upload = async move {
        let mut budget = match mode {
            ProxyMode::PassThrough => u64::MAX,
            ProxyMode::StallAfter(limit) => limit,
        };
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if budget == 0 {
                std::future::pending::<()>().await;
            }
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                return server_write.shutdown().await;
            }
            let forward = read.min(usize::try_from(budget).unwrap_or(usize::MAX));
            server_write.write_all(&buffer[..forward]).await?;
            budget -= forward as u64;
        }
    };
    let download = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 {
                return client_write.shutdown().await;
            }
            client_write.write_all(&buffer[..read]).await?;
            to_client.fetch_add(read as u64, Ordering::Relaxed);
        }
    };
    let _: (std::io::Result<()>, std::io::Result<()>) = tokio::join!(upload, download);
}
