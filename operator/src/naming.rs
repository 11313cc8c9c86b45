//! Names and labels of the objects the operator creates.

use std::collections::BTreeMap;

use crate::crd::WalletSpec;
use crate::workload::Role;

/// `app.kubernetes.io/managed-by` value on every object the operator creates.
pub const MANAGER: &str = "subnet-operator";
/// Label holding the replica index of a pod.
pub const REPLICA_INDEX_LABEL: &str = "subnet.templar.dev/replica-index";
/// Annotation holding the hash of the pod's desired configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "subnet.templar.dev/config-hash";
/// Annotation holding the SHA-256 of the run manifest in the rendered ConfigMap.
pub const MANIFEST_HASH_ANNOTATION: &str = "subnet.templar.dev/run-manifest-sha256";
/// Placeholder in `hotkeySecretTemplate` replaced by the replica index.
pub const INDEX_PLACEHOLDER: &str = "{index}";

/// Pod name of replica `index`: `{owner}-miner-{index}` or `{owner}-validator-{index}`.
pub fn pod_name(owner: &str, role: Role, index: i32) -> String {
    format!("{owner}-{}-{index}", role.as_str())
}

/// Checkpoint claim of replica `index` created from a claim template.
pub fn checkpoint_claim_name(owner: &str, index: i32) -> String {
    format!("{owner}-checkpoint-{index}")
}

/// One-shot registration Job of replica `index` (runs `worker register` with the coldkey).
pub fn registration_job_name(owner: &str, index: i32) -> String {
    format!("{owner}-register-{index}")
}

/// `app.kubernetes.io/component` of registration Jobs and their pods.
pub const REGISTRATION_COMPONENT: &str = "registration";

/// ServiceAccount the operator creates for a workload's worker pods.
pub fn worker_service_account_name(owner: &str) -> String {
    format!("{owner}-worker")
}

/// Role (and RoleBinding) letting a workload's workers get and patch their own pods.
pub fn worker_report_role_name(owner: &str) -> String {
    format!("{owner}-worker-report")
}

/// ConfigMap the operator renders the verified run manifest into.
pub fn manifest_config_map_name(owner: &str) -> String {
    format!("{owner}-run-manifest")
}

/// Hotkey Secret of replica `index`, from the explicit list or the name template.
pub fn hotkey_secret(wallet: &WalletSpec, index: i32) -> Option<String> {
    if let Some(list) = &wallet.hotkey_secrets {
        return usize::try_from(index)
            .ok()
            .and_then(|i| list.get(i))
            .cloned();
    }
    wallet
        .hotkey_secret_template
        .as_ref()
        .map(|template| template.replace(INDEX_PLACEHOLDER, &index.to_string()))
}

/// Labels selecting every pod of one workload.
pub fn selector_labels(owner_label: &str, owner: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
        (owner_label.to_owned(), owner.to_owned()),
    ])
}

/// `key=value,...` form of [`selector_labels`], as used in list calls and `status.selector`.
pub fn selector_string(owner_label: &str, owner: &str) -> String {
    selector_labels(owner_label, owner)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// All labels of replica `index`'s pod.
pub fn pod_labels(
    owner_label: &str,
    owner: &str,
    role: Role,
    index: i32,
) -> BTreeMap<String, String> {
    let mut labels = selector_labels(owner_label, owner);
    labels.insert(
        "app.kubernetes.io/name".to_owned(),
        "subnet-worker".to_owned(),
    );
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        role.as_str().to_owned(),
    );
    labels.insert("app.kubernetes.io/instance".to_owned(), owner.to_owned());
    labels.insert(REPLICA_INDEX_LABEL.to_owned(), index.to_string());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_stable_per_role_and_index() {
        assert_eq!(pod_name("run", Role::Miner, 3), "run-miner-3");
        assert_eq!(pod_name("vs", Role::Validator, 0), "vs-validator-0");
    }

    #[test]
    fn hotkey_secret_comes_from_list_or_template() {
        let listed = WalletSpec {
            hotkey_secrets: Some(vec!["a".into(), "b".into()]),
            ..WalletSpec::default()
        };
        assert_eq!(hotkey_secret(&listed, 1).as_deref(), Some("b"));
        assert_eq!(hotkey_secret(&listed, 2), None);
        assert_eq!(hotkey_secret(&listed, -1), None);
        let templated = WalletSpec {
            hotkey_secret_template: Some("miner-hotkey-{index}".into()),
            ..WalletSpec::default()
        };
        assert_eq!(
            hotkey_secret(&templated, 7).as_deref(),
            Some("miner-hotkey-7")
        );
    }

    #[test]
    fn selector_string_is_sorted_and_matches_labels() {
        let s = selector_string("subnet.templar.dev/trainingrun", "r1");
        assert_eq!(
            s,
            "app.kubernetes.io/managed-by=subnet-operator,subnet.templar.dev/trainingrun=r1"
        );
        let labels = pod_labels("subnet.templar.dev/trainingrun", "r1", Role::Miner, 2);
        for (k, v) in selector_labels("subnet.templar.dev/trainingrun", "r1") {
            assert_eq!(labels.get(&k), Some(&v));
        }
        assert_eq!(
            labels.get(REPLICA_INDEX_LABEL).map(String::as_str),
            Some("2")
        );
    }
}
