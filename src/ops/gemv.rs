//! Products of a few rows (`shaders/gemv.wgsl`): generation's linears and tied lm_head at one
//! position of B sequences, where the tiled matmul variants would compute 16 rows for each one
//! needed. Forward only, with matmul's epilogue; `Matmul::cpu_forward` is its reference.

use super::matmul::{Epilogue, Matmul};
use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

/// The most rows one invocation computes (`ROWS` in the shader, baked in per dispatch as
/// min(M, ROWS)); more rows take more invocations.
pub const ROWS: usize = 8;

/// The product `op` (m rows of x) as one dispatch: one invocation per output column and block of
/// `ROWS` rows. `op.out_stride` / `op.out_col` place a shard of the lm_head's columns.
pub fn forward(op: &Matmul, out: TensorId, x: TensorId, w: TensorId, e: Epilogue) -> Dispatch {
    if e.res.is_some() || e.gelu.is_some() {
        assert_eq!((op.out_stride, op.out_col), (op.n, 0), "an epilogue tensor matches a whole product");
    }
    let flags = e.bias.is_some() as u32 | (e.res.is_some() as u32) << 1 | (e.gelu.is_some() as u32) << 2;
    let entry = if op.trans_w { "gemv_nk" } else { "gemv_kn" };
    let rows = op.m.clamp(1, ROWS);
    let mut d = Dispatch::new(Family::Gemv, entry)
        .size("ROWS", rows)
        .uniform(Uniform::new().u(op.m).u(op.k).u(op.n).u(op.out_stride).u(op.out_col).u(flags))
        .arg(1, out)
        .arg(2, x)
        .arg(3, w)
        .flops(&[2, op.m, op.k, op.n])
        .threads((op.m.div_ceil(rows) * op.n) as u64, WG);
    for (binding, t) in [(4, e.bias), (5, e.res), (6, e.gelu)] {
        d = match t {
            Some(t) => d.arg(binding, t),
            None => d.spare([binding]),
        };
    }
    d
}
