//! A compiled training step for a GPT: the model recorded on a graph, its backward derived, the
//! optimizer appended, compiled once. Each step uploads the batch, replays the dispatch list and
//! reads the loss back; forward, backward and optimizer sections can also run one at a time.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::error::{Error, Result};
use crate::gpu::tuning::{Autotune, KernelPolicy};
use crate::gpu::{Gpu, PipelineCache, Program, Step};
use crate::graph::autodiff::Autodiff;
use crate::graph::flat::FlatLayout;
use crate::graph::fuse::Fusion;
use crate::graph::{Class, Graph, Recompute, TensorId};
use crate::model::{gpt, param_table, GptConfig};
use crate::ops::adamw::AdamW;
use crate::ops::embedding::Embedding;
use crate::ops::matmul::Variant;

use super::config::RunConfig;
use super::optimizer::{optimizer_dispatches, zero_grads, CLIP, GRAD_NORM, LOSS, SKIPPED};
use super::precision::{LossScale, Precision};
use crate::dist::Solo;

#[derive(Debug, Clone, Copy)]
pub struct StepConfig {
    pub model: GptConfig,
    pub batch: usize,
    pub seq: usize,
    pub adamw: AdamW,
    pub max_grad_norm: f32,
    /// Caps the bytes of one storage binding below the adapter's limit (tests use it to force
    /// the split of the token table and logits that large vocabularies need).
    pub max_binding: Option<u64>,
    /// Caps the bytes of one buffer below the adapter's limit (tests: a plan split into many
    /// buffers).
    pub max_buffer: Option<u64>,
    /// Only the forward pass and the loss (evaluation, the whole-forward sampler): no backward,
    /// no optimizer, and no memory for gradients or moments.
    pub forward_only: bool,
    /// The most elements of one flat parameter group (`graph::flat::GROUP_MAX`; tests lower it).
    pub group_max: usize,
    /// Micro-batches summed into one optimizer step (their gradients accumulate; the loss of each
    /// is scaled by 1/(grad_accum · ranks) so the sum is the mean over all of them).
    pub grad_accum: usize,
    /// Ranks of a data-parallel job whose gradients are summed before the optimizer (`dist`).
    pub ranks: usize,
    /// One process standing for a job of this many ranks: its step takes grad_accum micro-batches
    /// per virtual rank and adds the virtual ranks' sums in rank order on the GPU
    /// (`accumulate::rank_folds`), so it reaches the bits of that job (the reference of
    /// `--set virtual_ranks`).
    pub virtual_ranks: usize,
    /// ZeRO-1 (with ranks > 1): this rank keeps the AdamW moments of its shard of each flat group
    /// (`flat::moment_shard`), updates that shard and gathers the others' (`zero`).
    pub zero: bool,
    /// This process's rank in the job (which shard it keeps under ZeRO-1).
    pub rank: usize,
    /// Storage type of activations and gradients (see `Precision`).
    pub precision: Precision,
    /// Activations the backward pass recomputes instead of keeping (gradients are unchanged).
    pub recompute: Recompute,
    /// One matmul variant for every product (None: chosen per product; `step.choices` says which).
    pub matmul: Option<Variant>,
    /// The attention variant (None: by adapter type).
    pub attention: Option<crate::ops::attention::Variant>,
    /// When the products' variants are timed (gpu/tuning.rs).
    pub autotune: Autotune,
    /// What `graph::fuse` folds (`build` settles `Auto` from `WGPT_FUSION`, else by adapter type;
    /// `program` alone takes it as `Epilogues`).
    pub fusion: Fusion,
    /// Rows of logits per chunk of the lm_head and loss (None: `gpt::logits_chunk_rows`, set by
    /// the model's shape; `Some(usize::MAX)` keeps them whole, for readers of the logits).
    pub logits_chunk: Option<usize>,
}

impl StepConfig {
    /// The step a run's settings call for (precision as asked: see `TrainStep::supported_precision`).
    pub fn for_run(model: GptConfig, cfg: &RunConfig) -> Self {
        StepConfig {
            adamw: AdamW {
                weight_decay: cfg.weight_decay as f32,
                beta1: cfg.beta1 as f32,
                beta2: cfg.beta2 as f32,
                ..AdamW::default()
            },
            // grad_clip = 0 turns clipping off, as in nanoGPT: the clip factor min(1, inf) is 1.
            max_grad_norm: if cfg.grad_clip > 0.0 { cfg.grad_clip as f32 } else { f32::INFINITY },
            // The run's grad_accum counts all of its micro-batches; the step's, one virtual rank's.
            grad_accum: cfg.grad_accum / cfg.virtual_ranks.max(1),
            ranks: cfg.ranks,
            virtual_ranks: cfg.virtual_ranks,
            zero: cfg.zero,
            rank: cfg.rank,
            precision: cfg.precision,
            recompute: cfg.recompute,
            matmul: cfg.matmul,
            attention: cfg.attention,
            autotune: cfg.autotune,
            ..StepConfig::new(model, cfg.batch_size)
        }
    }

    pub fn new(model: GptConfig, batch: usize) -> Self {
        StepConfig {
            model,
            batch,
            seq: model.block_size,
            adamw: AdamW::default(),
            max_grad_norm: 1.0,
            max_binding: None,
            max_buffer: None,
            forward_only: false,
            group_max: crate::graph::flat::GROUP_MAX,
            grad_accum: 1,
            ranks: 1,
            virtual_ranks: 1,
            zero: false,
            rank: 0,
            precision: Precision::F32,
            recompute: Recompute::None,
            matmul: None,
            attention: None,
            autotune: Autotune::Auto,
            fusion: Fusion::Auto,
            logits_chunk: None,
        }
    }
}

pub struct TrainStep {
    pub cfg: StepConfig,
    pub step: Step,
    /// Tensor ids and dispatch ranges of the recorded step.
    pub sec: Sections,
    /// Optimizer steps taken (AdamW's t); a skipped step does not count.
    pub t: u64,
    pub loss_scale: LossScale,
    /// The outlier guard's ceilings on the gradient norm and the loss for the next step (f32::MAX:
    /// off); a step above either is skipped on the GPU like an overflowed one.
    pub ceilings: [f32; 2],
}

/// A step that does not fit (device memory, a buffer or binding limit) says what to change, in the
/// order that costs the least: f16 storage, recomputation, then a smaller micro-batch at the same
/// tokens per step.
fn with_fit_advice(e: Error, cfg: &StepConfig, gpu: &Gpu) -> Error {
    if cfg.forward_only {
        let advice = "the model's forward pass over one window needs more than this adapter allows: use an adapter \
                      with more memory or larger buffers"
            .to_string();
        return match e {
            Error::OutOfMemory { plan, available, .. } => Error::OutOfMemory { plan, available, advice },
            Error::Limit { tensor, what, needed, limit, .. } => Error::Limit { tensor, what, needed, limit, advice },
            e => e,
        };
    }
    let mut ways = Vec::new();
    if cfg.precision == Precision::F32 && gpu.features.contains(wgpu::Features::SHADER_F16) {
        ways.push("--precision f16 (halves activations and gradients)".to_string());
    }
    if cfg.recompute != Recompute::Block {
        ways.push("--recompute block (keeps only each block's input for the backward pass)".to_string());
    }
    if cfg.batch > 1 {
        let b = (1..cfg.batch).rev().find(|d| cfg.batch.is_multiple_of(*d)).unwrap_or(1);
        ways.push(format!(
            "a smaller micro-batch, --set batch_size={b} --set grad_accum={} (the same tokens per step)",
            cfg.grad_accum * cfg.batch / b
        ));
    }
    ways.push("a smaller block_size or model".to_string());
    let advice = format!("to fit, try {}", ways.join("; or "));
    match e {
        Error::OutOfMemory { plan, available, .. } => Error::OutOfMemory { plan, available, advice },
        Error::Limit { tensor, what, needed, limit, .. } => Error::Limit { tensor, what, needed, limit, advice },
        e => e,
    }
}

impl TrainStep {
    /// Records the model, derives the backward pass and appends the optimizer; no GPU needed.
    /// `max_binding` bounds every bound range in bytes (the adapter's storage binding limit).
    pub fn program(cfg: StepConfig, max_binding: u64) -> Result<(Program, Sections)> {
        cfg.model.validate()?;
        if cfg.seq == 0 || cfg.seq > cfg.model.block_size || cfg.batch == 0 {
            return Err(Error::Other(format!(
                "step: batch {} and sequence {} must be positive, sequence at most block_size {}",
                cfg.batch, cfg.seq, cfg.model.block_size
            )));
        }
        let mut g = Graph::new();
        g.max_binding = max_binding;
        g.act = cfg.precision.dtype();
        let specs = param_table(&cfg.model);
        // ZeRO-1 shards are cut at the gradient norm's blocks, so each rank can sum the squares of
        // its own shard (`optimizer::norm_blocks`).
        let unit = super::optimizer::norm_unit((max_binding / 4) as usize);
        let zero = (cfg.zero && cfg.ranks > 1 && !cfg.forward_only).then_some(crate::graph::flat::Zero {
            rank: cfg.rank,
            ranks: cfg.ranks,
            unit,
        });
        let layout = FlatLayout::with_group_max(&mut g.t, &specs, g.act, cfg.group_max, zero);
        let (b, t) = (cfg.batch, cfg.seq);
        let ids = g.t.u32("input_ids", &[b, t], Class::Input);
        let targets = g.t.u32("targets", &[b, t], Class::Input);
        let scalars = g.t.f32("scalars", &[4], Class::Output);
        // lr, bias corrections, loss scale, the outlier ceilings on the gradient norm and the loss.
        let hyper = g.t.f32("adamw.hyper", &[6], Class::Input);

        let chunk = cfg.logits_chunk.unwrap_or_else(|| gpt::logits_chunk_rows(&cfg.model));
        let logits = gpt::record(&mut g, &cfg.model, &layout.param_ids(), ids, targets, scalars, chunk)?;
        // Residual adds and GELUs go into the matmuls beside them (`graph::fuse`).
        g.fuse(cfg.recompute, cfg.fusion);
        let (embedding, buckets) = match g.nodes[0] {
            crate::graph::Node::Embedding { op, buckets, .. } => {
                (Embedding { v: cfg.model.vocab_size, v0: 0, ..op }, buckets)
            }
            _ => unreachable!("the model starts with the embedding"),
        };
        let losses = g
            .nodes
            .iter()
            .find_map(|n| match *n {
                crate::graph::Node::Mean { losses, .. } => Some(losses),
                _ => None,
            })
            .expect("the model ends with the mean loss");
        if cfg.grad_accum == 0 || cfg.ranks == 0 || cfg.virtual_ranks == 0 || cfg.rank >= cfg.ranks {
            return Err(Error::Other(
                "step: grad_accum, ranks and virtual_ranks must be at least 1, rank below ranks".into(),
            ));
        }
        if cfg.ranks > 1 && cfg.virtual_ranks > 1 {
            return Err(Error::Other(
                "virtual_ranks stands one process for a job of several ranks; in a job of several, leave it at 1"
                    .into(),
            ));
        }
        let (mut norm, mut norm_partials) = (None, 0);
        // With chunked logits the forward section also takes each chunk's gradient (`head_grads`).
        let (forward, head_grads, backward, (fold_mid, fold_last), (rank_mid, rank_last), opt, nz) = if cfg.forward_only
        {
            (g.forward_dispatches(), Vec::new(), Vec::new(), Default::default(), Default::default(), Vec::new(), 0)
        } else {
            // Parameter gradients always accumulate; the optimizer section zeroes them after use.
            let mut backward = Autodiff::new(&mut g, &layout.root_grads(), true)
                .with_loss_scale(hyper)
                .with_recompute(cfg.recompute)
                .backward(1.0 / (cfg.grad_accum * cfg.ranks * cfg.virtual_ranks) as f32);
            let (forward, head_grads) = backward.forward_with_early(&g);
            let max_elems = (max_binding / 4) as usize;
            let folds = match cfg.grad_accum {
                1 => Default::default(),
                _ => super::accumulate::micro_folds(&mut g.t, &backward.multi_written, max_elems),
            };
            let rank_folds = match cfg.virtual_ranks {
                1 => Default::default(),
                _ => super::accumulate::rank_folds(&mut g.t, &layout, max_elems),
            };
            let section =
                optimizer_dispatches(&mut g.t, &layout, &cfg.adamw, cfg.max_grad_norm, scalars, hyper, max_elems);
            (norm, norm_partials) = (Some(section.partial), section.partials);
            let mut opt = section.dispatches;
            let zero = zero_grads(&mut g.t, &layout, max_elems);
            let nz = zero.len();
            opt.extend(zero);
            (forward, head_grads, backward.late, folds, rank_folds, opt, nz)
        };

        let (nf, nb, no) = (forward.len(), backward.len(), opt.len());
        let (nm, nl, nrm, nrl) = (fold_mid.len(), fold_last.len(), rank_mid.len(), rank_last.len());
        let dispatches = [forward, backward, fold_mid, fold_last, rank_mid, rank_last, opt].concat();
        let nbf = nb + nm + nl + nrm + nrl;
        let (exchange, exchange_tail) = match cfg.ranks > 1 && !cfg.forward_only {
            true => {
                let last_micro = [0..nf + nb, nf + nb + nm..nf + nb + nm + nl];
                let elems = layout.params.iter().map(|p| p.spec.numel()).sum::<usize>();
                let target = elems.div_ceil(grad_buckets(&cfg.model)?);
                super::exchange::exchange_buckets(&g.t, &dispatches, &last_micro, &layout, target)
            }
            false => Default::default(),
        };
        let program = Program {
            tensors: g.t,
            dispatches,
            storage: cfg.precision.storage(),
            kernels: KernelPolicy {
                matmul: cfg.matmul,
                attention: cfg.attention,
                autotune: cfg.autotune,
                ..Default::default()
            },
            ..Default::default()
        };
        let sections = Sections {
            layout,
            ids,
            targets,
            logits,
            losses,
            scalars,
            hyper,
            buckets,
            embedding,
            forward: 0..nf,
            head_grads,
            backward: nf..nf + nb,
            fold_mid: nf + nb..nf + nb + nm,
            fold_last: nf + nb + nm..nf + nb + nm + nl,
            rank_mid: nf + nb + nm + nl..nf + nb + nm + nl + nrm,
            rank_last: nf + nb + nm + nl + nrm..nf + nbf,
            exchange,
            exchange_tail,
            norm_partial: norm,
            norm_partials: nf + nbf..nf + nbf + norm_partials,
            max_elems: (max_binding / 4) as usize,
            optimizer: nf + nbf..nf + nbf + no,
            zero_grads: nf + nbf + no - nz..nf + nbf + no,
        };
        Ok((program, sections))
    }

    /// Compiles the step. fp16 storage needs the adapter's `SHADER_F16`: `supported_precision`
    /// says what to fall back to; asking for f16 here without it is an error.
    pub async fn build(gpu: &Gpu, cache: &mut PipelineCache, cfg: StepConfig) -> Result<TrainStep> {
        Self::build_recorded(gpu, cache, cfg, &BTreeMap::new()).await
    }

    /// `build`, with the kernel variants a run recorded for its products (`RunConfig::kernels`).
    pub async fn build_recorded(
        gpu: &Gpu,
        cache: &mut PipelineCache,
        cfg: StepConfig,
        recorded: &BTreeMap<String, Variant>,
    ) -> Result<TrainStep> {
        if cfg.precision == Precision::F16 && !gpu.features.contains(wgpu::Features::SHADER_F16) {
            return Err(Error::Other(format!(
                "precision f16: the adapter ({}) has no shader-f16 feature; use --precision f32",
                gpu.info.name
            )));
        }
        let cpu = gpu.info.device_type == wgpu::DeviceType::Cpu;
        let fusion = if cfg.fusion == Fusion::Auto { Fusion::from_env()? } else { cfg.fusion };
        let cfg = StepConfig { fusion: fusion.resolve(cpu), ..cfg };
        let limit = cfg.max_binding.map_or(gpu.max_binding(), |m| m.min(gpu.max_binding()));
        let (mut program, s) = Self::program(cfg, limit)?;
        program.max_binding = Some(limit);
        program.max_buffer = cfg.max_buffer;
        program.kernels.recorded = recorded.clone();
        if cfg.recompute != Recompute::None && crate::gpu::executor::debug_enabled() {
            let (base, _) = Self::program(StepConfig { recompute: Recompute::None, ..cfg }, limit)?;
            let (with, without) = ((&program.tensors, &program.dispatches[..]), (&base.tensors, &base.dispatches[..]));
            eprintln!("{}", crate::graph::recompute::saving(cfg.recompute, with, without, gpu.align()));
        }
        let step = Step::compile(gpu, cache, program).await.map_err(|e| with_fit_advice(e, &cfg, gpu))?;
        let loss_scale = LossScale::new(cfg.precision);
        let ts = TrainStep { cfg, step, sec: s, t: 0, loss_scale, ceilings: [f32::MAX; 2] };
        ts.write_hyper(0.0)?;
        Ok(ts)
    }

    /// The first fault the device reported (lost, or an error outside any scope), if any.
    pub fn fault(&self) -> Option<String> {
        self.step.fault()
    }

    /// Destroys the device, as a driver reset or an unplugged GPU would (fault-injection tests).
    pub fn lose_device(&self) {
        self.step.lose_device()
    }

    /// The precision this adapter can run: f16 falls back to f32 without `SHADER_F16`, with the
    /// one-line notice to print.
    pub fn supported_precision(gpu: &Gpu, want: Precision) -> (Precision, Option<String>) {
        want.supported_by(gpu.features, &gpu.info.name)
    }

    /// Learning rate and bias corrections of step t + 1, the current loss scale and the ceilings.
    pub(super) fn write_hyper(&self, lr: f64) -> Result<()> {
        let [lr, bc1, bc2, scale] = self.cfg.adamw.hyper(lr, self.t + 1, self.loss_scale.scale);
        self.step.write_f32(self.sec.hyper, &[lr, bc1, bc2, scale, self.ceilings[0], self.ceilings[1]])
    }

    pub(super) fn check_batch(&self, ids: &[u32], targets: &[u32]) -> Result<()> {
        let n = self.cfg.batch * self.cfg.seq;
        if ids.len() != n || targets.len() != n {
            return Err(Error::Other(format!(
                "batch: {} ids and {} targets given, B x T = {n}",
                ids.len(),
                targets.len()
            )));
        }
        let v = self.cfg.model.vocab_size as u32;
        if let Some(bad) = ids.iter().chain(targets).find(|&&x| x >= v) {
            return Err(Error::Other(format!("token id {bad} is outside the vocabulary of {v}")));
        }
        Ok(())
    }

    /// Uploads one batch: ids and targets (B·T each, targets = ids shifted by one).
    pub fn set_batch(&self, ids: &[u32], targets: &[u32]) -> Result<()> {
        self.check_batch(ids, targets)?;
        self.step.write_u32(self.sec.ids, ids)?;
        self.step.write_u32(self.sec.targets, targets)?;
        self.step.write_u32(self.sec.buckets, &self.sec.embedding.buckets(ids))
    }

    /// The forward section: the loss and, with chunked logits, the lm_head's gradients.
    pub fn run_forward(&self) {
        self.step.run_range(self.sec.forward.clone());
    }

    /// The forward pass and the loss only (evaluation): no gradient is written.
    pub fn run_loss(&self) {
        let mut ranges = Vec::new();
        let mut at = self.sec.forward.start;
        for g in &self.sec.head_grads {
            ranges.push(at..g.start);
            at = g.end;
        }
        ranges.push(at..self.sec.forward.end);
        self.step.run_ranges(&ranges);
    }

    pub fn run_backward(&self) {
        self.step.run_range(self.sec.backward.clone());
    }

    /// Sets the learning rate and bias corrections of step t+1 and runs norm + clip + AdamW, then
    /// zeroes the gradients; reads the outcome like `train_micro`.
    pub async fn run_optimizer(&mut self, lr: f64) -> Result<StepStats> {
        self.write_hyper(lr)?;
        self.step.run_range(self.sec.optimizer.clone());
        self.finish_step().await
    }

    /// Zeroes the gradients (the optimizer section ends with this; tests that run backward
    /// twice without an optimizer step call it between).
    pub fn run_zero_grads(&self) {
        self.step.run_range(self.sec.zero_grads.clone());
    }

    /// One training step of one micro-batch in one submission: forward, backward, clip, AdamW.
    pub async fn train_step(&mut self, ids: &[u32], targets: &[u32], lr: f64) -> Result<StepStats> {
        self.train_micro(&[(ids, targets)], lr).await
    }

    /// One optimizer step over `grad_accum` micro-batches: forward and backward for each (their
    /// gradients add up in micro-batch order, `accumulate`), then clip and AdamW in the last
    /// submission. The loss is their mean. A step whose gradients overflowed is skipped (nothing
    /// changes but the loss scale).
    pub async fn train_micro(&mut self, micro: &[(&[u32], &[u32])], lr: f64) -> Result<StepStats> {
        self.train_micro_ranked(&Solo, micro, lr).await
    }

    /// Reads the results of an optimizer section that has run: counts the step unless it was
    /// skipped, and updates the loss scale for the next one.
    pub async fn finish_step(&mut self) -> Result<StepStats> {
        let s = self.stats().await?;
        if !s.skipped {
            self.t += 1;
        }
        // An outlier is no overflow: the loss scale stays.
        self.loss_scale.update(s.skipped && !s.outlier);
        Ok(s)
    }

    /// Loss, gradient norm, clip factor and skip flag of the last step, and the loss scale it ran with.
    pub async fn stats(&self) -> Result<StepStats> {
        let s = self.step.read_f32(self.sec.scalars).await?;
        Ok(StepStats {
            loss: s[LOSS],
            grad_norm: s[GRAD_NORM],
            clip: s[CLIP],
            skipped: s[SKIPPED] != 0.0,
            outlier: s[SKIPPED] == 2.0,
            loss_scale: self.loss_scale.scale,
            comm_s: 0.0,
        })
    }

    /// Per-position losses of the last forward pass (B·T).
    pub async fn row_losses(&self) -> Result<Vec<f32>> {
        self.step.read_f32(self.sec.losses).await
    }

    /// Parameter gradients of the last backward pass, divided by the loss scale it ran with.
    pub async fn read_grads(&self) -> Result<HashMap<String, Vec<f32>>> {
        let mut out = HashMap::new();
        let inv = 1.0 / self.loss_scale.scale;
        for p in &self.sec.layout.params {
            let g = self.step.read_f32(p.grad).await?;
            out.insert(p.spec.name.clone(), g.into_iter().map(|x| x * inv).collect());
        }
        Ok(out)
    }
}

/// Where the pieces of a recorded step are: tensor ids and the dispatch ranges.
pub struct Sections {
    pub layout: FlatLayout,
    pub ids: TensorId,
    pub targets: TensorId,
    /// The logits (B, T, V) when one chunk holds them all (`StepConfig::logits_chunk`).
    pub logits: Option<TensorId>,
    /// Per-position losses (B·T), kept after the step.
    pub losses: TensorId,
    pub scalars: TensorId,
    pub hyper: TensorId,
    pub buckets: TensorId,
    pub embedding: Embedding,
    /// The forward pass and the loss; with chunked logits, each chunk's gradient too.
    pub forward: Range<usize>,
    /// The chunks' gradients inside `forward`, which a loss-only pass (`run_loss`) skips.
    pub head_grads: Vec<Range<usize>>,
    pub backward: Range<usize>,
    pub optimizer: Range<usize>,
    pub zero_grads: Range<usize>,
    /// With grad_accum > 1: after each micro-batch but the last, and after the last, the folds
    /// of the gradient windows several rules write (`accumulate::micro_folds`).
    pub fold_mid: Range<usize>,
    pub fold_last: Range<usize>,
    /// With virtual_ranks > 1: after each virtual rank's micro-batches but the last's, and after
    /// the last's (`accumulate::rank_folds`).
    pub rank_mid: Range<usize>,
    pub rank_last: Range<usize>,
    /// With ranks > 1: the last micro-batch's dispatches in buckets whose gradients the ranks
    /// exchange while the device runs the next (`exchange::exchange_buckets`), and those after.
    pub exchange: Vec<super::exchange::Bucket>,
    pub exchange_tail: Vec<Range<usize>>,
    /// The gradient norm's per-block sums of squares (None: forward only), and the dispatches
    /// that write them, first in `optimizer` (under ZeRO-1 the ranks exchange them in between).
    pub norm_partial: Option<TensorId>,
    pub norm_partials: Range<usize>,
    /// Elements of one binding chunk of the flat groups (`FlatLayout::chunks`).
    pub max_elems: usize,
}

/// How many buckets the gradient exchange over ranks aims at: one per layer and one for the
/// rest, or `WGPT_GRAD_BUCKETS` (1: exchange after the whole backward pass, nothing overlapped).
fn grad_buckets(model: &GptConfig) -> Result<usize> {
    match std::env::var("WGPT_GRAD_BUCKETS") {
        Err(_) => Ok(model.n_layer + 1),
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::Other(format!("WGPT_GRAD_BUCKETS={v}: expected a positive number of buckets"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub grad_norm: f32,
    pub clip: f32,
    /// The gradients held inf or NaN, or the step was an outlier: parameters and moments were left
    /// untouched.
    pub skipped: bool,
    /// Skipped by the outlier guard (the loss or gradient norm above its ceiling).
    pub outlier: bool,
    pub loss_scale: f32,
    /// Seconds the step spent summing gradients over ranks (read back, exchange, write back; 0
    /// alone).
    pub comm_s: f64,
}
