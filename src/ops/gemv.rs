//! Products of a few rows (`shaders/gemv.wgsl`): generation's linears and tied lm_head at one
//! position of B sequences, where the tiled matmul variants would compute 16 rows for each one
//! needed. Forward only, with matmul's epilogue and optionally the LayerNorm before it as a
//! prologue; `Matmul::cpu_forward` (after `LayerNorm`'s) is its reference.

use super::matmul::{Epilogue, Matmul};
use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

/// The most rows one invocation computes (`ROWS` in the shader, baked in per dispatch as
/// min(M, ROWS)); more rows take more invocations.
pub const ROWS: usize = 8;

/// A LayerNorm folded in front of a product: its weight, bias and epsilon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    pub w: TensorId,
    pub b: TensorId,
    pub eps: f32,
}

/// The product `op` (m rows of x) as one dispatch: one invocation per output column and block of
/// `ROWS` rows. `op.out_stride` / `op.out_col` place a shard of the lm_head's columns.
pub fn forward(op: &Matmul, out: TensorId, x: TensorId, w: TensorId, e: Epilogue) -> Dispatch {
    forward_normed(op, out, x, None, w, e)
}

/// `forward` of LayerNorm(x) where `ln` is given: each invocation recomputes its rows' mean and
/// variance (K terms), the same arithmetic as `LayerNorm::forward`, so in f32 storage the result
/// has its bits (in f16 the separate norm rounds its output first; the prologue does not).
pub fn forward_normed(op: &Matmul, out: TensorId, x: TensorId, ln: Option<Norm>, w: TensorId, e: Epilogue) -> Dispatch {
    if e.res.is_some() || e.gelu.is_some() {
        assert_eq!((op.out_stride, op.out_col), (op.n, 0), "an epilogue tensor matches a whole product");
    }
    let flags = e.bias.is_some() as u32 | (e.res.is_some() as u32) << 1 | (e.gelu.is_some() as u32) << 2;
    let entry = if op.trans_w { "gemv_nk" } else { "gemv_kn" };
    let rows = op.m.clamp(1, ROWS);
    let mut d = Dispatch::new(Family::Gemv, entry)
        .size("ROWS", rows)
        .size("LN", ln.is_some() as usize)
        .uniform(
            Uniform::new().u(op.m).u(op.k).u(op.n).u(op.out_stride).u(op.out_col).u(flags).f(ln.map_or(0.0, |n| n.eps)),
        )
        .arg(1, out)
        .arg(2, x)
        .arg(3, w)
        .flops(&[2, op.m, op.k, op.n])
        .threads((op.m.div_ceil(rows) * op.n) as u64, WG);
    let (gamma, beta) = (ln.map(|n| n.w), ln.map(|n| n.b));
    for (binding, t) in [(4, e.bias), (5, e.res), (6, e.gelu), (7, gamma), (8, beta)] {
        d = match t {
            Some(t) => d.arg(binding, t),
            None => d.spare([binding]),
        };
    }
    d
}
