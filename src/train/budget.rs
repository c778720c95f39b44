//! `wgpt bench --plan-only --memory SIZE`: whether a preset's training step fits a memory budget
//! and the adapter's buffer limit, and for each precision × recompute policy the largest
//! micro-batch that fits and the grad_accum that keeps the run's tokens per step. All from memory
//! plans: nothing is allocated or run.

use super::bench::plan_only;
use super::config::RunConfig;
use super::precision::Precision;
use crate::error::{Bytes, Result};
use crate::graph::Recompute;

/// What a plan must fit: the memory budget (None: only the buffer limit) and the adapter's limits.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub memory: Option<u64>,
    pub max_buffer: u64,
    pub max_binding: u64,
    pub align: u64,
}

/// The largest micro-batch of one precision × recompute policy.
#[derive(Debug, Clone)]
pub struct Fit {
    pub precision: Precision,
    pub recompute: Recompute,
    /// 0: not even one sequence fits.
    pub batch: usize,
    /// The plan at that batch (at batch 1 when none fits).
    pub bytes: u64,
    /// Micro-batches per step for the run's tokens per step (rounded up where they do not divide).
    pub grad_accum: usize,
}

/// Micro-batches are searched up to this many sequences.
const MAX_BATCH: usize = 4096;

impl Budget {
    /// The plan's bytes at `cfg`, and whether it fits: no tensor over the buffer limit (arenas
    /// split between tensors, so only a tensor alone can pass it), no binding over the binding
    /// limit (the residual stream, B·T·C, is bound whole) and the total within the budget.
    pub fn check(&self, cfg: &RunConfig) -> Result<(bool, u64)> {
        let r = plan_only(cfg, self.max_binding, self.max_buffer, self.align)?;
        let total = r.plan.total();
        let buffers = r.plan.arenas.iter().all(|a| a.size <= self.max_buffer);
        let bindings = r.widest_binding <= self.max_binding;
        Ok((buffers && bindings && self.memory.is_none_or(|m| total <= m), total))
    }

    /// For every precision × recompute policy, the largest micro-batch of `cfg`'s shape that fits.
    pub fn fits(&self, cfg: &RunConfig) -> Result<Vec<Fit>> {
        let tokens = cfg.batch_size * cfg.block_size * cfg.grad_accum;
        let mut out = Vec::new();
        for precision in [Precision::F32, Precision::F16] {
            for recompute in Recompute::ALL {
                // Planned at the grad_accum the batch needs: with more than one micro-batch the
                // step keeps an accumulator for the tied wte's gradient (`train/accumulate.rs`).
                let accum = |b: usize| tokens.div_ceil(b * cfg.block_size).max(1);
                let at =
                    |b: usize| RunConfig { precision, recompute, batch_size: b, grad_accum: accum(b), ..cfg.clone() };
                let (ok, first) = self.check(&at(1))?;
                let (mut good, mut bytes) = (if ok { 1 } else { 0 }, first);
                if ok {
                    // Double while it fits, then bisect between the last fit and the first miss.
                    let mut bad = None;
                    while good < MAX_BATCH {
                        match self.check(&at(good * 2))? {
                            (true, b) => (good, bytes) = (good * 2, b),
                            _ => {
                                bad = Some(good * 2);
                                break;
                            }
                        }
                    }
                    if let Some(mut bad) = bad {
                        while bad - good > 1 {
                            let mid = (good + bad) / 2;
                            match self.check(&at(mid))? {
                                (true, b) => (good, bytes) = (mid, b),
                                _ => bad = mid,
                            }
                        }
                    }
                }
                let grad_accum = if good == 0 { 0 } else { tokens.div_ceil(good * cfg.block_size) };
                out.push(Fit { precision, recompute, batch: good, bytes, grad_accum });
            }
        }
        Ok(out)
    }

    /// `bench --plan-only --memory --json`: the budget, whether `cfg` fits it and every `Fit`,
    /// added to the preset's object.
    pub fn add_json(&self, j: &mut serde_json::Value, cfg: &RunConfig, fits: &[Fit]) -> Result<()> {
        j["memory_budget"] = self.memory.into();
        j["fits"] = self.check(cfg)?.0.into();
        j["advice"] = self.advice(cfg, fits)?.into();
        j["largest_batches"] = fits
            .iter()
            .map(|f| {
                serde_json::json!({"precision": f.precision.name(), "recompute": f.recompute.name(),
                    "batch_size": f.batch, "bytes": f.bytes, "grad_accum": f.grad_accum})
            })
            .collect::<Vec<_>>()
            .into();
        Ok(())
    }

    /// For a `cfg` that does not fit, the one change that fits and alters the run the least: a
    /// smaller micro-batch with the same tokens per step (the same training, slower), else f16
    /// storage, else block recomputation, else both, at the run's batch; else the largest batch
    /// anything fits. None when `cfg` fits.
    pub fn advice(&self, cfg: &RunConfig, fits: &[Fit]) -> Result<Option<String>> {
        if self.check(cfg)?.0 {
            return Ok(None);
        }
        let fit = |p: Precision, r: Recompute| fits.iter().find(|f| f.precision == p && f.recompute == r);
        let b = cfg.batch_size;
        let tokens = b * cfg.grad_accum;
        let at = |p: Precision, r: Recompute| {
            let mut ways = Vec::new();
            if p != cfg.precision {
                ways.push(format!("--precision {}", p.name()));
            }
            if r != cfg.recompute {
                ways.push(format!("--recompute {}", r.name()));
            }
            ways.join(" ")
        };
        let micro = |f: &Fit| {
            let accum = tokens.div_ceil(f.batch);
            let exact = if tokens.is_multiple_of(f.batch) { "the same" } else { "at least the" };
            format!("--set batch_size={} --set grad_accum={accum} ({exact} tokens per step)", f.batch)
        };
        let line = match fit(cfg.precision, cfg.recompute).filter(|f| f.batch > 0) {
            Some(f) => format!("to fit: {}", micro(f)),
            None => {
                let whole = [
                    (Precision::F16, cfg.recompute),
                    (cfg.precision, Recompute::Block),
                    (Precision::F16, Recompute::Block),
                ];
                match whole.iter().find(|&&(p, r)| fit(p, r).is_some_and(|f| f.batch >= b)) {
                    Some(&(p, r)) => format!("to fit: {}", at(p, r)),
                    None => match fits.iter().filter(|f| f.batch > 0).max_by_key(|f| f.batch) {
                        Some(f) => format!("to fit: {} {}", at(f.precision, f.recompute), micro(f)),
                        None => "nothing fits, not even one sequence: a smaller model or block_size, or more memory"
                            .to_string(),
                    },
                }
            }
        };
        Ok(Some(line))
    }

    /// The table `bench --plan-only --memory` prints after the preset's own line.
    pub fn report(&self, cfg: &RunConfig, fits: &[Fit]) -> Result<String> {
        let (ok, total) = self.check(cfg)?;
        let against = match self.memory {
            Some(m) => format!("{:#} of memory and {:#} buffers", Bytes(m), Bytes(self.max_buffer)),
            None => format!("{:#} buffers (no memory budget: give --memory)", Bytes(self.max_buffer)),
        };
        let tokens = cfg.batch_size * cfg.block_size * cfg.grad_accum;
        let mut s = format!(
            "{} as set (B={}, grad_accum={}, {}, recompute {}): {:#}, {} against {against}\n",
            cfg.preset,
            cfg.batch_size,
            cfg.grad_accum,
            cfg.precision.name(),
            cfg.recompute.name(),
            Bytes(total),
            if ok { "fits" } else { "does not fit" }
        );
        if let Some(advice) = self.advice(cfg, fits)? {
            s += &format!("{advice}\n");
        }
        s +=
            &format!("  precision recompute  largest micro-batch  plan          grad_accum for {tokens} tokens/step\n");
        for f in fits {
            let (batch, accum) = if f.batch == 0 {
                ("none fits".to_string(), "-".to_string())
            } else {
                let exact = tokens.is_multiple_of(f.batch * cfg.block_size);
                (format!("B={}", f.batch), format!("{}{}", f.grad_accum, if exact { "" } else { " (rounded up)" }))
            };
            s += &format!(
                "  {:<9} {:<10} {:<20} {:<13} {accum}\n",
                f.precision.name(),
                f.recompute.name(),
                batch,
                format!("{:#}", Bytes(f.bytes))
            );
        }
        Ok(s)
    }
}
