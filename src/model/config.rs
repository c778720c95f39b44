//! The GPT-2 shape of a model: vocabulary, context length, depth, heads, width.

/// The most transformer blocks a model may have (GPT-3 has 96): a bound for sizes read from files.
pub const MAX_LAYERS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub block_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
}

impl GptConfig {
    /// The model of the reference fixture and of the `tiny` preset.
    pub fn tiny() -> Self {
        GptConfig { vocab_size: 65, block_size: 16, n_layer: 2, n_head: 2, n_embd: 32 }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Other(format!("model config: {m}")));
        if self.vocab_size == 0 || self.block_size == 0 || self.n_layer == 0 || self.n_head == 0 || self.n_embd == 0 {
            return bad(format!("every size must be positive, got {self:?}"));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!("n_embd {} is not divisible by n_head {}", self.n_embd, self.n_head));
        }
        if self.n_embd / self.n_head > 128 {
            return bad(format!("head size {} exceeds the kernel limit of 128", self.n_embd / self.n_head));
        }
        // Sizes from a file (config.json) can be absurd: refuse them before anything is sized by
        // them. Kernels index a tensor with 32-bit numbers.
        if self.n_layer > MAX_LAYERS {
            return bad(format!("n_layer {} is more than wgpt allows ({MAX_LAYERS})", self.n_layer));
        }
        let (v, t, c) = (self.vocab_size as u128, self.block_size as u128, self.n_embd as u128);
        let largest = (v * c).max(t * c).max(4 * c * c);
        if largest > u32::MAX as u128 {
            return bad(format!(
                "a weight of {largest} elements (vocab_size {}, block_size {}, n_embd {}); kernels index at most \
                 {} elements a tensor",
                self.vocab_size,
                self.block_size,
                self.n_embd,
                u32::MAX
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_before_anything_is_sized_by_them() {
        let ok = GptConfig { vocab_size: 50257, block_size: 1024, n_layer: 48, n_head: 25, n_embd: 1600 };
        ok.validate().unwrap();
        for bad in [
            GptConfig { n_layer: usize::MAX, ..ok },
            GptConfig { vocab_size: usize::MAX, ..ok },
            GptConfig { block_size: 1 << 40, ..ok },
            GptConfig { n_embd: 1 << 40, n_head: 1 << 33, ..ok },
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.starts_with("model config: ") && (e.contains("n_layer") || e.contains("elements")), "{e}");
        }
    }
}
