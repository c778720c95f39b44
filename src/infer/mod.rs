//! Generation with a KV cache: a decode program of its own, compiled once for every position (the
//! position is data the kernels read), that runs one position of B sequences per step on the
//! training kernels (B rows each) plus `ops::decode`'s, keeps each layer's keys and values on the
//! GPU, computes the logits of that position only, and picks the next tokens there: a step reads
//! back B ids. The prompt is fed one position per step (its logits and sampling skipped).

mod text;

pub use text::TextStream;

use std::collections::HashMap;

use crate::data::batches::Rng;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineCache, Program, Step, StorageType};
use crate::graph::fuse::Fusion;
use crate::graph::{Class, TensorId, Tensors};
use crate::model::{param_table, GptConfig};
use crate::ops::decode::Decode;
use crate::ops::layernorm::LayerNorm;
use crate::ops::matmul::{Epilogue, Matmul};
use crate::ops::{gelu, residual, Dispatch};

/// GPT-2's LayerNorm epsilon, as the training graph uses.
const LN_EPS: f32 = 1e-5;

/// How the next token is picked: temperature 0 takes the most likely one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    /// Only the top_k most likely tokens (0: all).
    pub top_k: usize,
}

pub struct Generator {
    pub model: GptConfig,
    /// Sequences decoded side by side.
    pub batch: usize,
    step: Step,
    params: HashMap<String, TensorId>,
    pos: TensorId,
    tokens: TensorId,
    rand: TensorId,
    /// Dispatches of the model up to the logits (the rest: lm_head and sampling).
    body: usize,
}

impl Generator {
    /// Compiles the decode program for `batch` sequences of `model` (f32 storage), with the
    /// fusion the training step would use on this adapter (`WGPT_FUSION`, else by adapter type).
    pub async fn new(gpu: &Gpu, model: GptConfig, batch: usize, sampling: Sampling) -> Result<Generator> {
        Self::with_options(gpu, model, batch, sampling, Fusion::from_env()?, None).await
    }

    /// `new` with the fusion given: `Epilogues` folds the residual adds and GELU into the linears
    /// (at B rows a step is mostly dispatches: on GPUs fewer should be faster); on lavapipe the
    /// folded products were slower (11-12 against 6.5-7.6 ms per shakespeare-char step), so CPU
    /// adapters keep them apart, as for training.
    /// `max_binding` caps one binding below the adapter's limit (tests: the token table in shards).
    pub async fn with_options(
        gpu: &Gpu,
        model: GptConfig,
        batch: usize,
        sampling: Sampling,
        fusion: Fusion,
        max_binding: Option<u64>,
    ) -> Result<Generator> {
        let fuse = fusion.resolve(gpu.info.device_type == wgpu::DeviceType::Cpu) == Fusion::Epilogues;
        let (b, c, v, t_max) = (batch, model.n_embd, model.vocab_size, model.block_size);
        if b == 0 {
            return Err(Error::Other("generation needs at least one sequence".into()));
        }
        let mut t = Tensors::default();
        let params: HashMap<String, TensorId> =
            param_table(&model).into_iter().map(|s| (s.name.clone(), t.f32(s.name, &s.shape, Class::Param))).collect();
        let w = |n: &str| params[n];
        let pos = t.u32("pos", &[1], Class::Input);
        let tokens = t.u32("tokens", &[b], Class::Input);
        let rand = t.f32("rand", &[b], Class::Input);
        let op = Decode {
            b,
            c,
            nh: model.n_head,
            t_max,
            v,
            temperature: sampling.temperature as f32,
            top_k: sampling.top_k,
        };
        let act = |t: &mut Tensors, name: String, n: usize| t.f32(name, &[b, n], Class::Activation);
        let ln = LayerNorm { rows: b, c, eps: LN_EPS };
        let mut d: Vec<Dispatch> = Vec::new();
        // The architecture diagram, one position: embed -> L x (ln_1 -> attention -> add -> ln_2 ->
        // MLP -> add) -> ln_f -> lm_head -> the next token.
        // The token table in shards of whole rows that each fit one binding (GPT-2's 154 MB table
        // does not fit lavapipe's 128 MiB), 64 rows at a time so every shard's offset stays aligned.
        let limit = max_binding.map_or(gpu.max_binding(), |m| m.min(gpu.max_binding()));
        let rows_per = ((limit as usize / (4 * c)) / 64 * 64).max(64);
        let wte = w("transformer.wte.weight");
        let shards: Vec<(usize, usize, TensorId)> = (0..v)
            .step_by(rows_per)
            .map(|v0| {
                let rows = rows_per.min(v - v0);
                (v0, rows, if rows == v { wte } else { t.view(wte, v0 * c, rows * c) })
            })
            .collect();
        let mut x = act(&mut t, "x".into(), c);
        d.extend(op.embed(x, pos, tokens, &shards, w("transformer.wpe.weight")));
        let norm = |t: &mut Tensors, d: &mut Vec<Dispatch>, name: String, x: TensorId, p: &str| {
            let (out, mean, rstd) =
                (act(t, name.clone(), c), act(t, format!("{name}.mean"), 1), act(t, format!("{name}.rstd"), 1));
            d.push(ln.forward(out, mean, rstd, x, params[&format!("{p}.weight")], params[&format!("{p}.bias")]));
            out
        };
        // A linear (k inputs, n outputs) with what its epilogue folds in (the residual add, GELU).
        let linear = |t: &mut Tensors,
                      d: &mut Vec<Dispatch>,
                      name: String,
                      x: TensorId,
                      kn: (usize, usize),
                      p: &str,
                      e: Epilogue| {
            let out = act(t, name, kn.1);
            let (w, bias) = (params[&format!("{p}.weight")], params[&format!("{p}.bias")]);
            d.push(Matmul::new(b, kn.0, kn.1, false).forward_with(out, x, w, Epilogue { bias: Some(bias), ..e }));
            out
        };
        let plain = Epilogue::default();
        for l in 0..model.n_layer {
            let h = |s: &str| format!("transformer.h.{l}.{s}");
            let a = norm(&mut t, &mut d, format!("h{l}.ln_1"), x, &h("ln_1"));
            let qkv = linear(&mut t, &mut d, format!("h{l}.c_attn"), a, (c, 3 * c), &h("attn.c_attn"), plain);
            let (kc, vc) = (
                t.f32(format!("h{l}.k_cache"), &[b, t_max, c], Class::Input),
                t.f32(format!("h{l}.v_cache"), &[b, t_max, c], Class::Input),
            );
            let y = act(&mut t, format!("h{l}.attn"), c);
            let part = t.f32(format!("h{l}.attn.partials"), &[op.partials_len()], Class::Scratch);
            d.extend(op.attention(y, pos, qkv, kc, vc, part));
            let r = if fuse {
                let res = Epilogue { res: Some(x), ..plain };
                linear(&mut t, &mut d, format!("h{l}.res1"), y, (c, c), &h("attn.c_proj"), res)
            } else {
                let y = linear(&mut t, &mut d, format!("h{l}.attn.c_proj"), y, (c, c), &h("attn.c_proj"), plain);
                let r = act(&mut t, format!("h{l}.res1"), c);
                d.push(residual::forward(r, x, y, b * c));
                r
            };
            let m = norm(&mut t, &mut d, format!("h{l}.ln_2"), r, &h("ln_2"));
            let g = act(&mut t, format!("h{l}.gelu"), 4 * c);
            if fuse {
                let fc = Epilogue { gelu: Some(g), ..plain };
                linear(&mut t, &mut d, format!("h{l}.c_fc"), m, (c, 4 * c), &h("mlp.c_fc"), fc);
                let res = Epilogue { res: Some(r), ..plain };
                x = linear(&mut t, &mut d, format!("h{l}.res2"), g, (4 * c, c), &h("mlp.c_proj"), res);
            } else {
                let m = linear(&mut t, &mut d, format!("h{l}.c_fc"), m, (c, 4 * c), &h("mlp.c_fc"), plain);
                d.push(gelu::forward(g, m, b * 4 * c));
                let m = linear(&mut t, &mut d, format!("h{l}.mlp.c_proj"), g, (4 * c, c), &h("mlp.c_proj"), plain);
                x = act(&mut t, format!("h{l}.res2"), c);
                d.push(residual::forward(x, r, m, b * c));
            }
        }
        let f = norm(&mut t, &mut d, "ln_f".into(), x, "transformer.ln_f");
        let body = d.len();
        let logits = act(&mut t, "logits".into(), v);
        for &(v0, rows, shard) in &shards {
            let head = Matmul { m: b, k: c, n: rows, trans_w: true, out_stride: v, out_col: v0 };
            d.push(head.forward(logits, f, shard, None));
        }
        d.push(op.sample(tokens, logits, rand));
        let program =
            Program { tensors: t, dispatches: d, storage: StorageType::F32, max_binding, ..Default::default() };
        let step = Step::compile(gpu, &mut PipelineCache::new(), program).await?;
        Ok(Generator { model, batch, step, params, pos, tokens, rand, body })
    }

    /// Writes the weights, keyed by Hugging Face name.
    pub fn load_params(&self, params: &HashMap<String, Vec<f32>>) -> Result<()> {
        for (name, &id) in &self.params {
            let data = params.get(name).ok_or_else(|| Error::Other(format!("generation: no parameter {name}")))?;
            self.step.write_f32(id, data)?;
        }
        Ok(())
    }

    /// Continues `prompt` (empty: token 0) in every sequence by up to `n` tokens, or until every
    /// sequence has produced `stop`. At the model's context length it stops, or with `slide`
    /// keeps the last half of each sequence's context in a fresh cache and goes on (as a whole
    /// recompute over a window would, with a window that then grows back to the full length).
    /// `each` sees every step's new tokens (one per sequence) as they come. Returns each
    /// sequence's new tokens.
    pub async fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        stop: Option<u32>,
        slide: bool,
        rng: &mut Rng,
        mut each: impl FnMut(&[u32]),
    ) -> Result<Vec<Vec<u32>>> {
        let prompt = if prompt.is_empty() { &[0][..] } else { prompt };
        let t_max = self.model.block_size;
        if prompt.len() > t_max {
            return Err(Error::Other(format!(
                "the prompt has {} tokens, more than the model's context of {t_max}",
                prompt.len()
            )));
        }
        let b = self.batch;
        let mut out = vec![Vec::new(); b];
        let mut done = vec![false; b];
        if n == 0 {
            return Ok(out);
        }
        let mut ctx = vec![prompt.to_vec(); b];
        let mut pos = self.prefill(&ctx)?;
        let mut made = 0;
        loop {
            let draws: Vec<f32> = (0..b).map(|_| rng.uniform() as f32).collect();
            self.step.write_f32(self.rand, &draws)?;
            self.step.run();
            let next = self.step.read_u32(self.tokens).await?;
            for (i, &id) in next.iter().enumerate() {
                ctx[i].push(id);
                if !done[i] {
                    out[i].push(id);
                    done[i] = stop == Some(id);
                }
            }
            each(&next);
            made += 1;
            if made >= n || done.iter().all(|&d| d) {
                break;
            }
            if pos + 1 < t_max {
                // `tokens` already holds what this step picked.
                pos += 1;
                self.step.write_u32(self.pos, &[pos as u32])?;
            } else if slide {
                for c in &mut ctx {
                    c.drain(..c.len() - (t_max / 2).max(1));
                }
                pos = self.prefill(&ctx)?;
            } else {
                break;
            }
        }
        Ok(out)
    }

    /// Fills the caches with every sequence's context but its last token, at positions 0 ..,
    /// and sets up the step for that last one; returns its position.
    fn prefill(&self, ctx: &[Vec<u32>]) -> Result<usize> {
        let len = ctx[0].len();
        for pos in 0..len {
            self.step.write_u32(self.pos, &[pos as u32])?;
            self.step.write_u32(self.tokens, &ctx.iter().map(|c| c[pos]).collect::<Vec<_>>())?;
            if pos + 1 < len {
                // Only the caches are wanted from these positions.
                self.step.run_range(0..self.body);
            }
        }
        Ok(len - 1)
    }
}
