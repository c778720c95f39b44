//! AdamW update of one flat parameter range (gradient clipping applied through the clip factor
//! computed on the GPU). Shader: `shaders/adamw.wgsl`.

use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }
    }
}

impl AdamW {
    /// Updates param, m, v (n) from grad (n), and the compute copy of param when given (fp16
    /// storage). `hyper` = [lr, 1 − β1^t, 1 − β2^t, loss scale] (see `hyper`); `norm[clip_index]`
    /// is the clip factor and `norm[clip_index + 1]` the skip flag (non-zero: leave all untouched).
    /// `decay` selects weight decay for this range.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        param: TensorId,
        m: TensorId,
        v: TensorId,
        grad: TensorId,
        copy: Option<TensorId>,
        hyper: TensorId,
        norm: TensorId,
        clip_index: usize,
        decay: bool,
        n: usize,
    ) -> Dispatch {
        let wd = if decay { self.weight_decay } else { 0.0 };
        let uniform = |n: usize| Uniform::new().u(n).f(self.beta1).f(self.beta2).f(self.eps).f(wd).u(clip_index);
        let d = if n.is_multiple_of(4) {
            // vec4 views, 4 vec4s per invocation.
            let d = match copy {
                Some(c) => Dispatch::new(Family::AdamW, "adamw_update_copy4").arg(12, c),
                None => Dispatch::new(Family::AdamW, "adamw_update4"),
            };
            d.uniform(uniform(n / 4))
                .arg(7, param)
                .arg(8, grad)
                .arg(9, m)
                .arg(10, v)
                .threads((n / 4).div_ceil(4) as u64, WG)
        } else {
            let d = match copy {
                Some(c) => Dispatch::new(Family::AdamW, "adamw_update_copy").arg(11, c),
                None => Dispatch::new(Family::AdamW, "adamw_update"),
            };
            d.uniform(uniform(n)).arg(1, param).arg(2, grad).arg(3, m).arg(4, v).threads(n as u64, WG)
        };
        // Moments (6), bias corrections and the step (5), decay (2), clip and loss scale (2).
        d.arg(5, hyper).arg(6, norm).flops(&[15, n])
    }

    /// The host-side part of a step: [lr, 1 − β1^t, 1 − β2^t, loss scale], bias corrections in
    /// f64. `t` counts from 1.
    pub fn hyper(&self, lr: f64, t: u64, loss_scale: f32) -> [f32; 4] {
        let t = t as i32;
        let bc = |b: f32| (1.0 - (b as f64).powi(t)) as f32;
        [lr as f32, bc(self.beta1), bc(self.beta2), loss_scale]
    }

    /// One step of the reference: returns the new (param, m, v).
    #[allow(clippy::too_many_arguments)]
    pub fn cpu_update(
        &self,
        param: &[f64],
        m: &[f64],
        v: &[f64],
        grad: &[f64],
        clip: f64,
        lr: f64,
        t: u64,
        decay: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (b1, b2, eps) = (self.beta1 as f64, self.beta2 as f64, self.eps as f64);
        let wd = if decay { self.weight_decay as f64 } else { 0.0 };
        let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..param.len() {
            let g = grad[i] * clip;
            let mi = b1 * m[i] + (1.0 - b1) * g;
            let vi = b2 * v[i] + (1.0 - b2) * g * g;
            let w = param[i] * (1.0 - lr * wd) - lr * (mi / bc1) / ((vi / bc2).sqrt() + eps);
            out.0.push(w);
            out.1.push(mi);
            out.2.push(vi);
        }
        out
    }
}
