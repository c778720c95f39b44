//! Small helpers shared by the stages: atomic file writes (never a half-written file).

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to a temporary file next to `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Other(format!("writing {}: {e}", path.display()));
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// The temporary name a file is written under before it is renamed to `path`.
pub fn temp_path(path: &Path) -> std::path::PathBuf {
    path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")))
}
