//! The driver's compiled pipelines kept across runs: wgpu's `PipelineCache` (a VkPipelineCache,
//! where the backend has one), read from and written to `<key>.bin` in wgpt's cache folder, the key
//! being wgpu's `pipeline_cache_key` for the adapter (`wgpu_pipeline_cache_vulkan_<vendor>_<device>`). Not to be confused with `pipeline.rs`, wgpt's map of pipelines within a process.
//! A stale or damaged file costs nothing but the compile: wgpu checks the data's header and
//! adapter and, told to fall back, starts empty; the next save replaces the file.

use std::path::PathBuf;

use super::tuning_cache::default_dir;

#[derive(Clone)]
pub struct DriverCache {
    pub cache: wgpu::PipelineCache,
    path: PathBuf,
}

impl DriverCache {
    /// The cache for this device, primed from its file in `dir` (default: wgpt's cache folder);
    /// None where the backend keeps none (the feature is missing, wgpu has no key for the adapter,
    /// on the web), or without a cache folder.
    pub fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        features: wgpu::Features,
        dir: Option<PathBuf>,
    ) -> Option<DriverCache> {
        if cfg!(target_arch = "wasm32") || !features.contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let key = wgpu::util::pipeline_cache_key(info)?;
        let path = dir.or_else(default_dir)?.join(format!("{key}.bin"));
        let data = std::fs::read(&path).ok();
        // SAFETY: the data was written by `save` from `PipelineCache::get_data` for an adapter with
        // this key (the file name); wgpu validates its header, and `fallback` makes anything it
        // rejects an empty cache.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("wgpt pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(DriverCache { cache, path })
    }

    /// The file it reads and writes.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes the cache's data, whole or not at all (aside under this process's own name, then
    /// renamed), after a step compiled new pipelines.
    pub fn save(&self) {
        let Some(data) = self.cache.get_data() else { return };
        let tmp = self.path.with_extension(format!("bin.{}.tmp", std::process::id()));
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(&tmp, &data))
            .and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            eprintln!(
                "notice: could not write the pipeline cache {} ({}); the next run compiles again",
                self.path.display(),
                crate::util::io_reason(&e)
            );
        }
    }
}
