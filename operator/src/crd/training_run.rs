//! `TrainingRun`: a set of SparseLoCo miners on one subnet.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::WorkloadStatus;
use super::workload_spec::WorkloadSpec;

/// Desired state of a group of miners training one model on one subnet.
// Every printcolumn repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "subnet.templar.dev",
    version = "v1alpha1",
    kind = "TrainingRun",
    namespaced,
    status = "WorkloadStatus",
    derive = "PartialEq",
    shortname = "tr",
    category = "subnet",
    doc = "A group of SparseLoCo miners (one GPU pod per hotkey) on a Bittensor subnet",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Netuid", type_ = "integer", json_path = ".spec.netuid"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct TrainingRunSpec {
    /// Every field of the spec (shared with the other kind).
    #[serde(flatten)]
    pub workload: WorkloadSpec,
    /// Miners train window w+1 while window w's aggregate is gathered and apply w's outer
    /// step one window late (`worker miner --overlap`): the window's evaluation and gather
    /// time back, at a cost in loss (see the README's "Overlapped miners"). Off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overlap: bool,
}
