//! Token shards: a file of token ids with a 32-byte header (magic, version, id width, count), ids as
//! little-endian u16 when the vocabulary fits and u32 otherwise. Written atomically, read through a
//! memory map so corpora larger than RAM stream from disk.

use std::path::Path;

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"WGPTTOK\0";
pub const VERSION: u32 = 1;
const HEADER: usize = 32;

/// Writes `ids` (all below `vocab_size`) as a shard at `path`.
pub fn write(path: &Path, ids: &[u32], vocab_size: usize) -> Result<()> {
    if vocab_size > u32::MAX as usize {
        return Err(Error::Other(format!("{}: vocabulary of {vocab_size} does not fit u32 ids", path.display())));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab_size) {
        return Err(Error::Other(format!(
            "{}: token id {bad} is outside the vocabulary of {vocab_size}",
            path.display()
        )));
    }
    let width: u32 = if vocab_size <= 1 << 16 { 2 } else { 4 };
    let mut bytes = Vec::with_capacity(HEADER + ids.len() * width as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&width.to_le_bytes());
    bytes.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&(vocab_size as u64).to_le_bytes());
    for &i in ids {
        if width == 2 {
            bytes.extend_from_slice(&(i as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&i.to_le_bytes());
        }
    }
    crate::util::write_atomic(path, &bytes)
}

/// A memory-mapped shard.
pub struct Shard {
    map: memmap2::Mmap,
    width: usize,
    len: usize,
    pub vocab_size: usize,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Shard> {
        let bad = |m: String| Error::Other(format!("{}: {m}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        // SAFETY: the map is read-only; a shard being rewritten is replaced by rename, never in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(e.to_string()))?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(bad("not a wgpt token shard (bad magic); make shards with wgpt".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap());
        let (version, width, len, vocab) = (u32_at(8), u32_at(12) as usize, u64_at(16) as usize, u64_at(24) as usize);
        if version != VERSION {
            return Err(bad(format!("shard version {version}, this wgpt reads version {VERSION}")));
        }
        if width != 2 && width != 4 {
            return Err(bad(format!("token width {width} bytes (expected 2 or 4)")));
        }
        if map.len() != HEADER + len * width {
            return Err(bad(format!(
                "{} bytes, header says {} tokens of {width} bytes: truncated or corrupt",
                map.len(),
                len
            )));
        }
        Ok(Shard { map, width, len, vocab_size: vocab })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> u32 {
        let o = HEADER + i * self.width;
        if self.width == 2 {
            u16::from_le_bytes([self.map[o], self.map[o + 1]]) as u32
        } else {
            u32::from_le_bytes(self.map[o..o + 4].try_into().unwrap())
        }
    }

    /// Tokens `start .. start + n`.
    pub fn slice(&self, start: usize, n: usize) -> Vec<u32> {
        (start..start + n).map(|i| self.get(i)).collect()
    }
}
