//! Where scripts/setup-k8s.sh put the control-plane binaries, and checks that they are there.

use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// `scripts/k8s-versions.env`: the one place the versions are written down.
const VERSIONS: &str = include_str!("../../../scripts/k8s-versions.env");

/// The value of `KEY=value` in scripts/k8s-versions.env.
fn pinned(key: &str) -> &'static str {
    VERSIONS
        .lines()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(k, _)| *k == key)
        .map_or("", |(_, v)| v.trim())
}

/// The Kubernetes version the harness runs (e.g. `1.37.2`).
pub fn kubernetes_version() -> &'static str {
    pinned("K8S_VERSION")
}

/// The kwok version the harness runs.
pub fn kwok_version() -> &'static str {
    pinned("KWOK_VERSION")
}

/// The directory scripts/setup-k8s.sh builds into (same rules as the script).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SUBNET_K8S_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("SUBNET_K8S_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("subnet-trainer/k8s"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/subnet-trainer/k8s"))
        })
        .unwrap_or_else(|| PathBuf::from(".cache/subnet-trainer/k8s"));
    cache.join(format!("v{}", kubernetes_version())).join("bin")
}

/// Paths of the five programs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub apiserver: PathBuf,
    /// kube-controller-manager.
    pub controller_manager: PathBuf,
    /// kube-scheduler.
    pub scheduler: PathBuf,
    /// kwok.
    pub kwok: PathBuf,
}

fn check(dir: &Path, name: &str, version: &str) -> Result<PathBuf, HarnessError> {
    let path = dir.join(name);
    let stamp = std::fs::read_to_string(dir.join(format!(".{name}.version"))).unwrap_or_default();
    if !path.is_file() || stamp.trim() != format!("v{version}") {
        return Err(HarnessError::MissingBinary {
            path,
            want: format!("v{version}"),
            found: stamp.trim().to_owned(),
        });
    }
    Ok(path)
}

impl Binaries {
    /// Finds the binaries of the pinned versions, or says how to build them.
    pub fn locate() -> Result<Self, HarnessError> {
        let dir = bin_dir();
        let k8s = kubernetes_version();
        Ok(Self {
            etcd: check(&dir, "etcd", k8s)?,
            apiserver: check(&dir, "kube-apiserver", k8s)?,
            controller_manager: check(&dir, "kube-controller-manager", k8s)?,
            scheduler: check(&dir, "kube-scheduler", k8s)?,
            kwok: Self::locate_kwok()?,
        })
    }

    /// Only kwok: all a harness attached to an existing cluster starts.
    pub fn locate_kwok() -> Result<PathBuf, HarnessError> {
        check(&bin_dir(), "kwok", kwok_version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_file_pins_a_kubernetes_minor_k8s_openapi_supports() {
        let v = kubernetes_version();
        let minor: u32 = v
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert!(v.starts_with("1."), "K8S_VERSION={v}");
        // k8s-openapi 0.29 ships v1_33 ..= v1_37.
        assert!((33..=37).contains(&minor), "K8S_VERSION={v}");
        assert!(!kwok_version().is_empty());
    }
}
