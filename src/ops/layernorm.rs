//! LayerNorm over the last dimension (biased variance, eps from the caller; GPT-2 uses 1e-5), with
//! deterministic dw / db through per-chunk partial sums. Shader: `shaders/layernorm.wgsl`.

use super::{grid, Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

/// Rows per workgroup of `layernorm_backward`, and per partial sum of dw and db.
pub const LN_CHUNK: usize = 64;

/// out (rows, C) = (x - mean) * rstd * w + b over each row of x (rows, C).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorm {
    pub rows: usize,
    pub c: usize,
    pub eps: f32,
}

impl LayerNorm {
    fn params(&self, acc_dx: bool, acc_w: bool, acc_b: bool) -> Uniform {
        assert!(self.rows > 0 && self.c > 0, "layernorm: empty shape");
        Uniform::new().u(self.rows).u(self.c).u(LN_CHUNK).u(acc_dx as u32).u(acc_w as u32).u(acc_b as u32).f(self.eps)
    }

    fn chunks(&self) -> usize {
        self.rows.div_ceil(LN_CHUNK)
    }

    /// out (rows, C); mean and rstd (rows) are f32 tensors the backward reads.
    pub fn forward(
        &self,
        out: TensorId,
        mean: TensorId,
        rstd: TensorId,
        x: TensorId,
        w: TensorId,
        b: TensorId,
    ) -> Dispatch {
        Dispatch::new(Family::LayerNorm, "layernorm_forward")
            .uniform(self.params(false, false, false))
            .arg(1, out)
            .arg(2, mean)
            .arg(3, rstd)
            .arg(4, x)
            .arg(5, w)
            .arg(6, b)
            .flops(&[8, self.rows, self.c])
            .threads(self.rows as u64, WG)
    }

    /// f32 elements of the partial sums `backward` needs in `scratch`: (ceil(rows / 64), 2, C).
    pub fn scratch_len(&self) -> usize {
        self.chunks() * 2 * self.c
    }

    /// dx (rows, C) (+)= the input gradient; dw, db (C) (+)= the parameter gradients (each
    /// accumulates or overwrites on its own flag). Two dispatches: `layernorm_backward` (dx and
    /// the per-chunk sums into scratch, a workgroup per chunk) and `layernorm_backward_final`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dx: TensorId,
        acc_dx: bool,
        dw: TensorId,
        acc_w: bool,
        db: TensorId,
        acc_b: bool,
        scratch: TensorId,
        dout: TensorId,
        x: TensorId,
        w: TensorId,
        mean: TensorId,
        rstd: TensorId,
    ) -> Vec<Dispatch> {
        let u = self.params(acc_dx, acc_w, acc_b);
        vec![
            Dispatch::new(Family::LayerNorm, "layernorm_backward")
                .uniform(u.clone())
                .arg(7, dx)
                .arg(10, scratch)
                .arg(11, dout)
                .arg(4, x)
                .arg(5, w)
                .arg(2, mean)
                .arg(3, rstd)
                .flops(&[14, self.rows, self.c])
                .groups(grid(self.chunks() as u64)),
            Dispatch::new(Family::LayerNorm, "layernorm_backward_final")
                .uniform(u)
                .arg(8, dw)
                .arg(9, db)
                .arg(10, scratch)
                .flops(&[2, self.chunks(), self.c])
                .threads(self.c as u64, WG),
        ]
    }

    /// (mean, rstd) of each row, two-pass.
    fn cpu_stats(&self, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let c = self.c;
        assert_eq!(x.len(), self.rows * c);
        x.chunks(c)
            .map(|row| {
                let m = row.iter().sum::<f64>() / c as f64;
                let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / c as f64;
                (m, 1.0 / (var + self.eps as f64).sqrt())
            })
            .unzip()
    }

    /// (out, mean, rstd)
    pub fn cpu_forward(&self, x: &[f64], w: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let c = self.c;
        let (mean, rstd) = self.cpu_stats(x);
        let mut out = vec![0.0; x.len()];
        for r in 0..self.rows {
            for i in 0..c {
                out[r * c + i] = (x[r * c + i] - mean[r]) * rstd[r] * w[i] + b[i];
            }
        }
        (out, mean, rstd)
    }

    /// (dx, dw, db) for the loss gradient dout (rows, C).
    pub fn cpu_backward(&self, dout: &[f64], x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let c = self.c;
        let (mean, rstd) = self.cpu_stats(x);
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; c];
        let mut db = vec![0.0; c];
        for r in 0..self.rows {
            let xh: Vec<f64> = (0..c).map(|i| (x[r * c + i] - mean[r]) * rstd[r]).collect();
            let g: Vec<f64> = (0..c).map(|i| dout[r * c + i] * w[i]).collect();
            let mg = g.iter().sum::<f64>() / c as f64;
            let mgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / c as f64;
            for i in 0..c {
                dx[r * c + i] = rstd[r] * (g[i] - mg - xh[i] * mgx);
                dw[i] += dout[r * c + i] * xh[i];
                db[i] += dout[r * c + i];
            }
        }
        (dx, dw, db)
    }
}
