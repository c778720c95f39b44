//! `wgpt bench`: training-step throughput of a preset on the current adapter, from random
//! weights and tokens (no corpus needed): milliseconds per step, tokens per second, dispatches
//! and the memory plan's total.

use std::time::Instant;

use super::config::RunConfig;
use super::step::{StepConfig, TrainStep};
use super::trainer::init_params;
use crate::data::batches::Rng;
use crate::error::Result;
use crate::gpu::{Gpu, PipelineCache};
use crate::model::GptConfig;

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub preset: String,
    pub batch: usize,
    pub seq: usize,
    pub dispatches: usize,
    pub bytes: u64,
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    /// With `profile`: (entry point, dispatches, total ms when each is run and waited on alone),
    /// slowest first. Sums exceed ms_per_step by the per-submit overhead.
    pub profile: Vec<(String, usize, f64)>,
}

/// Vocabulary the preset trains with: the 65 characters of tinyshakespeare, or GPT-2's BPE.
pub fn preset_vocab(cfg: &RunConfig) -> usize {
    if cfg.tokenizer == "bpe" {
        cfg.vocab_size
    } else {
        65
    }
}

/// Times `steps` training steps after one warm-up step.
pub fn bench(gpu: &Gpu, cfg: &RunConfig, steps: usize, profile: bool) -> Result<BenchResult> {
    let model = GptConfig {
        vocab_size: preset_vocab(cfg),
        block_size: cfg.block_size,
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_embd: cfg.n_embd,
    };
    let mut ts =
        pollster::block_on(TrainStep::build(gpu, &mut PipelineCache::new(), StepConfig::new(model, cfg.batch_size)))?;
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
    let mut by_entry: Vec<(String, usize, f64)> = Vec::new();
    if profile {
        ts.step.wait()?;
        for (i, d) in ts.step.dispatches.iter().enumerate() {
            let t0 = Instant::now();
            ts.step.run_range(i..i + 1);
            ts.step.wait()?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let name = format!("{:?}::{}", d.family, d.entry);
            match by_entry.iter_mut().find(|e| e.0 == name) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += ms;
                }
                None => by_entry.push((name, 1, ms)),
            }
        }
        by_entry.sort_by(|a, b| b.2.total_cmp(&a.2));
    }
    Ok(BenchResult {
        preset: cfg.preset.clone(),
        batch: cfg.batch_size,
        seq: cfg.block_size,
        dispatches: ts.step.len(),
        bytes: ts.step.plan.total(),
        ms_per_step: secs * 1e3,
        tokens_per_s: n as f64 / secs,
        profile: by_entry,
    })
}
