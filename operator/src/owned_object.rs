//! Create-or-replace of an object the operator owns outright (API calls): created when missing,
//! replaced when what the operator controls differs, left alone otherwise.

use std::fmt::Debug;

use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Makes the stored object match `desired` wherever `same` says it matters.
pub async fn ensure<K>(
    api: &Api<K>,
    desired: &K,
    same: impl Fn(&K, &K) -> bool,
) -> Result<(), Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    match api.get_opt(&name).await? {
        None => match api.create(&PostParams::default(), desired).await {
            Ok(_) => {}
            // Created by a concurrent pass (or another replica before it lost the lease).
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err.into()),
        },
        Some(current) if !same(&current, desired) => {
            let mut updated = desired.clone();
            updated.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &updated).await?;
        }
        Some(_) => {}
    }
    Ok(())
}
