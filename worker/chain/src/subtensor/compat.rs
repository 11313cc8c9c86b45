//! Does the node's runtime still encode what this client uses the way the bundled metadata
//! does? subxt validates every static call, storage entry and runtime API against the node's
//! metadata by a structural hash; this compares those hashes once at connect for every item
//! of `metadata/subtensor-stripped.scale` (which holds exactly the items the static API uses),
//! so a runtime upgrade is reported up front with both spec versions, and calls whose
//! encoding did not change keep working while the changed ones fail with
//! [`ChainError::IncompatibleRuntime`].

use serde::Serialize;

use crate::error::ChainError;

/// Spec version of `metadata/finney-spec393.scale` (and of the stripped copy).
pub const BUNDLED_SPEC_VERSION: u32 = 393;

const BUNDLED_METADATA: &[u8] = include_bytes!("../../metadata/subtensor-stripped.scale");

/// The bundled (stripped) metadata the static API was generated from.
pub fn bundled_metadata() -> Result<subxt::Metadata, ChainError> {
    subxt::Metadata::decode_from(BUNDLED_METADATA)
        .map_err(|e| ChainError::Decode(format!("bundled metadata: {e}")))
}

/// Result of comparing the node's metadata with the bundled one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeCompatibility {
    /// Spec version the client was built against.
    pub bundled_spec: u32,
    /// Spec version the node runs.
    pub node_spec: u32,
    /// Items (`Pallet.item`, `Api.method`) whose encoding changed or that are gone.
    pub changed: Vec<String>,
    /// Items compared and found identical.
    pub unchanged: usize,
}

fn differs(bundled: Option<[u8; 32]>, node: Option<[u8; 32]>) -> bool {
    bundled.is_none() || bundled != node
}

impl RuntimeCompatibility {
    /// Compare every bundled call, storage entry, constant and runtime API method with the
    /// node's.
    pub fn compare(node: &subxt::Metadata, node_spec: u32) -> Result<Self, ChainError> {
        let bundled = bundled_metadata()?;
        let mut changed = Vec::new();
        let mut unchanged = 0;
        let mut record = |item: String, is_changed: bool| {
            if is_changed {
                changed.push(item);
            } else {
                unchanged += 1;
            }
        };
        for pallet in bundled.pallets() {
            let name = pallet.name();
            let theirs = node.pallet_by_name(name);
            for call in pallet.call_variants().unwrap_or_default() {
                let node_hash = theirs.as_ref().and_then(|p| p.call_hash(&call.name));
                record(
                    format!("{name}.{}", call.name),
                    differs(pallet.call_hash(&call.name), node_hash),
                );
            }
            for entry in pallet.storage().map(|s| s.entries()).unwrap_or_default() {
                let node_hash = theirs.as_ref().and_then(|p| p.storage_hash(entry.name()));
                record(
                    format!("{name}.{}", entry.name()),
                    differs(pallet.storage_hash(entry.name()), node_hash),
                );
            }
            for constant in pallet.constants() {
                let node_hash = theirs
                    .as_ref()
                    .and_then(|p| p.constant_hash(constant.name()));
                record(
                    format!("{name}.{}", constant.name()),
                    differs(pallet.constant_hash(constant.name()), node_hash),
                );
            }
        }
        for api in bundled.runtime_api_traits() {
            let theirs = node.runtime_api_trait_by_name(api.name());
            for method in api.methods() {
                let node_hash = theirs
                    .as_ref()
                    .and_then(|a| a.method_by_name(method.name()))
                    .map(|m| m.hash());
                record(
                    format!("{}.{}", api.name(), method.name()),
                    differs(Some(method.hash()), node_hash),
                );
            }
        }
        Ok(Self {
            bundled_spec: BUNDLED_SPEC_VERSION,
            node_spec,
            changed,
            unchanged,
        })
    }

    /// True when nothing this client uses changed.
    pub fn is_compatible(&self) -> bool {
        self.changed.is_empty()
    }

    /// `Err(IncompatibleRuntime)` when `pallet.item` changed.
    pub fn ensure(&self, pallet: &str, item: &str) -> Result<(), ChainError> {
        let name = format!("{pallet}.{item}");
        if self.changed.contains(&name) {
            return Err(ChainError::IncompatibleRuntime {
                item: name,
                bundled_spec: self.bundled_spec,
                node_spec: self.node_spec,
            });
        }
        Ok(())
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        if self.is_compatible() {
            format!(
                "node runtime spec {} matches the {} items of the bundled spec {} metadata",
                self.node_spec, self.unchanged, self.bundled_spec
            )
        } else {
            format!(
                "node runtime spec {} changed {} of the items this client uses (bundled metadata \
                 is spec {}): {}; these calls fail until the client is updated, the other {} \
                 keep working",
                self.node_spec,
                self.changed.len(),
                self.bundled_spec,
                self.changed.join(", "),
                self.unchanged
            )
        }
    }
}
