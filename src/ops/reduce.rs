//! Deterministic reductions: zero fill, column sums (bias / LayerNorm parameter gradients), and the
//! two-pass global sum used for the gradient norm and the mean loss. Shader: `shaders/reduce.wgsl`.

use super::{grid, Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

/// Rows summed by one invocation of `colsum_partial`.
pub const COLSUM_CHUNK: usize = 64;
/// Workgroup size of `sumsq_partial` / `reduce_final` (the `RWG` constant in the shader).
pub const RWG: usize = 256;
/// Elements one `sumsq_partial` workgroup covers.
pub const SUMSQ_BLOCK: usize = RWG * 8;

fn params(rows: usize, cols: usize, chunk: usize, acc: bool, out_index: usize, mode: u32, scale: f32) -> Uniform {
    Uniform::new().u(rows).u(cols).u(chunk).u(acc as u32).u(out_index).u(mode).f(scale)
}

/// dst (n) = 0
pub fn zero(dst: TensorId, n: usize) -> Dispatch {
    Dispatch::new(Family::Reduce, "zero").uniform(params(n, 0, 1, false, 0, 0, 0.0)).arg(1, dst).threads(n as u64, WG)
}

/// dst (n) += src (n), then src = 0: one micro-batch's gradient added to the sum of the earlier
/// ones, and its buffer cleared for the next.
pub fn fold(dst: TensorId, src: TensorId, n: usize) -> Dispatch {
    Dispatch::new(Family::Reduce, "fold")
        .uniform(params(n, 0, 1, false, 0, 0, 0.0))
        .arg(1, dst)
        .arg(2, src)
        .flops(&[n])
        .threads(n as u64, WG)
}

/// Elements of the f32 scratch `colsum` needs.
pub fn colsum_scratch(rows: usize, cols: usize) -> usize {
    rows.div_ceil(COLSUM_CHUNK) * cols
}

/// dst (cols) (+)= sum over rows of src (rows, cols). `partial` holds `colsum_scratch` floats.
pub fn colsum(dst: TensorId, acc: bool, src: TensorId, partial: TensorId, rows: usize, cols: usize) -> [Dispatch; 2] {
    let u = params(rows, cols, COLSUM_CHUNK, acc, 0, 0, 0.0);
    [
        Dispatch::new(Family::Reduce, "colsum_partial")
            .uniform(u.clone())
            .arg(2, src)
            .arg(3, partial)
            .flops(&[rows, cols])
            .threads(colsum_scratch(rows, cols) as u64, WG),
        Dispatch::new(Family::Reduce, "colsum_final")
            .uniform(u)
            .arg(1, dst)
            .arg(3, partial)
            .flops(&[colsum_scratch(rows, cols)])
            .threads(cols as u64, WG),
    ]
}

/// Partial slots `sumsq_partial` writes for `n` elements.
pub fn sumsq_slots(n: usize) -> usize {
    n.div_ceil(SUMSQ_BLOCK)
}

/// partial[first_slot ..] = per-block sums of squares of src (n).
pub fn sumsq_partial(partial: TensorId, first_slot: usize, src: TensorId, n: usize) -> Dispatch {
    Dispatch::new(Family::Reduce, "sumsq_partial")
        .uniform(params(n, sumsq_slots(n), 1, false, first_slot, 0, 0.0))
        .arg(2, src)
        .arg(3, partial)
        .flops(&[2, n])
        .groups(grid(sumsq_slots(n) as u64))
}

/// out[out_index] = scale * sum(partial[..slots]).
pub fn sum_final(out: TensorId, out_index: usize, partial: TensorId, slots: usize, scale: f32) -> Dispatch {
    Dispatch::new(Family::Reduce, "reduce_final")
        .uniform(params(0, slots, 1, false, out_index, 0, scale))
        .arg(3, partial)
        .arg(4, out)
}

/// out[out_index] = sqrt(sum(partial[..slots])), out[out_index + 1] = min(1, max_norm / (norm + 1e-6)).
pub fn norm_final(out: TensorId, out_index: usize, partial: TensorId, slots: usize, max_norm: f32) -> Dispatch {
    Dispatch::new(Family::Reduce, "reduce_final")
        .uniform(params(0, slots, 1, false, out_index, 1, max_norm))
        .arg(3, partial)
        .arg(4, out)
}

/// The training step's norm of loss-scaled gradients: out[out_index ..] = (norm / hyper[3], clip
/// factor, skip flag), the flag 1 when the sum of squares is inf or NaN (the step must be skipped)
/// and 2 when the norm is above hyper[4] or the loss in out[loss_index] above hyper[5] (the
/// outlier guard: skipped too).
pub fn norm_final_scaled(
    out: TensorId,
    out_index: usize,
    loss_index: usize,
    partial: TensorId,
    slots: usize,
    max_norm: f32,
    hyper: TensorId,
) -> Dispatch {
    Dispatch::new(Family::Reduce, "norm_final")
        .uniform(params(loss_index, slots, 1, false, out_index, 1, max_norm))
        .arg(3, partial)
        .arg(4, out)
        .arg(5, hyper)
}

pub fn cpu_colsum(src: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c] += src[r * cols + c];
        }
    }
    out
}

/// (norm, clip factor) like torch.nn.utils.clip_grad_norm_.
pub fn cpu_norm(xs: &[f64], max_norm: f64) -> (f64, f64) {
    let n = xs.iter().map(|x| x * x).sum::<f64>().sqrt();
    (n, (max_norm / (n + 1e-6)).min(1.0))
}
