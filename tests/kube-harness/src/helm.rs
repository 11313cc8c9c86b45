//! Renders a Helm chart with Helm's Go engine through helm-python-sdk (tests/helm/render_chart.py
//! in the project's .venv), the way `helm install` would before creating the objects.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::DynamicObject;

use crate::apply::parse_documents;
use crate::error::HarnessError;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart's objects (CRDs first) for `values`, release `release` in `namespace`.
pub fn render_chart(
    chart: &Path,
    values: &serde_json::Value,
    namespace: &str,
    release: &str,
) -> Result<Vec<DynamicObject>, HarnessError> {
    let root = project_root();
    let python = root.join(".venv/bin/python");
    let script = root.join("tests/helm/render_chart.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(chart)
        .arg("--values-json")
        .arg(values.to_string())
        .arg("--namespace")
        .arg(namespace)
        .arg("--release")
        .arg(release)
        .output()
        .map_err(HarnessError::io(format!(
            "running {} (create the venv with scripts/setup.sh)",
            python.display()
        )))?;
    if !output.status.success() {
        return Err(HarnessError::Manifest {
            file: chart.to_owned(),
            reason: format!(
                "render_chart.py exited with {} (3 = helm-python-sdk missing: run scripts/setup.sh): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    parse_documents(&String::from_utf8_lossy(&output.stdout)).map_err(|e| HarnessError::Manifest {
        file: chart.to_owned(),
        reason: e.to_string(),
    })
}
