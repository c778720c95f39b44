//! Storage precision of a run and the dynamic loss scaling that fp16 gradients need: the loss is
//! multiplied by a scale before backward so small gradients stay above f16's smallest values;
//! a step whose gradients overflow is skipped and the scale halved, and it grows again after a
//! run of clean steps (as PyTorch's GradScaler does).

use crate::error::{Error, Result};
use crate::gpu::StorageType;
use crate::graph::DType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Activations, their gradients, parameter gradients and the weights' compute copy in f16;
    /// master weights, AdamW moments, LayerNorm and attention statistics, softmax and losses in f32;
    /// every kernel accumulates in f32.
    F16,
}

impl Precision {
    pub const NAMES: [&'static str; 2] = ["f32", "f16"];

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(Error::Other(format!("precision: '{other}' is not one of {}", Self::NAMES.join(", ")))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// Element type of activations, gradients and the compute copy of the weights.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }

    /// What an adapter with `features` runs when asked for this precision: f16 needs
    /// `SHADER_F16` and falls back to f32, with a one-line notice naming the adapter.
    pub fn supported_by(self, features: wgpu::Features, adapter: &str) -> (Precision, Option<String>) {
        if self == Precision::F16 && !features.contains(wgpu::Features::SHADER_F16) {
            let note = format!("notice: {adapter} has no shader-f16; running in f32 instead of f16");
            (Precision::F32, Some(note))
        } else {
            (self, None)
        }
    }

    pub fn storage(self) -> StorageType {
        match self {
            Precision::F32 => StorageType::F32,
            Precision::F16 => StorageType::F16,
        }
    }
}

/// Dynamic loss scale. f32 runs keep it at 1 (their gradients neither underflow nor overflow in
/// practice; a step with inf/NaN gradients is still skipped, but the scale stays).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScale {
    pub scale: f32,
    /// Clean steps after which the scale doubles.
    pub growth_interval: u64,
    /// Clean steps since the last change.
    pub clean: u64,
    /// Steps skipped because of overflow, over the run.
    pub skipped: u64,
    pub dynamic: bool,
}

/// PyTorch's GradScaler defaults: start at 2^16, double after 2000 clean steps.
pub const INIT_SCALE: f32 = 65536.0;
pub const GROWTH_INTERVAL: u64 = 2000;
/// Bounds that keep the scale and its reciprocal normal f32 numbers.
const MIN_SCALE: f32 = 1.0 / 16777216.0;
const MAX_SCALE: f32 = 16777216.0;

impl LossScale {
    pub fn new(precision: Precision) -> Self {
        let dynamic = precision == Precision::F16;
        LossScale {
            scale: if dynamic { INIT_SCALE } else { 1.0 },
            growth_interval: GROWTH_INTERVAL,
            clean: 0,
            skipped: 0,
            dynamic,
        }
    }

    /// Takes the outcome of one optimizer step.
    pub fn update(&mut self, overflowed: bool) {
        if overflowed {
            self.skipped += 1;
            self.clean = 0;
            if self.dynamic {
                self.scale = (self.scale * 0.5).max(MIN_SCALE);
            }
        } else {
            self.clean += 1;
            if self.dynamic && self.clean >= self.growth_interval {
                self.scale = (self.scale * 2.0).min(MAX_SCALE);
                self.clean = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;

    #[test]
    fn f16_falls_back_to_f32_with_a_notice_without_shader_f16() {
        let (p, note) = Precision::F16.supported_by(wgpu::Features::empty(), "SwiftShader");
        assert_eq!(p, Precision::F32);
        assert_eq!(note.as_deref(), Some("notice: SwiftShader has no shader-f16; running in f32 instead of f16"));
        assert_eq!(Precision::F16.supported_by(wgpu::Features::SHADER_F16, "x"), (Precision::F16, None));
        assert_eq!(Precision::F32.supported_by(wgpu::Features::empty(), "x"), (Precision::F32, None));
        assert!(Precision::parse("bf16").unwrap_err().to_string().contains("f32, f16"));
    }
}
