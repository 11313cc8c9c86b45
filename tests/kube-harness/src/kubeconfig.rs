//! Kubeconfig files and clients for a token on the harness's apiserver.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::HarnessError;

/// Who talks to which server.
pub struct Credentials<'a> {
    /// `https://127.0.0.1:<port>`.
    pub server: &'a str,
    /// CA file of the serving certificate.
    pub ca_file: &'a Path,
    /// Bearer token.
    pub token: &'a str,
    /// Default namespace of the client.
    pub namespace: &'a str,
}

/// A kubeconfig YAML for the credentials.
pub fn render(c: &Credentials<'_>) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "harness", "cluster": {
            "server": c.server,
            "certificate-authority": c.ca_file.display().to_string(),
        }}],
        "users": [{"name": "user", "user": {"token": c.token}}],
        "contexts": [{"name": "harness", "context": {
            "cluster": "harness", "user": "user", "namespace": c.namespace,
        }}],
        "current-context": "harness",
    });
    serde_yaml::to_string(&config).unwrap_or_default()
}

/// A client for the credentials.
pub async fn client(c: &Credentials<'_>) -> Result<Client, HarnessError> {
    let kubeconfig =
        Kubeconfig::from_yaml(&render(c)).map_err(|e| HarnessError::Kubeconfig(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| HarnessError::Kubeconfig(e.to_string()))?;
    Client::try_from(config).map_err(HarnessError::Kube)
}
