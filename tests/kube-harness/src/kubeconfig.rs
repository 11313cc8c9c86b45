//! Kubeconfig files, and clients built from one (as its own user, or with a bearer token).

use std::path::Path;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::HarnessError;

/// A kubeconfig YAML for `token` on `server`, trusting the CA in `ca_file`.
pub fn render(server: &str, ca_file: &Path, token: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "harness", "cluster": {
            "server": server,
            "certificate-authority": ca_file.display().to_string(),
        }}],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [{"name": "harness", "context": {"cluster": "harness", "user": "user"}}],
        "current-context": "harness",
    });
    serde_yaml::to_string(&config).unwrap_or_default()
}

/// The current context of the kubeconfig at `path`: server, CA and user.
pub async fn config(path: &Path) -> Result<Config, HarnessError> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| HarnessError::Kubeconfig(format!("{}: {e}", path.display())))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| HarnessError::Kubeconfig(format!("{}: {e}", path.display())))
}

/// A client for the kubeconfig's cluster with default namespace `namespace`, authenticated as
/// the kubeconfig's user, or with `token` (and nothing else) when one is given.
pub async fn client(
    path: &Path,
    namespace: &str,
    token: Option<&str>,
) -> Result<Client, HarnessError> {
    let mut config = config(path).await?;
    config.default_namespace = namespace.to_owned();
    if let Some(token) = token {
        config.auth_info = AuthInfo {
            token: Some(token.to_owned().into()),
            ..AuthInfo::default()
        };
    }
    Client::try_from(config).map_err(HarnessError::Kube)
}
