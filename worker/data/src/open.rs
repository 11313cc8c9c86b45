//! From a run manifest's `data` section to a dataset: resolve the URI, read and verify the
//! dataset manifest against the pinned SHA-256, check it against the model.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use run_manifest::{DataSection, DatasetUri, ManifestHash, Sampling, VerifiedManifest};
use worker_storage::S3Credentials;

use crate::cache::ShardCache;
use crate::dataset::{ShardedDataset, Split};
use crate::error::{DataError, Result};
use crate::manifest::{DATASET_MANIFEST_FILE, DatasetManifest};
use crate::source::{DirSource, S3Access, S3Source, ShardSource};

/// Largest dataset manifest read (a 100 000-shard manifest is about 20 MB).
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// SHA-256 of the bundled dataset's manifest (`worker/data/bundled/dataset.json`): what a
/// run manifest with `data: {bundled: {}}` trains on.
pub const BUNDLED_DATASET_SHA256: &str =
    "d64d8cac1b327555f26dd666d081f89ff9d0204c32aa1ce2d2af4e585cb5af7d";

/// Where a worker finds its data: cache, read credentials, the bundled dataset.
#[derive(Clone, Args)]
pub struct DataArgs {
    /// Directory caching fetched shards (a PVC in Kubernetes); default: a temp directory.
    #[arg(long, env = "DATA_CACHE_DIR")]
    pub data_cache_dir: Option<PathBuf>,
    /// Bound of the shard cache in GiB.
    #[arg(long, env = "DATA_CACHE_GIB", default_value_t = 20)]
    pub data_cache_gib: u64,
    /// Read access key id of an s3:// dataset.
    #[arg(long, env = "DATA_ACCESS_KEY_ID", hide_env_values = true)]
    pub data_access_key_id: Option<String>,
    /// Read secret of an s3:// dataset.
    #[arg(long, env = "DATA_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub data_secret_access_key: Option<String>,
    /// Directory of the bundled dataset, for manifests with `data: {bundled: {}}` (the
    /// worker image ships it; in a checkout it is `worker/data/bundled`).
    #[arg(long, env = "WORKER_BUNDLED_DATASET")]
    pub bundled_dataset: Option<PathBuf>,
}

impl std::fmt::Debug for DataArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataArgs")
            .field("data_cache_dir", &self.data_cache_dir)
            .field("data_cache_gib", &self.data_cache_gib)
            .field("data_access_key_id", &self.data_access_key_id)
            .field(
                "data_secret_access_key",
                &self.data_secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("bundled_dataset", &self.bundled_dataset)
            .finish()
    }
}

impl DataArgs {
    /// Settings with a given cache directory and nothing else (tests, tools).
    pub fn with_cache(dir: impl Into<PathBuf>) -> Self {
        Self {
            data_cache_dir: Some(dir.into()),
            data_cache_gib: 20,
            data_access_key_id: None,
            data_secret_access_key: None,
            bundled_dataset: None,
        }
    }

    fn cache(&self) -> Result<ShardCache> {
        let dir = self
            .data_cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("templar-dataset-cache"));
        ShardCache::open(dir, self.data_cache_gib.saturating_mul(1 << 30))
    }

    fn credentials(&self) -> Result<S3Credentials> {
        match (&self.data_access_key_id, &self.data_secret_access_key) {
            (Some(id), Some(secret)) => Ok(S3Credentials::new(id.clone(), secret.clone())),
            _ => Err(DataError::Config(
                "an s3:// dataset needs DATA_ACCESS_KEY_ID and DATA_SECRET_ACCESS_KEY".into(),
            )),
        }
    }
}

/// The source of a dataset URI.
pub fn source_for(
    uri: &str,
    endpoint: Option<&str>,
    region: Option<&str>,
    args: &DataArgs,
) -> Result<Arc<dyn ShardSource>> {
    match DatasetUri::parse(uri).map_err(|e| DataError::Config(e.to_string()))? {
        DatasetUri::Dir(path) => Ok(Arc::new(DirSource::new(path))),
        DatasetUri::S3 { bucket, prefix } => Ok(Arc::new(S3Source::new(
            &bucket,
            &prefix,
            S3Access {
                endpoint: endpoint.map(str::to_owned),
                region: region.map(str::to_owned),
                credentials: args.credentials()?,
            },
        )?)),
    }
}

/// Reads `dataset.json` from `source`, checks it against `expected` (when pinned), and
/// validates it.
pub fn read_manifest(
    source: &dyn ShardSource,
    expected: Option<&ManifestHash>,
) -> Result<DatasetManifest> {
    let origin = format!("{}/{DATASET_MANIFEST_FILE}", source.uri());
    let bytes = source.read(DATASET_MANIFEST_FILE, MAX_MANIFEST_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| DataError::Parse {
        origin: origin.clone(),
        path: ".".into(),
        message: "not UTF-8".into(),
    })?;
    let manifest = DatasetManifest::parse(&text, &origin)?;
    if let Some(expected) = expected
        && manifest.hash() != *expected
    {
        return Err(DataError::HashMismatch {
            origin,
            expected: expected.to_hex(),
            actual: manifest.hash().to_hex(),
        });
    }
    Ok(manifest)
}

/// The training data of a run: the dataset its manifest names, checked against its model.
pub fn open_for_run(run: &VerifiedManifest, args: &DataArgs) -> Result<ShardedDataset> {
    let m = run.manifest();
    let (source, pin, sampling) = match &m.data {
        DataSection::Bundled {} => {
            let dir = args.bundled_dataset.clone().ok_or_else(|| {
                DataError::Config(
                    "the run manifest names the bundled dataset: set WORKER_BUNDLED_DATASET \
                     (or --bundled-dataset) to its directory"
                        .into(),
                )
            })?;
            let source: Arc<dyn ShardSource> = Arc::new(DirSource::new(dir));
            (
                source,
                BUNDLED_DATASET_SHA256.to_owned(),
                Sampling::WholeDataset {},
            )
        }
        DataSection::Dataset(data) => (
            source_for(
                &data.uri,
                data.endpoint.as_deref(),
                data.region.as_deref(),
                args,
            )?,
            data.sha256.clone(),
            data.sampling,
        ),
    };
    let pin: ManifestHash = pin
        .parse()
        .map_err(|e: run_manifest::BadHash| DataError::Config(e.to_string()))?;
    let manifest = read_manifest(source.as_ref(), Some(&pin))?;
    manifest.check_model(run.model())?;
    let seq_len = usize::try_from(run.model().seq_len)
        .map_err(|_| DataError::Config("model seq_len is negative".into()))?;
    let dataset = ShardedDataset::new(
        manifest,
        Split::Train,
        source,
        Arc::new(args.cache()?),
        seq_len,
        sampling,
        m.seeds.run,
    )?;
    tracing::info!(?dataset, "training data");
    Ok(dataset)
}
