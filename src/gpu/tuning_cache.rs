//! The autotuner's timings on disk, so a second run on the same adapter pays nothing: one JSON
//! file per user (`autotune.json` in `WGPT_CACHE_DIR`, else `$XDG_CACHE_HOME/wgpt`, else
//! `~/.cache/wgpt`), entries keyed by adapter, driver, wgpt version and product. A damaged file is
//! rebuilt with a one-line notice; a cache that cannot be written only costs the next run a retune.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::context::Gpu;
use crate::ops::matmul::Variant;

pub const FILE: &str = "autotune.json";

pub struct DiskCache {
    path: Option<PathBuf>,
    /// What identifies the adapter, driver and kernels' version in every key.
    prefix: String,
    entries: BTreeMap<String, Value>,
    dirty: bool,
}

/// The user's cache folder for wgpt, if the environment names one.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("WGPT_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("wgpt")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("wgpt")))
}

impl DiskCache {
    /// Reads the cache (none on the web, or without a cache folder: every run times again).
    pub fn open(gpu: &Gpu, dir: Option<PathBuf>) -> DiskCache {
        let i = &gpu.info;
        let prefix = format!(
            "{} | {:?} | {} {} | wgpt {}",
            i.name,
            i.backend,
            i.driver,
            i.driver_info,
            env!("CARGO_PKG_VERSION")
        );
        let path = if cfg!(target_arch = "wasm32") { None } else { dir.or_else(default_dir).map(|d| d.join(FILE)) };
        let mut entries = BTreeMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => match parse(&bytes) {
                    Ok(e) => entries = e,
                    Err(why) => {
                        eprintln!("notice: the autotune cache {} is damaged ({why}); rebuilding it", p.display())
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!(
                    "notice: the autotune cache {} could not be read ({}); timing again",
                    p.display(),
                    crate::util::io_reason(&e)
                ),
            }
        }
        // A damaged file is replaced even if nothing new is timed.
        let dirty = path.as_ref().is_some_and(|p| p.exists()) && entries.is_empty();
        DiskCache { path, prefix, entries, dirty }
    }

    fn full(&self, key: &str) -> String {
        format!("{} | {key}", self.prefix)
    }

    /// The variant and timings stored for a product on this adapter.
    pub fn get(&self, key: &str) -> Option<(Variant, Vec<(Variant, f64)>)> {
        let e = self.entries.get(&self.full(key))?;
        let v = Variant::parse(e.get("variant")?.as_str()?)?;
        let timings = e
            .get("ms")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, ms)| Some((Variant::parse(k)?, ms.as_f64()?))).collect())
            .unwrap_or_default();
        Some((v, timings))
    }

    pub fn put(&mut self, key: &str, v: Variant, timings: &[(Variant, f64)]) {
        let ms: serde_json::Map<String, Value> =
            timings.iter().map(|(v, ms)| (v.name().to_string(), json!(ms))).collect();
        self.entries.insert(self.full(key), json!({"variant": v.name(), "ms": ms}));
        self.dirty = true;
    }

    /// Writes the file if anything changed: merged with what another process wrote since it was
    /// read, whole or not at all (written aside under a name of this process's own, then renamed).
    pub fn save(self) {
        let Some(path) = self.path.filter(|_| self.dirty) else { return };
        let mut entries = std::fs::read(&path).ok().and_then(|b| parse(&b).ok()).unwrap_or_default();
        entries.extend(self.entries);
        let doc = json!({"version": 1, "entries": entries});
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(&tmp, serde_json::to_string_pretty(&doc).unwrap()))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                crate::util::io_reason(&e)
            });
        if let Err(why) = written {
            eprintln!(
                "notice: could not write the autotune cache {} ({why}); the next run times again",
                path.display()
            );
        }
    }
}

fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Value>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if doc.get("version").and_then(Value::as_u64) != Some(1) {
        return Err("no \"version\": 1".into());
    }
    let entries = doc.get("entries").and_then(Value::as_object).ok_or("no \"entries\" object")?;
    Ok(entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}
