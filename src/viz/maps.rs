//! Attention maps for display: the softmax probabilities of every head of every layer for one token
//! sequence, recomputed on the GPU from a forward pass (whatever attention kernel trains the model).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineCache, Program, Step, StorageType};
use crate::graph::flat::FlatLayout;
use crate::graph::{Class, DType, Graph, Node, TensorId};
use crate::model::{gpt, param_table, GptConfig};
use crate::ops::embedding::Embedding;

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
///
/// The dispatch list is the model's forward up to the last layer's attention, with one
/// `attention_probs` dispatch right after each attention forward: the probs dispatch reads that
/// layer's qkv and lse, so the memory plan keeps both alive until it has run. Nothing after the
/// last attention (MLP of the last block, ln_f, logits, loss) is compiled. Weights are f32.
pub struct AttentionProbe {
    pub model: GptConfig,
    pub t: usize,
    step: Step,
    layout: FlatLayout,
    ids: TensorId,
    buckets: TensorId,
    embedding: Embedding,
    /// One (NH, T, T) output per layer (separate tensors: one binding each stays small).
    probs: Vec<TensorId>,
}

impl AttentionProbe {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(gpu: &Gpu, model: GptConfig, t: usize) -> Result<Self> {
        pollster::block_on(Self::build(gpu, model, t))
    }

    /// The maps of `tokens` (see `maps_async`), blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn maps(&self, params: &HashMap<String, Vec<f32>>, tokens: &[u32]) -> Result<AttentionMaps> {
        pollster::block_on(self.maps_async(params, tokens))
    }

    pub async fn build(gpu: &Gpu, model: GptConfig, t: usize) -> Result<Self> {
        model.validate()?;
        if t == 0 || t > model.block_size {
            return Err(Error::Other(format!("attention maps: T = {t} must be in 1..={}", model.block_size)));
        }
        let mut g = Graph::new();
        g.max_binding = gpu.max_binding();
        let layout = FlatLayout::new(&mut g.t, &param_table(&model), DType::F32);
        let ids = g.t.u32("input_ids", &[1, t], Class::Input);
        let targets = g.t.u32("targets", &[1, t], Class::Input);
        let scalars = g.t.f32("scalars", &[4], Class::Output);
        gpt::record(&mut g, &model, &layout.param_ids(), ids, targets, scalars, gpt::logits_chunk_rows(&model))?;
        // Gradients and moments are never bound: as planned (not persistent) tensors without a
        // lifetime they take no memory.
        for gr in &layout.groups {
            for id in [gr.grad, gr.m, gr.v] {
                g.t.list[id.index()].class = Class::Scratch;
            }
        }
        let (embedding, buckets) = match g.nodes[0] {
            Node::Embedding { op, buckets, .. } => (Embedding { v: model.vocab_size, v0: 0, ..op }, buckets),
            _ => unreachable!("the model starts with the embedding"),
        };
        let mut dispatches = Vec::new();
        let mut probs = Vec::new();
        for node in &g.nodes {
            dispatches.push(node.forward());
            if let Node::Attention { op, lse, qkv, .. } = *node {
                let out = g.t.f32(format!("probs.h{}", probs.len()), &[op.nh, t, t], Class::Output);
                dispatches.push(op.probs(out, lse, qkv));
                probs.push(out);
                if probs.len() == model.n_layer {
                    break;
                }
            }
        }
        let program = Program { tensors: g.t, dispatches, storage: StorageType::F32, ..Default::default() };
        let step = Step::compile(gpu, &mut PipelineCache::new(), program).await?;
        Ok(AttentionProbe { model, t, step, layout, ids, buckets, embedding, probs })
    }

    /// The maps of `tokens` (at most T of them) under the weights `params` (Hugging Face names).
    ///
    /// Fewer than T tokens are padded with token 0 up to T; attention is causal, so the padding
    /// changes nothing at the given positions, and the maps returned are cropped to the given
    /// length (`maps.t() == tokens.len()`).
    pub async fn maps_async(&self, params: &HashMap<String, Vec<f32>>, tokens: &[u32]) -> Result<AttentionMaps> {
        let (t, n) = (self.t, tokens.len());
        if n == 0 || n > t {
            return Err(Error::Other(format!("attention maps: {n} tokens given, the probe takes 1..={t}")));
        }
        let v = self.model.vocab_size as u32;
        if let Some(bad) = tokens.iter().find(|&&x| x >= v) {
            return Err(Error::Other(format!("token id {bad} is outside the vocabulary of {v}")));
        }
        for p in &self.layout.params {
            let data = params
                .get(&p.spec.name)
                .ok_or_else(|| Error::Other(format!("attention maps: parameter {} missing", p.spec.name)))?;
            p.check_len(data.len())?;
            self.step.write_f32(p.param, data)?;
        }
        let mut ids = tokens.to_vec();
        ids.resize(t, 0);
        self.step.write_u32(self.ids, &ids)?;
        self.step.write_u32(self.buckets, &self.embedding.buckets(&ids))?;
        self.step.run();
        let nh = self.model.n_head;
        let mut out = Vec::with_capacity(self.model.n_layer * nh * n * n);
        for &id in &self.probs {
            let full = self.step.read_f32(id).await?;
            for row in full.chunks_exact(t).enumerate().filter(|(i, _)| i % t < n) {
                out.extend_from_slice(&row.1[..n]);
            }
        }
        Ok(AttentionMaps { n_layer: self.model.n_layer, n_head: nh, tokens: tokens.to_vec(), probs: out })
    }
}
