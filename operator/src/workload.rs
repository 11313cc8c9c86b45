//! One abstraction over `TrainingRun` and `ValidatorSet`: everything the reconciler needs.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{TrainingRun, ValidatorSet, WorkloadSpec, WorkloadStatus};

/// What a workload's pods do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// SparseLoCo miner (`worker miner`).
    Miner,
    /// Gauntlet validator (`worker validator`).
    Validator,
}

impl Role {
    /// Sub-command of the worker binary and infix of pod names.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Miner => "miner",
            Role::Validator => "validator",
        }
    }
}

/// A namespaced custom resource reconciled into one pod per replica.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Role of the pods.
    const ROLE: Role;
    /// Label carrying the owner's name on its pods, e.g. `subnet.templar.dev/trainingrun`.
    const OWNER_LABEL: &'static str;
    /// The spec (every field is shared by both kinds).
    fn workload(&self) -> &WorkloadSpec;
    /// Current status.
    fn workload_status(&self) -> Option<&WorkloadStatus>;
    /// Whether its miners run overlapped (`worker miner --overlap`; never for validators).
    fn overlap(&self) -> bool {
        false
    }
}

impl Workload for TrainingRun {
    const ROLE: Role = Role::Miner;
    const OWNER_LABEL: &'static str = "subnet.templar.dev/trainingrun";

    fn workload(&self) -> &WorkloadSpec {
        &self.spec.workload
    }

    fn workload_status(&self) -> Option<&WorkloadStatus> {
        self.status.as_ref()
    }

    fn overlap(&self) -> bool {
        self.spec.overlap
    }
}

impl Workload for ValidatorSet {
    const ROLE: Role = Role::Validator;
    const OWNER_LABEL: &'static str = "subnet.templar.dev/validatorset";

    fn workload(&self) -> &WorkloadSpec {
        &self.spec.workload
    }

    fn workload_status(&self) -> Option<&WorkloadStatus> {
        self.status.as_ref()
    }
}
