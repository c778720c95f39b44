//! Pipeline cache keyed by (family, entry point, override constants, storage type). Bind group
//! layouts come from naga reflection, so they list exactly the bindings an entry point uses.

use std::collections::HashMap;
use std::sync::Arc;

use super::context::Gpu;
use super::shader::{reflect, BindingKind, Family, StorageType};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub family: Family,
    pub entry: String,
    /// Constant names with their values' bit patterns (f64 is not `Hash`).
    pub constants: Vec<(String, u64)>,
    pub storage: StorageType,
}

pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<(u32, BindingKind)>,
}

#[derive(Default)]
pub struct PipelineCache {
    modules: HashMap<(Family, StorageType), (wgpu::ShaderModule, super::shader::Reflected)>,
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

    pub async fn get(
        &mut self,
        gpu: &Gpu,
        family: Family,
        entry: &str,
        constants: &[(&'static str, f64)],
        storage: StorageType,
    ) -> Result<Arc<Kernel>> {
        let key = PipelineKey {
            family,
            entry: entry.to_string(),
            constants: constants.iter().map(|(n, v)| (n.to_string(), v.to_bits())).collect(),
            storage,
        };
        if let Some(k) = self.kernels.get(&key) {
            return Ok(k.clone());
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = self.modules.entry((family, storage)) {
            let reflected = reflect(family, storage, entry)?;
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(family.file()),
                source: wgpu::ShaderSource::Wgsl(reflected.source.clone().into()),
            });
            check_scope(scope, family, entry).await?;
            slot.insert((module, reflected));
        }
        let (module, reflected) = &self.modules[&(family, storage)];
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
        let layout = gpu
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(entry), entries: &entries });
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
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        check_scope(scope, family, entry).await?;
        let k = Arc::new(Kernel { pipeline, layout, bindings });
        self.kernels.insert(key, k.clone());
        Ok(k)
    }
}
