//! A loopback TCP proxy that can stall uploads mid-request and counts download bytes, to test
//! interrupted uploads, timeouts, and that refused downloads are not transferred.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
    accept_task: JoinHandle<()>,
}

impl TestProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr, mode: ProxyMode) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let to_client = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&to_client);
        let accept_task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection task.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(relay(client, upstream, mode, Arc::clone(&counter)));
            }
        });
        Ok(Self {
            addr,
            to_client,
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
