//! The contract between the operator and the worker container (see `operator/README.md`).
//!
//! The pod runs `worker miner|validator [extraArgs...]`; everything else reaches the worker as
//! environment variables and files listed here. Protocol settings reach it only through the
//! run manifest file ([`MANIFEST_FILE`], named by [`ENV_RUN_MANIFEST`], pinned by
//! [`ENV_RUN_MANIFEST_SHA256`]); there are no hyperparameter variables.

pub use run_manifest::deployment::{
    ENV_HEALTH_ADDR, ENV_OVERLAP, ENV_POD_NAME, ENV_POD_NAMESPACE, ENV_RUN_MANIFEST,
    ENV_RUN_MANIFEST_SHA256, ENV_WORLD_SIZE, HEALTHZ_PATH, METRICS_PATH, READYZ_PATH,
    REPORT_SCORE_ANNOTATION, REPORT_UID_ANNOTATION, REPORT_WINDOW_ANNOTATION, WORKER_HEALTH_PORT,
};

/// `miner` or `validator`.
pub const ENV_ROLE: &str = "WORKER_ROLE";
/// Subnet id.
pub const ENV_NETUID: &str = "NETUID";
/// Subtensor endpoint.
pub const ENV_CHAIN_ENDPOINT: &str = "CHAIN_ENDPOINT";
/// S3 endpoint.
pub const ENV_STORAGE_ENDPOINT: &str = "STORAGE_ENDPOINT";
/// S3 bucket.
pub const ENV_STORAGE_BUCKET: &str = "STORAGE_BUCKET";
/// S3 region.
pub const ENV_STORAGE_REGION: &str = "STORAGE_REGION";
/// Write access key id (from the credentials Secret).
pub const ENV_STORAGE_ACCESS_KEY_ID: &str = "STORAGE_ACCESS_KEY_ID";
/// Write secret access key (from the credentials Secret).
pub const ENV_STORAGE_SECRET_ACCESS_KEY: &str = "STORAGE_SECRET_ACCESS_KEY";
/// Read access key id published on chain (optional).
pub const ENV_STORAGE_READ_ACCESS_KEY_ID: &str = "STORAGE_READ_ACCESS_KEY_ID";
/// Read secret access key published on chain (optional).
pub const ENV_STORAGE_READ_SECRET_ACCESS_KEY: &str = "STORAGE_READ_SECRET_ACCESS_KEY";
/// Path of the hotkey wallet file.
pub const ENV_HOTKEY_FILE: &str = "HOTKEY_FILE";
/// Path of the coldkey wallet file (only when a coldkey Secret is configured).
pub const ENV_COLDKEY_FILE: &str = "COLDKEY_FILE";
/// Checkpoint directory (persistent when a checkpoint volume is configured).
pub const ENV_CHECKPOINT_DIR: &str = "CHECKPOINT_DIR";
/// Directory of the replica's shard cache (the data-cache volume).
pub const ENV_DATA_CACHE_DIR: &str = "DATA_CACHE_DIR";
/// Bound of the shard cache in GiB.
pub const ENV_DATA_CACHE_GIB: &str = "DATA_CACHE_GIB";
/// Read access key id of an `s3://` dataset (from `spec.data.credentialsSecret`).
pub const ENV_DATA_ACCESS_KEY_ID: &str = "DATA_ACCESS_KEY_ID";
/// Read secret access key of an `s3://` dataset.
pub const ENV_DATA_SECRET_ACCESS_KEY: &str = "DATA_SECRET_ACCESS_KEY";
/// Replica index.
pub const ENV_REPLICA_INDEX: &str = "REPLICA_INDEX";
/// Writable home (the root filesystem is read-only).
pub const ENV_HOME: &str = "HOME";
/// Writable cache directory.
pub const ENV_XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";

/// Directory of the mounted run manifest (a ConfigMap volume, read-only).
pub const MANIFEST_DIR: &str = "/etc/subnet";
/// File name of the run manifest inside [`MANIFEST_DIR`].
pub const MANIFEST_FILE_NAME: &str = "run-manifest.json";
/// Path of the run manifest file in every worker container (the value of [`ENV_RUN_MANIFEST`]).
pub const MANIFEST_FILE: &str = "/etc/subnet/run-manifest.json";
/// Key of the manifest in the ConfigMap the operator renders (`{name}-run-manifest`).
pub const MANIFEST_CONFIG_MAP_KEY: &str = "manifest.json";

/// Directory of the mounted hotkey Secret.
pub const HOTKEY_DIR: &str = "/var/run/secrets/subnet/hotkey";
/// Directory of the mounted coldkey Secret.
pub const COLDKEY_DIR: &str = "/var/run/secrets/subnet/coldkey";
/// Mount path of the shard cache.
pub const DATA_CACHE_DIR: &str = "/var/cache/subnet-data";
/// Writable scratch space (emptyDir).
pub const TMP_DIR: &str = "/tmp";
/// Shared memory for NCCL / data loaders (memory-backed emptyDir).
pub const SHM_DIR: &str = "/dev/shm";
/// Size of `/dev/shm` per GPU of a replica (NCCL's intra-node buffers and the ranks'
/// rendezvous file live there), and for a replica without GPUs.
pub const SHM_GIB_PER_GPU: i32 = 2;
/// NCCL settings of a multi-GPU miner: warnings in the log, and a collective that fails
/// or hangs aborts the process group (the worker then exits and the pod restarts) rather
/// than blocking the replica.
pub const NCCL_ENV: [(&str, &str); 2] = [
    ("NCCL_DEBUG", "WARN"),
    ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"),
];
/// Name of the worker container.
pub const CONTAINER_NAME: &str = "worker";
/// Command of the worker container.
pub const WORKER_COMMAND: &str = "worker";
/// UID / GID the worker runs as.
pub const WORKER_UID: i64 = 1000;

/// Environment variables the operator owns; `extraEnv` may not set them.
pub const RESERVED_ENV: &[&str] = &[
    ENV_ROLE,
    ENV_NETUID,
    ENV_CHAIN_ENDPOINT,
    ENV_STORAGE_ENDPOINT,
    ENV_STORAGE_BUCKET,
    ENV_STORAGE_REGION,
    ENV_STORAGE_ACCESS_KEY_ID,
    ENV_STORAGE_SECRET_ACCESS_KEY,
    ENV_STORAGE_READ_ACCESS_KEY_ID,
    ENV_STORAGE_READ_SECRET_ACCESS_KEY,
    ENV_HOTKEY_FILE,
    ENV_COLDKEY_FILE,
    ENV_CHECKPOINT_DIR,
    ENV_DATA_CACHE_DIR,
    ENV_DATA_CACHE_GIB,
    ENV_DATA_ACCESS_KEY_ID,
    ENV_DATA_SECRET_ACCESS_KEY,
    ENV_REPLICA_INDEX,
    ENV_POD_NAME,
    ENV_POD_NAMESPACE,
    ENV_HEALTH_ADDR,
    ENV_RUN_MANIFEST,
    ENV_RUN_MANIFEST_SHA256,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_file_is_its_directory_and_name() {
        assert_eq!(
            MANIFEST_FILE,
            format!("{MANIFEST_DIR}/{MANIFEST_FILE_NAME}")
        );
    }
}
