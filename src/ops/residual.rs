//! Residual add: `out = a + b`; backward hands `dout` to both inputs.
//! Shader: `shaders/residual.wgsl`.

use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

/// Invocations of the vec4 entry points for n elements (n % 4 == 0): 4 vec4s each.
fn threads4(n: usize) -> u64 {
    (n / 4).div_ceil(4) as u64
}

/// out (n) = a (n) + b (n)
pub fn forward(out: TensorId, a: TensorId, b: TensorId, n: usize) -> Dispatch {
    if n.is_multiple_of(4) {
        return Dispatch::new(Family::Residual, "residual_forward4")
            .uniform(Uniform::new().u(n / 4).u(0u32).u(0u32))
            .arg(7, out)
            .arg(8, a)
            .arg(9, b)
            .flops(&[n])
            .threads(threads4(n), WG);
    }
    Dispatch::new(Family::Residual, "residual_forward")
        .uniform(Uniform::new().u(n).u(0u32).u(0u32))
        .arg(1, out)
        .arg(2, a)
        .arg(3, b)
        .flops(&[n])
        .threads(n as u64, WG)
}

/// da (+)= dout, db (+)= dout
pub fn backward(da: TensorId, acc_a: bool, db: TensorId, acc_b: bool, dout: TensorId, n: usize) -> Dispatch {
    let flops = (acc_a as usize + acc_b as usize) * n;
    if n.is_multiple_of(4) {
        return Dispatch::new(Family::Residual, "residual_backward4")
            .uniform(Uniform::new().u(n / 4).u(acc_a as u32).u(acc_b as u32))
            .arg(10, da)
            .arg(11, db)
            .arg(12, dout)
            .flops(&[flops])
            .threads(threads4(n), WG);
    }
    Dispatch::new(Family::Residual, "residual_backward")
        .uniform(Uniform::new().u(n).u(acc_a as u32).u(acc_b as u32))
        .arg(4, da)
        .arg(5, db)
        .arg(6, dout)
        .flops(&[flops])
        .threads(n as u64, WG)
}

pub fn cpu_forward(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Returns (da, db).
pub fn cpu_backward(dout: &[f64]) -> (Vec<f64>, Vec<f64>) {
    (dout.to_vec(), dout.to_vec())
}
