//! Fused softmax cross-entropy (per-row losses and log-sum-exp; in-place dlogits).
//! Shader: `shaders/xent.wgsl`. The mean over rows is `reduce::sum_final` with scale 1/rows.

use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

#[derive(Debug, Clone, Copy)]
pub struct CrossEntropy {
    pub rows: usize,
    pub v: usize,
    /// The logits' first row in the per-row tensors (losses, lse, targets): a chunk of rows
    /// binds those whole and its own logits only.
    pub row0: usize,
}

impl CrossEntropy {
    fn params(&self, scale: f32) -> Uniform {
        Uniform::new().u(self.rows).u(self.v).f(scale).u(self.row0)
    }

    /// losses, lse (rows row0..row0 + rows) from logits (rows, V) and targets u32.
    pub fn forward(&self, losses: TensorId, lse: TensorId, logits: TensorId, targets: TensorId) -> Dispatch {
        Dispatch::new(Family::Xent, "xent_forward")
            .uniform(self.params(0.0))
            .arg(1, losses)
            .arg(2, lse)
            .arg(3, logits)
            .arg(4, targets)
            .flops(&[3, self.rows, self.v])
            .threads(self.rows as u64, WG)
    }

    /// logits (rows, V) := (softmax − onehot) · scale, in place; with `hyper`, the scale is also
    /// multiplied by the loss scale hyper[3] (read on the GPU, so it can change between steps).
    pub fn backward(
        &self,
        logits: TensorId,
        lse: TensorId,
        targets: TensorId,
        scale: f32,
        hyper: Option<TensorId>,
    ) -> Dispatch {
        let d = match hyper {
            Some(h) => Dispatch::new(Family::Xent, "xent_backward_scaled").arg(5, h),
            None => Dispatch::new(Family::Xent, "xent_backward"),
        };
        d.uniform(self.params(scale))
            .arg(2, lse)
            .arg(3, logits)
            .arg(4, targets)
            .flops(&[3, self.rows, self.v])
            .threads((self.rows * self.v) as u64, WG)
    }

    /// (losses, lse) per row.
    pub fn cpu_forward(&self, logits: &[f64], targets: &[u32]) -> (Vec<f64>, Vec<f64>) {
        let mut losses = vec![0.0; self.rows];
        let mut lses = vec![0.0; self.rows];
        for r in 0..self.rows {
            let row = &logits[r * self.v..(r + 1) * self.v];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let l = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            lses[r] = l;
            losses[r] = l - row[targets[r] as usize];
        }
        (losses, lses)
    }

    /// d(scale · Σ losses)/dlogits.
    pub fn cpu_backward(&self, logits: &[f64], targets: &[u32], scale: f64) -> Vec<f64> {
        let (_, lse) = self.cpu_forward(logits, targets);
        let mut d = vec![0.0; logits.len()];
        for r in 0..self.rows {
            for v in 0..self.v {
                let i = r * self.v + v;
                let onehot = if v == targets[r] as usize { 1.0 } else { 0.0 };
                d[i] = ((logits[i] - lse[r]).exp() - onehot) * scale;
            }
        }
        d
    }
}
