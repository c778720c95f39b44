//! Small helpers shared by the stages: atomic file writes (never a half-written file) and I/O
//! errors in words a user can act on.

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to a temporary file next to `path`, syncs it, then renames it over `path`. On
/// any failure the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    let written = (|| {
        // Closed before the rename (the block ends its life).
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_error(path, &e)
    })
}

/// The temporary name a file is written under before it is renamed to `path`.
pub fn temp_path(path: &Path) -> std::path::PathBuf {
    path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")))
}

/// An I/O error in a few words, without the OS error number: "no space left on the device",
/// "read-only file system", "permission denied", ...
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let known = match (e.kind(), e.raw_os_error()) {
        (_, Some(28)) | (K::StorageFull, _) => "no space left on the device",
        (_, Some(30)) | (K::ReadOnlyFilesystem, _) => "read-only file system",
        (_, Some(122)) | (K::QuotaExceeded, _) => "disk quota exceeded",
        (K::PermissionDenied, _) => "permission denied",
        (K::NotFound, _) => "no such file or directory",
        (K::AlreadyExists, _) => "it already exists",
        (K::IsADirectory, _) => "it is a directory, not a file",
        (K::NotADirectory, _) => "a part of the path is not a directory",
        (K::UnexpectedEof, _) => "the file ends early (truncated)",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// `path: reason` for an I/O error on `path`.
pub fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Other(format!("{}: {}", path.display(), io_reason(e)))
}

/// `writing path: reason` for a failed write of `path`.
pub fn write_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Other(format!("writing {}: {}", path.display(), io_reason(e)))
}

/// Creates the new directory `dir` (and its parents), or says in one line why not: it exists
/// (`hint` says what to do then) or cannot be made.
pub fn new_dir(dir: &Path, hint: &str) -> Result<()> {
    let bad = |m: String| crate::Error::Other(format!("--out {}: {m}", dir.display()));
    if dir.as_os_str().is_empty() {
        return Err(bad("empty path; name a new directory".into()));
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| bad(io_reason(&e)))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(bad(format!("the directory exists; {hint} (nothing was changed)")))
        }
        Err(e) => Err(bad(io_reason(&e))),
    }
}
