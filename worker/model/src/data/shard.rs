//! Memory-mapped token shards: flat little-endian uint16/uint32 files and `.npy` arrays.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::npy;
use crate::error::{ModelError, Result};

/// Width of one token in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TokenWidth {
    /// Little-endian uint16.
    U16,
    /// Little-endian uint32.
    U32,
}

impl TokenWidth {
    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }
}

/// A read-only, memory-mapped sequence of token ids.
#[derive(Debug)]
pub struct TokenShard {
    path: PathBuf,
    map: Mmap,
    offset: usize,
    len: usize,
    width: TokenWidth,
}

impl TokenShard {
    /// Opens a flat file of little-endian tokens (no header). Its size must be a non-zero
    /// multiple of the token width.
    pub fn open_flat(path: impl AsRef<Path>, width: TokenWidth) -> Result<TokenShard> {
        let path = path.as_ref();
        let map = map_file(path)?;
        if map.len() % width.bytes() != 0 {
            return Err(bad(
                path,
                format!("{} bytes is not a multiple of {}", map.len(), width.bytes()),
            ));
        }
        let len = map.len() / width.bytes();
        Ok(TokenShard {
            path: path.to_path_buf(),
            map,
            offset: 0,
            len,
            width,
        })
    }

    /// Opens a `.npy` file holding a 1-D uint16 or uint32 array.
    pub fn open_npy(path: impl AsRef<Path>) -> Result<TokenShard> {
        let path = path.as_ref();
        let map = map_file(path)?;
        let header = npy::parse_header(&map).map_err(|reason| bad(path, reason))?;
        let expected = header
            .len
            .checked_mul(header.width.bytes())
            .and_then(|n| n.checked_add(header.data_offset))
            .ok_or_else(|| bad(path, "array size overflows".into()))?;
        if expected != map.len() {
            return Err(bad(
                path,
                format!("header promises {expected} bytes, file has {}", map.len()),
            ));
        }
        if header.len == 0 {
            return Err(bad(path, "empty array".into()));
        }
        Ok(TokenShard {
            path: path.to_path_buf(),
            map,
            offset: header.data_offset,
            len: header.len,
            width: header.width,
        })
    }

    /// Opens `.npy` files by content (magic), anything else as a flat file of `flat_width`.
    pub fn open(path: impl AsRef<Path>, flat_width: TokenWidth) -> Result<TokenShard> {
        let path = path.as_ref();
        let is_npy = map_file(path)?.starts_with(b"\x93NUMPY");
        if is_npy {
            Self::open_npy(path)
        } else {
            Self::open_flat(path, flat_width)
        }
    }

    /// File the shard was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the shard holds no token (never the case for an opened shard).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Token width.
    pub fn width(&self) -> TokenWidth {
        self.width
    }

    fn bytes(&self, start: usize, end: usize) -> Option<&[u8]> {
        let w = self.width.bytes();
        self.map.get(self.offset + start * w..self.offset + end * w)
    }

    /// Token at `index`, `None` past the end.
    pub fn get(&self, index: usize) -> Option<u32> {
        if index >= self.len {
            return None;
        }
        let mut token = None;
        decode(self.width, self.bytes(index, index + 1)?, |t| {
            token = Some(t)
        });
        token
    }

    /// `count` tokens from `start` as i64 (the dtype the model eats), `None` if out of range.
    pub fn read(&self, start: usize, count: usize) -> Option<Vec<i64>> {
        let end = start.checked_add(count)?;
        if end > self.len {
            return None;
        }
        let mut tokens = Vec::with_capacity(count);
        decode(self.width, self.bytes(start, end)?, |t| {
            tokens.push(i64::from(t))
        });
        Some(tokens)
    }

    /// Largest token id in the shard (a full scan).
    pub fn max_token(&self) -> u32 {
        let bytes = self.bytes(0, self.len).unwrap_or(&[]);
        let mut max = 0;
        decode(self.width, bytes, |t| max = max.max(t));
        max
    }
}

/// Decodes little-endian tokens and feeds them to `sink` (monomorphised per width, no
/// per-token dispatch: this runs over whole shards).
fn decode(width: TokenWidth, bytes: &[u8], mut sink: impl FnMut(u32)) {
    match width {
        TokenWidth::U16 => bytes
            .chunks_exact(2)
            .for_each(|b| sink(u16::from_le_bytes([b[0], b[1]]) as u32)),
        TokenWidth::U32 => bytes
            .chunks_exact(4)
            .for_each(|b| sink(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
    }
}

fn bad(path: &Path, reason: String) -> ModelError {
    ModelError::TokenFile {
        path: path.to_path_buf(),
        reason,
    }
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let size = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    if size == 0 {
        return Err(bad(path, "empty file".into()));
    }
    // SAFETY: the mapping is read-only; shards are immutable inputs. A concurrent writer
    // truncating the file is outside this crate's contract (as for any mmap reader).
    unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))
}
