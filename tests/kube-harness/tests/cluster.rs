//! The harness itself against its real control plane: GPU nodes, scheduling, kwok stages,
//! service-account tokens under RBAC, garbage collection.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_harness::{GPU_RESOURCE, NODE_GROUP_LABEL, POOL_LABEL, TestNamespace, poll};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn namespace(prefix: &str) -> TestNamespace {
    let cluster = kube_harness::cluster()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cluster
        .namespace(prefix)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn gpu_pod(ns: &TestNamespace, name: &str, gpus: u32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns.name},
        "spec": {
            "nodeSelector": ns.node_selector(),
            "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "worker:test",
                "resources": {"limits": {GPU_RESOURCE: gpus.to_string()}},
            }],
        },
    }))
    .unwrap()
}

async fn wait_pod(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    poll(what, WAIT, || {
        let pods = pods.clone();
        let check = &check;
        async move { pods.get_opt(name).await.ok().flatten().filter(|p| check(p)) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

#[tokio::test]
async fn gpu_nodes_schedule_run_and_fail_pods() {
    let ns = namespace("harness-nodes").await;
    let admin = ns.admin().await.unwrap();

    let nodes: Api<Node> = Api::all(admin.clone());
    let mine = nodes
        .list(&ListParams::default().labels(&format!("{POOL_LABEL}={}", ns.name)))
        .await
        .unwrap();
    assert_eq!(mine.items.len(), 3);
    for node in &mine.items {
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .unwrap();
        assert_eq!(allocatable[GPU_RESOURCE].0, "8", "{}", node.name_any());
    }

    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    pods.create(&PostParams::default(), &gpu_pod(&ns, "eight", 8))
        .await
        .unwrap();
    let running = wait_pod(&admin, &ns.name, "eight", "pod to run", |p| {
        phase(p) == "Running"
    })
    .await;
    let node = running
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap();
    let node = nodes.get(&node).await.unwrap();
    // The reserved group is tainted: only the `gpu` group takes untolerating pods.
    assert_eq!(node.labels()[NODE_GROUP_LABEL], "gpu");

    // kwok's exit stage: the annotation terminates the container with that code.
    pods.patch(
        "eight",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"kube-harness/exit-code": "3"}}})),
    )
    .await
    .unwrap();
    let failed = wait_pod(&admin, &ns.name, "eight", "pod to fail", |p| {
        phase(p) == "Failed"
    })
    .await;
    let terminated = failed
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(terminated.exit_code, 3);

    // Nine GPUs fit on no node.
    pods.create(&PostParams::default(), &gpu_pod(&ns, "nine", 9))
        .await
        .unwrap();
    let pending = wait_pod(&admin, &ns.name, "nine", "pod to be unschedulable", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "PodScheduled" && c.status == "False")
            })
    })
    .await;
    let message = pending.status.unwrap().conditions.unwrap()[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}");

    // Deleting a pod completes without a kubelet (kwok's delete stage).
    pods.delete("eight", &DeleteParams::default())
        .await
        .unwrap();
    poll("pod to be gone", WAIT, || {
        let pods = pods.clone();
        async move {
            pods.get_opt("eight")
                .await
                .ok()
                .and_then(|p| p.is_none().then_some(()))
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn service_account_tokens_are_subject_to_rbac_and_owners_are_collected() {
    let ns = namespace("harness-rbac").await;
    let sa = ns.service_account_client("default").await.unwrap();
    let denied = Api::<ConfigMap>::namespaced(sa, &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(denied, kube::Error::Api(ref s) if s.code == 403),
        "{denied:?}"
    );

    // The controller-manager's garbage collector removes dependents of a deleted owner.
    let admin = ns.admin().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin, &ns.name);
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({"metadata": {
        "name": "dependent",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap()}],
    }}))
    .unwrap();
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    poll("the dependent to be garbage-collected", WAIT, || {
        let cms = cms.clone();
        async move {
            cms.get_opt("dependent")
                .await
                .ok()
                .and_then(|c| c.is_none().then_some(()))
        }
    })
    .await
    .unwrap();
}

/// `KUBE_HARNESS_KUBECONFIG`'s path, exercised on this binary's own control plane through its
/// admin kubeconfig: the attached harness starts a kwok of its own, which runs the pods on the
/// nodes it creates while the first harness's kwok leaves those nodes alone.
#[tokio::test]
async fn a_harness_attached_through_a_kubeconfig_runs_pods_on_its_own_nodes() {
    let local = kube_harness::cluster()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = local.endpoint().kubeconfig.clone();
    let (attached, _kwok) = kube_harness::attach(&kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("attaching through {}: {e}", kubeconfig.display()));
    assert_ne!(attached.endpoint().kwok_node, local.endpoint().kwok_node);
    assert_eq!(attached.endpoint().server, local.endpoint().server);

    let ns = attached
        .namespace("harness-attached")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = ns.admin().await.unwrap();
    let nodes: Api<Node> = Api::all(admin.clone());
    for name in ns.nodes() {
        let node = nodes.get(name).await.unwrap();
        assert_eq!(
            node.annotations()["kwok.x-k8s.io/node"],
            attached.endpoint().kwok_node
        );
    }
    Api::<Pod>::namespaced(admin.clone(), &ns.name)
        .create(&PostParams::default(), &gpu_pod(&ns, "attached", 8))
        .await
        .unwrap();
    let running = wait_pod(&admin, &ns.name, "attached", "pod to run", |p| {
        phase(p) == "Running"
    })
    .await;
    let node = running.spec.and_then(|s| s.node_name).unwrap();
    assert!(ns.nodes().contains(&node), "{node}");

    // Service-account tokens work the same way through the attached kubeconfig.
    let sa = ns.service_account_client("default").await.unwrap();
    match Api::<Node>::all(sa).list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the default ServiceAccount may not list nodes: {other:?}"),
    }
}

/// A kubeconfig that does not exist is a clear error naming it, not a hang.
#[tokio::test]
async fn attaching_through_a_missing_kubeconfig_names_the_file() {
    let missing = std::path::Path::new("/nonexistent/kube-harness.kubeconfig");
    let err = match kube_harness::attach(missing).await {
        Ok(_) => panic!("attached through a missing file"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("/nonexistent/kube-harness.kubeconfig"),
        "{err}"
    );
}
