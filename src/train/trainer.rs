//! The trainer's core, the same natively and in the browser: a model, its compiled step, its tokens
//! and sampler; one optimizer step, evaluation and generation are async (a browser cannot block on
//! a GPU read-back). Native runs drive them through `run.rs` (the run loop, `metrics.jsonl`,
//! checkpoints, resume, signals), which also gives each call a blocking form.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use super::checkpoint;
use super::config::RunConfig;
use super::guard::Guard;
#[cfg(not(target_arch = "wasm32"))]
pub use super::run::{Progress, CHECKPOINT_FILES};
use super::schedule::Schedule;
use super::step::{StepConfig, StepStats, TrainStep};
use crate::data::batches::{sample, sequential, split, Rng, Tokens};
use crate::data::dataset::TokenSet;
pub use crate::data::dataset::{load_corpus, Corpus};
use crate::data::Tokenizer;
use crate::dist::{Comm, Solo};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineCache};
use crate::infer::{Generator, Sampling};
use crate::model::{param_table, GptConfig, Init};

/// GPT-2 initialisation from `seed`: normal(0, 0.02) weights, 0.02/sqrt(2L) for residual
/// projections, zero biases, unit LayerNorm gains.
pub fn init_params(model: &GptConfig, seed: u64) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng(seed);
    param_table(model)
        .into_iter()
        .map(|s| {
            let v = (0..s.numel())
                .map(|_| match s.init {
                    Init::Normal(std) => (rng.normal() * std as f64) as f32,
                    Init::Zeros => 0.0,
                    Init::Ones => 1.0,
                })
                .collect();
            (s.name, v)
        })
        .collect()
}

pub struct Trainer {
    pub cfg: RunConfig,
    pub model: GptConfig,
    pub tokenizer: Tokenizer,
    pub ts: TrainStep,
    pub(super) tokens: TokenSet,
    /// The shard files `tokens` come from (recorded in the checkpoint for --resume); empty when
    /// the tokens are in memory.
    pub shards: Vec<PathBuf>,
    /// `Input::fingerprint` of the corpus the run was made from (recorded in the checkpoint, so
    /// `--resume --data` recognizes the same corpus, moved or renamed); None for older runs.
    pub corpus: Option<String>,
    pub train: Range<usize>,
    pub val: Range<usize>,
    pub(super) rng: Rng,
    pub step: u64,
    /// A one-line notice for the user (f16 asked for on an adapter without it).
    pub notice: Option<String>,
    /// The recent good steps the outlier guard measures against (not saved: after a resume it
    /// waits for `guard::WARMUP` steps again).
    pub(super) guard: Guard,
    /// The device, kept to compile the sampling program (`infer::Generator`) at the first sample.
    gpu: Gpu,
    sampler: std::sync::Mutex<Option<(Sampling, Generator)>>,
    /// This process's place in a data-parallel job (`Solo` by default; `join`).
    pub(super) comm: Box<dyn Comm>,
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy)]
pub struct Stepped {
    pub stats: StepStats,
    /// The learning rate it ran at.
    pub lr: f64,
}

impl Trainer {
    /// The tokenizer the settings ask for, trained on `text`, and `text` in its tokens.
    pub fn tokenize(cfg: &RunConfig, text: &str) -> Result<(Tokenizer, TokenSet)> {
        let tokenizer = match cfg.tokenizer.as_str() {
            "bpe" => Tokenizer::bpe(text, cfg.vocab_size)?,
            _ => Tokenizer::char_level(text),
        };
        let tokens = TokenSet::Memory(tokenizer.encode(text)?);
        Ok((tokenizer, tokens))
    }

    /// A trainer on `tokens` (made by `tokenizer`) from freshly initialised weights; `shards` are
    /// the tokens' files, if any.
    pub async fn build(
        gpu: &Gpu,
        cfg: RunConfig,
        tokenizer: Tokenizer,
        tokens: TokenSet,
        shards: Vec<PathBuf>,
    ) -> Result<Trainer> {
        cfg.validate()?;
        let (train, val) = split(tokens.len(), cfg.val_fraction, cfg.block_size)?;
        let model = GptConfig {
            vocab_size: tokenizer.vocab_size(),
            block_size: cfg.block_size,
            n_layer: cfg.n_layer,
            n_head: cfg.n_head,
            n_embd: cfg.n_embd,
        };
        let mut cfg = cfg;
        let (precision, notice) = TrainStep::supported_precision(gpu, cfg.precision);
        // The checkpoint records what ran.
        cfg.precision = precision;
        let step_cfg = StepConfig::for_run(model, &cfg);
        let ts = TrainStep::build_recorded(gpu, &mut PipelineCache::new(), step_cfg, &cfg.kernels).await?;
        cfg.kernels = ts.step.choices.iter().map(|c| (c.key.clone(), c.variant)).collect();
        let params = init_params(&model, cfg.seed);
        ts.load_params(|name, _| Ok(params[name].clone()))?;
        Ok(Trainer {
            rng: Rng(cfg.seed ^ 0x5eed),
            cfg,
            model,
            tokenizer,
            ts,
            tokens,
            shards,
            corpus: None,
            train,
            val,
            step: 0,
            notice,
            guard: Guard::new(0.0),
            gpu: gpu.clone(),
            sampler: Default::default(),
            comm: Box::new(Solo),
        })
    }

    /// A trainer around given weights (for sampling and evaluation from a checkpoint); it holds no
    /// corpus.
    pub async fn build_for_model(
        gpu: &Gpu,
        cfg: RunConfig,
        model: GptConfig,
        tokenizer: Tokenizer,
        params: &HashMap<String, Vec<f32>>,
    ) -> Result<Trainer> {
        let ts = TrainStep::build(gpu, &mut PipelineCache::new(), StepConfig::new(model, cfg.batch_size)).await?;
        Self::holding(gpu, cfg, model, tokenizer, params, ts)
    }

    /// A trainer that only scores and samples (`wgpt eval`, `sample --no-cache`): a forward-only
    /// program (no gradients, no optimizer state) at the largest batch of at most `windows`
    /// (rounded up to a power of two, at most 64) that fits the adapter, smaller ones tried when
    /// the device refuses. The batch does not change a score: the loss is summed per window.
    /// `keep_logits` holds them whole for `next_logits` (else they are made a chunk at a time).
    pub async fn build_forward_only(
        gpu: &Gpu,
        mut cfg: RunConfig,
        model: GptConfig,
        tokenizer: Tokenizer,
        params: &HashMap<String, Vec<f32>>,
        windows: usize,
        keep_logits: bool,
    ) -> Result<Trainer> {
        let step = |batch| StepConfig {
            forward_only: true,
            logits_chunk: keep_logits.then_some(usize::MAX),
            ..StepConfig::new(model, batch)
        };
        let mut batch = forward_batch(gpu, step, windows);
        let ts = loop {
            let step = step(batch);
            match TrainStep::build(gpu, &mut PipelineCache::new(), step).await {
                Err(Error::OutOfMemory { .. } | Error::Limit { .. }) if batch > 1 => batch /= 2,
                built => break built?,
            }
        };
        cfg.batch_size = batch;
        Self::holding(gpu, cfg, model, tokenizer, params, ts)
    }

    fn holding(
        gpu: &Gpu,
        cfg: RunConfig,
        model: GptConfig,
        tokenizer: Tokenizer,
        params: &HashMap<String, Vec<f32>>,
        ts: TrainStep,
    ) -> Result<Trainer> {
        ts.load_params(|name, _| Ok(params[name].clone()))?;
        Ok(Trainer {
            rng: Rng(cfg.seed),
            cfg,
            model,
            tokenizer,
            ts,
            tokens: TokenSet::Memory(Vec::new()),
            shards: Vec::new(),
            corpus: None,
            train: 0..0,
            val: 0..0,
            step: 0,
            notice: None,
            guard: Guard::new(0.0),
            gpu: gpu.clone(),
            sampler: Default::default(),
            comm: Box::new(Solo),
        })
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            max_lr: self.cfg.lr,
            min_lr: self.cfg.min_lr,
            warmup_steps: self.cfg.warmup_steps,
            decay_steps: self.cfg.steps,
        }
    }

    /// Whether this trainer is rank 0 of its job (or alone): the one that logs, evaluates,
    /// samples and writes the run directory.
    pub fn leads(&self) -> bool {
        self.comm.rank() == 0
    }

    /// Makes this trainer rank `comm.rank()` of a data-parallel job; its config's `ranks` (the
    /// step was compiled for it) must be the job's size.
    pub fn join(&mut self, comm: Box<dyn Comm>) -> Result<()> {
        if comm.size() != self.cfg.ranks || comm.rank() != self.cfg.rank {
            return Err(Error::Other(format!(
                "the trainer was built as rank {} of {}, the job makes it rank {} of {}",
                self.cfg.rank,
                self.cfg.ranks,
                comm.rank(),
                comm.size()
            )));
        }
        if self.cfg.comm_timeout > 0.0 {
            comm.set_timeout(self.cfg.comm_timeout);
        }
        check_same_run(&*comm, &self.agreed())?;
        self.comm = comm;
        Ok(())
    }

    /// One line on the job this trainer is a rank of, or on the ranks it stands for (None: a
    /// plain run).
    pub fn job_line(&self) -> Option<String> {
        let c = &self.cfg;
        if c.virtual_ranks > 1 {
            return Some(format!(
                "virtual_ranks {}: the step's {} micro-batches add up as {} ranks' of {} each would",
                c.virtual_ranks,
                c.grad_accum,
                c.virtual_ranks,
                c.grad_accum / c.virtual_ranks
            ));
        }
        (c.ranks > 1).then(|| {
            let zero = match self.ts.sharded() {
                true => format!(
                    "; ZeRO-1: each rank keeps the AdamW moments{} of about 1/{} of the parameters",
                    if self.ts.masters_sharded() { " and f32 master weights" } else { "" },
                    c.ranks
                ),
                false => String::new(),
            };
            format!(
                "data-parallel: {} ranks, {} sequences per step ({} per rank x grad_accum {}){zero}",
                c.ranks,
                c.ranks * c.batch_size * c.grad_accum,
                c.batch_size,
                c.grad_accum
            )
        })
    }

    /// What every rank of a job must agree on, by name: wgpt's version, each setting, the
    /// corpus's tokens, the model and the kernel variant of every product (a variant may round
    /// differently, so the ranks' gradients would not add up to one rank's).
    fn agreed(&self) -> Vec<(String, String)> {
        let mut out = vec![("wgpt version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
        if let Some(obj) = self.cfg.to_json().as_object() {
            out.extend(obj.iter().map(|(k, v)| (format!("setting {k}"), v.to_string())));
        }
        let first: Vec<u32> = (0..self.tokens.len().min(4096)).map(|i| self.tokens.get(i)).collect();
        out.push(("corpus (--data)".into(), format!("{} tokens, {:?}", self.tokens.len(), first)));
        out.push(("model".into(), format!("{:?}", self.model)));
        let kernels: Vec<String> = self.ts.step.choices.iter().map(|c| format!("{}={:?}", c.key, c.variant)).collect();
        out.push(("kernel variants (use --set matmul=… or autotune=off)".into(), kernels.join(",")));
        out
    }

    /// One optimizer step: `grad_accum` micro-batches drawn from the training split, the lr of
    /// this step, the outlier guard's ceilings (a step the GPU skips leaves the weights as they
    /// were). Counts the step and feeds the guard with it when it was good. In a job of N ranks
    /// the step's N·grad_accum micro-batches are drawn from one stream, rank-major (rank r takes
    /// r·A .. r·A + A), so the data does not depend on N: one rank with grad_accum × N draws the
    /// same sequences.
    pub async fn train_step(&mut self) -> Result<Stepped> {
        let lr = self.schedule().lr(self.step);
        let (b, t, a) = (self.cfg.batch_size, self.cfg.block_size, self.cfg.grad_accum);
        let (rank, ranks) = (self.comm.rank() as u64, self.comm.size() as u64);
        let mut rng = self.rng;
        rng.skip(rank * (a * b) as u64);
        let batches: Vec<(Vec<u32>, Vec<u32>)> =
            (0..a).map(|_| sample(&self.tokens, &self.train, b, t, &mut rng)).collect();
        self.rng.skip(ranks * (a * b) as u64);
        let micro: Vec<(&[u32], &[u32])> = batches.iter().map(|(i, t)| (&i[..], &t[..])).collect();
        self.ts.ceilings = self.guard.ceilings();
        let stats = self.ts.train_micro_ranked(&*self.comm, &micro, lr).await?;
        self.step += 1;
        if !stats.skipped && stats.loss.is_finite() {
            self.guard.push(stats.grad_norm, stats.loss);
        }
        Ok(Stepped { stats, lr })
    }

    /// Mean loss over `eval_batches` fixed batches of the validation split (the training split
    /// when there is none).
    pub async fn evaluate(&self) -> Result<f64> {
        let range = if self.val.is_empty() { &self.train } else { &self.val };
        // The same batches for every run and seed, so evaluations compare.
        let mut rng = Rng(0xe7a1_5eed);
        let mut total = 0.0;
        for _ in 0..self.cfg.eval_batches {
            let (ids, targets) = sample(&self.tokens, range, self.cfg.batch_size, self.cfg.block_size, &mut rng);
            self.ts.set_batch(&ids, &targets)?;
            self.ts.run_loss();
            total += self.ts.stats().await?.loss as f64;
        }
        Ok(total / self.cfg.eval_batches as f64)
    }

    /// Mean loss over the non-overlapping `block_size` windows of `tokens` from the start (a
    /// final partial window dropped), and the number of tokens scored.
    pub async fn score_windows(&self, tokens: &[u32]) -> Result<(f64, usize)> {
        let t = self.cfg.block_size;
        check_windows(tokens.len(), t)?;
        if let Some(&bad) = tokens.iter().find(|&&x| x as usize >= self.model.vocab_size) {
            return Err(Error::Other(format!(
                "token {bad} is outside the model's vocabulary of {}",
                self.model.vocab_size
            )));
        }
        let v = tokens.to_vec();
        let (mut total, mut windows) = (0.0, 0usize);
        for (ids, targets, real) in sequential(&v, &(0..v.len()), self.cfg.batch_size, t) {
            self.ts.set_batch(&ids, &targets)?;
            self.ts.run_loss();
            // The loss is the mean over the batch; padded rows repeat the first window, so
            // read per-row losses to count only the real ones.
            let rows = self.ts.row_losses().await?;
            total += rows[..real * t].iter().map(|&x| x as f64).sum::<f64>();
            windows += real;
        }
        Ok((total / (windows * t) as f64, windows * t))
    }

    /// Continues `prompt` by `n` tokens with a whole forward pass per token (`sample --no-cache`).
    pub async fn continue_text(&self, prompt: &[u32], n: usize, sampling: Sampling, rng: &mut Rng) -> Result<Vec<u32>> {
        let t = self.cfg.block_size;
        let mut out = prompt.to_vec();
        if out.is_empty() {
            out.push(0);
        }
        for _ in 0..n {
            let row = self.next_logits(&out[out.len().saturating_sub(t)..]).await?;
            out.push(pick(&row, sampling, rng));
        }
        Ok(out)
    }

    /// The logits (V) after the last token of `ctx` (at most block_size tokens), from a whole
    /// forward pass over it: what generation computed before the KV cache, kept as its reference.
    pub async fn next_logits(&self, ctx: &[u32]) -> Result<Vec<f32>> {
        let (b, t, v) = (self.cfg.batch_size, self.cfg.block_size, self.model.vocab_size);
        assert!(!ctx.is_empty() && ctx.len() <= t, "next_logits: context of 1 ..= block_size tokens");
        let mut ids = vec![0u32; b * t];
        ids[..ctx.len()].copy_from_slice(ctx);
        let Some(whole) = self.ts.sec.logits else {
            return Err(Error::Other("next_logits: this program makes its logits a chunk at a time".into()));
        };
        self.ts.set_batch(&ids, &vec![0; b * t])?;
        self.ts.run_loss();
        let logits = self.ts.step.read_f32(whole).await?;
        Ok(logits[(ctx.len() - 1) * v..ctx.len() * v].to_vec())
    }

    /// The periodic sample: `sample_tokens` tokens after the first token of the validation split,
    /// seeded by the step.
    pub async fn sample_text(&self) -> Result<String> {
        let prompt = vec![self.tokens.get(self.val.start.min(self.tokens.len() - 1))];
        let mut rng = Rng(self.cfg.seed ^ self.step);
        let sampling = Sampling { temperature: self.cfg.temperature, top_k: self.cfg.top_k, top_p: self.cfg.top_p };
        let ids = self.sample(&prompt, self.cfg.sample_tokens, sampling, &mut rng).await?;
        Ok(self.tokenizer.decode(&[prompt, ids].concat()))
    }

    /// `n` tokens after `prompt` with the current weights, from the KV-cache program (compiled at
    /// the first call, and again only for other sampling settings), the context window sliding
    /// past block_size. The weights travel through the host: a few passes over the parameters per
    /// sample, against a whole forward pass per token before.
    pub async fn sample(&self, prompt: &[u32], n: usize, sampling: Sampling, rng: &mut Rng) -> Result<Vec<u32>> {
        let kept = self.sampler.lock().map_err(|_| Error::Other("the sampler was poisoned".into()))?.take();
        let generator = match kept {
            Some((s, g)) if s == sampling => g,
            _ => Generator::new(&self.gpu, self.model, 1, sampling).await?,
        };
        generator.load_params(&self.ts.read_params().await?)?;
        // A prompt longer than the context: its last block_size tokens, as a window would see.
        let prompt = &prompt[prompt.len().saturating_sub(self.model.block_size)..];
        let ids = generator.generate(prompt, n, None, true, rng, |_| {}).await;
        if let Ok(mut slot) = self.sampler.lock() {
            *slot = Some((sampling, generator));
        }
        Ok(ids?.swap_remove(0))
    }

    /// The model as `transformers` and `wgpt sample` open it: `model.safetensors`, `tokenizer.json`
    /// and `config.json` (with the run's settings and step under "wgpt"), the weights read back now.
    /// Where ZeRO-1 shards the masters (fp16 storage), every rank of the job calls it together.
    pub async fn model_files(&self) -> Result<[(&'static str, Vec<u8>); 3]> {
        let params = self.ts.read_masters(&*self.comm).await?;
        let kernels: serde_json::Map<String, serde_json::Value> =
            self.cfg.kernels.iter().map(|(k, v)| (k.clone(), v.name().into())).collect();
        let extra = serde_json::json!({"train": self.cfg.to_json(), "step": self.step, "kernels": kernels});
        Ok([
            ("model.safetensors", checkpoint::model_bytes(&self.model, &params)?),
            ("tokenizer.json", checkpoint::json_bytes(&self.tokenizer.to_json())),
            ("config.json", checkpoint::json_bytes(&checkpoint::hf_config(&self.model, extra))),
        ])
    }

    /// The first `n` tokens of the validation split (of the training split when there is none).
    pub fn val_tokens(&self, n: usize) -> Vec<u32> {
        crate::data::batches::held_out_head(&self.tokens, &self.train, &self.val, n)
    }
}

/// One optimizer step as the progress bar sees it (tokens/s over the steps since the last log line).
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub step: u64,
    pub steps: u64,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f32,
    pub tokens_per_s: f64,
}

/// Samples an index from logits on the host (the reference of `decode_sample`): softmax at the
/// temperature over the `top_k` largest, then over the smallest set of those whose probability
/// reaches `top_p` (argmax when the temperature is 0).
pub fn pick(logits: &[f32], sampling: Sampling, rng: &mut Rng) -> u32 {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if sampling.temperature <= 0.0 {
        return idx[0] as u32;
    }
    if sampling.top_k > 0 {
        idx.truncate(sampling.top_k);
    }
    let m = logits[idx[0]] as f64;
    let mut w: Vec<f64> = idx.iter().map(|&i| ((logits[i] as f64 - m) / sampling.temperature).exp()).collect();
    if sampling.top_p < 1.0 {
        let goal = sampling.top_p * w.iter().sum::<f64>();
        let mut acc = 0.0;
        let keep = w.iter().position(|&wi| {
            acc += wi;
            acc >= goal
        });
        w.truncate(keep.map_or(w.len(), |i| i + 1));
    }
    let mut r = rng.uniform() * w.iter().sum::<f64>();
    for (k, &wi) in w.iter().enumerate() {
        r -= wi;
        if r <= 0.0 {
            return idx[k] as u32;
        }
    }
    idx[w.len() - 1] as u32
}

/// The largest power-of-two batch of at most `windows` (and 64) whose forward-only program fits the
/// adapter's buffer limit and `WGPT_DEVICE_MEMORY`, judged from its memory plan (no GPU work).
fn forward_batch(gpu: &Gpu, step: impl Fn(usize) -> StepConfig, windows: usize) -> usize {
    let mut batch = windows.clamp(1, 64).next_power_of_two();
    while batch > 1 {
        if let Ok((program, _)) = TrainStep::program(step(batch), gpu.max_binding()) {
            let max = gpu.max_buffer();
            let plan = crate::graph::memplan::plan(&program.tensors, &program.dispatches, gpu.align(), max);
            let too_big = program.tensors.list.iter().any(|t| t.view.is_none() && t.bytes() > max);
            if !too_big && gpu.memory_cap.is_none_or(|cap| plan.total() <= cap) {
                return batch;
            }
        }
        batch /= 2;
    }
    1
}

/// Evaluation needs at least one window of `block_size` tokens and the next one.
pub fn check_windows(tokens: usize, block_size: usize) -> Result<()> {
    if tokens < block_size + 1 {
        return Err(Error::Other(format!("the text has {tokens} tokens, fewer than one window of {block_size} + 1")));
    }
    Ok(())
}

/// Refuses a job whose ranks disagree on what they run: every rank sends a 32-bit hash of each
/// agreed item (two f32 of 16 bits, exact), and each compares with rank 0's; one line names the
/// first item that differs.
fn check_same_run(comm: &dyn Comm, items: &[(String, String)]) -> Result<()> {
    use std::hash::{Hash, Hasher};
    let hashes: Vec<f32> = items
        .iter()
        .flat_map(|(_, v)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v.hash(&mut h);
            let x = h.finish() as u32;
            [(x >> 16) as f32, (x & 0xffff) as f32]
        })
        .collect();
    let all = comm.all_gather(hashes.clone())?;
    for (r, theirs) in all.iter().enumerate() {
        let differs = (0..items.len()).find(|&i| theirs.get(2 * i..2 * i + 2) != hashes.get(2 * i..2 * i + 2));
        if let Some(i) = differs.or((theirs.len() != hashes.len()).then_some(items.len() - 1)) {
            return Err(Error::Other(format!(
                "data-parallel job: rank {r} and rank {} differ in {}; start every rank with the same wgpt, \
                 command line and corpus",
                comm.rank(),
                items[i].0
            )));
        }
    }
    Ok(())
}
