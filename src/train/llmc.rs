//! llm.c's activation footprint for a GPT-2 shape, for the README's memory comparison: the sum over
//! the activation tensors its CUDA trainer (train_gpt2.cu, `fill_in_activation_sizes`) allocates,
//! with bf16 activations and f32 LayerNorm statistics and losses. Computed from its published
//! tensor list, not measured; llm.c holds activation gradients in a few reused scratch buffers
//! that this count includes (`output`, `scratch_bt4c`, `scratch_btc`).

use crate::model::GptConfig;

/// llm.c's `recompute` setting: 0 keeps everything, 1 (its default) recomputes GELU, 2 also
/// recomputes the block LayerNorms.
pub fn activation_bytes(m: &GptConfig, b: usize, t: usize, recompute: u32, cudnn: bool) -> u64 {
    let (l, nh, c) = (m.n_layer as u64, m.n_head as u64, m.n_embd as u64);
    let (b, t) = (b as u64, t as u64);
    // llm.c pads the vocabulary to a multiple of 128 (50257 -> 50304).
    let vp = (m.vocab_size as u64).div_ceil(128) * 128;
    let (bt, btc) = (b * t, b * t * c);
    let ln = if recompute < 2 { l * btc } else { 0 };
    let gelu = if recompute < 1 { l * bt * 4 * c } else { bt * 4 * c };
    // bf16 tensors (elements).
    let half = btc // encoded
        + ln // ln1
        + l * btc // atty
        + if cudnn { 0 } else { l * b * nh * t * t } // att (B, NH, T, T) without cuDNN
        + l * btc // attproj
        + l * btc // residual2
        + ln // ln2
        + l * bt * 4 * c // fch
        + gelu // fch_gelu
        + l * btc // fcproj
        + l * btc // residual3
        + btc // lnf
        + l * bt * 3 * c // qkvr
        + bt * (3 * c).max(nh * t).max(vp) // output: logits / their gradients / scratch
        + bt * 4 * c // scratch_bt4c
        + btc; // scratch_btc
               // f32 tensors (elements): LayerNorm means and rstds, the cuDNN softmax statistics, losses.
    let single = 4 * l * bt + 2 * bt + bt + if cudnn { l * b * nh * t } else { 0 };
    half * 2 + single * 4
}

#[cfg(test)]
mod tests {
    use super::activation_bytes;
    use crate::model::GptConfig;

    #[test]
    fn gpt2_124m_footprint_follows_the_tensor_list() {
        let m = GptConfig { vocab_size: 50257, block_size: 1024, n_layer: 12, n_head: 12, n_embd: 768 };
        // Hand sum for B = 4, T = 1024 with cuDNN and recompute 1: 7 (L, B, T, C) tensors of
        // 4096 x 768 (ln1, atty, attproj, residual2, ln2, fcproj, residual3), qkvr (L, B, T, 3C), fch (L, B, T, 4C), one (B, T, 4C) gelu buffer, encoded,
        // lnf, scratch_btc (B, T, C), scratch_bt4c (B, T, 4C), output (B, T, 50304) in bf16, plus
        // 4L + 3 (B, T) f32 rows and the (L, B, NH, T) f32 statistics.
        let btc = 4096u64 * 768;
        let half = 7 * 12 * btc + 12 * 3 * btc + 12 * 4 * btc + 4 * btc + 3 * btc + 4 * btc + 4096 * 50304;
        let single = (4 * 12 + 3) * 4096 + 12 * 4 * 12 * 1024;
        assert_eq!(activation_bytes(&m, 4, 1024, 1, true), half * 2 + single * 4);
        // Without cuDNN the (L, B, NH, T, T) attention matrix dominates.
        let full = activation_bytes(&m, 4, 1024, 1, false);
        assert_eq!(full - (half * 2 + (4 * 12 + 3) * 4096 * 4), 12 * 4 * 12 * 1024 * 1024 * 2);
    }
}
