//! The GPT-2 shape of a model: vocabulary, context length, depth, heads, width.

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
        Ok(())
    }
}
