//! Fake GPU nodes run by kwok: no kubelet, but the scheduler sees their capacity and taints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use serde_json::json;

use crate::binaries::kubernetes_version;
use crate::control_plane::KWOK_NODE_ANNOTATION;

/// Label every node of a test namespace carries (value: the namespace).
pub const POOL_LABEL: &str = "kube-harness/pool";
/// Label naming the node group inside the namespace's pool.
pub const NODE_GROUP_LABEL: &str = "kube-harness/node-group";
/// GPU product label (the examples select it).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// The product the nodes claim to have.
pub const GPU_PRODUCT: &str = "NVIDIA-H100-80GB-HBM3";
/// Extended resource name of the GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Taint of the reserved group (no workload tolerates it).
pub const RESERVED_TAINT: &str = "kube-harness/reserved";

/// A group of identical nodes.
#[derive(Clone, Debug)]
pub struct NodeGroup {
    /// Group name (part of the node names).
    pub name: String,
    /// How many nodes.
    pub count: usize,
    /// Allocatable `nvidia.com/gpu` per node.
    pub gpus: u32,
    /// Taints besides `nvidia.com/gpu=present:NoSchedule`.
    pub taints: Vec<Taint>,
}

/// The default pool of a test namespace: two untainted 8-GPU nodes (`gpu`) and one 8-GPU node
/// tainted `kube-harness/reserved=true:NoSchedule` (`reserved`). Every node has the
/// `nvidia.com/gpu=present:NoSchedule` taint GPU clusters commonly carry.
pub fn default_groups() -> Vec<NodeGroup> {
    vec![
        NodeGroup {
            name: "gpu".into(),
            count: 2,
            gpus: 8,
            taints: vec![],
        },
        NodeGroup {
            name: "reserved".into(),
            count: 1,
            gpus: 8,
            taints: vec![Taint {
                key: RESERVED_TAINT.into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }],
        },
    ]
}

/// The Node objects of `group` in the pool of `namespace`, handed to the kwok that manages
/// nodes annotated `kwok.x-k8s.io/node=<kwok_node>`.
pub fn nodes(
    namespace: &str,
    group: &NodeGroup,
    kwok_node: &str,
) -> Result<Vec<Node>, serde_json::Error> {
    (0..group.count)
        .map(|i| {
            let name = format!("{namespace}-{}-{i}", group.name);
            let mut taints = vec![Taint {
                key: GPU_RESOURCE.into(),
                value: Some("present".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }];
            taints.extend(group.taints.iter().cloned());
            let labels: BTreeMap<&str, &str> = [
                ("kubernetes.io/hostname", name.as_str()),
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
                ("type", "kwok"),
                (POOL_LABEL, namespace),
                (NODE_GROUP_LABEL, group.name.as_str()),
                (GPU_PRODUCT_LABEL, GPU_PRODUCT),
            ]
            .into_iter()
            .collect();
            let resources = json!({
                "cpu": "64",
                "memory": "1Ti",
                "pods": "110",
                "ephemeral-storage": "1Ti",
                GPU_RESOURCE: group.gpus.to_string(),
            });
            serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": {KWOK_NODE_ANNOTATION: kwok_node},
                },
                "spec": {"taints": taints},
                "status": {
                    "allocatable": resources,
                    "capacity": resources,
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "kubeletVersion": format!("v{}", kubernetes_version()),
                        "containerRuntimeVersion": "kwok",
                        "kernelVersion": "", "osImage": "", "machineID": "", "systemUUID": "",
                        "bootID": "", "kubeProxyVersion": "",
                    },
                },
            }))
        })
        .collect()
}
