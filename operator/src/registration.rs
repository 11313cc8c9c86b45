//! Reads and writes the registration Jobs of a workload (API calls; the Job itself is built
//! in `registration_job`).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use tracing::info;

use crate::error::Error;
use crate::registration_job::{desired_registration_job, observe_job, registration_job_selector};
use crate::rollout::Registration;
use crate::workload::Workload;

/// The registration state of replicas `0..replicas` (all [`Registration::NotRequired`] when
/// the workload has no coldkey), with the Jobs still to create. Outdated Jobs (their spec
/// changed) are deleted here, so the next pass creates them anew.
pub async fn registration_states<K: Workload>(
    obj: &K,
    client: &Client,
    ns: &str,
    replicas: i32,
) -> Result<(BTreeMap<i32, Registration>, BTreeMap<i32, Job>), Error> {
    let mut states = BTreeMap::new();
    let mut missing = BTreeMap::new();
    if obj.workload().wallet.coldkey_secret.is_none() {
        return Ok((states, missing));
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let uid = obj.meta().uid.as_deref();
    let existing: BTreeMap<String, Job> = jobs
        .list(&ListParams::default().labels(&format!(
            "{},{}={}",
            registration_job_selector(),
            K::OWNER_LABEL,
            obj.name_any()
        )))
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| Some(o.uid.as_str()) == uid && o.controller == Some(true))
        })
        .map(|j| (j.name_any(), j))
        .collect();
    for index in 0..replicas.max(0) {
        let Some(desired) = desired_registration_job(obj, index)? else {
            continue;
        };
        let state = match existing.get(&desired.name_any()) {
            None => {
                missing.insert(index, desired);
                Registration::Pending
            }
            Some(job) if job.metadata.deletion_timestamp.is_some() => Registration::Pending,
            Some(job) => {
                let (state, outdated) = observe_job(job, &desired);
                if outdated {
                    info!(job = %job.name_any(), "registration Job outdated; replacing it");
                    let params = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Background),
                        ..DeleteParams::default()
                    };
                    match jobs.delete(&job.name_any(), &params).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(err) => return Err(err.into()),
                    }
                }
                state
            }
        };
        states.insert(index, state);
    }
    Ok((states, missing))
}

/// Creates the registration Jobs of the replicas in `indices` that have none yet.
pub async fn create_registration_jobs(
    client: &Client,
    ns: &str,
    indices: &[i32],
    missing: &BTreeMap<i32, Job>,
) -> Result<(), Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    for index in indices {
        let Some(job) = missing.get(index) else {
            continue;
        };
        info!(job = %job.name_any(), replica = index, "creating the registration Job");
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => {}
            // Created by an earlier pass, or the outdated one is still being deleted.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}
