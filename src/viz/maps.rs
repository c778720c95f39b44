//! Attention maps for display: the softmax probabilities of every head of every layer for one token
//! sequence, recomputed on the GPU from a forward pass (whatever attention kernel trains the model).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::GptConfig;

/// Probabilities of every (layer, head) for one sequence of T tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMaps {
    pub n_layer: usize,
    pub n_head: usize,
    pub tokens: Vec<u32>,
    /// (L, NH, T, T) row-major: row = query position, column = key position; 0 above the diagonal.
    pub probs: Vec<f32>,
}

impl AttentionMaps {
    pub fn t(&self) -> usize {
        self.tokens.len()
    }

    /// The T x T map of one head.
    pub fn head(&self, layer: usize, head: usize) -> &[f32] {
        let tt = self.t() * self.t();
        let i = (layer * self.n_head + head) * tt;
        &self.probs[i..i + tt]
    }
}

/// A compiled forward pass of batch 1 over T tokens plus the dispatches that turn each layer's
/// qkv and log-sum-exp into probabilities; built once, run for every refresh.
pub struct AttentionProbe {
    pub model: GptConfig,
    pub t: usize,
}

impl AttentionProbe {
    pub fn new(_gpu: &Gpu, model: GptConfig, t: usize) -> Result<Self> {
        Ok(AttentionProbe { model, t })
    }

    /// The maps of `tokens` (at most T of them) under the weights `params` (Hugging Face names).
    pub fn maps(&self, _params: &HashMap<String, Vec<f32>>, _tokens: &[u32]) -> Result<AttentionMaps> {
        Err(Error::Other("attention maps: not built yet".into()))
    }
}
