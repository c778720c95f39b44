//! GELU in the tanh form used by GPT-2. Shader: `shaders/gelu.wgsl`.

use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

const K: f64 = 0.7978845608028654; // sqrt(2/pi)
const A: f64 = 0.044715;

/// out (n) = gelu(x (n))
pub fn forward(out: TensorId, x: TensorId, n: usize) -> Dispatch {
    if n.is_multiple_of(4) {
        return Dispatch::new(Family::Gelu, "gelu_forward4")
            .uniform(Uniform::new().u(n / 4).u(0u32))
            .arg(5, out)
            .arg(6, x)
            .flops(&[9, n])
            .threads((n / 4).div_ceil(4) as u64, WG);
    }
    Dispatch::new(Family::Gelu, "gelu_forward")
        .uniform(Uniform::new().u(n).u(0u32))
        .arg(1, out)
        .arg(2, x)
        .flops(&[9, n])
        .threads(n as u64, WG)
}

/// dx (n) (+)= dout * gelu'(x)
pub fn backward(dx: TensorId, acc: bool, dout: TensorId, x: TensorId, n: usize) -> Dispatch {
    if n.is_multiple_of(4) {
        return Dispatch::new(Family::Gelu, "gelu_backward4")
            .uniform(Uniform::new().u(n / 4).u(acc as u32))
            .arg(6, x)
            .arg(7, dx)
            .arg(8, dout)
            .flops(&[16, n])
            .threads((n / 4).div_ceil(4) as u64, WG);
    }
    Dispatch::new(Family::Gelu, "gelu_backward")
        .uniform(Uniform::new().u(n).u(acc as u32))
        .arg(2, x)
        .arg(3, dx)
        .arg(4, dout)
        .flops(&[16, n])
        .threads(n as u64, WG)
}

pub fn cpu_forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| 0.5 * v * (1.0 + (K * (v + A * v * v * v)).tanh())).collect()
}

pub fn cpu_backward(dout: &[f64], x: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dout)
        .map(|(&v, &g)| {
            let t = (K * (v + A * v * v * v)).tanh();
            g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * K * (1.0 + 3.0 * A * v * v))
        })
        .collect()
}
