//! Validated parameter list: specs, their chunk geometry and a name lookup.

use std::collections::HashMap;

use crate::config::{MAX_NAME_LEN, ParamSpec, SparseLocoConfig};
use crate::error::SparseLocoError;
use crate::geometry::ChunkGeometry;

/// The parameters a payload must match, with their geometry.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    specs: Vec<ParamSpec>,
    geometries: Vec<ChunkGeometry>,
    by_name: HashMap<String, usize>,
}

impl Layout {
    /// Validates names (non-empty, unique, at most [`MAX_NAME_LEN`] bytes) and shapes.
    pub(crate) fn new(
        specs: &[ParamSpec],
        config: &SparseLocoConfig,
    ) -> Result<Self, SparseLocoError> {
        config.validate()?;
        let mut by_name = HashMap::with_capacity(specs.len());
        let mut geometries = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if spec.name.is_empty() || spec.name.len() > MAX_NAME_LEN {
                return Err(SparseLocoError::InvalidSpecs(format!(
                    "parameter {i}: name must have 1..={MAX_NAME_LEN} bytes"
                )));
            }
            if by_name.insert(spec.name.clone(), i).is_some() {
                return Err(SparseLocoError::InvalidSpecs(format!(
                    "duplicate name {}",
                    spec.name
                )));
            }
            geometries.push(ChunkGeometry::new(spec, config)?);
        }
        if u32::try_from(specs.len()).is_err() {
            return Err(SparseLocoError::InvalidSpecs("too many parameters".into()));
        }
        Ok(Self {
            specs: specs.to_vec(),
            geometries,
            by_name,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.specs.len()
    }

    pub(crate) fn spec(&self, i: usize) -> Option<&ParamSpec> {
        self.specs.get(i)
    }

    pub(crate) fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    pub(crate) fn geometries(&self) -> &[ChunkGeometry] {
        &self.geometries
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}
