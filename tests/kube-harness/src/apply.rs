//! Applies multi-document YAML (rendered charts, manifests) like `kubectl apply --server-side`.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};

use crate::FIELD_MANAGER;
use crate::error::HarnessError;

/// The non-empty documents of a YAML stream.
pub fn parse_documents(text: &str) -> Result<Vec<DynamicObject>, serde_yaml::Error> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        out.push(serde_yaml::from_value(value)?);
    }
    Ok(out)
}

use serde::Deserialize;

/// Server-side applies every object (namespaced ones into their own namespace, or
/// `default_namespace` when they name none). Returns the applied objects.
pub async fn apply_documents(
    client: &Client,
    default_namespace: &str,
    objects: &[DynamicObject],
) -> Result<Vec<DynamicObject>, HarnessError> {
    let mut out = Vec::new();
    for obj in objects {
        let types = obj.types.as_ref().ok_or_else(|| {
            HarnessError::Kubeconfig(format!("object {} has no apiVersion/kind", obj.name_any()))
        })?;
        let gvk = GroupVersionKind::try_from(types)
            .map_err(|e| HarnessError::Kubeconfig(e.to_string()))?;
        let (resource, caps) = pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            let ns = obj
                .namespace()
                .unwrap_or_else(|| default_namespace.to_owned());
            Api::namespaced_with(client.clone(), &ns, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        let applied = api
            .patch(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await?;
        out.push(applied);
    }
    Ok(out)
}
