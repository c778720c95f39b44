//! The outlier guard (`--set outlier_z=Z`): ceilings on the next step's loss and gradient norm at
//! mean + Z standard deviations of the last good steps. The GPU compares against them and skips
//! a step above either, as it skips an overflowed one (see `norm_final` in shaders/reduce.wgsl).

use std::collections::VecDeque;

/// Good steps the mean and deviation are taken over.
pub const WINDOW: usize = 100;
/// Good steps needed before the guard acts (a young run's loss falls fast).
pub const WARMUP: usize = 20;

#[derive(Debug, Clone)]
pub struct Guard {
    /// Standard deviations above the mean (0: off); the run's `outlier_z`.
    pub z: f64,
    recent: VecDeque<[f64; 2]>,
}

impl Guard {
    /// A guard at `z` standard deviations (0: off).
    pub fn new(z: f64) -> Self {
        Guard { z, recent: VecDeque::with_capacity(WINDOW) }
    }

    /// Records a step that was not skipped.
    pub fn push(&mut self, grad_norm: f32, loss: f32) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back([grad_norm as f64, loss as f64]);
    }

    /// The ceilings on [gradient norm, loss] for the next step; f32::MAX when off or warming up.
    pub fn ceilings(&self) -> [f32; 2] {
        let n = self.recent.len();
        if self.z <= 0.0 || n < WARMUP {
            return [f32::MAX; 2];
        }
        [0, 1].map(|k| {
            let mean = self.recent.iter().map(|r| r[k]).sum::<f64>() / n as f64;
            let var = self.recent.iter().map(|r| (r[k] - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (mean + self.z * var.sqrt()) as f32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_follow_mean_and_deviation_of_the_window() {
        let mut g = Guard::new(3.0);
        for i in 0..WARMUP - 1 {
            g.push(1.0 + (i % 2) as f32, 4.0);
        }
        assert_eq!(g.ceilings(), [f32::MAX; 2], "warming up");
        g.push(2.0, 4.0);
        // Norms alternate 1, 2 (mean 1.5, sample sd sqrt(20/76)); the loss is constant.
        let sd = (20.0f64 * 0.25 / 19.0).sqrt();
        let [norm, loss] = g.ceilings();
        assert!((norm as f64 - (1.5 + 3.0 * sd)).abs() < 1e-5, "{norm}");
        assert_eq!(loss, 4.0);
        for _ in 0..WINDOW {
            g.push(10.0, 1.0);
        }
        assert_eq!(g.ceilings(), [10.0, 1.0], "only the last WINDOW steps count");
        assert_eq!(Guard::new(0.0).ceilings(), [f32::MAX; 2], "off");
    }
}
