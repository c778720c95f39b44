//! The compiled step: arenas from the memory plan, one bind group per dispatch, and a dispatch list
//! replayed every step. Replaying allocates nothing; reading results back is async (awaited on
//! the web, blocked on with pollster natively).

use std::fmt::Write;
use std::ops::Range;
use std::sync::Arc;

use super::context::Gpu;
use super::faults::Faults;
use super::pipeline::{Kernel, PipelineCache};
use super::shader::{BindingKind, StorageType};
use super::tuning::{self, Choice, KernelPolicy};
use crate::error::{Bytes, Error, Result};
use crate::graph::memplan::{plan, MemoryPlan};
use crate::graph::{Class, DType, TensorId, Tensors};
use crate::ops::Dispatch;

/// What gets compiled: the tensors and the ordered dispatch list.
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub tensors: Tensors,
    pub dispatches: Vec<Dispatch>,
    pub storage: StorageType,
    /// Caps the bytes of one binding below the adapter's limit (None: the adapter's limit).
    pub max_binding: Option<u64>,
    /// Caps the bytes of one buffer below the adapter's limit (None: the adapter's, or
    /// `WGPT_MAX_BUFFER_SIZE`).
    pub max_buffer: Option<u64>,
    /// Which kernel variants to run (default: chosen per adapter).
    pub kernels: KernelPolicy,
}

pub(super) struct Compiled {
    pub(super) kernel: Arc<Kernel>,
    pub(super) bind_group: wgpu::BindGroup,
    pub(super) groups: [u32; 3],
}

pub struct Step {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    pub tensors: Tensors,
    pub dispatches: Vec<Dispatch>,
    pub plan: MemoryPlan,
    /// The kernel variant of each distinct product (gpu/tuning.rs).
    pub choices: Vec<Choice>,
    buffers: Vec<Option<wgpu::Buffer>>,
    pub(super) compiled: Vec<Compiled>,
    /// Nanoseconds per timestamp tick where the device has timestamp queries (`gpu/profile.rs`).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(super) timestamp_period: Option<f32>,
    /// Mappable copy of the outputs arena (loss, gradient norm), made once so that reading a
    /// step's results allocates nothing.
    outputs: Option<(usize, wgpu::Buffer)>,
    faults: Faults,
}

/// What to change when a step does not fit; the trainer replaces it with advice for its settings.
pub const FIT_ADVICE: &str = "use a smaller batch or model";

/// `WGPT_DEBUG` is set (and not 0): print the schedule and the memory plan.
pub(crate) fn debug_enabled() -> bool {
    std::env::var("WGPT_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Step {
    pub async fn compile(gpu: &Gpu, cache: &mut PipelineCache, program: Program) -> Result<Step> {
        let Program { tensors, mut dispatches, storage, max_binding, max_buffer, kernels } = program;
        let choices = tuning::choose(gpu, cache, &kernels, storage, &mut dispatches).await?;
        let max_binding = max_binding.map_or(gpu.max_binding(), |m| m.min(gpu.max_binding()));
        let max_buffer = max_buffer.map_or(gpu.max_buffer(), |m| m.min(gpu.max_buffer()));
        let plan = plan(&tensors, &dispatches, gpu.align(), max_buffer);
        // Arenas split between tensors: only a tensor larger than a buffer can overflow one.
        if let Some(t) = tensors.list.iter().find(|t| t.view.is_none() && t.bytes() > max_buffer) {
            return Err(Error::Limit {
                tensor: t.name.clone(),
                what: "max_buffer_size",
                needed: Bytes(t.bytes()),
                limit: Bytes(max_buffer),
                advice: FIT_ADVICE.into(),
            });
        }
        if debug_enabled() && plan.arenas.len() > 6 {
            let parts: Vec<String> = plan.arenas.iter().map(|a| format!("{} {:#}", a.label(), Bytes(a.size))).collect();
            eprintln!("memory plan buffers: {}", parts.join(", "));
        }
        if let Some((t, size)) = plan.widest_binding(&dispatches).filter(|&(_, s)| s > max_binding) {
            return Err(Error::Limit {
                tensor: tensors.get(t).name.clone(),
                what: "max_storage_buffer_binding_size",
                needed: Bytes(size),
                limit: Bytes(max_binding),
                advice: FIT_ADVICE.into(),
            });
        }
        for d in &dispatches {
            let maxg = gpu.limits.max_compute_workgroups_per_dimension;
            if let Some(&g) = d.groups.iter().find(|&&g| g > maxg) {
                return Err(Error::Workgroups { entry: d.entry.to_string(), groups: g, limit: maxg });
            }
        }
        if let Some(cap) = gpu.memory_cap.filter(|&cap| plan.total() > cap) {
            return Err(Error::OutOfMemory {
                plan: plan.summary(),
                available: format!("WGPT_DEVICE_MEMORY allows {:#}", Bytes(cap)),
                advice: FIT_ADVICE.into(),
            });
        }
        // The device may still refuse: a failed allocation is an out-of-memory error, not a panic.
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffers: Vec<Option<wgpu::Buffer>> = plan
            .arenas
            .iter()
            .map(|a| {
                (a.size > 0).then(|| {
                    gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&a.label()),
                        size: a.size.div_ceil(4) * 4,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
            })
            .collect();
        if let Some(e) = scope.pop().await {
            return Err(Error::OutOfMemory {
                plan: plan.summary(),
                available: format!("the device could not allocate it ({})", e.to_string().trim()),
                advice: FIT_ADVICE.into(),
            });
        }

        // All uniforms live in one buffer, each at an aligned offset.
        let ualign = gpu.limits.min_uniform_buffer_offset_alignment as u64;
        let mut uoffsets = Vec::with_capacity(dispatches.len());
        let mut udata: Vec<u8> = Vec::new();
        for d in &dispatches {
            let off = (udata.len() as u64).div_ceil(ualign) * ualign;
            udata.resize(off as usize, 0);
            udata.extend_from_slice(bytemuck::cast_slice(&d.uniform));
            udata.resize(off as usize + (d.uniform.len() * 4).div_ceil(16).max(1) * 16, 0);
            uoffsets.push(off);
        }
        let ubuf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniforms"),
            size: (udata.len() as u64).max(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&ubuf, 0, &udata);

        // Bound where an entry point declares a storage binding a dispatch does not read
        // (`Dispatch::spare`): a matmul's residual or GELU tensor when it has none. Each spare
        // binding of a dispatch gets its own slot: overlapping writable bindings are an error in
        // WebGPU even when nothing writes them.
        let slot = gpu.align().max(256);
        let slots = dispatches.iter().map(|d| d.spare.len()).max().unwrap_or(0).max(1) as u64;
        let placeholder = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unread binding"),
            size: slot * slots,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });

        cache.prepare(gpu, &dispatches, storage).await?;
        let mut compiled = Vec::with_capacity(dispatches.len());
        for (di, d) in dispatches.iter().enumerate() {
            let kernel = cache.get(gpu, d, storage).await?;
            let bind_err = |reason: String| Error::Binding { entry: d.entry.to_string(), reason };
            let mut entries = Vec::new();
            for &(binding, kind) in &kernel.bindings {
                match kind {
                    BindingKind::Uniform => {
                        if d.uniform.is_empty() {
                            return Err(bind_err(format!(
                                "@binding({binding}) is a uniform but no uniform words were given"
                            )));
                        }
                        let size = (d.uniform.len() as u64 * 4).div_ceil(16) * 16;
                        entries.push(wgpu::BindGroupEntry {
                            binding,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &ubuf,
                                offset: uoffsets[di],
                                size: wgpu::BufferSize::new(size),
                            }),
                        });
                    }
                    BindingKind::Storage { .. } if d.spare.contains(&binding) => {
                        let k = d.spare.iter().position(|&b| b == binding).unwrap() as u64;
                        entries.push(wgpu::BindGroupEntry {
                            binding,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &placeholder,
                                offset: k * slot,
                                size: wgpu::BufferSize::new(slot),
                            }),
                        });
                    }
                    BindingKind::Storage { .. } => {
                        let Some(&(_, t)) = d.args.iter().find(|a| a.0 == binding) else {
                            return Err(bind_err(format!("no tensor bound to @binding({binding})")));
                        };
                        let p = plan.placement[t.index()];
                        let Some(buf) = &buffers[p.arena] else {
                            return Err(bind_err(format!("tensor {} is empty", tensors.get(t).name)));
                        };
                        entries.push(wgpu::BindGroupEntry {
                            binding,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: buf,
                                offset: p.offset,
                                size: wgpu::BufferSize::new(p.size.div_ceil(4) * 4),
                            }),
                        });
                    }
                }
            }
            for &(binding, t) in &d.args {
                if !kernel.bindings.iter().any(|b| b.0 == binding) {
                    return Err(bind_err(format!(
                        "tensor {} given for @binding({binding}), which the entry point does not use",
                        tensors.get(t).name
                    )));
                }
            }
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(d.entry),
                layout: &kernel.layout,
                entries: &entries,
            });
            if let Some(e) = scope.pop().await {
                return Err(bind_err(e.to_string()));
            }
            compiled.push(Compiled { kernel, bind_group, groups: d.groups });
        }

        let outputs = plan.arenas.iter().position(|a| a.name == Class::Output.name() && a.size > 0).map(|i| {
            let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("outputs readback"),
                size: plan.arenas[i].size.div_ceil(4) * 4,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (i, staging)
        });
        let step = Step {
            device: gpu.device.clone(),
            queue: gpu.queue.clone(),
            tensors,
            dispatches,
            plan,
            choices,
            buffers,
            compiled,
            timestamp_period: gpu
                .features
                .contains(wgpu::Features::TIMESTAMP_QUERY)
                .then(|| gpu.queue.get_timestamp_period()),
            outputs,
            faults: gpu.faults.clone(),
        };
        if debug_enabled() {
            eprintln!("{}", step.schedule_report());
            eprintln!("{}", step.plan.report(&step.tensors));
            for c in &step.choices {
                eprintln!("{}", c.describe());
            }
        }
        Ok(step)
    }

    /// The first fault the device reported (lost, or an error outside any scope), if any.
    pub fn fault(&self) -> Option<String> {
        self.faults.get()
    }

    /// Destroys the device (fault-injection tests: what a driver reset does to a run).
    pub fn lose_device(&self) {
        self.device.destroy()
    }

    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }

    /// Records `range` of the dispatch list into one compute pass and submits it.
    pub fn run_range(&self, range: Range<usize>) {
        self.run_ranges(&[range]);
    }

    /// Records the `ranges` of the dispatch list, in order, into one compute pass and submits it.
    pub fn run_ranges(&self, ranges: &[Range<usize>]) {
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            for c in ranges.iter().flat_map(|r| &self.compiled[r.clone()]) {
                pass.set_pipeline(&c.kernel.pipeline);
                pass.set_bind_group(0, &c.bind_group, &[]);
                pass.dispatch_workgroups(c.groups[0], c.groups[1], c.groups[2]);
            }
        }
        self.queue.submit([enc.finish()]);
    }

    pub fn run(&self) {
        self.run_range(0..self.compiled.len());
    }

    /// Blocks until the submitted work has finished (native only: the web cannot block).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
        self.fault().map_or(Ok(()), |fault| Err(Error::Gpu(fault)))
    }

    fn locate(&self, id: TensorId) -> Result<(&wgpu::Buffer, u64, u64)> {
        let p = self.plan.placement[id.index()];
        if p.arena == crate::graph::memplan::UNPLACED {
            return Err(Error::Other(format!(
                "tensor '{}' has no memory in this program (no dispatch uses it: a forward-only program has no \
                 gradients or optimizer state)",
                self.tensors.get(id).name
            )));
        }
        let buf = self.buffers[p.arena].as_ref().expect("tensor in an empty arena");
        Ok((buf, p.offset, p.size))
    }

    /// Writes host data into a tensor (ids, hyper-parameters, weights).
    pub fn write(&self, id: TensorId, bytes: &[u8]) -> Result<()> {
        let (buf, off, size) = self.locate(id)?;
        if bytes.len() as u64 != size {
            return Err(Error::Other(format!(
                "write to tensor '{}': {} bytes given, {} expected",
                self.tensors.get(id).name,
                bytes.len(),
                size
            )));
        }
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(buf, off, bytes);
        } else {
            // Copies move whole 4-byte words; an odd number of f16 values is padded with zeros into
            // the tensor's alignment padding (roots end on 256-byte boundaries, flat parameter views
            // on multiples of 128 elements).
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(buf, off, &padded);
        }
        Ok(())
    }

    /// Writes floats, converted to the tensor's storage type (f16 tensors round to nearest).
    pub fn write_f32(&self, id: TensorId, data: &[f32]) -> Result<()> {
        match self.tensors.get(id).dtype {
            DType::F16 => {
                let h: Vec<u16> = data.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect();
                self.write(id, bytemuck::cast_slice(&h))
            }
            _ => self.write(id, bytemuck::cast_slice(data)),
        }
    }

    /// Writes `data` into an f32 tensor from element `at` on, leaving the rest as it is; into an
    /// f16 one (rounded to nearest) when `at` and the length are even.
    pub fn write_f32_at(&self, id: TensorId, at: usize, data: &[f32]) -> Result<()> {
        let (buf, off, size) = self.locate(id)?;
        let t = self.tensors.get(id);
        let fits = |width: u64| (at + data.len()) as u64 * width <= size;
        match t.dtype {
            DType::F32 if fits(4) => self.queue.write_buffer(buf, off + at as u64 * 4, bytemuck::cast_slice(data)),
            DType::F16 if fits(2) && at.is_multiple_of(2) && data.len().is_multiple_of(2) => {
                let h: Vec<u16> = data.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect();
                self.queue.write_buffer(buf, off + at as u64 * 2, bytemuck::cast_slice(&h));
            }
            _ => {
                return Err(Error::Other(format!(
                    "write to tensor '{}': {} values at {at} do not fit its {size} bytes of {:?}",
                    t.name,
                    data.len(),
                    t.dtype
                )))
            }
        }
        Ok(())
    }

    pub fn write_u32(&self, id: TensorId, data: &[u32]) -> Result<()> {
        self.write(id, bytemuck::cast_slice(data))
    }

    /// Copies a tensor back to the host once the queued work is done.
    /// Outputs (loss, norms) go through the staging buffer made at compile time; other tensors
    /// (checkpoints, tests) through a temporary one.
    pub async fn read(&self, id: TensorId) -> Result<Vec<u8>> {
        let (_, _, size) = self.locate(id)?;
        self.read_bytes(id, 0, size).await
    }

    /// `size` bytes of a tensor from byte `from` on (`from` a multiple of 4).
    async fn read_bytes(&self, id: TensorId, from: u64, size: u64) -> Result<Vec<u8>> {
        let (buf, off, _) = self.locate(id)?;
        let off = off + from;
        let padded = size.div_ceil(4) * 4;
        let arena = self.plan.placement[id.index()].arena;
        let temp;
        let (staging, at) = match &self.outputs {
            Some((a, staging)) if *a == arena => (staging, off),
            _ => {
                temp = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: padded,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (&temp, 0)
            }
        };
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        enc.copy_buffer_to_buffer(buf, off, staging, at, padded);
        self.queue.submit([enc.finish()]);
        map_read(&self.device, staging).await?;
        // An error no scope caught (wgpu would have panicked) makes every later result suspect.
        if let Some(fault) = self.fault() {
            return Err(Error::Gpu(fault));
        }
        let data = staging.get_mapped_range(at..at + padded).map_err(|e| Error::Gpu(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(data[..size as usize].to_vec())
    }

    /// Reads floats, converted from the tensor's storage type.
    pub async fn read_f32(&self, id: TensorId) -> Result<Vec<f32>> {
        let bytes = self.read(id).await?;
        Ok(match self.tensors.get(id).dtype {
            DType::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            _ => bytemuck::cast_slice(&bytes).to_vec(),
        })
    }

    /// `n` values of an f32 tensor, or of an f16 one (an even `at` and `n`: copies move 4-byte
    /// words), from element `at` on (a rank's shard of a flat group).
    pub async fn read_f32_at(&self, id: TensorId, at: usize, n: usize) -> Result<Vec<f32>> {
        let (_, _, size) = self.locate(id)?;
        let t = self.tensors.get(id);
        let width = match t.dtype {
            DType::F32 => 4,
            DType::F16 if at.is_multiple_of(2) && n.is_multiple_of(2) => 2,
            _ => 0,
        };
        if width == 0 || ((at + n) * width) as u64 > size {
            return Err(Error::Other(format!("read of tensor '{}': {n} values at {at} are outside it", t.name)));
        }
        let bytes = self.read_bytes(id, (at * width) as u64, (n * width) as u64).await?;
        Ok(match width {
            2 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            _ => bytemuck::cast_slice(&bytes).to_vec(),
        })
    }

    /// Queues copies of tensors (f32 or f16) behind the work submitted so far and returns at once;
    /// `finish_read` waits for them. The host can then work (exchange one bucket of gradients)
    /// while the device runs what is submitted after.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn start_read(&self, ids: &[TensorId]) -> Result<PendingRead> {
        let mut parts = Vec::new();
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bucket") });
        // Copies move whole 4-byte words: an odd number of f16 values takes its tensor's padding.
        let total: u64 = ids.iter().map(|&id| self.tensors.get(id).bytes().div_ceil(4) * 4).sum();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bucket readback"),
            size: total.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut at = 0;
        for &id in ids {
            let (buf, off, size) = self.locate(id)?;
            let t = self.tensors.get(id);
            if !matches!(t.dtype, DType::F32 | DType::F16) {
                return Err(Error::Other(format!("start_read: '{}' holds no floats", t.name)));
            }
            let padded = size.div_ceil(4) * 4;
            enc.copy_buffer_to_buffer(buf, off, &staging, at, padded);
            parts.push((at as usize, t.numel(), t.dtype));
            at += padded;
        }
        let index = self.queue.submit([enc.finish()]);
        let (tx, done) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        Ok(PendingRead { staging, index, parts, done })
    }

    /// Waits for a `start_read` (only for its own submission, not for later work) and returns
    /// each tensor's values.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_read(&self, p: PendingRead) -> Result<Vec<Vec<f32>>> {
        let gpu = |e: String| Error::Gpu(e);
        let wait = wgpu::PollType::Wait { submission_index: Some(p.index), timeout: None };
        self.device.poll(wait).map_err(|e| gpu(e.to_string()))?;
        let mapped = match p.done.try_recv() {
            Ok(r) => r,
            // The callback runs on a poll after the submission completes: one more, for all work.
            Err(_) => {
                self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| gpu(e.to_string()))?;
                p.done.try_recv().map_err(|_| gpu("bucket readback was not mapped".into()))?
            }
        };
        mapped.map_err(|e| gpu(e.to_string()))?;
        if let Some(fault) = self.fault() {
            return Err(Error::Gpu(fault));
        }
        let data = p.staging.get_mapped_range(..).map_err(|e| gpu(e.to_string()))?;
        let out = p
            .parts
            .iter()
            .map(|&(at, n, dtype)| match dtype {
                DType::F16 => data[at..at + 2 * n]
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                _ => bytemuck::cast_slice(&data[at..at + 4 * n]).to_vec(),
            })
            .collect();
        Ok(out)
    }

    pub async fn read_u32(&self, id: TensorId) -> Result<Vec<u32>> {
        Ok(bytemuck::cast_slice(&self.read(id).await?).to_vec())
    }

    /// The dispatch list as text (for `WGPT_DEBUG=1`).
    pub fn schedule_report(&self) -> String {
        let mut s = format!("schedule: {} dispatches\n", self.dispatches.len());
        for (i, d) in self.dispatches.iter().enumerate() {
            let args: Vec<String> = d.args.iter().map(|(b, t)| format!("{b}:{}", self.tensors.get(*t).name)).collect();
            let _ = writeln!(s, "  {i:4} {:<28} groups {:?}  {}", d.entry, d.groups, args.join(" "));
        }
        s
    }
}

/// A readback `Step::start_read` queued: wait for it with `Step::finish_read`.
#[cfg(not(target_arch = "wasm32"))]
pub struct PendingRead {
    staging: wgpu::Buffer,
    index: wgpu::SubmissionIndex,
    /// (byte offset in `staging`, elements, type) of each tensor.
    parts: Vec<(usize, usize, DType)>,
    done: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

/// Maps a buffer for reading and waits for it (polling the device natively).
pub async fn map_read(device: &wgpu::Device, buffer: &wgpu::Buffer) -> Result<()> {
    let (tx, rx) = futures_channel::oneshot::channel();
    buffer.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
    #[cfg(target_arch = "wasm32")]
    let _ = device;
    rx.await.map_err(|_| Error::Gpu("readback was cancelled".into()))?.map_err(|e| Error::Gpu(e.to_string()))
}
