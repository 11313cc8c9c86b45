//! Optional leader election over a `coordination.k8s.io/v1` Lease (kube-lease-manager).

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tracing::info;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    pub duration_secs: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_secs: u64,
}

/// Leader election failures.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// `grace_secs` must be below `duration_secs`.
    #[error("lease grace ({grace}s) must be shorter than its duration ({duration}s)")]
    BadTiming {
        /// Duration.
        duration: u64,
        /// Grace.
        grace: u64,
    },
    /// The lease API failed.
    #[error("lease: {0}")]
    Lease(#[from] LeaseManagerError),
    /// The lease task stopped.
    #[error("lease manager stopped")]
    Stopped,
}

/// Leadership held by this process; `lost()` resolves when it is gone.
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Waits until leadership is lost (or the lease manager stops).
    pub async fn lost(mut self) {
        while *self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Blocks until this process holds the lease.
pub async fn acquire(client: Client, config: &LeaderConfig) -> Result<Leadership, LeaderError> {
    if config.grace_secs == 0 || config.grace_secs >= config.duration_secs {
        return Err(LeaderError::BadTiming {
            duration: config.duration_secs,
            grace: config.grace_secs,
        });
    }
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration_secs)
        .with_grace(config.grace_secs)
        .build()
        .await?;
    let (mut rx, _task) = manager.watch().await;
    info!(lease = %config.lease_name, identity = %config.identity, "waiting for leadership");
    while !*rx.borrow_and_update() {
        rx.changed().await.map_err(|_| LeaderError::Stopped)?;
    }
    info!(lease = %config.lease_name, "acquired leadership");
    Ok(Leadership { rx })
}
