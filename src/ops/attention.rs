//! Causal multi-head self-attention over the fused qkv (B, T, 3C), flash style (O(T) memory per
//! head, the row log-sum-exp saved for backward), in three variants: `rows` (8 rows per invocation
//! in private arrays, shaped for CPU adapters; `shaders/attention.wgsl` with `attention_own.wgsl`),
//! `shared` (the same kernels with each load shared across a subgroup of 8; with
//! `attention_shared.wgsl`) and `tiled` (one row per invocation, the other side streamed through
//! workgroup memory, shaped for GPUs; `attention_tiled.wgsl`). The unfused O(T²) WGSL reference
//! the tests compare these kernels with is in `attention_unfused.rs`.

use super::{grid, Dispatch, Family, Tunable, Uniform, WG};
use crate::graph::TensorId;

/// Largest head size the kernels support (`MAX_HS` in the shader: private row arrays).
pub const MAX_HS: usize = 128;

/// The kernels of the forward and backward passes. Adding one: its three entry points, a row in
/// `entry` and `needs`, and its grid in `Attention::dispatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// 8 rows per invocation, no workgroup memory: for CPU adapters (lavapipe's loads are per-lane
    /// loops, so each load should serve many rows).
    Rows,
    /// 64 rows per workgroup, one per invocation, the keys (queries) staged in tiles of 16 through
    /// workgroup memory: for GPUs, where 8 rows of private arrays per invocation spill.
    Tiled,
    /// `rows` with the other side's loads shared across a subgroup of 8 (lanes are 8 row blocks
    /// of one head): for CPU adapters with 8-wide subgroups.
    Shared,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Rows, Variant::Tiled, Variant::Shared];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Rows => "rows",
            Variant::Tiled => "tiled",
            Variant::Shared => "shared",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s)
    }

    /// (invocations per workgroup, bytes of workgroup memory) at head size `hs`.
    pub fn needs(self, hs: usize) -> (u32, u32) {
        match self {
            Variant::Rows | Variant::Shared => (WG, 0),
            Variant::Tiled => (64, (2 * 16 * array_len(hs) * 4) as u32),
        }
    }

    fn entry(self, kernel: Kernel) -> &'static str {
        match (self, kernel) {
            (Variant::Rows, Kernel::Forward) => "attention_forward",
            (Variant::Rows, Kernel::Dq) => "attention_backward_dq",
            (Variant::Rows, Kernel::Dkv) => "attention_backward_dkv",
            (Variant::Tiled, Kernel::Forward) => "attention_forward_tiled",
            (Variant::Tiled, Kernel::Dq) => "attention_backward_dq_tiled",
            (Variant::Tiled, Kernel::Dkv) => "attention_backward_dkv_tiled",
            // The `rows` entry points, in the module of attention_shared.wgsl.
            (Variant::Shared, Kernel::Forward) => "attention_forward",
            (Variant::Shared, Kernel::Dq) => "attention_backward_dq",
            (Variant::Shared, Kernel::Dkv) => "attention_backward_dkv",
        }
    }
}

/// Which of the attention passes a dispatch computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    Forward,
    Dq,
    Dkv,
}

/// An attention dispatch with everything but its variant: what moving it to another needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuned {
    pub op: Attention,
    pub kernel: Kernel,
    pub acc: bool,
    pub variant: Variant,
}

impl Tuned {
    /// The dispatch on `variant`, without its tensors (the bindings are the same in every variant).
    pub fn dispatch(&self, variant: Variant) -> Dispatch {
        self.op.dispatch(variant, self.kernel, self.acc)
    }
}

/// Length of the private and workgroup row arrays for head size `hs` (`MAX_HS` in the shader):
/// rounded up to a multiple of 8, so nearby sizes share a module.
pub(crate) fn array_len(hs: usize) -> usize {
    hs.next_multiple_of(8).min(MAX_HS)
}

/// Shapes: B batch, T sequence, NH heads of HS channels; C = NH * HS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attention {
    pub b: usize,
    pub t: usize,
    pub nh: usize,
    pub hs: usize,
}

impl Attention {
    pub fn c(&self) -> usize {
        self.nh * self.hs
    }

    /// Rows of the (B, NH, T) grid.
    fn rows(&self) -> usize {
        self.b * self.nh * self.t
    }

    /// Invocations: one per block of 8 consecutive rows of one (b, h) (`R` in the shader).
    fn blocks(&self) -> usize {
        self.b * self.nh * self.t.div_ceil(8)
    }

    /// (query, key) pairs of one head the causal mask keeps: T (T + 1) / 2.
    fn causal_pairs(&self) -> usize {
        self.t * (self.t + 1) / 2
    }

    fn scale(&self) -> f64 {
        1.0 / (self.hs as f64).sqrt()
    }

    fn params(&self, acc: bool) -> Uniform {
        assert!((1..=MAX_HS).contains(&self.hs), "attention head size {} outside 1..={MAX_HS}", self.hs);
        Uniform::new().u(self.b).u(self.t).u(self.nh).u(self.hs).f(self.scale() as f32).u(acc as u32)
    }

    /// A dispatch of `entry` whose private row arrays hold this head size, not the largest one
    /// the kernels allow.
    fn kernel(&self, variant: Variant, entry: &'static str) -> Dispatch {
        let family = if variant == Variant::Shared { Family::AttentionShared } else { Family::Attention };
        Dispatch::new(family, entry).size("MAX_HS", array_len(self.hs))
    }

    /// A pass on a variant, without its tensors. Every pass is built on `rows`; the compiled
    /// step moves it to the variant the adapter runs best (`gpu/tuning.rs`).
    fn dispatch(&self, variant: Variant, kernel: Kernel, acc: bool) -> Dispatch {
        let per_pair = match kernel {
            // q.k (2 HS), then o = o f + e v (3 HS: the rescale counts), and the softmax's 4.
            Kernel::Forward => 5 * self.hs + 4,
            Kernel::Dq => 6 * self.hs + 4,
            Kernel::Dkv => 8 * self.hs + 4,
        };
        let d = self
            .kernel(variant, variant.entry(kernel))
            .uniform(self.params(acc))
            .flops(&[self.b * self.nh, self.causal_pairs(), per_pair])
            .tunable(Tunable::Attention(Tuned { op: *self, kernel, acc, variant }));
        match variant {
            Variant::Rows => d.threads(self.blocks() as u64, WG),
            Variant::Shared => d.threads((self.b * self.nh * self.t.div_ceil(64) * 8) as u64, WG),
            Variant::Tiled => d.groups(grid((self.b * self.nh * self.t.div_ceil(64)) as u64)),
        }
    }

    /// `forward` on a given variant (tests; the graph builds on `rows`).
    pub fn forward_on(&self, v: Variant, out: TensorId, lse: TensorId, qkv: TensorId) -> Dispatch {
        self.dispatch(v, Kernel::Forward, false).arg(1, out).arg(2, lse).arg(3, qkv)
    }

    /// `backward` on a given variant.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_on(
        &self,
        v: Variant,
        dqkv: TensorId,
        acc: bool,
        scratch: TensorId,
        dout: TensorId,
        qkv: TensorId,
        out: TensorId,
        lse: TensorId,
    ) -> Vec<Dispatch> {
        vec![
            self.dispatch(v, Kernel::Dq, acc)
                .arg(1, out)
                .arg(2, lse)
                .arg(3, qkv)
                .arg(4, dqkv)
                .arg(5, scratch)
                .arg(6, dout),
            self.dispatch(v, Kernel::Dkv, acc).arg(2, lse).arg(3, qkv).arg(4, dqkv).arg(5, scratch).arg(6, dout),
        ]
    }

    /// out (B, T, C) = softmax(q k^T * scale, causal) v per head; lse (B, NH, T) f32.
    pub fn forward(&self, out: TensorId, lse: TensorId, qkv: TensorId) -> Dispatch {
        self.forward_on(Variant::Rows, out, lse, qkv)
    }

    /// probs (B, NH, T, T) f32 = exp(q k^T * scale - lse) per head, 0 above the diagonal: the
    /// softmax probabilities recomputed from the forward's saved lse (B, NH, T), for display.
    pub fn probs(&self, probs: TensorId, lse: TensorId, qkv: TensorId) -> Dispatch {
        self.kernel(Variant::Rows, "attention_probs")
            .uniform(self.params(false))
            .arg(2, lse)
            .arg(3, qkv)
            .arg(7, probs)
            .flops(&[self.b * self.nh, self.causal_pairs(), 2 * self.hs + 2])
            .threads(self.blocks() as u64, WG)
    }

    /// Elements of the probabilities of every head: B * NH * T * T.
    pub fn probs_len(&self) -> usize {
        self.rows() * self.t
    }

    /// probs (B, NH, T, T) as `probs` computes them, from the CPU softmax in f64.
    pub fn cpu_probs_all(&self, qkv: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.probs_len()];
        for b in 0..self.b {
            for h in 0..self.nh {
                for t in 0..self.t {
                    let (p, _) = self.cpu_probs(qkv, b, h, t);
                    let row = ((b * self.nh + h) * self.t + t) * self.t;
                    out[row..row + p.len()].copy_from_slice(&p);
                }
            }
        }
        out
    }

    /// f32 elements of the backward scratch: D = rowsum(dout * out) per (B, NH, T).
    pub fn scratch_len(&self) -> usize {
        self.rows()
    }

    /// dqkv (B, T, 3C) (+)= gradient of qkv. The dq kernel writes the q third and D into
    /// `scratch`; the dkv kernel then writes the k and v thirds.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dqkv: TensorId,
        acc: bool,
        scratch: TensorId,
        dout: TensorId,
        qkv: TensorId,
        out: TensorId,
        lse: TensorId,
    ) -> Vec<Dispatch> {
        self.backward_on(Variant::Rows, dqkv, acc, scratch, dout, qkv, out, lse)
    }

    /// Softmax probabilities of row (b, h, t) over keys 0..=t, and the row's log-sum-exp.
    fn cpu_probs(&self, qkv: &[f64], b: usize, h: usize, t: usize) -> (Vec<f64>, f64) {
        let (c, hs) = (self.c(), self.hs);
        let at = |pos: usize, part: usize, d: usize| qkv[(b * self.t + pos) * 3 * c + part * c + h * hs + d];
        let mut x = vec![0.0; t + 1];
        for (s, xs) in x.iter_mut().enumerate() {
            for d in 0..hs {
                *xs += at(t, 0, d) * at(s, 1, d);
            }
            *xs *= self.scale();
        }
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut l = 0.0;
        for xs in &x {
            l += (xs - m).exp();
        }
        let p = x.iter().map(|xs| (xs - m).exp() / l).collect();
        (p, m + l.ln())
    }

    /// (out (B, T, C), lse (B, NH, T)).
    pub fn cpu_forward(&self, qkv: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (c, hs) = (self.c(), self.hs);
        assert_eq!(qkv.len(), self.b * self.t * 3 * c);
        let mut out = vec![0.0; self.b * self.t * c];
        let mut lse = vec![0.0; self.rows()];
        for b in 0..self.b {
            for h in 0..self.nh {
                for t in 0..self.t {
                    let (p, l) = self.cpu_probs(qkv, b, h, t);
                    lse[(b * self.nh + h) * self.t + t] = l;
                    for (s, ps) in p.iter().enumerate() {
                        for d in 0..hs {
                            out[(b * self.t + t) * c + h * hs + d] +=
                                ps * qkv[(b * self.t + s) * 3 * c + 2 * c + h * hs + d];
                        }
                    }
                }
            }
        }
        (out, lse)
    }

    /// dqkv (B, T, 3C) given dout (B, T, C).
    pub fn cpu_backward(&self, dout: &[f64], qkv: &[f64]) -> Vec<f64> {
        let (c, hs, scale) = (self.c(), self.hs, self.scale());
        assert_eq!(dout.len(), self.b * self.t * c);
        let mut dqkv = vec![0.0; qkv.len()];
        let idx =
            |b: usize, pos: usize, part: usize, h: usize, d: usize| (b * self.t + pos) * 3 * c + part * c + h * hs + d;
        for b in 0..self.b {
            for h in 0..self.nh {
                for t in 0..self.t {
                    let (p, _) = self.cpu_probs(qkv, b, h, t);
                    let g = |d: usize| dout[(b * self.t + t) * c + h * hs + d];
                    // dp_s = dout_t . v_s; D = sum_s p_s dp_s; ds_s = p_s (dp_s - D).
                    let mut dp = vec![0.0; t + 1];
                    for (s, dps) in dp.iter_mut().enumerate() {
                        for d in 0..hs {
                            *dps += g(d) * qkv[idx(b, s, 2, h, d)];
                        }
                    }
                    let mut dd = 0.0;
                    for s in 0..=t {
                        dd += p[s] * dp[s];
                    }
                    for s in 0..=t {
                        let ds = p[s] * (dp[s] - dd);
                        for d in 0..hs {
                            dqkv[idx(b, t, 0, h, d)] += ds * scale * qkv[idx(b, s, 1, h, d)];
                            dqkv[idx(b, s, 1, h, d)] += ds * scale * qkv[idx(b, t, 0, h, d)];
                            dqkv[idx(b, s, 2, h, d)] += p[s] * g(d);
                        }
                    }
                }
            }
        }
        dqkv
    }
}
