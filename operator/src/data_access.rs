//! How a replica reaches the run's training data: the `spec.data` rules that depend on the
//! run manifest's dataset (what it needs is decided by `run_manifest::DatasetAccess`), and
//! the env, volumes and mounts the pod gets for it. Pure: no API calls.

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use run_manifest::{BadUri, DatasetAccess};

use crate::contract::{
    DATA_CACHE_DIR, ENV_DATA_ACCESS_KEY_ID, ENV_DATA_CACHE_DIR, ENV_DATA_CACHE_GIB,
    ENV_DATA_SECRET_ACCESS_KEY,
};
use crate::crd::DataSpec;
use crate::pod_builder::{credentials_env, mount, plain_env};
use crate::validation::{SpecError, is_dns_subdomain};

const VOLUME_DATA_CACHE: &str = "data-cache";
const VOLUME_DATASET: &str = "dataset";
const CREDENTIALS_FIELD: &str = "spec.data.credentialsSecret";
const VOLUME_CLAIM_FIELD: &str = "spec.data.volumeClaim";

/// Directory of replica `index` inside a shared `cacheClaim`.
pub fn cache_sub_path(index: i32) -> String {
    format!("data-cache-{index}")
}

/// Size limit of the cache emptyDir: the worker's bound plus room for the shard being
/// fetched before the least recently used one is evicted.
fn cache_size_limit(cache_gib: u32) -> Quantity {
    let gib = u64::from(cache_gib);
    Quantity(format!("{}Gi", gib + gib / 8 + 1))
}

/// What `spec.data` lacks or has in vain for the data the run manifest names.
pub fn data_errors(
    data: Option<&DataSpec>,
    access: &Result<DatasetAccess, BadUri>,
) -> Vec<SpecError> {
    let default = DataSpec::default();
    let data = data.unwrap_or(&default);
    let mut errors = Vec::new();
    for (field, claim) in [
        (VOLUME_CLAIM_FIELD, &data.volume_claim),
        ("spec.data.cacheClaim", &data.cache_claim),
    ] {
        if let Some(claim) = claim
            && !is_dns_subdomain(claim)
        {
            errors.push(SpecError::new(
                field,
                format!("{claim:?} is not a valid claim name"),
            ));
        }
    }
    // An unparsable URI is reported by the manifest's own validation.
    let Ok(access) = access else {
        return errors;
    };
    match access {
        DatasetAccess::S3Credentials { uri } if data.credentials_secret.is_none() => {
            errors.push(SpecError::new(
                CREDENTIALS_FIELD,
                format!("the run manifest's dataset {uri} needs read credentials: name the Secret holding them"),
            ));
        }
        DatasetAccess::Directory(path) if data.volume_claim.is_none() => {
            errors.push(SpecError::new(
                VOLUME_CLAIM_FIELD,
                format!(
                    "the run manifest's dataset is the directory {}: name the PersistentVolumeClaim holding it",
                    path.display()
                ),
            ));
        }
        _ => {}
    }
    if data.credentials_secret.is_some() && !matches!(access, DatasetAccess::S3Credentials { .. }) {
        errors.push(SpecError::new(
            CREDENTIALS_FIELD,
            "the run manifest's data is not an s3:// dataset; remove the credentials",
        ));
    }
    if data.volume_claim.is_some() && !matches!(access, DatasetAccess::Directory(_)) {
        errors.push(SpecError::new(
            VOLUME_CLAIM_FIELD,
            "the run manifest's data is not a directory dataset; remove the claim",
        ));
    }
    errors
}

/// The env, volumes and mounts through which replica `index` reads the run's data.
#[derive(Debug, Default)]
pub struct DataMounts {
    /// Cache directory and bound, and the read credentials of an S3 dataset.
    pub env: Vec<EnvVar>,
    /// The cache volume and, for a directory dataset, its claim.
    pub volumes: Vec<Volume>,
    /// Their mounts in the worker container.
    pub mounts: Vec<VolumeMount>,
}

/// What replica `index` needs to read the data the manifest names (`access`).
pub fn data_mounts(data: Option<&DataSpec>, access: &DatasetAccess, index: i32) -> DataMounts {
    let default = DataSpec::default();
    let data = data.unwrap_or(&default);
    let mut out = DataMounts {
        env: vec![
            plain_env(ENV_DATA_CACHE_DIR, DATA_CACHE_DIR),
            plain_env(ENV_DATA_CACHE_GIB, data.cache_gib.to_string()),
        ],
        ..DataMounts::default()
    };
    let mut cache_mount = mount(VOLUME_DATA_CACHE, DATA_CACHE_DIR, false);
    out.volumes.push(match &data.cache_claim {
        Some(claim) => {
            cache_mount.sub_path = Some(cache_sub_path(index));
            claim_volume(VOLUME_DATA_CACHE, claim, false)
        }
        None => Volume {
            name: VOLUME_DATA_CACHE.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(cache_size_limit(data.cache_gib)),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    });
    out.mounts.push(cache_mount);
    if let (DatasetAccess::S3Credentials { .. }, Some(secret)) = (access, &data.credentials_secret)
    {
        out.env.extend(credentials_env(
            ENV_DATA_ACCESS_KEY_ID,
            ENV_DATA_SECRET_ACCESS_KEY,
            secret,
        ));
    }
    if let (DatasetAccess::Directory(path), Some(claim)) = (access, &data.volume_claim) {
        out.volumes.push(claim_volume(VOLUME_DATASET, claim, true));
        out.mounts
            .push(mount(VOLUME_DATASET, &path.display().to_string(), true));
    }
    out
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_owned(),
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CredentialsSecretRef;

    fn s3() -> Result<DatasetAccess, BadUri> {
        Ok(DatasetAccess::S3Credentials {
            uri: "s3://fineweb/v1".into(),
        })
    }

    fn dir() -> Result<DatasetAccess, BadUri> {
        Ok(DatasetAccess::Directory("/data/fineweb".into()))
    }

    fn creds() -> CredentialsSecretRef {
        CredentialsSecretRef {
            name: "dataset-read".into(),
            access_key_id_key: "id".into(),
            secret_access_key_key: "secret".into(),
        }
    }

    fn messages(data: Option<&DataSpec>, access: &Result<DatasetAccess, BadUri>) -> String {
        crate::validation::describe(&data_errors(data, access))
    }

    #[test]
    fn each_dataset_kind_asks_for_what_it_needs_and_nothing_else() {
        assert!(messages(None, &Ok(DatasetAccess::Bundled)).is_empty());
        assert!(
            messages(None, &s3()).contains(
                "spec.data.credentialsSecret: the run manifest's dataset s3://fineweb/v1 needs read credentials"
            ),
            "{}",
            messages(None, &s3())
        );
        assert!(messages(None, &dir()).contains(
            "spec.data.volumeClaim: the run manifest's dataset is the directory /data/fineweb"
        ));
        let with_creds = DataSpec {
            credentials_secret: Some(creds()),
            ..DataSpec::default()
        };
        assert!(messages(Some(&with_creds), &s3()).is_empty());
        assert!(
            messages(Some(&with_creds), &Ok(DatasetAccess::Bundled))
                .contains("is not an s3:// dataset")
        );
        let with_claim = DataSpec {
            volume_claim: Some("fineweb".into()),
            cache_claim: Some("Bad_Name".into()),
            ..DataSpec::default()
        };
        let m = messages(Some(&with_claim), &dir());
        assert!(!m.contains("volumeClaim"), "{m}");
        assert!(
            m.contains("spec.data.cacheClaim: \"Bad_Name\" is not a valid claim name"),
            "{m}"
        );
        assert!(messages(Some(&with_claim), &s3()).contains("is not a directory dataset"));
    }

    #[test]
    fn the_cache_is_a_bounded_volume_and_credentials_come_from_the_secret() {
        let data = DataSpec {
            credentials_secret: Some(creds()),
            cache_gib: 64,
            ..DataSpec::default()
        };
        let m = data_mounts(Some(&data), &s3().unwrap(), 2);
        let env = |name: &str| m.env.iter().find(|e| e.name == name).cloned();
        assert_eq!(
            env(ENV_DATA_CACHE_DIR).unwrap().value.as_deref(),
            Some(DATA_CACHE_DIR)
        );
        assert_eq!(
            env(ENV_DATA_CACHE_GIB).unwrap().value.as_deref(),
            Some("64")
        );
        let key = env(ENV_DATA_SECRET_ACCESS_KEY).unwrap();
        assert!(key.value.is_none(), "never in plain text");
        let sel = key.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("dataset-read", "secret")
        );
        let cache = &m.volumes[0];
        assert_eq!(
            cache.empty_dir.as_ref().unwrap().size_limit,
            Some(Quantity("73Gi".into()))
        );
        assert_eq!(m.mounts[0].mount_path, DATA_CACHE_DIR);

        // A shared cache claim: one directory per replica. A directory dataset: its claim
        // read-only at the manifest's path, and no credentials.
        let data = DataSpec {
            credentials_secret: None,
            volume_claim: Some("fineweb".into()),
            cache_claim: Some("shard-cache".into()),
            ..DataSpec::default()
        };
        let m = data_mounts(Some(&data), &dir().unwrap(), 3);
        assert!(m.env.iter().all(|e| e.name != ENV_DATA_ACCESS_KEY_ID));
        assert_eq!(m.mounts[0].sub_path.as_deref(), Some("data-cache-3"));
        let dataset = m.mounts.iter().find(|v| v.name == VOLUME_DATASET).unwrap();
        assert_eq!(
            (dataset.mount_path.as_str(), dataset.read_only),
            ("/data/fineweb", Some(true))
        );
        let claim = m.volumes.iter().find(|v| v.name == VOLUME_DATASET).unwrap();
        assert_eq!(
            claim.persistent_volume_claim.as_ref().unwrap().read_only,
            Some(true)
        );
    }
}
