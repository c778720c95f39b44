//! Unfused causal attention: the O(T²) reference for the flash kernels, not used in training.
//! The textbook kernels materialize the (B, NH, T, T) scores/probabilities and their gradient in
//! f32 scratch, one invocation per element, and produce the same `out`, `lse` and `dqkv` as
//! [`Attention::forward`] and [`Attention::backward`], so tests can hold the flash kernels against
//! an independent WGSL computation (and that one against the f64 CPU reference).
//! Shader: `shaders/attention_unfused.wgsl`.

use super::attention::Attention;
use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

impl Attention {
    fn unfused_params(&self, acc: bool) -> Uniform {
        assert!(self.hs >= 1, "attention head size must be positive");
        let scale = 1.0 / (self.hs as f64).sqrt();
        Uniform::new().u(self.b).u(self.t).u(self.nh).u(self.hs).f(scale as f32).u(acc as u32)
    }

    /// f32 elements of one (B, NH, T, T) matrix: `probs` (the forward's S, then P, which the
    /// backward reads) and `dprobs` (the backward's dP, then dS) each take this many.
    pub fn unfused_scratch_len(&self) -> usize {
        self.b * self.nh * self.t * self.t
    }

    /// O(T²) reference forward: S = q k^T * scale (causal), P = softmax(S) and lse per row into
    /// `probs` and `lse`, out (B, T, C) = P V. Keep `probs` for [`Attention::unfused_backward`].
    pub fn unfused_forward(&self, out: TensorId, lse: TensorId, probs: TensorId, qkv: TensorId) -> Vec<Dispatch> {
        let u = self.unfused_params(false);
        let (rows, elems) = (self.b * self.nh * self.t, self.unfused_scratch_len());
        vec![
            Dispatch::new(Family::AttentionUnfused, "attention_unfused_scores")
                .uniform(u.clone())
                .arg(3, qkv)
                .arg(5, probs)
                .threads(elems as u64, WG),
            Dispatch::new(Family::AttentionUnfused, "attention_unfused_softmax")
                .uniform(u.clone())
                .arg(2, lse)
                .arg(5, probs)
                .threads(rows as u64, WG),
            Dispatch::new(Family::AttentionUnfused, "attention_unfused_out")
                .uniform(u)
                .arg(1, out)
                .arg(3, qkv)
                .arg(5, probs)
                .threads((self.b * self.t * self.c()) as u64, WG),
        ]
    }

    /// O(T²) reference backward: dP = dO V^T into `dprobs`, dS = P ∘ (dP − rowsum(dP ∘ P)) in
    /// place, then dqkv (B, T, 3C) (+)= (scale·dS K | scale·dS^T Q | P^T dO), overwriting or
    /// adding as `acc` says (the flash kernels' rule).
    pub fn unfused_backward(
        &self,
        dqkv: TensorId,
        acc: bool,
        dprobs: TensorId,
        dout: TensorId,
        qkv: TensorId,
        probs: TensorId,
    ) -> Vec<Dispatch> {
        let (rows, elems) = (self.b * self.nh * self.t, self.unfused_scratch_len());
        vec![
            Dispatch::new(Family::AttentionUnfused, "attention_unfused_dprobs")
                .uniform(self.unfused_params(acc))
                .arg(3, qkv)
                .arg(6, dout)
                .arg(7, dprobs)
                .threads(elems as u64, WG),
            Dispatch::new(Family::AttentionUnfused, "attention_unfused_softmax_backward")
                .uniform(self.unfused_params(acc))
                .arg(5, probs)
                .arg(7, dprobs)
                .threads(rows as u64, WG),
            Dispatch::new(Family::AttentionUnfused, "attention_unfused_dqkv")
                .uniform(self.unfused_params(acc))
                .arg(3, qkv)
                .arg(4, dqkv)
                .arg(5, probs)
                .arg(6, dout)
                .arg(7, dprobs)
                .threads((self.b * self.t * 3 * self.c()) as u64, WG),
        ]
    }
}
