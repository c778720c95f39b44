//! Pipeline cache keyed by (family, entry point, override constants, storage type). Bind group
//! layouts come from naga reflection, so they list exactly the bindings an entry point uses.

use std::collections::HashMap;
use std::sync::Arc;

use super::context::Gpu;
use super::shader::{reflect_sized, BindingKind, Family, Reflected, StorageType};
use crate::error::{Error, Result};
use crate::ops::Dispatch;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub family: Family,
    pub entry: String,
    /// Constant names with their values' bit patterns (f64 is not `Hash`).
    pub constants: Vec<(String, u64)>,
    pub sizes: Vec<(&'static str, u32)>,
    pub storage: StorageType,
}

pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<(u32, BindingKind)>,
}

/// A family's module: its text depends on the storage type and the baked array sizes.
type ModuleKey = (Family, StorageType, Vec<(&'static str, u32)>);

#[derive(Default)]
pub struct PipelineCache {
    modules: HashMap<ModuleKey, (wgpu::ShaderModule, Reflected)>,
    kernels: HashMap<PipelineKey, Arc<Kernel>>,
}

async fn check_scope(scope: wgpu::ErrorScopeGuard, family: Family, entry: &str) -> Result<()> {
    match scope.pop().await {
        None => Ok(()),
        Some(e) => Err(Error::Shader {
            file: family.file().to_string(),
            entry: entry.to_string(),
            message: e.to_string(),
            numbered_source: String::new(),
        }),
    }
}

impl PipelineCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// The pipeline of a dispatch's entry point, constants and sizes, compiled on first use.
    pub async fn get(&mut self, gpu: &Gpu, d: &Dispatch, storage: StorageType) -> Result<Arc<Kernel>> {
        let key = key(d, storage);
        if let Some(k) = self.kernels.get(&key) {
            return Ok(k.clone());
        }
        let mk = self.module(gpu, d, storage).await?;
        let (module, reflected) = &self.modules[&mk];
        let k = Arc::new(build(gpu, module, reflected, d).await?);
        self.kernels.insert(key, k.clone());
        Ok(k)
    }

    /// Compiles every pipeline `dispatches` need and that is not compiled yet, natively on as
    /// many threads as the machine has cores. Drivers that compile in pipeline creation (NVIDIA,
    /// AMD, Apple) gain; Mesa 22's lavapipe compiles on first dispatch instead, so there it only
    /// parallelises the front end.
    pub async fn prepare(&mut self, gpu: &Gpu, dispatches: &[Dispatch], storage: StorageType) -> Result<()> {
        let mut todo: Vec<(PipelineKey, ModuleKey, &Dispatch)> = Vec::new();
        for d in dispatches {
            let k = key(d, storage);
            if !self.kernels.contains_key(&k) && !todo.iter().any(|t| t.0 == k) {
                let mk = self.module(gpu, d, storage).await?;
                todo.push((k, mk, d));
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let threads = compile_threads().min(todo.len()).max(1);
            let started = std::time::Instant::now();
            let modules = &self.modules;
            let built: Vec<Result<Kernel>> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|w| {
                        let mine: Vec<_> = todo.iter().skip(w).step_by(threads).collect();
                        scope.spawn(move || {
                            mine.into_iter()
                                .map(|(_, mk, d)| {
                                    let (module, reflected) = &modules[mk];
                                    pollster::block_on(build(gpu, module, reflected, d))
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let mut per_worker: Vec<_> = workers
                    .into_iter()
                    .map(|h| h.join().expect("a pipeline compile thread panicked").into_iter())
                    .collect();
                // Back into todo's order: item i went to worker i % threads.
                (0..todo.len()).map(|i| per_worker[i % threads].next().expect("one result per pipeline")).collect()
            });
            if super::executor::debug_enabled() {
                eprintln!("pipelines: {} created on {threads} threads in {:.2?}", todo.len(), started.elapsed());
            }
            let new = !todo.is_empty();
            for ((k, _, _), kernel) in todo.into_iter().zip(built) {
                self.kernels.insert(k, Arc::new(kernel?));
            }
            if let Some(c) = gpu.driver_cache.as_ref().filter(|_| new) {
                c.save();
            }
        }
        #[cfg(target_arch = "wasm32")]
        for (_, _, d) in todo {
            self.get(gpu, d, storage).await?;
        }
        Ok(())
    }

    /// The shader module of a dispatch's family and sizes, made (parsed, validated) on first use.
    async fn module(&mut self, gpu: &Gpu, d: &Dispatch, storage: StorageType) -> Result<ModuleKey> {
        let mk = (d.family, storage, d.sizes.clone());
        if !self.modules.contains_key(&mk) {
            let reflected = reflect_sized(d.family, storage, &d.sizes, d.entry)?;
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(d.family.file()),
                source: wgpu::ShaderSource::Wgsl(reflected.source.clone().into()),
            });
            check_scope(scope, d.family, d.entry).await?;
            self.modules.insert(mk.clone(), (module, reflected));
        }
        Ok(mk)
    }
}

/// Threads that compile pipelines: `WGPT_COMPILE_THREADS`, else one per core.
#[cfg(not(target_arch = "wasm32"))]
fn compile_threads() -> usize {
    std::env::var("WGPT_COMPILE_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn key(d: &Dispatch, storage: StorageType) -> PipelineKey {
    PipelineKey {
        family: d.family,
        entry: d.entry.to_string(),
        constants: d.constants.iter().map(|(n, v)| (n.to_string(), v.to_bits())).collect(),
        sizes: d.sizes.clone(),
        storage,
    }
}

/// Bind group layout and compute pipeline of one entry point. Error scopes are per thread, so
/// several threads may build at once.
async fn build(gpu: &Gpu, module: &wgpu::ShaderModule, reflected: &Reflected, d: &Dispatch) -> Result<Kernel> {
    let (family, entry, constants) = (d.family, d.entry, &d.constants[..]);
    let bindings = reflected.entries.get(entry).cloned().ok_or_else(|| Error::Shader {
        file: family.file().to_string(),
        entry: entry.to_string(),
        message: format!("no entry point named '{entry}'"),
        numbered_source: String::new(),
    })?;
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match kind {
                    BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                    BindingKind::Storage { read_only } => wgpu::BufferBindingType::Storage { read_only },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let layout =
        gpu.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(entry), entries: &entries });
    let pl = gpu.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pl),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants, zero_initialize_workgroup_memory: false },
        cache: gpu.driver_cache.as_ref().map(|c| &c.cache),
    });
    check_scope(scope, family, entry).await?;
    Ok(Kernel { pipeline, layout, bindings })
}
