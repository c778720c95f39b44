//! `wgpt bench`: training-step throughput of a preset on the current adapter, from random
//! weights and tokens (no corpus needed): milliseconds per step, tokens per second, dispatches
//! and the memory plan's total; `command` prints them as a table or JSON lines.

use std::time::Instant;

use super::config::RunConfig;
use super::llmc;
use super::precision::Precision;
use super::profile::{self, Cost, Profile};
use super::step::{StepConfig, TrainStep};
use super::trainer::init_params;
use crate::data::batches::Rng;
use crate::error::Result;
use crate::gpu::tuning::Choice;
use crate::gpu::{Gpu, PipelineCache};
use crate::graph::memplan::{plan, MemoryPlan};
use crate::graph::{Class, Recompute};
use crate::model::GptConfig;
use crate::ops::matmul::Variant;

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub preset: String,
    pub batch: usize,
    pub seq: usize,
    pub model: GptConfig,
    pub precision: Precision,
    pub recompute: Recompute,
    /// The matmul variant asked for (None: chosen per product) and, when run, what each got.
    pub matmul: Option<Variant>,
    /// The attention variant asked for (None: by adapter type).
    pub attention: Option<crate::ops::attention::Variant>,
    pub choices: Vec<Choice>,
    pub dispatches: usize,
    pub plan: MemoryPlan,
    /// The widest range one dispatch binds (bytes): it must fit the adapter's binding limit.
    pub widest_binding: u64,
    /// Seconds `TrainStep::build` took (buffers, pipelines, bind groups); None with `plan_only`.
    pub compile_s: Option<f64>,
    /// None with `plan_only` or `compile_only`: nothing was run.
    pub ms_per_step: Option<f64>,
    pub tokens_per_s: Option<f64>,
    /// FLOPs and bytes of one step, from the dispatch list.
    pub cost: Cost,
    /// With `--profile`: each kernel's time, FLOPs and bytes.
    pub profile: Option<Profile>,
}

/// `--profile`, with the peak to compute MFU against (`--peak-tflops`; else the known GPUs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProfileAsk {
    pub peak_tflops: Option<f64>,
}

/// Vocabulary the preset trains with: the 65 characters of tinyshakespeare, or GPT-2's BPE.
pub fn preset_vocab(cfg: &RunConfig) -> usize {
    if cfg.tokenizer == "bpe" {
        cfg.vocab_size
    } else {
        65
    }
}

/// The step a preset benchmarks: its model, batch and recomputation policy.
fn model(cfg: &RunConfig) -> GptConfig {
    GptConfig {
        vocab_size: preset_vocab(cfg),
        block_size: cfg.block_size,
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_embd: cfg.n_embd,
    }
}

/// The memory plan of a preset's training step, without allocating or running anything (for
/// models too large to step on this adapter). `max_binding`, `max_buffer` and `align` are the
/// adapter's limits.
pub fn plan_only(cfg: &RunConfig, max_binding: u64, max_buffer: u64, align: u64) -> Result<BenchResult> {
    let (program, _) = TrainStep::program(StepConfig::for_run(model(cfg), cfg), max_binding)?;
    let planned = plan(&program.tensors, &program.dispatches, align, max_buffer);
    Ok(BenchResult {
        preset: cfg.preset.clone(),
        batch: cfg.batch_size,
        seq: cfg.block_size,
        model: model(cfg),
        precision: cfg.precision,
        recompute: cfg.recompute,
        matmul: cfg.matmul,
        attention: cfg.attention,
        choices: Vec::new(),
        dispatches: program.dispatches.len(),
        cost: Cost::sum(&program.dispatches, &planned),
        widest_binding: planned.widest_binding(&program.dispatches).map_or(0, |(_, s)| s),
        plan: planned,
        compile_s: None,
        ms_per_step: None,
        tokens_per_s: None,
        profile: None,
    })
}

/// Builds the step — every buffer created, every pipeline and bind group made — and runs
/// nothing: shows that a shape fits the adapter's limits without the time a step would take.
pub fn compile_only(gpu: &Gpu, cfg: &RunConfig) -> Result<BenchResult> {
    let model = model(cfg);
    let started = Instant::now();
    let ts = pollster::block_on(TrainStep::build(gpu, &mut PipelineCache::new(), StepConfig::for_run(model, cfg)))?;
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).ok();
    let compile_s = started.elapsed().as_secs_f64();
    if let Some(fault) = ts.fault() {
        return Err(crate::error::Error::Other(format!("compiling the step: {fault}")));
    }
    Ok(measured(cfg, model, &ts, Some(compile_s), None, None))
}

/// The result for a built step, with what was measured on it.
fn measured(
    cfg: &RunConfig,
    model: GptConfig,
    ts: &TrainStep,
    compile_s: Option<f64>,
    secs: Option<f64>,
    profile: Option<Profile>,
) -> BenchResult {
    let n = cfg.batch_size * cfg.block_size;
    BenchResult {
        preset: cfg.preset.clone(),
        batch: cfg.batch_size,
        seq: cfg.block_size,
        model,
        precision: cfg.precision,
        recompute: cfg.recompute,
        matmul: cfg.matmul,
        attention: cfg.attention,
        choices: ts.step.choices.clone(),
        dispatches: ts.step.len(),
        cost: Cost::sum(&ts.step.dispatches, &ts.step.plan),
        widest_binding: ts.step.plan.widest_binding(&ts.step.dispatches).map_or(0, |(_, s)| s),
        plan: ts.step.plan.clone(),
        compile_s,
        ms_per_step: secs.map(|s| s * 1e3),
        tokens_per_s: secs.map(|s| n as f64 / s),
        profile,
    }
}

impl BenchResult {
    /// One JSON object: sizes in bytes (peak = the whole plan), times when measured.
    pub fn to_json(&self, adapter: &str) -> serde_json::Value {
        let p = &self.plan;
        serde_json::json!({
            "preset": self.preset,
            "adapter": adapter,
            "batch_size": self.batch,
            "block_size": self.seq,
            "precision": self.precision.name(),
            "recompute": self.recompute.name(),
            "matmul": self.matmul.map_or("auto", Variant::name),
            "attention": self.attention.map_or("auto", crate::ops::attention::Variant::name),
            "kernels": self.choices.iter().map(|c| (c.key.clone(), c.variant.name().into())).collect::<serde_json::Map<String, serde_json::Value>>(),
            "dispatches": self.dispatches,
            "flops_per_step": self.cost.flops,
            "bytes_bound_per_step": self.cost.bytes,
            "model_flops_per_step": profile::model_flops(&self.model, self.batch * self.seq),
            "profile": self.profile.as_ref().zip(self.ms_per_step).map(|(p, ms)| p.to_json(ms)),
            "peak_bytes": p.total(),
            "buffers": p.arenas.iter().filter(|a| a.size > 0).map(|a| serde_json::json!({"arena": a.label(), "bytes": a.size})).collect::<Vec<_>>(),
            "param_bytes": p.class_bytes(Class::Param),
            "grad_bytes": p.class_bytes(Class::Grad),
            "optimizer_bytes": p.class_bytes(Class::Optim),
            "activation_bytes": p.class_bytes(Class::Activation),
            "scratch_bytes": p.class_bytes(Class::Scratch),
            "compile_s": self.compile_s,
            "step_ms": self.ms_per_step,
            "tokens_per_s": self.tokens_per_s,
            // For comparison: what llm.c's CUDA trainer allocates for activations at this shape
            // (bf16, cuDNN attention), by its recompute setting (see train/llmc.rs).
            "llmc_activation_bytes": {
                "recompute0": llmc::activation_bytes(&self.model, self.batch, self.seq, 0, true),
                "recompute1": llmc::activation_bytes(&self.model, self.batch, self.seq, 1, true),
                "recompute2": llmc::activation_bytes(&self.model, self.batch, self.seq, 2, true),
            },
        })
    }
}

/// Times `steps` training steps after one warm-up step; with `ask`, then profiles one more.
pub fn bench(gpu: &Gpu, cfg: &RunConfig, steps: usize, ask: Option<ProfileAsk>) -> Result<BenchResult> {
    let model = model(cfg);
    let started = Instant::now();
    let mut ts = pollster::block_on(TrainStep::build(gpu, &mut PipelineCache::new(), StepConfig::for_run(model, cfg)))?;
    let compile_s = started.elapsed().as_secs_f64();
    let params = init_params(&model, cfg.seed);
    ts.load_params(|name, _| Ok(params[name].clone()))?;
    let n = cfg.batch_size * cfg.block_size;
    let mut rng = Rng(cfg.seed);
    let mut batch = || -> (Vec<u32>, Vec<u32>) {
        let ids: Vec<u32> = (0..n + 1).map(|_| rng.below(model.vocab_size as u64) as u32).collect();
        (ids[..n].to_vec(), ids[1..].to_vec())
    };
    let (ids, targets) = batch();
    pollster::block_on(ts.train_step(&ids, &targets, cfg.lr))?;
    let started = Instant::now();
    for _ in 0..steps {
        let (ids, targets) = batch();
        pollster::block_on(ts.train_step(&ids, &targets, cfg.lr))?;
    }
    let secs = started.elapsed().as_secs_f64() / steps.max(1) as f64;
    let profile = match ask {
        Some(ask) => {
            let peak = match ask.peak_tflops {
                Some(tf) => Some((tf, "--peak-tflops")),
                None => profile::known_peak(&gpu.info.name).map(|tf| (tf, "data sheet")),
            };
            Some(profile::profile(&ts.step, &model, n, 3, peak)?)
        }
        None => None,
    };
    Ok(measured(cfg, model, &ts, Some(compile_s), Some(secs), profile))
}

/// How `wgpt bench` runs and prints (its flags).
pub struct BenchMode {
    pub profile: Option<ProfileAsk>,
    pub json: bool,
    pub plan_only: bool,
    pub compile_only: bool,
    pub memory: Option<u64>,
    pub ranks: usize,
}

pub fn command(
    backend: crate::gpu::context::BackendChoice,
    presets: &[String],
    steps: usize,
    set: &[String],
    mode: BenchMode,
) -> Result<()> {
    let presets: Vec<String> =
        if presets.is_empty() { vec!["tiny".into(), "shakespeare-char".into()] } else { presets.to_vec() };
    let mut cfgs = Vec::new();
    for p in &presets {
        let mut cfg = RunConfig::preset(p)?;
        for kv in set {
            cfg.set(kv)?;
        }
        cfg.validate()?;
        cfg.ranks = mode.ranks;
        cfgs.push(cfg);
    }
    let gpu = pollster::block_on(crate::gpu::Gpu::new(backend));
    let (gpu, adapter) = match gpu {
        Ok(g) => {
            let name = g.describe();
            (Some(g), name)
        }
        // Planning needs only the limits; WebGPU's defaults stand in for an absent adapter.
        Err(_) if mode.plan_only => (None, "none (WebGPU default limits)".to_string()),
        Err(e) => return Err(e),
    };
    if !mode.json {
        println!("adapter: {adapter}");
    }
    for cfg in &mut cfgs {
        if let (Some(g), false) = (&gpu, mode.plan_only) {
            let (precision, notice) = TrainStep::supported_precision(g, cfg.precision);
            cfg.precision = precision;
            if let Some(n) = notice {
                eprintln!("{n}");
            }
        }
        let cfg = &*cfg;
        let budget = super::budget::Budget {
            memory: mode.memory.or(gpu.as_ref().and_then(|g| g.memory_cap)),
            max_buffer: gpu.as_ref().map_or(256 << 20, |g| g.max_buffer()),
            max_binding: gpu.as_ref().map_or(128 << 20, |g| g.max_binding()),
            align: gpu.as_ref().map_or(256, |g| g.align()),
        };
        let r = match &gpu {
            Some(g) if mode.compile_only => compile_only(g, cfg)?,
            Some(g) if !mode.plan_only => bench(g, cfg, steps, mode.profile)?,
            _ => plan_only(cfg, budget.max_binding, budget.max_buffer, budget.align)?,
        };
        let fits = if mode.plan_only && budget.memory.is_some() { Some(budget.fits(cfg)?) } else { None };
        if mode.json {
            let mut j = r.to_json(&adapter);
            if let Some(fits) = &fits {
                budget.add_json(&mut j, cfg, fits)?;
            }
            println!("{j}");
            continue;
        }
        let timing = match (r.ms_per_step, r.tokens_per_s, r.compile_s) {
            (Some(ms), Some(tps), _) => format!("{ms:10.1} ms/step  {tps:10.0} tokens/s"),
            (_, _, Some(s)) => format!("(compiled in {s:.1} s, not run)"),
            _ => "(plan only)".into(),
        };
        println!(
            "{:<18} B={:<3} T={:<5} {} recompute={:<5} matmul={:<8} {:5} dispatches  {timing}",
            r.preset,
            r.batch,
            r.seq,
            r.precision.name(),
            r.recompute.name(),
            r.matmul.map_or("auto", |v| v.name()),
            r.dispatches
        );
        println!("    {}", r.plan.summary());
        if let Some(fits) = &fits {
            print!("{}", budget.report(cfg, fits)?);
        }
        if let (Some(p), Some(ms)) = (&r.profile, r.ms_per_step) {
            print!("{}", p.to_text(ms));
        }
    }
    Ok(())
}
