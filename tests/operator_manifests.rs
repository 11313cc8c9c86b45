//! Generated CRDs, the Helm chart (rendered and linted by Helm's Go engine through
//! helm-python-sdk) and the plain manifests, each object parsed into its k8s-openapi type.

mod operator;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use subnet_operator::crd::{CRD_DIRS, TrainingRun, ValidatorSet, crd_files, crds};
use subnet_operator::pod_builder::rendered_files;
use subnet_operator::validation;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every key and value of `original` is present in `roundtrip` (typed parsing dropped nothing,
/// so no field is misspelled or misplaced).
fn assert_subset(original: &Value, roundtrip: &Value, path: &str) {
    match (original, roundtrip) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let other = b.get(k).unwrap_or_else(|| {
                    panic!("{path}.{k} was dropped by typed parsing (unknown field?)")
                });
                assert_subset(v, other, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: array length changed");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_subset(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{path}"),
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

fn typed<T: DeserializeOwned + Serialize>(doc: &Value, source: &str) -> T {
    let obj: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{source}: {e}"));
    assert_subset(doc, &serde_json::to_value(&obj).unwrap(), source);
    obj
}

/// Objects of one YAML stream, each parsed into its typed form.
#[derive(Default)]
struct Objects {
    crds: Vec<CustomResourceDefinition>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    namespaces: Vec<Namespace>,
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
    training_runs: Vec<TrainingRun>,
    validator_sets: Vec<ValidatorSet>,
}

impl Objects {
    fn parse(yaml: &str, source: &str) -> Self {
        let mut out = Objects::default();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value =
                serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{source}: {e}"));
            if value.is_null() {
                continue;
            }
            let json = serde_json::to_value(&value).unwrap();
            let kind = json["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{source}: document without kind"));
            let src = format!("{source} ({kind} {})", json["metadata"]["name"]);
            match kind {
                "CustomResourceDefinition" => out.crds.push(typed(&json, &src)),
                "Deployment" => out.deployments.push(typed(&json, &src)),
                "Service" => out.services.push(typed(&json, &src)),
                "ServiceAccount" => out.service_accounts.push(typed(&json, &src)),
                "ClusterRole" => out.cluster_roles.push(typed(&json, &src)),
                "ClusterRoleBinding" => out.cluster_role_bindings.push(typed(&json, &src)),
                "Role" => out.roles.push(typed(&json, &src)),
                "RoleBinding" => out.role_bindings.push(typed(&json, &src)),
                "Namespace" => out.namespaces.push(typed(&json, &src)),
                "Secret" => out.secrets.push(typed(&json, &src)),
                "ConfigMap" => out.config_maps.push(typed(&json, &src)),
                "TrainingRun" => out.training_runs.push(typed(&json, &src)),
                "ValidatorSet" => out.validator_sets.push(typed(&json, &src)),
                other => panic!("{source}: unexpected kind {other}"),
            }
        }
        out
    }
}

use serde::Deserialize as _;

#[test]
fn committed_crds_match_the_rust_types() {
    let files = crd_files().unwrap();
    assert_eq!(files.len(), 2);
    for dir in CRD_DIRS {
        for file in &files {
            let path = repo_root().join(dir).join(&file.file_name);
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                committed == file.yaml,
                "{} drifted from the Rust types; run `cargo run -p subnet-operator --bin crdgen`",
                path.display()
            );
        }
    }
}

#[test]
fn crds_declare_list_maps_cel_rules_scale_and_columns() {
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap();
        let version = &crd.spec.versions[0];
        assert_eq!(crd.spec.group, "subnet.templar.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(version.name, "v1alpha1");
        let sub = version.subresources.as_ref().unwrap();
        assert!(sub.status.is_some(), "{name}: status subresource");
        let scale = sub.scale.as_ref().unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Netuid", "Replicas", "Ready", "Phase", "Age"]);

        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let status = &schema["properties"]["status"]["properties"];
        for (list, key) in [("conditions", "type"), ("replicaStatuses", "index")] {
            assert_eq!(
                status[list]["x-kubernetes-list-type"], "map",
                "{name}.{list}"
            );
            assert_eq!(
                status[list]["x-kubernetes-list-map-keys"],
                serde_json::json!([key]),
                "{name}.{list}"
            );
            let required = status[list]["items"]["required"].as_array().unwrap();
            assert!(
                required.contains(&Value::from(key)),
                "{name}: list-map key {key} must be required"
            );
        }
        let spec = &schema["properties"]["spec"];
        let rules: Vec<&str> = spec["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert!(rules.contains(&"self.replicas >= 0"), "{name}: {rules:?}");
        assert!(
            rules.contains(&"self.gpusPerReplica >= 0"),
            "{name}: {rules:?}"
        );
        assert!(
            rules
                .iter()
                .any(|r| r.contains("hotkeySecrets) >= self.replicas")),
            "{name}: {rules:?}"
        );
        let storage_rules = spec["properties"]["storage"]["x-kubernetes-validations"].to_string();
        assert!(
            storage_rules.contains("self.bucket.size() > 0"),
            "{name}: {storage_rules}"
        );
    }
}

fn python() -> Option<PathBuf> {
    let python = repo_root().join(".venv/bin/python3");
    python.exists().then_some(python)
}

enum Render {
    Ok(String),
    Failed(String),
    Skip(String),
}

fn render_chart(values: &Value) -> Render {
    let Some(python) = python() else {
        return Render::Skip(format!(
            "{} is missing (run scripts/setup.sh)",
            repo_root().join(".venv").display()
        ));
    };
    let out = Command::new(python)
        .arg(repo_root().join("tests/helm/render_chart.py"))
        .arg(repo_root().join("charts/subnet-operator"))
        .arg("--values-json")
        .arg(values.to_string())
        .output()
        .expect("running render_chart.py");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Render::Ok(String::from_utf8(out.stdout).unwrap()),
        Some(3) => Render::Skip(stderr),
        _ => Render::Failed(stderr),
    }
}

macro_rules! render_or_skip {
    ($values:expr) => {
        match render_chart(&$values) {
            Render::Ok(yaml) => yaml,
            Render::Failed(err) => panic!("helm render/lint failed for {}:\n{err}", $values),
            // `make test` installs helm-python-sdk (scripts/setup.sh): its absence is a failure.
            Render::Skip(why) => {
                panic!(
                    "helm chart test needs helm-python-sdk in .venv (run scripts/setup.sh): {why}"
                )
            }
        }
    };
}

fn rules_are_least_privilege(rules: &[PolicyRule]) {
    for rule in rules {
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        assert!(
            !rule.verbs.iter().any(|v| v == "*"),
            "wildcard verb in {rule:?}"
        );
        assert!(
            !resources.iter().any(|r| r == "*" || r == "secrets"),
            "{rule:?}"
        );
        assert!(!groups.iter().any(|g| g == "*"), "{rule:?}");
        assert!(
            !rule
                .verbs
                .iter()
                .any(|v| v == "escalate" || v == "bind" || v == "impersonate")
        );
    }
}

fn verbs_for(rules: &[PolicyRule], group: &str, resource: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| {
            r.api_groups
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|g| g == group)
        })
        .filter(|r| {
            r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == resource)
        })
        .flat_map(|r| r.verbs.clone())
        .collect()
}

fn check_operator_deployment(d: &Deployment, service_account: &str) {
    let pod = d.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(service_account));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone()
    };
    assert_eq!(probe_path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(probe_path(&c.readiness_probe).as_deref(), Some("/readyz"));
    let env: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"),
        "{env:?}"
    );
    assert!(
        c.ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("http-metrics"))
    );
}

fn service_selects_deployment(svc: &Service, d: &Deployment) {
    let selector = svc.spec.as_ref().unwrap().selector.clone().unwrap();
    let labels = d
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (k, v) in &selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "service selector {k} does not match the pods"
        );
    }
}

#[test]
fn helm_chart_renders_lints_and_parses_into_typed_objects() {
    let yaml = render_or_skip!(serde_json::json!({}));
    let objects = Objects::parse(&yaml, "helm template (defaults)");

    // CRDs in the chart are the generated ones.
    let generated: BTreeMap<String, CustomResourceDefinition> = crds()
        .into_iter()
        .map(|c| (c.metadata.name.clone().unwrap(), c))
        .collect();
    assert_eq!(objects.crds.len(), 2);
    for crd in &objects.crds {
        assert_eq!(
            Some(crd),
            generated.get(crd.metadata.name.as_ref().unwrap())
        );
    }

    assert_eq!(objects.service_accounts.len(), 1);
    let sa = objects.service_accounts[0].metadata.name.clone().unwrap();
    assert_eq!(objects.deployments.len(), 1);
    let deployment = &objects.deployments[0];
    assert_eq!(deployment.spec.replicas, Some(1));
    check_operator_deployment(deployment, &sa);
    assert_eq!(objects.services.len(), 1);
    service_selects_deployment(&objects.services[0], deployment);

    assert_eq!(objects.cluster_roles.len(), 1);
    let rules = objects.cluster_roles[0].rules.clone().unwrap();
    rules_are_least_privilege(&rules);
    // patch: held so the operator may grant it to the workers' self-report Role.
    assert_eq!(
        verbs_for(&rules, "", "pods"),
        ["get", "list", "watch", "create", "delete", "patch"]
    );
    assert_eq!(
        verbs_for(&rules, "batch", "jobs"),
        ["get", "list", "watch", "create", "delete"]
    );
    for (group, resource) in [
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ] {
        assert_eq!(
            verbs_for(&rules, group, resource),
            ["get", "create", "update"],
            "{resource}"
        );
    }
    assert_eq!(
        verbs_for(&rules, "", "configmaps"),
        ["get", "list", "watch", "create", "update"]
    );
    assert_eq!(
        verbs_for(&rules, "subnet.templar.dev", "trainingruns/status"),
        ["get", "patch"]
    );
    assert_eq!(
        verbs_for(&rules, "events.k8s.io", "events"),
        ["create", "patch"]
    );
    assert_eq!(objects.cluster_role_bindings.len(), 1);
    let binding = &objects.cluster_role_bindings[0];
    assert_eq!(binding.subjects.as_ref().unwrap()[0].name, sa);
    assert!(
        objects.roles.is_empty(),
        "no lease Role without leader election"
    );
}

#[test]
fn helm_chart_supports_leader_election_and_one_namespace() {
    let values = serde_json::json!({
        "replicaCount": 2,
        "leaderElection": {"enabled": true},
        "watchNamespace": "miners",
        "metrics": {"port": 9090, "service": {"enabled": true}},
    });
    let yaml = render_or_skip!(values);
    let objects = Objects::parse(&yaml, "helm template (HA)");
    let deployment = &objects.deployments[0];
    assert_eq!(deployment.spec.replicas, Some(2));
    let container = &deployment.spec.template.spec.as_ref().unwrap().containers[0];
    let args = container.args.clone().unwrap();
    assert!(args.contains(&"--leader-election".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--metrics-addr=0.0.0.0:9090".to_owned()),
        "{args:?}"
    );
    let env = container.env.clone().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "WATCH_NAMESPACE" && e.value.as_deref() == Some("miners"))
    );

    assert!(
        objects.cluster_role_bindings.is_empty(),
        "namespaced install binds with a RoleBinding"
    );
    let watch_binding = objects
        .role_bindings
        .iter()
        .find(|b| b.metadata.namespace.as_deref() == Some("miners"))
        .unwrap();
    assert_eq!(watch_binding.role_ref.kind, "ClusterRole");
    assert_eq!(objects.roles.len(), 1);
    let lease_rules = objects.roles[0].rules.clone().unwrap();
    rules_are_least_privilege(&lease_rules);
    assert_eq!(
        verbs_for(&lease_rules, "coordination.k8s.io", "leases"),
        ["get", "create", "patch"]
    );
    assert_eq!(
        objects.roles[0].metadata.namespace.as_deref(),
        Some("subnet-system")
    );
}

#[test]
fn helm_chart_rejects_bad_values() {
    assert!(
        python().is_some(),
        "helm chart test needs .venv (run scripts/setup.sh)"
    );
    for (values, expected) in [
        (serde_json::json!({"replicaCount": "two"}), "replicaCount"),
        (
            serde_json::json!({"replicaCount": 3}),
            "requires leaderElection.enabled",
        ),
        (serde_json::json!({"logFormat": "xml"}), "logFormat"),
        (serde_json::json!({"unknownKey": 1}), "unknownKey"),
    ] {
        match render_chart(&values) {
            Render::Failed(err) => assert!(err.contains(expected), "{values}: {err}"),
            Render::Ok(_) => panic!("{values} was accepted"),
            Render::Skip(why) => panic!("helm-python-sdk missing (run scripts/setup.sh): {why}"),
        }
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn plain_manifests_parse_and_match_the_chart() {
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str(&read("manifests/kustomization.yaml")).unwrap();
    assert_eq!(kustomization["kind"].as_str(), Some("Kustomization"));
    let namespace = kustomization["namespace"].as_str().unwrap().to_owned();
    let resources: Vec<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let mut all = Objects::default();
    for rel in &resources {
        let parsed = Objects::parse(&read(&format!("manifests/{rel}")), rel);
        all.crds.extend(parsed.crds);
        all.deployments.extend(parsed.deployments);
        all.services.extend(parsed.services);
        all.service_accounts.extend(parsed.service_accounts);
        all.cluster_roles.extend(parsed.cluster_roles);
        all.cluster_role_bindings
            .extend(parsed.cluster_role_bindings);
        all.roles.extend(parsed.roles);
        all.role_bindings.extend(parsed.role_bindings);
        all.namespaces.extend(parsed.namespaces);
    }
    // Every file of the directory is part of the kustomization.
    for entry in std::fs::read_dir(repo_root().join("manifests")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                resources.contains(&name),
                "manifests/{name} is not listed in kustomization.yaml"
            );
        }
    }
    assert_eq!(all.crds.len(), 2);
    assert_eq!(
        all.namespaces[0].metadata.name.as_deref(),
        Some(namespace.as_str())
    );
    let sa = all.service_accounts[0].metadata.name.clone().unwrap();
    let deployment = &all.deployments[0];
    check_operator_deployment(deployment, &sa);
    service_selects_deployment(&all.services[0], deployment);
    let args = deployment.spec.template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--leader-election".to_owned()),
        "2 replicas need leader election: {args:?}"
    );
    assert_eq!(all.roles.len(), 1, "lease Role");

    // Same permissions as the chart.
    let rules = all.cluster_roles[0].rules.clone().unwrap();
    rules_are_least_privilege(&rules);
    let chart_rbac = read("charts/subnet-operator/templates/rbac.yaml");
    let chart_rules_yaml: String = chart_rbac
        .lines()
        .skip_while(|l| !l.starts_with("rules:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let chart_rules: Vec<PolicyRule> = serde_yaml::from_str(&chart_rules_yaml).unwrap();
    assert_eq!(
        rules, chart_rules,
        "manifests/rbac.yaml and the chart's ClusterRole differ"
    );
}

/// Every object of every file in manifests/examples.
fn examples() -> Objects {
    let mut all = Objects::default();
    let dir = repo_root().join("manifests/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = Objects::parse(&std::fs::read_to_string(&path).unwrap(), &name);
        all.secrets.extend(parsed.secrets);
        all.config_maps.extend(parsed.config_maps);
        all.training_runs.extend(parsed.training_runs);
        all.validator_sets.extend(parsed.validator_sets);
    }
    all
}

/// The run manifest a workload's `configMapRef` names, verified by run_manifest itself.
fn example_manifest(
    objects: &Objects,
    source: &subnet_operator::crd::ManifestSource,
) -> run_manifest::VerifiedManifest {
    let reference = source
        .config_map_ref
        .as_ref()
        .expect("examples use a ConfigMap");
    let cm = objects
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(reference.name.as_str()))
        .unwrap_or_else(|| panic!("ConfigMap {} missing from the examples", reference.name));
    let text = &cm.data.as_ref().unwrap()[&reference.key];
    run_manifest::parse(text, "example", None).unwrap()
}

#[test]
fn example_resources_are_accepted_and_their_pods_carry_the_manifest() {
    let objects = examples();
    assert_eq!(
        (objects.training_runs.len(), objects.validator_sets.len()),
        (1, 1)
    );
    let run = &objects.training_runs[0];
    let set = &objects.validator_sets[0];
    let names: Vec<String> = objects
        .secrets
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    let mut hashes = Vec::new();
    let mut check = |spec: &subnet_operator::crd::WorkloadSpec,
                     render: &dyn Fn(i32) -> subnet_operator::pod_builder::RenderedPod,
                     role: &str| {
        let expected = example_manifest(&objects, &spec.manifest);
        for i in 0..spec.replicas {
            let pod = render(i);
            assert_eq!(pod.command, ["worker"]);
            assert_eq!(pod.args[0], role);
            assert_eq!(pod.env["RUN_MANIFEST"], "/etc/subnet/run-manifest.json");
            assert_eq!(pod.env["RUN_MANIFEST_SHA256"], expected.hash().to_hex());
            let file = &pod.files["/etc/subnet/run-manifest.json"];
            assert_eq!(file, expected.canonical());
            let reloaded = run_manifest::parse(file, "mounted", Some(&expected.hash())).unwrap();
            assert_eq!(reloaded.manifest(), expected.manifest());
            assert!(
                pod.env["STORAGE_SECRET_ACCESS_KEY"].starts_with("<secret "),
                "secrets stay references"
            );
            let secret = subnet_operator::naming::hotkey_secret(&spec.wallet, i).unwrap();
            assert!(
                names.contains(&secret),
                "{secret} missing from secrets.yaml"
            );
        }
        assert!(names.contains(&spec.storage.credentials_secret.name));
        hashes.push(expected.hash());
    };
    validation::validate(run).unwrap_or_else(|e| panic!("{}", validation::describe(&e)));
    validation::validate(set).unwrap_or_else(|e| panic!("{}", validation::describe(&e)));
    check(
        &run.spec.workload,
        &|i| rendered_files(run, i, &objects.config_maps).unwrap(),
        "miner",
    );
    check(
        &set.spec.workload,
        &|i| rendered_files(set, i, &objects.config_maps).unwrap(),
        "validator",
    );
    assert_eq!(
        hashes[0], hashes[1],
        "miners and validators share one manifest"
    );
    let preset = example_manifest(&objects, &run.spec.workload.manifest);
    assert!(
        run_manifest::PRESET_NAMES
            .iter()
            .any(|p| { run_manifest::LlamaConfig::preset(p).as_ref() == Some(preset.model()) })
    );
}

#[test]
fn rendered_files_report_what_the_operator_rejects() {
    let objects = examples();
    let mut run = objects.training_runs[0].clone();
    run.spec.workload.chain_endpoint = "https://chain.example".into();
    let err = rendered_files(&run, 0, &objects.config_maps).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("InvalidSpec: spec.chainEndpoint: unknown network"),
        "{err}"
    );
    let err = rendered_files(&objects.training_runs[0], 0, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ManifestNotFound: spec.manifest.configMapRef: ConfigMap subnet/example-run not found"
    );
}

#[test]
fn crd_docs_list_exactly_the_manifest_presets() {
    let yaml = read("crds/trainingruns.subnet.templar.dev.yaml");
    let listed = run_manifest::PRESET_NAMES
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>();
    let (last, rest) = listed.split_last().unwrap();
    let sentence = format!("preset {} or {last}", rest.join(", "));
    assert!(yaml.contains(&sentence), "CRD docs lack {sentence:?}");
    let readme = read("operator/README.md");
    assert!(readme.contains(&sentence), "README lacks {sentence:?}");
    assert!(!readme.contains("preset: llama-1b") && !yaml.contains("llama-1b"));
}

/// Messages of the CRD's CEL rules that reject `object` (evaluated client-side by kube-cel,
/// schema defaults applied first like the apiserver does).
fn cel_errors(crd: &CustomResourceDefinition, object: &Value) -> Vec<String> {
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    match kube::core::cel::Validator::new().validate(&schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn yaml_json(rel: &str) -> Value {
    let value: serde_yaml::Value = serde_yaml::from_str(&read(rel)).unwrap();
    serde_json::to_value(value).unwrap()
}

#[test]
fn cel_rules_accept_the_examples_and_reject_broken_specs() {
    use kube::CustomResourceExt;
    let run_crd = TrainingRun::crd();
    let set_crd = ValidatorSet::crd();
    let run = yaml_json("manifests/examples/trainingrun.yaml");
    let set = yaml_json("manifests/examples/validatorset.yaml");
    assert_eq!(cel_errors(&run_crd, &run), Vec::<String>::new());
    assert_eq!(cel_errors(&set_crd, &set), Vec::<String>::new());

    // An inline manifest is an opaque object to the API server (validated by the operator).
    let mut inline = run.clone();
    inline["spec"]["manifest"] = serde_json::json!({
        "inline": serde_json::to_value(run_manifest::RunManifest::reference("r", "tiny")).unwrap(),
        "sha256": format!("sha256:{}", "a".repeat(64)),
    });
    assert_eq!(cel_errors(&run_crd, &inline), Vec::<String>::new());

    type Edit = Box<dyn Fn(&mut Value)>;
    let broken: Vec<(&str, Edit, &str)> = vec![
        (
            "negative replicas",
            Box::new(|o| o["spec"]["replicas"] = serde_json::json!(-1)),
            "replicas must be >= 0",
        ),
        (
            "negative gpus",
            Box::new(|o| o["spec"]["gpusPerReplica"] = serde_json::json!(-2)),
            "gpusPerReplica must be >= 0",
        ),
        (
            "empty bucket",
            Box::new(|o| o["spec"]["storage"]["bucket"] = serde_json::json!("")),
            "storage.bucket must not be empty",
        ),
        (
            "empty image",
            Box::new(|o| o["spec"]["image"] = serde_json::json!("")),
            "image must not be empty",
        ),
        (
            "hotkey list shorter than replicas",
            Box::new(|o| {
                o["spec"]["wallet"] = serde_json::json!({"hotkeySecrets": ["only-one"]});
            }),
            "wallet.hotkeySecrets must list at least one Secret per replica",
        ),
        (
            "both hotkey sources",
            Box::new(|o| o["spec"]["wallet"]["hotkeySecrets"] = serde_json::json!(["a", "b"])),
            "set exactly one of wallet.hotkeySecrets or wallet.hotkeySecretTemplate",
        ),
        (
            "template without placeholder",
            Box::new(|o| {
                o["spec"]["wallet"]["hotkeySecretTemplate"] = serde_json::json!("miner-hotkey")
            }),
            "wallet.hotkeySecretTemplate must contain the {index} placeholder",
        ),
        (
            "no manifest source",
            Box::new(|o| o["spec"]["manifest"] = serde_json::json!({})),
            "set exactly one of manifest.configMapRef or manifest.inline",
        ),
        (
            "both manifest sources",
            Box::new(|o| o["spec"]["manifest"]["inline"] = serde_json::json!({"runId": "x"})),
            "set exactly one of manifest.configMapRef or manifest.inline",
        ),
        (
            "malformed pin",
            Box::new(|o| o["spec"]["manifest"]["sha256"] = serde_json::json!("abc")),
            "manifest.sha256 must be 64 hex digits, optionally prefixed with sha256:",
        ),
        (
            "two checkpoint sources",
            Box::new(|o| o["spec"]["checkpoint"]["existingClaim"] = serde_json::json!("shared")),
            "checkpoint.existingClaim and checkpoint.claimTemplate are mutually exclusive",
        ),
    ];
    for (what, edit, expected) in &broken {
        let mut obj = run.clone();
        edit(&mut obj);
        let errors = cel_errors(&run_crd, &obj);
        assert!(
            errors.iter().any(|e| e == expected),
            "{what}: expected {expected:?}, got {errors:?}"
        );
    }

    let mut bad_set = set.clone();
    bad_set["spec"]["replicas"] = serde_json::json!(2);
    bad_set["spec"]["manifest"] = serde_json::json!({});
    let errors = cel_errors(&set_crd, &bad_set);
    for expected in [
        "wallet.hotkeySecrets must list at least one Secret per replica",
        "set exactly one of manifest.configMapRef or manifest.inline",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "expected {expected:?}, got {errors:?}"
        );
    }
}
