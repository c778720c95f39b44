//! The kernels of one decoding position with a KV cache (`shaders/decode.wgsl`): the tokens'
//! embedding at the position `pos` holds, attention of its query over the cached keys and values
//! (storing its own first), and the next token picked from the logits on the GPU. `infer` builds
//! the program around them.

use super::attention::array_len;
use super::{Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

/// One decoding position of B sequences: the model's sizes and the sampling rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decode {
    pub b: usize,
    pub c: usize,
    pub nh: usize,
    /// Positions the cache holds (the model's block_size).
    pub t_max: usize,
    pub v: usize,
    /// 0: the largest logit.
    pub temperature: f32,
    /// Keep only the top_k logits (0: all).
    pub top_k: usize,
    /// Then only the most likely tokens whose probability reaches top_p (1: all).
    pub top_p: f32,
    /// Invocations per workgroup of `attention`, one per (sequence, head, chunk of positions). On
    /// a CPU adapter 16, so a single sequence's few heads spread over its threads (lavapipe,
    /// 4 heads, 16 chunks: 0.06 against 0.17 ms a layer with 64); elsewhere `WG`.
    pub attention_wg: u32,
}

impl Decode {
    fn hs(&self) -> usize {
        self.c / self.nh
    }

    fn uniform(&self) -> Uniform {
        self.uniform_shard(0, self.v, false)
    }

    fn uniform_shard(&self, v0: usize, v1: usize, acc: bool) -> Uniform {
        let hs = self.hs();
        Uniform::new()
            .u(self.b)
            .u(self.c)
            .u(self.nh)
            .u(hs)
            .u(self.t_max)
            .u(self.v)
            .f(1.0 / (hs as f32).sqrt())
            .u(self.top_k)
            .f(self.temperature)
            .u(v0)
            .u(v1)
            .u(acc as u32)
            .f(self.top_p)
    }

    fn dispatch(&self, entry: &'static str) -> Dispatch {
        Dispatch::new(Family::Decode, entry).uniform(self.uniform()).size("MAX_HS", array_len(self.hs()))
    }

    /// x (B, C) = wte[tokens] + wpe[pos] (`pos`: one u32; `tokens`: B). `wte` comes as shards
    /// (first token, rows, tensor) of a table too large for one binding; one dispatch each.
    pub fn embed(
        &self,
        x: TensorId,
        pos: TensorId,
        tokens: TensorId,
        wte: &[(usize, usize, TensorId)],
        wpe: TensorId,
    ) -> Vec<Dispatch> {
        wte.iter()
            .enumerate()
            .map(|(i, &(v0, rows, shard))| {
                Dispatch::new(Family::Decode, "decode_embed")
                    .uniform(self.uniform_shard(v0, rows, i > 0))
                    .size("MAX_HS", array_len(self.hs()))
                    .arg(1, pos)
                    .arg(9, tokens)
                    .arg(2, x)
                    .arg(3, shard)
                    .arg(4, wpe)
                    .flops(&[self.b, self.c])
                    .threads((self.b * self.c) as u64, WG)
            })
            .collect()
    }

    /// Positions per chunk of `attention` (`CHUNK` in the shader).
    const CHUNK: usize = 16;

    /// f32 elements of the partials `attention` leaves: (B, NH, chunks, HS + 2).
    pub fn partials_len(&self) -> usize {
        self.b * self.nh * self.t_max.div_ceil(Self::CHUNK) * (self.hs() + 2)
    }

    /// y (B, C): the position's k and v (from qkv (B, 3C)) stored in the caches (B, T_max, C),
    /// then its q attending over positions 0 ..= position, in chunks of positions whose softmax
    /// partials (`part`, `partials_len`) the second dispatch combines in order.
    pub fn attention(
        &self,
        y: TensorId,
        pos: TensorId,
        qkv: TensorId,
        k: TensorId,
        v: TensorId,
        part: TensorId,
    ) -> [Dispatch; 2] {
        let chunks = self.t_max.div_ceil(Self::CHUNK);
        [
            self.dispatch("decode_attention")
                .arg(1, pos)
                .arg(5, qkv)
                .arg(6, k)
                .arg(7, v)
                .arg(10, part)
                .flops(&[4, self.b, self.t_max, self.c])
                .constant("WG", self.attention_wg as f64)
                .threads((self.b * self.nh * chunks) as u64, self.attention_wg),
            self.dispatch("decode_attention_combine")
                .arg(1, pos)
                .arg(2, y)
                .arg(10, part)
                .flops(&[3, self.b, chunks, self.c])
                .threads((self.b * self.nh) as u64, WG),
        ]
    }

    /// The caches (B, T_max, C) of the sequences `span` (two u32: the first and how many) from one
    /// whole context's keys and values in qkv (T_max, 3C), the training forward's (the prefill).
    pub fn fill(&self, span: TensorId, qkv: TensorId, k: TensorId, v: TensorId) -> Dispatch {
        self.dispatch("decode_fill")
            .arg(1, span)
            .arg(5, qkv)
            .arg(6, k)
            .arg(7, v)
            .flops(&[self.b, self.t_max, self.c])
            .threads((self.b * self.t_max * self.c) as u64, WG)
    }

    /// The next token of each sequence from its logits (B, V), into `tokens` (B) and row pos of
    /// `history` (T_max, B); `rand` (T_max, B) holds each position's draws. One workgroup of
    /// `LANES` per sequence (a GPT-2 row is 50257 logits, and the thresholds take 40 passes over
    /// it each).
    pub fn sample(
        &self,
        tokens: TensorId,
        history: TensorId,
        pos: TensorId,
        logits: TensorId,
        rand: TensorId,
    ) -> Dispatch {
        self.dispatch("decode_sample")
            .arg(1, pos)
            .arg(9, tokens)
            .arg(11, history)
            .arg(2, logits)
            .arg(8, rand)
            .flops(&[3, self.b, self.v])
            .groups(super::grid(self.b as u64))
    }

    /// pos += 1: the last dispatch of a step, so steps can follow each other in one submission.
    pub fn advance(&self, pos: TensorId) -> Dispatch {
        self.dispatch("decode_advance").arg(1, pos).groups([1, 1, 1])
    }
}
