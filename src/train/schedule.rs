//! Learning-rate schedule: linear warmup from 0 to `max_lr`, then cosine decay to `min_lr` at
//! `decay_steps`, constant after.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub max_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub decay_steps: u64,
}

impl Schedule {
    /// Learning rate of step `step` (counted from 0).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.max_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if step >= self.decay_steps {
            return self.min_lr;
        }
        let span = (self.decay_steps - self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / span;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr + cosine * (self.max_lr - self.min_lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_then_floor() {
        let s = Schedule { max_lr: 1e-3, min_lr: 1e-4, warmup_steps: 10, decay_steps: 110 };
        assert!((s.lr(0) - 1e-4).abs() < 1e-12, "first warmup step is max_lr / warmup");
        assert!((s.lr(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12, "decay starts at max_lr");
        assert!((s.lr(60) - 5.5e-4).abs() < 1e-12, "half way down the cosine is the midpoint");
        assert!((s.lr(110) - 1e-4).abs() < 1e-12 && (s.lr(10_000) - 1e-4).abs() < 1e-12);
        assert!((10..110).all(|i| s.lr(i + 1) <= s.lr(i)), "monotone decay");
    }
}
