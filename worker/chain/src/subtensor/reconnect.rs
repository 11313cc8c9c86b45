//! [`ReconnectingRpc`]: an RPC client that survives the node going away.
//!
//! It wraps a connector (for a node: open a websocket to its URL). When a call fails with a
//! transport error (subxt-rpcs `Error::Client` / `DisconnectedWillReconnect`: socket closed,
//! restart needed, request timed out) the connection is dropped; the next call opens a new one
//! with exponential backoff. Idempotent calls (every method except `author_*`, i.e. reads,
//! runtime calls, and establishing read subscriptions) are retried on the new connection;
//! submissions are not, and their error reaches the caller as
//! [`crate::ChainError::Rpc`] (class retryable), because the node may already hold the
//! transaction. JSON-RPC error responses from the node are passed through untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use subxt::rpcs::Error as RpcError;
use subxt::rpcs::RpcClient;
use subxt::rpcs::client::{RawRpcFuture, RawRpcSubscription, RawValue, RpcClientT};
use tokio::sync::Mutex;
use tracing::{info, warn};

/// Opens a fresh connection.
pub type Connector = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<RpcClient, RpcError>> + Send>> + Send + Sync,
>;

/// How long to keep trying.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry; doubles each attempt.
    pub initial_backoff: Duration,
    /// Largest delay between attempts.
    pub max_backoff: Duration,
    /// Attempts per call (the first try included) before its error is returned.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 0.5 s doubling up to 30 s, 8 attempts (about 2 minutes of outage per call).
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

struct Connection {
    generation: u64,
    client: Option<RpcClient>,
}

/// See the module docs. Cheap to share (`Arc` it into an [`RpcClient`]).
pub struct ReconnectingRpc {
    connector: Connector,
    policy: RetryPolicy,
    connection: Mutex<Connection>,
    reconnects: AtomicU64,
}

impl std::fmt::Debug for ReconnectingRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingRpc")
            .field("policy", &self.policy)
            .field("reconnects", &self.reconnects())
            .finish_non_exhaustive()
    }
}

/// A failure of the connection itself rather than an answer from the node.
pub fn is_connection_error(error: &RpcError) -> bool {
    matches!(
        error,
        RpcError::Client(_) | RpcError::DisconnectedWillReconnect(_)
    )
}

/// Calls that can be repeated without effect on the chain.
pub fn is_idempotent(method: &str) -> bool {
    !method.starts_with("author_")
}

impl ReconnectingRpc {
    /// Connect now (retrying per `policy`).
    pub async fn connect(connector: Connector, policy: RetryPolicy) -> Result<Self, RpcError> {
        let rpc = Self {
            connector,
            policy,
            connection: Mutex::new(Connection {
                generation: 0,
                client: None,
            }),
            reconnects: AtomicU64::new(0),
        };
        rpc.client().await?;
        Ok(rpc)
    }

    /// A connector for a websocket URL (`ws://` allowed).
    pub fn url_connector(url: String) -> Connector {
        Arc::new(move || {
            let url = url.clone();
            Box::pin(async move { RpcClient::from_insecure_url(&url).await })
        })
    }

    /// How many times a lost connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The live connection, opening one (with backoff) if there is none.
    async fn client(&self) -> Result<(u64, RpcClient), RpcError> {
        let mut connection = self.connection.lock().await;
        if let Some(client) = &connection.client {
            return Ok((connection.generation, client.clone()));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match (self.connector)().await {
                Ok(client) => {
                    if connection.generation > 0 {
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                        info!(attempt, "reconnected to the node");
                    }
                    connection.generation += 1;
                    connection.client = Some(client.clone());
                    return Ok((connection.generation, client));
                }
                Err(error) if attempt < self.policy.max_attempts => {
                    let delay = self.policy.backoff(attempt);
                    warn!(%error, attempt, ?delay, "cannot connect to the node; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Forget connection `generation` after it failed (no-op if already replaced).
    async fn drop_connection(&self, generation: u64) {
        let mut connection = self.connection.lock().await;
        if connection.generation == generation {
            connection.client = None;
        }
    }

    async fn with_retry<T, F>(&self, method: &str, call: F) -> Result<T, RpcError>
    where
        F: Fn(RpcClient) -> Pin<Box<dyn Future<Output = Result<T, RpcError>> + Send>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (generation, client) = self.client().await?;
            match call(client).await {
                Err(error) if is_connection_error(&error) => {
                    self.drop_connection(generation).await;
                    if !is_idempotent(method) || attempt >= self.policy.max_attempts {
                        return Err(error);
                    }
                    let delay = self.policy.backoff(attempt);
                    warn!(method, %error, attempt, ?delay, "connection lost; retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }
}

impl RpcClientT for ReconnectingRpc {
    fn request_raw<'a>(
        &'a self,
        method: &'a str,
        params: Option<Box<RawValue>>,
    ) -> RawRpcFuture<'a, Box<RawValue>> {
        Box::pin(async move {
            let owned = method.to_owned();
            self.with_retry(method, move |client| {
                let method = owned.clone();
                let params = params.clone();
                Box::pin(async move { client.request_raw(&method, params).await })
            })
            .await
        })
    }

    fn subscribe_raw<'a>(
        &'a self,
        sub: &'a str,
        params: Option<Box<RawValue>>,
        unsub: &'a str,
    ) -> RawRpcFuture<'a, RawRpcSubscription> {
        Box::pin(async move {
            let (sub_owned, unsub_owned) = (sub.to_owned(), unsub.to_owned());
            self.with_retry(sub, move |client| {
                let (sub, unsub) = (sub_owned.clone(), unsub_owned.clone());
                let params = params.clone();
                Box::pin(async move { client.subscribe_raw(&sub, params, &unsub).await })
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            max_attempts: 5,
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(500));
        assert_eq!(p.backoff(40), Duration::from_millis(500));
    }

    #[test]
    fn only_author_calls_are_not_retried() {
        assert!(is_idempotent("state_getStorage"));
        assert!(is_idempotent("chain_getHeader"));
        assert!(!is_idempotent("author_submitAndWatchExtrinsic"));
        assert!(!is_idempotent("author_submitExtrinsic"));
    }
}
