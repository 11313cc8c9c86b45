//! How a parameter is cut into chunks.
//!
//! A parameter is viewed as a 2-D matrix `[rows, cols]`: 1-D (and 0-D) tensors become one
//! row, tensors with more than two dimensions fold their leading dimensions into rows.
//! Rows are split into blocks of `block_rows` (the largest divisor of `rows` not above
//! `config.chunk`), columns likewise into `block_cols`. Chunk `c` covers block-row
//! `c / chunks_per_band` and block-column `c % chunks_per_band`; inside a chunk, element
//! `(r, col)` has the local index `r * block_cols + col` (always below 4096).

use crate::config::{MAX_NDIM, ParamSpec, SparseLocoConfig};
use crate::error::SparseLocoError;

/// Largest element count accepted for a single parameter (2^36).
pub const MAX_NUMEL: usize = 1 << 36;

/// Chunk layout of one parameter; derived from its shape and the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkGeometry {
    rows: usize,
    cols: usize,
    block_rows: usize,
    block_cols: usize,
    k: usize,
}

/// Largest divisor of `n` that is at most `max` (both at least 1).
pub fn largest_divisor_at_most(n: usize, max: usize) -> usize {
    (1..=max.min(n))
        .rev()
        .find(|&d| n.is_multiple_of(d))
        .unwrap_or(1)
}

impl ChunkGeometry {
    /// Geometry of `spec` under `config`.
    pub fn new(spec: &ParamSpec, config: &SparseLocoConfig) -> Result<Self, SparseLocoError> {
        config.validate()?;
        let invalid = |reason: String| SparseLocoError::InvalidShape {
            name: spec.name.clone(),
            shape: spec.shape.clone(),
            reason,
        };
        if spec.shape.len() > MAX_NDIM {
            return Err(invalid(format!("more than {MAX_NDIM} dimensions")));
        }
        let mut dims = Vec::with_capacity(spec.shape.len());
        for &d in &spec.shape {
            match usize::try_from(d) {
                Ok(d) if d >= 1 => dims.push(d),
                _ => return Err(invalid(format!("dimension {d} is not positive"))),
            }
        }
        let numel = spec.numel();
        if numel > MAX_NUMEL {
            return Err(invalid(format!("more than {MAX_NUMEL} elements")));
        }
        let (rows, cols) = match dims.split_last() {
            None => (1, 1),
            Some((&last, leading)) => (leading.iter().product::<usize>(), last),
        };
        let edge = config.chunk as usize;
        let block_rows = largest_divisor_at_most(rows, edge);
        let block_cols = largest_divisor_at_most(cols, edge);
        let k = (config.topk as usize).min(block_rows * block_cols);
        Ok(Self {
            rows,
            cols,
            block_rows,
            block_cols,
            k,
        })
    }

    /// Rows of the 2-D view.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the 2-D view.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows per chunk.
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// Columns per chunk.
    pub fn block_cols(&self) -> usize {
        self.block_cols
    }

    /// Entries kept per chunk.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Elements per chunk (at most 4096).
    pub fn chunk_elems(&self) -> usize {
        self.block_rows * self.block_cols
    }

    /// Chunks side by side in one band of `block_rows` rows.
    pub fn chunks_per_band(&self) -> usize {
        self.cols / self.block_cols
    }

    /// Number of bands (block-rows).
    pub fn bands(&self) -> usize {
        self.rows / self.block_rows
    }

    /// Total number of chunks.
    pub fn n_chunks(&self) -> usize {
        self.bands() * self.chunks_per_band()
    }

    /// Entries transmitted for the whole tensor (`n_chunks * k`).
    pub fn entries(&self) -> usize {
        self.n_chunks() * self.k
    }

    /// Elements in the parameter.
    pub fn numel(&self) -> usize {
        self.rows * self.cols
    }

    /// Elements in one band (a contiguous range of the row-major tensor).
    pub fn band_elems(&self) -> usize {
        self.block_rows * self.cols
    }

    /// Offset, inside its band, of local element `local` of the band's chunk `chunk_in_band`.
    #[inline]
    pub fn offset_in_band(&self, chunk_in_band: usize, local: usize) -> usize {
        let r = local / self.block_cols;
        let c = local % self.block_cols;
        r * self.cols + chunk_in_band * self.block_cols + c
    }

    /// Row-major flat position of local element `local` of chunk `chunk`.
    #[inline]
    pub fn flat_index(&self, chunk: usize, local: usize) -> usize {
        let per_band = self.chunks_per_band();
        (chunk / per_band) * self.band_elems() + self.offset_in_band(chunk % per_band, local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(shape: &[i64]) -> ChunkGeometry {
        ChunkGeometry::new(&ParamSpec::new("p", shape), &SparseLocoConfig::default()).unwrap()
    }

    #[test]
    fn divisors_follow_the_largest_at_most_rule() {
        assert_eq!(largest_divisor_at_most(4096, 64), 64);
        assert_eq!(largest_divisor_at_most(5632, 64), 64);
        assert_eq!(largest_divisor_at_most(50, 64), 50);
        assert_eq!(largest_divisor_at_most(100, 64), 50);
        assert_eq!(largest_divisor_at_most(67, 64), 1);
        assert_eq!(largest_divisor_at_most(96, 64), 48);
    }

    #[test]
    fn two_d_weights_use_64_by_64_chunks() {
        let g = geometry(&[4096, 5632]);
        assert_eq!((g.block_rows(), g.block_cols(), g.k()), (64, 64, 64));
        assert_eq!(g.n_chunks(), 64 * 88);
        assert_eq!(g.entries(), 64 * 88 * 64);
    }

    #[test]
    fn one_d_and_odd_shapes() {
        let g = geometry(&[2048]);
        assert_eq!(
            (g.rows(), g.block_rows(), g.block_cols(), g.k()),
            (1, 1, 64, 64)
        );
        let g = geometry(&[50]);
        assert_eq!((g.chunk_elems(), g.k(), g.n_chunks()), (50, 50, 1));
        let g = geometry(&[7]);
        assert_eq!((g.chunk_elems(), g.k()), (7, 7));
        let g = geometry(&[]);
        assert_eq!((g.numel(), g.k()), (1, 1));
        let g = geometry(&[2, 3, 100]);
        assert_eq!(
            (g.rows(), g.cols(), g.block_rows(), g.block_cols()),
            (6, 100, 6, 50)
        );
    }

    #[test]
    fn flat_index_maps_chunks_onto_the_row_major_layout() {
        let g = geometry(&[128, 192]);
        // chunk 4 = band 1, column block 1; local (2, 3)
        assert_eq!(g.flat_index(4, 2 * 64 + 3), (64 + 2) * 192 + 64 + 3);
        let mut seen = vec![false; g.numel()];
        for chunk in 0..g.n_chunks() {
            for local in 0..g.chunk_elems() {
                let flat = g.flat_index(chunk, local);
                assert!(!seen[flat]);
                seen[flat] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn rejects_bad_shapes() {
        let config = SparseLocoConfig::default();
        assert!(ChunkGeometry::new(&ParamSpec::new("p", [0, 3]), &config).is_err());
        assert!(ChunkGeometry::new(&ParamSpec::new("p", [-1]), &config).is_err());
        assert!(ChunkGeometry::new(&ParamSpec::new("p", [1 << 20, 1 << 20]), &config).is_err());
        assert!(ChunkGeometry::new(&ParamSpec::new("p", vec![1; 9]), &config).is_err());
    }
}
