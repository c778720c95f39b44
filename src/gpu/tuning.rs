//! Which variant of each kernel family a compiled step runs on this adapter. Per distinct product:
//! the variant a setting names, else the one the run recorded, else the fastest of the variants
//! the adapter's limits allow, timed on the device (cached on disk, `tuning_cache.rs`), else a
//! heuristic by adapter type. The step keeps every choice, so a run records what it ran.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::context::Gpu;
use super::pipeline::PipelineCache;
use super::shader::StorageType;
use super::tuning_cache::DiskCache;
use crate::error::{Error, Result};
use crate::ops::attention;
use crate::ops::matmul::{Pass, Tuned, Variant};
use crate::ops::{Dispatch, Tunable};

/// When products are timed (`--set autotune=…`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Autotune {
    /// On GPUs, for products large enough to matter; CPU adapters take the heuristic.
    #[default]
    Auto,
    /// Every product on every adapter.
    On,
    /// Never: the heuristic.
    Off,
    /// Every product, timed again whatever the cache holds.
    Refresh,
}

impl Autotune {
    pub const NAMES: [&'static str; 4] = ["auto", "on", "off", "refresh"];

    pub fn name(self) -> &'static str {
        match self {
            Autotune::Auto => "auto",
            Autotune::On => "on",
            Autotune::Off => "off",
            Autotune::Refresh => "refresh",
        }
    }

    pub fn parse(s: &str) -> Option<Autotune> {
        [Autotune::Auto, Autotune::On, Autotune::Off, Autotune::Refresh].into_iter().find(|a| a.name() == s)
    }
}

/// How a step's kernel variants are picked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelPolicy {
    /// One matmul variant for every product (`--set matmul=…`); None: per product.
    pub matmul: Option<Variant>,
    /// The attention variant (`--set attention=…`); None: by adapter type (`attention_heuristic`).
    pub attention: Option<attention::Variant>,
    pub autotune: Autotune,
    /// The choices a run recorded (config.json "wgpt"."kernels"), by product key: reused as they are.
    pub recorded: BTreeMap<String, Variant>,
    /// The timing cache's folder (None: `WGPT_CACHE_DIR`, else the user's cache directory).
    pub cache_dir: Option<PathBuf>,
    /// Leave every dispatch on the variant it was built with (the timing programs themselves).
    pub as_built: bool,
}

/// Where a choice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Asked,
    Recorded,
    Heuristic,
    Cached,
    Timed,
}

/// One distinct product of the step and the variant it runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub key: String,
    pub variant: Variant,
    pub how: How,
    /// Milliseconds per run of each candidate, when timed now or earlier (cache).
    pub timings: Vec<(Variant, f64)>,
}

impl Choice {
    pub fn describe(&self) -> String {
        let times: Vec<String> = self.timings.iter().map(|(v, ms)| format!("{} {ms:.3} ms", v.name())).collect();
        let times = if times.is_empty() { String::new() } else { format!(" ({})", times.join(", ")) };
        format!("kernel: {} on {} [{:?}]{times}", self.key, self.variant.name(), self.how)
    }
}

/// Products below this many multiply-adds are not worth timing under `autotune=auto`.
const WORTH_TIMING: u64 = 1 << 22;

/// Whether the adapter's limits and features allow the variant.
pub fn runs_on(gpu: &Gpu, v: Variant) -> bool {
    let (invocations, workgroup_bytes) = v.needs();
    let l = &gpu.limits;
    let fits = invocations <= l.max_compute_invocations_per_workgroup
        && invocations <= l.max_compute_workgroup_size_x
        && workgroup_bytes <= l.max_compute_workgroup_storage_size;
    // The subgroup variant broadcasts from lanes 0..8 of subgroups exactly 8 wide. Browsers
    // (Tint) want `enable subgroups;`, which naga 30 does not parse yet.
    let subgroups_of = |n: u32| {
        gpu.features.contains(wgpu::Features::SUBGROUP)
            && gpu.info.subgroup_min_size == n
            && gpu.info.subgroup_max_size == n
            && cfg!(not(target_arch = "wasm32"))
    };
    fits && match v {
        Variant::Register | Variant::Tiled => true,
        Variant::Subgroup => subgroups_of(8),
        // One subgroup of 32 per workgroup, and the 16 x 16 x 16 f16 -> f32 shape in hardware.
        Variant::Coop => {
            subgroups_of(32)
                && gpu.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16)
                && coop_16x16_f16(gpu)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn coop_16x16_f16(gpu: &Gpu) -> bool {
    use wgpu::CooperativeScalarType as S;
    gpu.adapter
        .cooperative_matrix_properties()
        .iter()
        .any(|p| (p.m_size, p.n_size, p.k_size) == (16, 16, 16) && p.ab_type == S::F16 && p.cr_type == S::F32)
}

#[cfg(target_arch = "wasm32")]
fn coop_16x16_f16(_: &Gpu) -> bool {
    false
}

/// Without a measurement: CPU adapters (lavapipe, SwiftShader) run the register tile, which is
/// shaped for their per-lane loads, sharing A across subgroups where they are 8 wide (a
/// shakespeare-char step 1.25x faster on lavapipe); GPUs the workgroup tiles, where their limits
/// allow them.
pub fn heuristic(gpu: &Gpu) -> Variant {
    if gpu.info.device_type != wgpu::DeviceType::Cpu && runs_on(gpu, Variant::Tiled) {
        Variant::Tiled
    } else if runs_on(gpu, Variant::Subgroup) {
        Variant::Subgroup
    } else {
        Variant::Register
    }
}

/// Whether the adapter's limits allow an attention variant at head size `hs`.
pub fn attention_runs_on(gpu: &Gpu, v: attention::Variant, hs: usize) -> bool {
    let (invocations, bytes) = v.needs(hs);
    let l = &gpu.limits;
    invocations <= l.max_compute_invocations_per_workgroup
        && invocations <= l.max_compute_workgroup_size_x
        && bytes <= l.max_compute_workgroup_storage_size
        && (v != attention::Variant::Shared || gpu.consecutive_lanes_of_8)
}

/// Attention is not timed: on CPU adapters `shared` where their subgroups allow it, else `rows`
/// (both measured there; `shared` ran the three kernels 1.6x faster on lavapipe); `tiled` on GPUs
/// where it fits (the `rows` kernels keep 8 rows of private arrays per invocation, which spill on
/// a GPU). The choice follows the adapter, never a timing, so it is not recorded with a run.
pub fn attention_heuristic(gpu: &Gpu, hs: usize) -> attention::Variant {
    if gpu.info.device_type != wgpu::DeviceType::Cpu && attention_runs_on(gpu, attention::Variant::Tiled, hs) {
        attention::Variant::Tiled
    } else if attention_runs_on(gpu, attention::Variant::Shared, hs) {
        attention::Variant::Shared
    } else {
        attention::Variant::Rows
    }
}

/// The product's identity for choices and the cache: pass, shape, operand layout, storage type.
pub fn key(t: &Tuned, storage: StorageType) -> String {
    let pass = match t.pass {
        Pass::Forward { bias: true, .. } => "forward",
        Pass::Forward { bias: false, .. } => "forward_nobias",
        Pass::Dx { .. } => "dx",
        Pass::Dw { bias: None } => "dw",
        Pass::Dw { bias: Some(_) } => "dw_bias",
    };
    let p = &t.product;
    let st = match storage {
        StorageType::F32 => "f32",
        StorageType::F16 => "f16",
    };
    format!("matmul {pass} {}x{}x{} a{}:{} b{}:{} {st}", p.rows, p.inner, p.cols, p.a.0, p.a.1, p.b.0, p.b.1)
}

fn cannot_run(gpu: &Gpu, v: Variant, why: &str, advice: &str) -> Error {
    let (inv, bytes) = v.needs();
    let needs = match v {
        Variant::Subgroup => "subgroups exactly 8 wide (the SUBGROUP feature)".to_string(),
        Variant::Coop => {
            "wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX with 16x16x16 f16 -> f32 matrices, subgroups exactly 32 wide \
             and shader-f16"
                .to_string()
        }
        _ => format!("{inv} invocations per workgroup and {bytes} bytes of workgroup memory"),
    };
    Error::Other(format!(
        "matmul variant '{}' ({why}) needs {needs}, which {} lacks; {advice}",
        v.name(),
        gpu.info.name
    ))
}

/// `--set matmul=…` with each variant this adapter runs.
fn runnable_advice(gpu: &Gpu, storage: StorageType) -> String {
    let names: Vec<&str> =
        Variant::ALL.into_iter().filter(|&v| runs_on(gpu, v) && v.allows(storage)).map(Variant::name).collect();
    format!("use --set matmul={} (it computes with other kernels than the run's so far)", names.join(" or "))
}

/// Moves every tunable dispatch to its chosen variant (keeping its tensors); the distinct products
/// with their choices, in dispatch order.
pub async fn choose(
    gpu: &Gpu,
    cache: &mut PipelineCache,
    policy: &KernelPolicy,
    storage: StorageType,
    dispatches: &mut [Dispatch],
) -> Result<Vec<Choice>> {
    if policy.as_built {
        return Ok(Vec::new());
    }
    if let Some(v) = policy.matmul.filter(|&v| !runs_on(gpu, v)) {
        return Err(cannot_run(gpu, v, "--set matmul", "use --set matmul=auto"));
    }
    if let Some(v) = policy.matmul.filter(|&v| !v.allows(storage)) {
        return Err(Error::Other(format!(
            "--set matmul={}: this variant multiplies f16 operands; use it with --precision f16",
            v.name()
        )));
    }
    // `coop` has not run on a GPU yet: only when asked, never timed into a run.
    let candidates: Vec<Variant> =
        Variant::ALL.into_iter().filter(|&v| runs_on(gpu, v) && v.allows(storage) && v != Variant::Coop).collect();
    // Timing needs a blocking wait and a clock: native only (the page takes the heuristic).
    let may_time = !cfg!(target_arch = "wasm32") && candidates.len() > 1;
    let timing = may_time
        && match policy.autotune {
            Autotune::Auto => gpu.info.device_type != wgpu::DeviceType::Cpu,
            Autotune::On | Autotune::Refresh => true,
            Autotune::Off => false,
        };
    let mut disk =
        if timing && policy.matmul.is_none() { Some(DiskCache::open(gpu, policy.cache_dir.clone())) } else { None };
    let mut choices: Vec<Choice> = Vec::new();
    for d in dispatches.iter_mut() {
        if let Some(Tunable::Attention(t)) = d.tunable {
            let hs = t.op.hs;
            let v = policy.attention.unwrap_or_else(|| attention_heuristic(gpu, hs));
            if !attention_runs_on(gpu, v, hs) {
                let (inv, bytes) = v.needs(hs);
                let needs = match v {
                    attention::Variant::Shared => "subgroups exactly 8 wide, each of 8 consecutive invocations".into(),
                    _ => format!(
                        "{inv} invocations per workgroup and {bytes} bytes of workgroup memory at head size {hs}"
                    ),
                };
                return Err(Error::Other(format!(
                    "attention variant '{}' needs {needs}, which {} lacks; use --set attention=rows",
                    v.name(),
                    gpu.info.name
                )));
            }
            if t.variant != v {
                let args = std::mem::take(&mut d.args);
                *d = t.dispatch(v);
                d.args = args;
            }
            continue;
        }
        let Some(Tunable::Matmul(t)) = d.tunable else { continue };
        let key = key(&t, storage);
        let variant = match choices.iter().find(|c| c.key == key) {
            Some(c) => c.variant,
            None => {
                let c = pick(gpu, cache, policy, storage, &t, key, &candidates, disk.as_mut()).await?;
                let v = c.variant;
                choices.push(c);
                v
            }
        };
        if t.variant != variant {
            let args = std::mem::take(&mut d.args);
            *d = t.dispatch(variant);
            d.args = args;
        }
    }
    if let Some(disk) = disk {
        disk.save();
    }
    Ok(choices)
}

#[allow(clippy::too_many_arguments)]
async fn pick(
    gpu: &Gpu,
    cache: &mut PipelineCache,
    policy: &KernelPolicy,
    storage: StorageType,
    t: &Tuned,
    key: String,
    candidates: &[Variant],
    disk: Option<&mut DiskCache>,
) -> Result<Choice> {
    let choice = |variant, how, timings| Choice { key: key.clone(), variant, how, timings };
    if let Some(v) = policy.matmul {
        return Ok(choice(v, How::Asked, Vec::new()));
    }
    if let Some(&v) = policy.recorded.get(&key) {
        if !runs_on(gpu, v) {
            return Err(cannot_run(
                gpu,
                v,
                &format!("which the run recorded for {key}"),
                &runnable_advice(gpu, storage),
            ));
        }
        return Ok(choice(v, How::Recorded, Vec::new()));
    }
    let p = &t.product;
    let small = policy.autotune == Autotune::Auto && (p.rows as u64 * p.inner as u64 * p.cols as u64) < WORTH_TIMING;
    let Some(disk) = disk.filter(|_| !small) else {
        return Ok(choice(heuristic(gpu), How::Heuristic, Vec::new()));
    };
    if policy.autotune != Autotune::Refresh {
        if let Some((v, timings)) = disk.get(&key).filter(|(v, _)| candidates.contains(v)) {
            return Ok(choice(v, How::Cached, timings));
        }
    }
    match time(gpu, cache, storage, t, candidates).await {
        Ok(timings) => {
            let best = timings.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|b| b.0).unwrap_or(heuristic(gpu));
            disk.put(&key, best, &timings);
            Ok(choice(best, How::Timed, timings))
        }
        // A fault of the device is the run's end, not the timing's.
        Err(e) if gpu.faults.get().is_some() => Err(e),
        // The timing program did not fit or a variant did not compile: the base variant, which
        // every adapter runs, and no cache entry (the next run tries again).
        Err(e) => {
            let e = e.to_string();
            eprintln!(
                "notice: timing the matmul variants of {key} failed ({}); using register",
                e.lines().next().unwrap_or("")
            );
            Ok(choice(Variant::Register, How::Heuristic, Vec::new()))
        }
    }
}

/// Milliseconds per run of the product on each candidate: operands of its size (zeros: the
/// arithmetic costs the same), each variant warmed up once, then runs alternating between the
/// variants, each fenced by a wait, the fastest run of each kept.
#[cfg(not(target_arch = "wasm32"))]
async fn time(
    gpu: &Gpu,
    cache: &mut PipelineCache,
    storage: StorageType,
    t: &Tuned,
    candidates: &[Variant],
) -> Result<Vec<(Variant, f64)>> {
    use super::executor::{Program, Step};
    use crate::graph::{Class, DType, Tensors};
    let p = &t.product;
    let st = match storage {
        StorageType::F32 => DType::F32,
        StorageType::F16 => DType::F16,
    };
    let mut tensors = Tensors::default();
    let a_len = p.a_off + (p.rows - 1) * p.a.0 + (p.inner - 1) * p.a.1 + 1;
    let b_len = (p.inner - 1) * p.b.0 + (p.cols - 1) * p.b.1 + 1;
    let c_len = p.c_off + (p.rows - 1) * p.c_rs + p.cols;
    let c = tensors.add("tune c", &[c_len], st, Class::Scratch);
    let a = tensors.add("tune a", &[a_len], st, Class::Scratch);
    let b = tensors.add("tune b", &[b_len], st, Class::Scratch);
    let bias = tensors.add("tune bias", &[p.cols], st, Class::Scratch);
    let res = tensors.add("tune res", &[c_len], st, Class::Scratch);
    let gelu = tensors.add("tune gelu", &[c_len], st, Class::Scratch);
    let dispatches: Vec<Dispatch> = candidates
        .iter()
        .map(|&v| {
            let mut d = t.dispatch(v).arg(1, c).arg(2, a).arg(3, b);
            let (with_bias, with_res, with_gelu) = match t.pass {
                Pass::Forward { bias, res, gelu } => (bias, res, gelu),
                Pass::Dx { gelu } => (false, false, gelu),
                Pass::Dw { bias } => (bias.is_some(), false, false),
            };
            for (on, binding, t) in [(with_bias, 4, bias), (with_res, 5, res), (with_gelu, 6, gelu)] {
                if on {
                    d = d.arg(binding, t);
                }
            }
            d
        })
        .collect();
    let kernels = KernelPolicy { as_built: true, ..KernelPolicy::default() };
    let program = Program { tensors, dispatches, storage, kernels, ..Default::default() };
    let step = Box::pin(Step::compile(gpu, cache, program)).await?;
    let fenced = |i: usize| -> Result<f64> {
        let t0 = std::time::Instant::now();
        step.run_range(i..i + 1);
        step.wait()?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    let mut best = vec![f64::INFINITY; candidates.len()];
    for i in 0..candidates.len() {
        fenced(i)?;
    }
    for _ in 0..5 {
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(fenced(i)?);
        }
    }
    Ok(candidates.iter().copied().zip(best).collect())
}

#[cfg(target_arch = "wasm32")]
async fn time(_: &Gpu, _: &mut PipelineCache, _: StorageType, _: &Tuned, _: &[Variant]) -> Result<Vec<(Variant, f64)>> {
    Err(Error::Other("timing kernels needs a blocking wait".into()))
}
