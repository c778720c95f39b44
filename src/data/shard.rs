//! Token shards: a file of token ids with a 32-byte header (magic, version, id width, count), ids as
//! little-endian u16 when the vocabulary fits and u32 otherwise. Written atomically, read through a
//! memory map so corpora larger than RAM stream from disk.

use std::path::Path;

use crate::error::{Error, Result};
use crate::util::write_error;

pub const MAGIC: &[u8; 8] = b"WGPTTOK\0";
pub const VERSION: u32 = 1;
const HEADER: usize = 32;

/// Writes `ids` (all below `vocab_size`) as a shard at `path`.
pub fn write(path: &Path, ids: &[u32], vocab_size: usize) -> Result<()> {
    let mut w = ShardWriter::create(path, vocab_size)?;
    w.push(ids)?;
    w.finish()
}

/// Bytes per id for a vocabulary: 2 when every id fits u16.
pub fn id_width(vocab_size: usize) -> usize {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

/// Writes a shard as ids arrive, so a corpus never has to be in memory at once. The ids go to a
/// temporary file; `finish` fills in the count and renames it to the shard's name, so a reader
/// never sees a partial shard.
pub struct ShardWriter {
    /// None once dropped: the file is closed before its temporary name is removed (Windows
    /// cannot remove an open file).
    file: Option<std::io::BufWriter<std::fs::File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    width: usize,
    vocab_size: usize,
    count: u64,
    done: bool,
}

impl Drop for ShardWriter {
    // An abandoned shard (an error while tokenizing) leaves no temporary file behind.
    fn drop(&mut self) {
        if !self.done {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl ShardWriter {
    pub fn create(path: &Path, vocab_size: usize) -> Result<ShardWriter> {
        if vocab_size > u32::MAX as usize {
            return Err(Error::Other(format!("{}: vocabulary of {vocab_size} does not fit u32 ids", path.display())));
        }
        let tmp = crate::util::temp_path(path);
        let file = std::fs::File::create(&tmp).map_err(|e| write_error(path, &e))?;
        let mut w = ShardWriter {
            file: Some(std::io::BufWriter::new(file)),
            tmp,
            path: path.to_path_buf(),
            width: id_width(vocab_size),
            vocab_size,
            count: 0,
            done: false,
        };
        w.write(&[0; HEADER])?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        self.file.as_mut().expect("an open shard").write_all(bytes).map_err(|e| write_error(&self.path, &e))
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push(&mut self, ids: &[u32]) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            return Err(Error::Other(format!(
                "{}: token id {bad} is outside the vocabulary of {}",
                self.path.display(),
                self.vocab_size
            )));
        }
        let mut bytes = Vec::with_capacity(ids.len() * self.width);
        for &i in ids {
            if self.width == 2 {
                bytes.extend_from_slice(&(i as u16).to_le_bytes());
            } else {
                bytes.extend_from_slice(&i.to_le_bytes());
            }
        }
        self.count += ids.len() as u64;
        self.write(&bytes)
    }

    pub fn finish(mut self) -> Result<()> {
        use std::io::{Seek, Write};
        let io = |e: std::io::Error| write_error(&self.path, &e);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(self.width as u32).to_le_bytes());
        header.extend_from_slice(&self.count.to_le_bytes());
        header.extend_from_slice(&(self.vocab_size as u64).to_le_bytes());
        let file = self.file.as_mut().expect("an open shard");
        file.flush().map_err(io)?;
        let f = file.get_mut();
        f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        f.write_all(&header).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(self.file.take());
        std::fs::rename(&self.tmp, &self.path).map_err(io)?;
        self.done = true;
        Ok(())
    }
}

/// True when the file at `path` starts with the shard magic.
pub fn is_shard(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == MAGIC
}

/// A memory-mapped shard.
#[derive(Debug)]
pub struct Shard {
    map: memmap2::Mmap,
    width: usize,
    len: usize,
    pub vocab_size: usize,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Shard> {
        let bad = |m: String| Error::Other(format!("{}: {m}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| bad(crate::util::io_reason(&e)))?;
        // SAFETY: the map is read-only; a shard being rewritten is replaced by rename, never in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(crate::util::io_reason(&e)))?;
        let Layout { width, len, vocab_size } = Layout::parse(&map).map_err(bad)?;
        Ok(Shard { map, width, len, vocab_size })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> u32 {
        id_at(&self.map, self.width, i)
    }

    /// Tokens `start .. start + n`.
    pub fn slice(&self, start: usize, n: usize) -> Vec<u32> {
        (start..start + n).map(|i| self.get(i)).collect()
    }
}

/// What a shard's header says, checked against the file's length; `Shard::open` reads a file
/// through it and the fuzzer (fuzz/) feeds it arbitrary bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub width: usize,
    pub len: usize,
    pub vocab_size: usize,
}

impl Layout {
    /// Parses the header of a whole shard file, `bytes`; the error says what is wrong.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Layout, String> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err("not a wgpt token shard (bad magic); make shards with wgpt".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let (version, width, len, vocab) = (u32_at(8), u32_at(12) as usize, u64_at(16) as usize, u64_at(24) as usize);
        if version != VERSION {
            return Err(format!("shard version {version}, this wgpt reads version {VERSION}"));
        }
        if width != 2 && width != 4 {
            return Err(format!("token width {width} bytes (expected 2 or 4)"));
        }
        if width < id_width(vocab) {
            return Err(format!("{width}-byte ids cannot hold a vocabulary of {vocab} tokens: corrupt header"));
        }
        if len.checked_mul(width).and_then(|b| b.checked_add(HEADER)) != Some(bytes.len()) {
            return Err(format!(
                "{} bytes, header says {} tokens of {width} bytes: truncated or corrupt",
                bytes.len(),
                len
            ));
        }
        // An id outside the vocabulary would index past the embedding table on the GPU: refuse
        // the shard here, naming the first one.
        if let Some(i) = (0..len).find(|&i| id_at(bytes, width, i) as usize >= vocab) {
            let id = id_at(bytes, width, i);
            return Err(format!(
                "token {i} is id {id}, outside the vocabulary of {vocab} tokens the header declares: corrupt shard"
            ));
        }
        Ok(Layout { width, len, vocab_size: vocab })
    }
}

/// Token `i` of the shard file `bytes` whose ids are `width` bytes wide.
pub fn id_at(bytes: &[u8], width: usize, i: usize) -> u32 {
    let o = HEADER + i * width;
    if width == 2 {
        u16::from_le_bytes([bytes[o], bytes[o + 1]]) as u32
    } else {
        u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap())
    }
}
