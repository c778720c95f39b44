//! GPT-2 as a list of graph calls, in the order of the architecture diagram:
//! embed → L × (ln_1 → attention → add → ln_2 → MLP → add) → ln_f → lm_head (tied to wte) → loss,
//! the last two a chunk of rows at a time.

use std::collections::HashMap;

use super::config::GptConfig;
use crate::error::Result;
use crate::graph::{Graph, TensorId};

/// The lm_head and the loss take this many logits (rows × V) at a time: 64 MiB of f32, within
/// WebGPU's default 128 MiB binding. A constant, so the chunks (and the order in which dwte sums
/// them) depend on the model's shape only, never on the adapter.
pub const LOGITS_CHUNK: usize = 1 << 24;

/// Rows of logits per chunk for this model (GPT-2's 50,257 tokens: 333).
pub fn logits_chunk_rows(cfg: &GptConfig) -> usize {
    (LOGITS_CHUNK / cfg.vocab_size.max(1)).max(1)
}

/// Records the model on `g`. `p` maps Hugging Face names to parameter tensors; `ids` and
/// `targets` are (B, T) u32. The mean loss lands in `loss[0]`. The logits are computed `chunk`
/// rows at a time; returns them (B, T, V) when one chunk holds them all.
pub fn record(
    g: &mut Graph,
    cfg: &GptConfig,
    p: &HashMap<String, TensorId>,
    ids: TensorId,
    targets: TensorId,
    loss: TensorId,
    chunk: usize,
) -> Result<Option<TensorId>> {
    let w = |name: &str| p[name];
    let mut x = g.embedding(ids, w("transformer.wte.weight"), w("transformer.wpe.weight"))?; // (B, T, C)
    for l in 0..cfg.n_layer {
        g.begin_block(l);
        let h = |s: &str| w(&format!("transformer.h.{l}.{s}"));
        let n = |s: &str| format!("h{l}.{s}");

        let a = g.layernorm(&n("ln_1"), x, h("ln_1.weight"), h("ln_1.bias"))?;
        let qkv = g.linear(&n("c_attn"), a, h("attn.c_attn.weight"), Some(h("attn.c_attn.bias")), false)?; // (B, T, 3C)
        let y = g.attention(&n("attn"), qkv, cfg.n_head)?; // (B, T, C)
        let y = g.linear(&n("attn.c_proj"), y, h("attn.c_proj.weight"), Some(h("attn.c_proj.bias")), false)?;
        x = g.add(&n("res1"), x, y)?;

        let m = g.layernorm(&n("ln_2"), x, h("ln_2.weight"), h("ln_2.bias"))?;
        let m = g.linear(&n("c_fc"), m, h("mlp.c_fc.weight"), Some(h("mlp.c_fc.bias")), false)?; // (B, T, 4C)
        let m = g.gelu(&n("gelu"), m)?;
        let m = g.linear(&n("mlp.c_proj"), m, h("mlp.c_proj.weight"), Some(h("mlp.c_proj.bias")), false)?;
        x = g.add(&n("res2"), x, m)?;
    }
    g.end_block();
    let x = g.layernorm("ln_f", x, w("transformer.ln_f.weight"), w("transformer.ln_f.bias"))?;
    g.lm_head_loss(x, w("transformer.wte.weight"), targets, loss, 0, chunk) // tied head: x @ wte^T → loss
}
