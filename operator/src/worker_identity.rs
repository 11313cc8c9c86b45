//! The identity a workload's worker pods run as: a ServiceAccount (unless the spec names one)
//! bound to a Role that allows `get` and `patch` on exactly the workload's own pods, so each
//! worker can report its uid, last window and last score on its pod and nothing else. Building
//! is pure; [`apply_worker_identity`] writes the objects.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::error::Error;
use crate::naming::{
    pod_name, selector_labels, worker_report_role_name, worker_service_account_name,
};
use crate::owned_object;
use crate::pod_builder::{BuildError, name_and_namespace, owner_reference};
use crate::workload::Workload;

/// The objects of one workload's worker identity.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerIdentity {
    /// Created by the operator when the spec names no ServiceAccount.
    pub service_account: Option<ServiceAccount>,
    /// get + patch on the workload's pods, by name.
    pub role: Role,
    /// Binds the Role to the pods' ServiceAccount.
    pub binding: RoleBinding,
}

/// The ServiceAccount the workload's pods run as: `spec.serviceAccountName`, or the one the
/// operator creates (`{name}-worker`).
pub fn pod_service_account<K: Workload>(obj: &K) -> String {
    obj.workload()
        .service_account_name
        .clone()
        .unwrap_or_else(|| worker_service_account_name(&obj.name_any()))
}

/// The identity objects of `obj`, owned by it (garbage-collected with it).
pub fn desired_worker_identity<K: Workload>(obj: &K) -> Result<WorkerIdentity, BuildError> {
    let (owner, namespace) = name_and_namespace(obj)?;
    let meta = |name: String| -> Result<ObjectMeta, BuildError> {
        Ok(ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.clone()),
            labels: Some(selector_labels(K::OWNER_LABEL, &owner)),
            owner_references: Some(vec![owner_reference(obj)?]),
            ..ObjectMeta::default()
        })
    };
    let account = pod_service_account(obj);
    let service_account = match obj.workload().service_account_name {
        Some(_) => None,
        None => Some(ServiceAccount {
            metadata: meta(account.clone())?,
            ..ServiceAccount::default()
        }),
    };
    let replicas = obj.workload().replicas.max(0);
    let pods: Vec<String> = (0..replicas)
        .map(|i| pod_name(&owner, K::ROLE, i))
        .collect();
    let role_name = worker_report_role_name(&owner);
    let role = Role {
        metadata: meta(role_name.clone())?,
        // No pods (zero replicas): no rule, since a rule without resourceNames would allow
        // every pod of the namespace.
        rules: (!pods.is_empty()).then(|| {
            vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".to_owned()]),
                resource_names: Some(pods),
                verbs: vec!["get".to_owned(), "patch".to_owned()],
                ..PolicyRule::default()
            }]
        }),
    };
    let binding = RoleBinding {
        metadata: meta(role_name.clone())?,
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: role_name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: account,
            namespace: Some(namespace.clone()),
            ..Subject::default()
        }]),
    };
    Ok(WorkerIdentity {
        service_account,
        role,
        binding,
    })
}

/// Creates the identity objects, or brings the Role and binding up to date (the Role's pod
/// names follow the replica count).
pub async fn apply_worker_identity(
    client: &Client,
    ns: &str,
    identity: &WorkerIdentity,
) -> Result<(), Error> {
    if let Some(account) = &identity.service_account {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        // Only its existence matters (the token controller adds secrets to it).
        owned_object::ensure(&accounts, account, |_, _| true).await?;
    }
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    // The apiserver may store "no rules" as null or as an empty list.
    owned_object::ensure(&roles, &identity.role, |current, desired| {
        current.rules.as_deref().unwrap_or_default() == desired.rules.as_deref().unwrap_or_default()
    })
    .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    owned_object::ensure(&bindings, &identity.binding, |current, desired| {
        current.subjects == desired.subjects && current.role_ref == desired.role_ref
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;

    #[test]
    fn the_role_names_exactly_the_workloads_pods() {
        let identity = desired_worker_identity(&run(3)).unwrap();
        let rules = identity.role.rules.clone().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resource_names.as_deref().unwrap(),
            ["run-miner-0", "run-miner-1", "run-miner-2"]
        );
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        assert_eq!(rules[0].resources.as_deref().unwrap(), ["pods"]);
        let account = identity.service_account.unwrap();
        assert_eq!(account.name_any(), "run-worker");
        let subjects = identity.binding.subjects.unwrap();
        assert_eq!(subjects[0].name, "run-worker");
        assert_eq!(identity.binding.role_ref.name, identity.role.name_any());
        for owners in [
            identity.role.metadata.owner_references.as_ref(),
            account.metadata.owner_references.as_ref(),
        ] {
            assert_eq!(owners.unwrap()[0].controller, Some(true));
        }
    }

    #[test]
    fn a_named_service_account_is_bound_not_created() {
        let mut r = run(1);
        r.spec.workload.service_account_name = Some("mine".into());
        let identity = desired_worker_identity(&r).unwrap();
        assert!(identity.service_account.is_none());
        assert_eq!(identity.binding.subjects.unwrap()[0].name, "mine");
        assert_eq!(pod_service_account(&r), "mine");
    }

    #[test]
    fn zero_replicas_grant_nothing() {
        let identity = desired_worker_identity(&run(0)).unwrap();
        assert_eq!(identity.role.rules, None);
    }
}
