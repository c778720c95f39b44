//! What a training step costs, kernel by kernel: FLOPs from each op's shape, bytes from the tensors
//! it binds, GPU time from `gpu/profile.rs`, and the step's model FLOPs utilisation (MFU) against
//! the adapter's peak. Printed by `wgpt bench --profile`.

use crate::gpu::profile::Clock;
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::Step;
use crate::graph::memplan::MemoryPlan;
use crate::model::GptConfig;
use crate::ops::Dispatch;
#[cfg(not(target_arch = "wasm32"))]
use crate::ops::Tunable;

/// FLOPs and bytes of a dispatch list. Bytes count every bound tensor once (what the kernel must
/// at least read or write); tiles that re-read operands move more.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub flops: u64,
    pub bytes: u64,
}

impl Cost {
    pub fn of(d: &Dispatch, plan: &MemoryPlan) -> Cost {
        let mut seen = Vec::new();
        let mut bytes = 0;
        for &(_, t) in &d.args {
            if !seen.contains(&t) {
                seen.push(t);
                bytes += plan.placement[t.index()].size;
            }
        }
        Cost { flops: d.flops, bytes }
    }

    /// The whole dispatch list's.
    pub fn sum(dispatches: &[Dispatch], plan: &MemoryPlan) -> Cost {
        dispatches.iter().map(|d| Cost::of(d, plan)).fold(Cost::default(), Cost::add)
    }

    fn add(self, o: Cost) -> Cost {
        Cost { flops: self.flops + o.flops, bytes: self.bytes + o.bytes }
    }
}

/// FLOPs of one training step of `model` on `tokens` tokens as nanoGPT and the PaLM paper count
/// them for MFU: 6 per parameter and token (wpe excluded, the tied lm_head included) plus
/// 12 · layers · width · context for attention, whatever the kernels actually do (recomputation,
/// the causal half they skip).
pub fn model_flops(model: &GptConfig, tokens: usize) -> f64 {
    let (v, t, l, c) = (model.vocab_size as f64, model.block_size as f64, model.n_layer as f64, model.n_embd as f64);
    let per_layer = 12.0 * c * c + 13.0 * c; // qkv, proj, fc, fc_proj weights and biases, 2 LNs
    let params = v * c + l * per_layer + 2.0 * c;
    tokens as f64 * (6.0 * params + 12.0 * l * c * t)
}

/// Dense fp32 peaks (TFLOP/s, without tensor cores: what wgpt's kernels can use today) from the
/// vendors' data sheets. A row matches when its words appear in the adapter's name as whole words
/// and the next word of the name is not a model suffix ("Ti", "Pro", "NVL", ...), which has a row
/// of its own or no figure.
const KNOWN_PEAKS: &[(&str, f64)] = &[
    ("H100 PCIe", 51.2),
    ("H100 NVL", 60.0),
    ("H100", 66.9),
    ("H200", 66.9),
    ("A100", 19.5),
    ("L40S", 91.6),
    ("L40", 90.5),
    ("L4", 30.3),
    ("RTX 4090", 82.6),
    ("RTX 4080", 48.7),
    ("RTX 3090 Ti", 40.0),
    ("RTX 3090", 35.6),
    ("RTX 3080 Ti", 34.1),
    ("RTX 3080", 29.8),
    ("Apple M1", 2.6),
    ("Apple M2", 3.6),
];

/// Words after a model name that make it another model.
const SUFFIXES: &[&str] = &["Ti", "SUPER", "Super", "Pro", "Max", "Ultra", "NVL", "PCIe", "Laptop", "Mobile"];

/// The adapter's fp32 peak in TFLOP/s, if it is in the table.
pub fn known_peak(adapter: &str) -> Option<f64> {
    let words: Vec<&str> = adapter.split(|c: char| c.is_whitespace() || c == '(' || c == ')').collect();
    KNOWN_PEAKS
        .iter()
        .find(|(name, _)| {
            let pat: Vec<&str> = name.split(' ').collect();
            words.windows(pat.len()).enumerate().any(|(i, w)| {
                w == pat.as_slice() && words.get(i + pat.len()).is_none_or(|next| !SUFFIXES.contains(next))
            })
        })
        .map(|&(_, tf)| tf)
}

/// One entry point's share of a step.
#[derive(Debug, Clone)]
pub struct KernelRow {
    pub name: String,
    pub calls: usize,
    pub ms: f64,
    pub cost: Cost,
}

impl KernelRow {
    pub fn gflops(&self) -> f64 {
        self.cost.flops as f64 / (self.ms * 1e6)
    }
    pub fn gbps(&self) -> f64 {
        self.cost.bytes as f64 / (self.ms * 1e6)
    }
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub clock: Clock,
    /// Slowest first.
    pub rows: Vec<KernelRow>,
    /// Sum of the rows' times.
    pub kernel_ms: f64,
    pub model_flops: f64,
    /// (TFLOP/s, where it came from).
    pub peak: Option<(f64, &'static str)>,
}

/// Times every dispatch of `step` (the least of `reps` runs) and sums by entry point.
#[cfg(not(target_arch = "wasm32"))]
pub fn profile(
    step: &Step,
    model: &GptConfig,
    tokens: usize,
    reps: usize,
    peak: Option<(f64, &'static str)>,
) -> crate::Result<Profile> {
    let (clock, times) = step.time_dispatches(reps)?;
    let mut rows: Vec<KernelRow> = Vec::new();
    for (d, ms) in step.dispatches.iter().zip(&times) {
        let name = match d.tunable {
            Some(Tunable::Matmul(t)) => format!("{:?}::{} ({})", d.family, d.entry, t.pass.name()),
            _ => format!("{:?}::{}", d.family, d.entry),
        };
        let cost = Cost::of(d, &step.plan);
        match rows.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                r.calls += 1;
                r.ms += ms;
                r.cost = r.cost.add(cost);
            }
            None => rows.push(KernelRow { name, calls: 1, ms: *ms, cost }),
        }
    }
    rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(Profile { clock, kernel_ms: times.iter().sum(), rows, model_flops: model_flops(model, tokens), peak })
}

impl Profile {
    /// MFU of a step that took `step_ms` end to end.
    pub fn mfu(&self, step_ms: f64) -> Option<f64> {
        self.peak.map(|(tf, _)| self.model_flops / (step_ms * 1e-3) / (tf * 1e12))
    }

    pub fn to_text(&self, step_ms: f64) -> String {
        use std::fmt::Write;
        let total = self.rows.iter().fold(Cost::default(), |a, r| a.add(r.cost));
        let mut s = format!(
            "    profile ({}): kernels {:.2} ms of a {step_ms:.2} ms step; {:.3} GFLOP counted, {:.3} GFLOP model, {:.1} MB bound\n",
            self.clock.name(),
            self.kernel_ms,
            total.flops as f64 / 1e9,
            self.model_flops / 1e9,
            total.bytes as f64 / 1e6,
        );
        let _ = writeln!(
            s,
            "    {:<40} {:>5} {:>10} {:>6} {:>10} {:>9} {:>9}",
            "kernel", "calls", "ms", "share", "MFLOP", "GFLOP/s", "GB/s"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "    {:<40} {:>5} {:>10.3} {:>5.1}% {:>10.2} {:>9.2} {:>9.2}",
                r.name,
                r.calls,
                r.ms,
                100.0 * r.ms / self.kernel_ms,
                r.cost.flops as f64 / 1e6,
                r.gflops(),
                r.gbps()
            );
        }
        match (self.mfu(step_ms), self.peak) {
            (Some(mfu), Some((tf, from))) => {
                let _ = writeln!(s, "    MFU {:.2}% of {tf} TFLOP/s fp32 ({from})", 100.0 * mfu);
            }
            _ => {
                let _ = writeln!(s, "    MFU: peak unknown for this adapter; give --peak-tflops");
            }
        }
        s
    }

    pub fn to_json(&self, step_ms: f64) -> serde_json::Value {
        serde_json::json!({
            "clock": self.clock.name(),
            "kernel_ms": self.kernel_ms,
            "model_flops": self.model_flops,
            "peak_tflops": self.peak.map(|p| p.0),
            "mfu": self.mfu(step_ms),
            "kernels": self.rows.iter().map(|r| serde_json::json!({
                "name": r.name, "calls": r.calls, "ms": r.ms, "flops": r.cost.flops, "bytes": r.cost.bytes,
                "gflops_per_s": r.gflops(), "gb_per_s": r.gbps(),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_flops_match_nanogpt_for_gpt2() {
        // GPT-2 124M has 124,439,808 parameters; nanoGPT's MFU counts them without wpe (786,432).
        let m = GptConfig { vocab_size: 50257, block_size: 1024, n_layer: 12, n_head: 12, n_embd: 768 };
        let per_token = model_flops(&m, 1);
        let n = (per_token - 12.0 * 12.0 * 768.0 * 1024.0) / 6.0;
        assert_eq!(n.round(), 124_439_808.0 - 786_432.0);
    }

    #[test]
    fn peaks_match_the_more_specific_name_first() {
        assert_eq!(known_peak("NVIDIA H100 PCIe"), Some(51.2));
        assert_eq!(known_peak("NVIDIA H100 80GB HBM3"), Some(66.9));
        assert_eq!(known_peak("NVIDIA L40"), Some(90.5));
        assert_eq!(known_peak("NVIDIA L4"), Some(30.3));
        assert_eq!(known_peak("NVIDIA GeForce RTX 3080 Ti"), Some(34.1));
        assert_eq!(known_peak("NVIDIA GeForce RTX 3080"), Some(29.8));
        assert_eq!(known_peak("Apple M2 Max"), None);
        assert_eq!(known_peak("Apple M2"), Some(3.6));
        assert_eq!(known_peak("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
    }
}
