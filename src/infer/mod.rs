//! Generation with a KV cache: a decode program of its own, compiled once for every position (the
//! position is data the kernels read), that runs one position of B sequences per step on the
//! training kernels (B rows each) plus `ops::decode`'s, keeps each layer's keys and values on the
//! GPU, computes the logits of that position only, and picks the next tokens there: a step reads
//! back B ids. The prompt goes in one pass first: the training kernels' forward over all positions
//! of the contexts, each layer's keys and values copied into the caches.

#[cfg(not(target_arch = "wasm32"))]
pub mod sample;
mod text;

pub use text::TextStream;

use std::collections::HashMap;

use crate::data::batches::Rng;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineCache, Program, Step, StorageType};
use crate::graph::fuse::Fusion;
use crate::graph::{Class, TensorId, Tensors};
use crate::model::{param_table, GptConfig};
use crate::ops::attention::Attention;
use crate::ops::decode::Decode;
use crate::ops::embedding::Embedding;
use crate::ops::gemv::{self, Norm};
use crate::ops::layernorm::LayerNorm;
use crate::ops::matmul::{Epilogue, Matmul};
use crate::ops::{gelu, residual, Dispatch};

/// GPT-2's LayerNorm epsilon, as the training graph uses.
const LN_EPS: f32 = 1e-5;

/// The most rows a decoding product hands to `ops::gemv`. On lavapipe (GPU timestamps, 4-layer
/// C=128 model, the 16 block products of a step) it took 1.7-2.8 ms against the subgroup matmul's
/// 3.2-3.6 ms at B=1 and 2.4 against 3.8 ms at B=2, the same at B=4, and 5.2 against 3.5 ms at B=8.
const GEMV_ROWS: usize = 2;

/// Decoding steps per submission (`Generator::steps_per_submit`): text streams in bursts of this
/// many tokens, and each burst pays one submission and one read-back.
pub const STEPS_PER_SUBMIT: usize = 8;

/// How the next token is picked: temperature 0 takes the most likely one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    /// Only the top_k most likely tokens (0: all).
    pub top_k: usize,
    /// Then only the smallest set of most likely tokens whose probability reaches top_p (nucleus
    /// sampling; 1: all).
    pub top_p: f64,
}

impl Sampling {
    /// Always the most likely token.
    pub const GREEDY: Sampling = Sampling { temperature: 0.0, top_k: 0, top_p: 1.0 };
}

pub struct Generator {
    pub model: GptConfig,
    /// Sequences decoded side by side.
    pub batch: usize,
    step: Step,
    params: HashMap<String, TensorId>,
    pos: TensorId,
    tokens: TensorId,
    /// (T_max, B) each position's draws, and the tokens picked there.
    rand: TensorId,
    history: TensorId,
    /// Whether the prompt goes in one pass where it can (set false to measure the other way).
    pub one_pass: bool,
    /// Decoding steps per submission, their tokens read back together (1: a step at a time).
    pub steps_per_submit: usize,
    /// The sequences a prefill pass fills: the first and how many (None: no prefill program; the
    /// prompt goes one position per step).
    prefill_span: Option<TensorId>,
    /// The context of a prefill pass (block_size).
    prefill_ids: TensorId,
    /// Dispatches of the model up to the logits (the caches of a position without its token).
    body: usize,
    /// Dispatches of one decoding step; the prefill's follow.
    decode_end: usize,
}

impl Generator {
    /// Compiles the decode program for `batch` sequences of `model` (f32 storage), with the
    /// fusion the training step would use on this adapter (`WGPT_FUSION`, else by adapter type).
    pub async fn new(gpu: &Gpu, model: GptConfig, batch: usize, sampling: Sampling) -> Result<Generator> {
        Self::with_options(gpu, model, batch, sampling, Fusion::from_env()?, None).await
    }

    /// `new` with the fusion given: `Epilogues` folds the residual adds and GELU into the linears
    /// (at B rows a step is mostly dispatches: on GPUs fewer should be faster); on lavapipe the
    /// folded tiled products were slower (11-12 against 6.5-7.6 ms per shakespeare-char step), so
    /// CPU adapters keep them apart, as for training; the few-row products (B <= `GEMV_ROWS`)
    /// fold them on every adapter unless `fusion` is `Off`. Folding, those also take the LayerNorm before them as a prologue:
    /// 6 dispatches a layer instead of 11 (8 with the epilogues alone). Not on lavapipe, where it
    /// was slower (4-layer C=128 model at B=1, GPU timestamps: c_attn 0.10 ms + ln_1 0.03 against
    /// 0.25 folded; every invocation recomputes its row's statistics; per token, alternating:
    /// 3.1-4.8 against 2.8-3.6 ms).
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
        let rand = t.f32("rand", &[t_max, b], Class::Input);
        let history = t.u32("history", &[t_max, b], Class::Output);
        let op = Decode {
            b,
            c,
            nh: model.n_head,
            t_max,
            v,
            temperature: sampling.temperature as f32,
            top_k: sampling.top_k,
            top_p: sampling.top_p as f32,
            attention_wg: if gpu.info.device_type == wgpu::DeviceType::Cpu { 16 } else { crate::ops::WG },
        };
        let act = |t: &mut Tensors, name: String, n: usize| t.f32(name, &[b, n], Class::Activation);
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
        let caches: Vec<(TensorId, TensorId)> = (0..model.n_layer)
            .map(|l| {
                (
                    t.f32(format!("h{l}.k_cache"), &[b, t_max, c], Class::Input),
                    t.f32(format!("h{l}.v_cache"), &[b, t_max, c], Class::Input),
                )
            })
            .collect();
        let blocks = Blocks { params: &params, c, fuse, fold_few: fusion != Fusion::Off };
        let mut x = act(&mut t, "x".into(), c);
        d.extend(op.embed(x, pos, tokens, &shards, w("transformer.wpe.weight")));
        for (l, &(kc, vc)) in caches.iter().enumerate() {
            let qkv = blocks.to_qkv(&mut t, &mut d, b, l, "", x);
            let y = act(&mut t, format!("h{l}.attn"), c);
            let part = t.f32(format!("h{l}.attn.partials"), &[op.partials_len()], Class::Scratch);
            d.extend(op.attention(y, pos, qkv, kc, vc, part));
            x = blocks.after_attention(&mut t, &mut d, b, l, "", x, y);
        }
        // ln_f goes into the head's products where the program folds and they are few-row ones.
        let (f, ln_f) = if fuse && b <= GEMV_ROWS {
            (x, Some(blocks.norm_of("transformer.ln_f")))
        } else {
            (blocks.norm(&mut t, &mut d, b, "ln_f".into(), x, "transformer.ln_f"), None)
        };
        let body = d.len();
        let logits = act(&mut t, "logits".into(), v);
        for &(v0, rows, shard) in &shards {
            let head = Matmul { m: b, k: c, n: rows, trans_w: true, out_stride: v, out_col: v0 };
            d.push(match ln_f {
                Some(n) => gemv::forward_normed(&head, logits, f, Some(n), shard, Epilogue::default()),
                None => blocks.product(&head, logits, f, shard, Epilogue::default()),
            });
        }
        d.push(op.sample(tokens, history, pos, logits, rand));
        d.push(op.advance(pos));
        let decode_end = d.len();
        let mut prefill_span = None;
        // The prompt in one pass: the training kernels' forward over all block_size positions of
        // one context (zero-padded), each layer's keys and values copied into the caches of the
        // sequences that share it (all of them, for the prompt; one, after the window slides). The
        // last layer stops there, and no logits: only the caches are wanted. Where the widest
        // activation (the MLP's, 4C per position) does not fit one binding, the prompt goes one
        // position per step.
        let prefill_ids = t.u32("prefill.ids", &[t_max], Class::Input);
        if t_max * 4 * c * 4 <= limit as usize {
            let span = t.u32("prefill.span", &[2], Class::Input);
            let mut x = t.f32("prefill.x", &[t_max, c], Class::Activation);
            let whole = Embedding { b: 1, t: t_max, c, v, block: t_max, v0: 0 };
            for &(v0, n, shard) in &shards {
                d.push(Embedding { v: n, v0, ..whole }.forward(x, prefill_ids, shard, w("transformer.wpe.weight")));
            }
            let causal = Attention { b: 1, t: t_max, nh: model.n_head, hs: c / model.n_head };
            for (l, &(kc, vc)) in caches.iter().enumerate() {
                let qkv = blocks.to_qkv(&mut t, &mut d, t_max, l, "prefill.", x);
                d.push(op.fill(span, qkv, kc, vc));
                if l + 1 < model.n_layer {
                    let y = t.f32(format!("prefill.h{l}.attn"), &[t_max, c], Class::Activation);
                    let lse = t.f32(format!("prefill.h{l}.lse"), &[model.n_head, t_max], Class::Scratch);
                    d.push(causal.forward(y, lse, qkv));
                    x = blocks.after_attention(&mut t, &mut d, t_max, l, "prefill.", x, y);
                }
            }
            prefill_span = Some(span);
        }
        let program =
            Program { tensors: t, dispatches: d, storage: StorageType::F32, max_binding, ..Default::default() };
        let step = Step::compile(gpu, &mut PipelineCache::new(), program).await?;
        Ok(Generator {
            model,
            batch,
            step,
            params,
            pos,
            tokens,
            rand,
            history,
            one_pass: true,
            steps_per_submit: STEPS_PER_SUBMIT,
            prefill_span,
            prefill_ids,
            body,
            decode_end,
        })
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
            // Steps at positions pos .. pos + steps in one submission: each step's sample leaves
            // its tokens as the next step's input and advances the position on the GPU. A few
            // may run past a stop token or n; their tokens are dropped.
            let steps = self.steps_per_submit.max(1).min(n - made).min(t_max - pos);
            let draws: Vec<f32> = (0..steps * b).map(|_| rng.uniform() as f32).collect();
            self.step.write_f32_at(self.rand, pos * b, &draws)?;
            self.step.run_ranges(&vec![0..self.decode_end; steps]);
            let picked = self.step.read_u32(self.history).await?;
            for next in picked[pos * b..(pos + steps) * b].chunks(b) {
                for (i, &id) in next.iter().enumerate() {
                    ctx[i].push(id);
                    if !done[i] {
                        out[i].push(id);
                        done[i] = stop == Some(id);
                    }
                }
                each(next);
                made += 1;
                if made >= n || done.iter().all(|&d| d) {
                    return Ok(out);
                }
            }
            pos += steps;
            if pos < t_max {
                continue;
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

    /// Fills the caches with every sequence's context but its last token and sets up the step for
    /// that one; returns its position. In one pass for all sequences when they share their
    /// context (the prompt), else one pass each, over all positions: those past the context hold
    /// padding, which every later step overwrites before reading it.
    fn prefill(&self, ctx: &[Vec<u32>]) -> Result<usize> {
        let (len, t_max, b) = (ctx[0].len(), self.model.block_size, self.batch);
        match self.prefill_span {
            Some(span) if len > 1 && self.one_pass => {
                let shared = ctx.iter().all(|c| *c == ctx[0]);
                let spans: Vec<(usize, usize)> = if shared { vec![(0, b)] } else { (0..b).map(|i| (i, 1)).collect() };
                for (first, n) in spans {
                    let mut ids = vec![0u32; t_max];
                    ids[..len].copy_from_slice(&ctx[first]);
                    self.step.write_u32(self.prefill_ids, &ids)?;
                    self.step.write_u32(span, &[first as u32, n as u32])?;
                    self.step.run_range(self.decode_end..self.step.len());
                }
            }
            _ => {
                for pos in 0..len - 1 {
                    self.step.write_u32(self.pos, &[pos as u32])?;
                    self.step.write_u32(self.tokens, &ctx.iter().map(|c| c[pos]).collect::<Vec<_>>())?;
                    // Only the caches are wanted from these positions.
                    self.step.run_range(0..self.body);
                }
            }
        }
        self.step.write_u32(self.pos, &[len as u32 - 1])?;
        self.step.write_u32(self.tokens, &ctx.iter().map(|c| c[len - 1]).collect::<Vec<_>>())?;
        Ok(len - 1)
    }
}

/// A transformer block's pieces on any number of rows, shared by the decode step (B rows) and the
/// prefill (B x block_size rows): tensor names start with `pre`.
struct Blocks<'a> {
    params: &'a HashMap<String, TensorId>,
    c: usize,
    /// Residual adds and GELU folded into the linears' epilogues.
    fuse: bool,
    /// The same for few-row products (B <= `GEMV_ROWS`) whatever the adapter, unless fusion is
    /// off.
    fold_few: bool,
}

impl Blocks<'_> {
    fn act(&self, t: &mut Tensors, name: String, rows: usize, n: usize) -> TensorId {
        t.f32(name, &[rows, n], Class::Activation)
    }

    /// LayerNorm `p`'s parameters, to fold into a few-row product.
    fn norm_of(&self, p: &str) -> Norm {
        Norm { w: self.params[&format!("{p}.weight")], b: self.params[&format!("{p}.bias")], eps: LN_EPS }
    }

    fn norm(
        &self,
        t: &mut Tensors,
        d: &mut Vec<Dispatch>,
        rows: usize,
        name: String,
        x: TensorId,
        p: &str,
    ) -> TensorId {
        let (out, mean, rstd) = (
            self.act(t, name.clone(), rows, self.c),
            self.act(t, format!("{name}.mean"), rows, 1),
            self.act(t, format!("{name}.rstd"), rows, 1),
        );
        let Norm { w, b, eps } = self.norm_of(p);
        d.push(LayerNorm { rows, c: self.c, eps }.forward(out, mean, rstd, x, w, b));
        out
    }

    /// A linear (k inputs, n outputs) with what its epilogue folds in (the residual add, GELU).
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        t: &mut Tensors,
        d: &mut Vec<Dispatch>,
        rows: usize,
        name: String,
        x: TensorId,
        (k, n): (usize, usize),
        p: &str,
        e: Epilogue,
    ) -> TensorId {
        self.linear_with(t, d, rows, name, x, None, (k, n), p, e)
    }

    /// `linear` of LayerNorm `ln`(x) where `ln` is given: a few-row product that normalizes its
    /// rows itself (`gemv::forward_normed`).
    #[allow(clippy::too_many_arguments)]
    fn linear_with(
        &self,
        t: &mut Tensors,
        d: &mut Vec<Dispatch>,
        rows: usize,
        name: String,
        x: TensorId,
        ln: Option<Norm>,
        (k, n): (usize, usize),
        p: &str,
        e: Epilogue,
    ) -> TensorId {
        let out = self.act(t, name, rows, n);
        let (w, bias) = (self.params[&format!("{p}.weight")], self.params[&format!("{p}.bias")]);
        let (op, e) = (Matmul::new(rows, k, n, false), Epilogue { bias: Some(bias), ..e });
        d.push(match ln {
            Some(_) => gemv::forward_normed(&op, out, x, ln, w, e),
            None => self.product(&op, out, x, w, e),
        });
        out
    }

    /// LayerNorm `ln` of x, then a linear: one dispatch for a folded few-row product, which
    /// normalizes its rows itself (`gemv::forward_normed`), else two.
    #[allow(clippy::too_many_arguments)]
    fn norm_linear(
        &self,
        t: &mut Tensors,
        d: &mut Vec<Dispatch>,
        rows: usize,
        (norm_name, ln): (String, &str),
        name: String,
        x: TensorId,
        (k, n): (usize, usize),
        p: &str,
        e: Epilogue,
    ) -> TensorId {
        if rows > GEMV_ROWS || !self.fuse {
            let a = self.norm(t, d, rows, norm_name, x, ln);
            return self.linear(t, d, rows, name, a, (k, n), p, e);
        }
        self.linear_with(t, d, rows, name, x, Some(self.norm_of(ln)), (k, n), p, e)
    }

    /// A decoding step's products have B rows. Up to `GEMV_ROWS` the few-row kernel
    /// (`ops::gemv`) computes just those; more rows (and the prompt pass's block_size) take the
    /// training matmul, whose tiles share each weight load among rows.
    fn product(&self, op: &Matmul, out: TensorId, x: TensorId, w: TensorId, e: Epilogue) -> Dispatch {
        if op.m <= GEMV_ROWS {
            gemv::forward(op, out, x, w, e)
        } else {
            op.forward_with(out, x, w, e)
        }
    }

    /// Layer l up to its attention's input: ln_1, then c_attn's qkv (rows, 3C).
    fn to_qkv(
        &self,
        t: &mut Tensors,
        d: &mut Vec<Dispatch>,
        rows: usize,
        l: usize,
        pre: &str,
        x: TensorId,
    ) -> TensorId {
        let h = |s: &str| format!("transformer.h.{l}.{s}");
        let (ln, c) = ((format!("{pre}h{l}.ln_1"), &*h("ln_1")), self.c);
        self.norm_linear(
            t,
            d,
            rows,
            ln,
            format!("{pre}h{l}.c_attn"),
            x,
            (c, 3 * c),
            &h("attn.c_attn"),
            Epilogue::default(),
        )
    }

    /// The rest of layer l from the attention's output y: projection, add, ln_2, MLP, add.
    #[allow(clippy::too_many_arguments)]
    fn after_attention(
        &self,
        t: &mut Tensors,
        d: &mut Vec<Dispatch>,
        rows: usize,
        l: usize,
        pre: &str,
        x: TensorId,
        y: TensorId,
    ) -> TensorId {
        let h = |s: &str| format!("transformer.h.{l}.{s}");
        let n = |s: &str| format!("{pre}h{l}.{s}");
        let (c, plain) = (self.c, Epilogue::default());
        // Few-row products always take the adds and GELU: on lavapipe (4-layer C=128 model, B=1)
        // a step's 12 dispatches fewer saved about 0.5 ms of 3.5-4 per token, alternating.
        let fuse = self.fuse || (rows <= GEMV_ROWS && self.fold_few);
        let r = if fuse {
            self.linear(t, d, rows, n("res1"), y, (c, c), &h("attn.c_proj"), Epilogue { res: Some(x), ..plain })
        } else {
            let y = self.linear(t, d, rows, n("attn.c_proj"), y, (c, c), &h("attn.c_proj"), plain);
            let r = self.act(t, n("res1"), rows, c);
            d.push(residual::forward(r, x, y, rows * c));
            r
        };
        let ln_2 = (n("ln_2"), &*h("ln_2"));
        let g = self.act(t, n("gelu"), rows, 4 * c);
        if fuse {
            let fc = Epilogue { gelu: Some(g), ..plain };
            self.norm_linear(t, d, rows, ln_2, n("c_fc"), r, (c, 4 * c), &h("mlp.c_fc"), fc);
            self.linear(t, d, rows, n("res2"), g, (4 * c, c), &h("mlp.c_proj"), Epilogue { res: Some(r), ..plain })
        } else {
            let m = self.norm_linear(t, d, rows, ln_2, n("c_fc"), r, (c, 4 * c), &h("mlp.c_fc"), plain);
            d.push(gelu::forward(g, m, rows * 4 * c));
            let m = self.linear(t, d, rows, n("mlp.c_proj"), g, (4 * c, c), &h("mlp.c_proj"), plain);
            let x = self.act(t, n("res2"), rows, c);
            d.push(residual::forward(x, r, m, rows * c));
            x
        }
    }
}
