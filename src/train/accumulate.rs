//! Gradient accumulation over micro-batches, grouped so that the sum is a left fold of whole
//! micro-batch gradients: G_0 + G_1 + … in micro-batch order. That is what N ranks produce when
//! each forms its micro-batch's gradient from zero and `dist::sum_in_rank_order` adds them, so one
//! rank with grad_accum = N and N ranks with grad_accum = 1 reach the same bits.
//!
//! Most parameter gradients get one write per backward pass, which adds the micro-batch's whole
//! gradient to the running sum in place: already that fold. The windows more than one rule writes
//! (the tied wte: lm_head and embedding) would interleave the micro-batches' terms, so their rules
//! write into a cleared window and `fold` moves each micro-batch's sum into an accumulator.

use std::ops::Range;

use super::step::{StepStats, TrainStep};
use crate::dist::Comm;
use crate::error::{Error, Result};
use crate::graph::flat::{FlatLayout, PAD};
use crate::graph::{Class, TensorId, Tensors};
use crate::ops::{reduce, Dispatch};

/// The folds of the windows in `multi` (gradient root, offset, length): after each micro-batch
/// but the last, acc += grad and grad = 0 (`mid`); after the last, grad += acc and acc = 0
/// (`last`), leaving the sum where the optimizer reads it. Each root's windows share one
/// persistent accumulator over their span; ranges of at most `max_elems` (the binding limit).
pub fn micro_folds(
    t: &mut Tensors,
    multi: &[(TensorId, usize, usize)],
    max_elems: usize,
) -> (Vec<Dispatch>, Vec<Dispatch>) {
    let mut spans: Vec<(TensorId, usize, usize)> = Vec::new();
    for &(root, off, len) in multi {
        match spans.iter_mut().find(|s| s.0 == root) {
            Some(s) => (s.1, s.2) = (s.1.min(off), s.2.max(off + len)),
            None => spans.push((root, off, off + len)),
        }
    }
    // Views start on parameter boundaries (multiples of PAD elements), so pieces of a multiple
    // of PAD keep every binding offset aligned.
    let piece = (max_elems / PAD).max(1) * PAD;
    let (mut mid, mut last) = (Vec::new(), Vec::new());
    for (root, lo, hi) in spans {
        let (name, dtype) = (format!("acc.{}", t.get(root).name), t.get(root).dtype);
        let acc = t.add(name, &[hi - lo], dtype, Class::Grad);
        let mut off = 0;
        while off < hi - lo {
            let len = piece.min(hi - lo - off);
            let (g, a) = (t.view(root, lo + off, len), t.view(acc, off, len));
            mid.push(reduce::fold(a, g, len));
            last.push(reduce::fold(g, a, len));
            off += len;
        }
    }
    (mid, last)
}

/// The folds of `virtual_ranks` (one process grouping its micro-batches as N ranks would): a
/// whole-gradient accumulator per flat group, so the step's sum is ((G_0 + G_1) + G_2) + … over
/// the groups' sums, the order `dist::sum_in_rank_order` adds N ranks' gradients in. After each
/// group but the last, acc += grad and grad = 0 (`mid`); after the last, grad += acc and acc = 0
/// (`last`: f32 addition commutes exactly, so the operands' order is free).
pub fn rank_folds(t: &mut Tensors, layout: &FlatLayout, max_elems: usize) -> (Vec<Dispatch>, Vec<Dispatch>) {
    let accs: Vec<TensorId> = layout
        .groups
        .iter()
        .map(|g| {
            let (name, dtype) = (format!("acc.ranks.{}", t.get(g.grad).name), t.get(g.grad).dtype);
            t.add(name, &[g.len], dtype, Class::Grad)
        })
        .collect();
    let (mut mid, mut last) = (Vec::new(), Vec::new());
    for (gi, off, len) in layout.chunks(max_elems) {
        let (g, a) = (t.view(layout.groups[gi].grad, off, len), t.view(accs[gi], off, len));
        mid.push(reduce::fold(a, g, len));
        last.push(reduce::fold(g, a, len));
    }
    (mid, last)
}

impl TrainStep {
    /// `train_micro` as one rank of a data-parallel job of `ranks` (the step's config) whose
    /// micro-batches are numbered rank-major: rank r holds the job's micro-batches r·A .. r·A + A.
    /// The ranks' gradient sums are added in rank order (`dist::sum_in_rank_order`) before the
    /// optimizer, and the optimizer's outlier guard sees the job's last micro-batch loss, so the
    /// parameters are the bits of one rank running all N·A micro-batches with `virtual_ranks` N.
    /// Alone with `virtual_ranks` V, `micro` holds V·A micro-batches, virtual rank v's from v·A.
    pub async fn train_micro_ranked(
        &mut self,
        comm: &dyn Comm,
        micro: &[(&[u32], &[u32])],
        lr: f64,
    ) -> Result<StepStats> {
        let (a, v) = (self.cfg.grad_accum, self.cfg.virtual_ranks);
        if micro.len() != a * v {
            let per = if v > 1 { format!(" x virtual_ranks {v}") } else { String::new() };
            return Err(Error::Other(format!("step: {} micro-batches given, grad_accum is {a}{per}", micro.len())));
        }
        if comm.size() != self.cfg.ranks {
            return Err(Error::Other(format!(
                "step: compiled for {} ranks, the job has {}",
                self.cfg.ranks,
                comm.size()
            )));
        }
        if comm.size() > 1 && cfg!(target_arch = "wasm32") {
            return Err(Error::Other("data-parallel jobs run natively, not in a browser".into()));
        }
        // Validate every micro-batch before running any, so a bad one leaves no partial sums behind.
        for (ids, targets) in micro {
            self.check_batch(ids, targets)?;
        }
        self.write_hyper(lr)?;
        let s = &self.sec;
        let pass = s.forward.start..s.backward.end;
        let mut losses = Vec::new();
        for (i, (ids, targets)) in micro.iter().enumerate() {
            self.set_batch(ids, targets)?;
            let (ends_rank, last) = ((i + 1) % a == 0, i + 1 == micro.len());
            let mut ranges = vec![pass.clone(), if ends_rank { &s.fold_last } else { &s.fold_mid }.clone()];
            if ends_rank {
                ranges.push(if last { &s.rank_last } else { &s.rank_mid }.clone());
            }
            if last && comm.size() == 1 {
                // The optimizer in the same submission as the last micro-batch.
                ranges.push(s.optimizer.clone());
                self.step.run_ranges(&ranges);
                let mut st = self.finish_step().await?;
                losses.push(st.loss);
                st.loss = mean(&losses);
                return Ok(st);
            }
            if last {
                break; // the ranks' last micro-batch runs in buckets, below
            }
            self.step.run_ranges(&ranges);
            losses.push(self.stats().await?.loss);
        }
        #[cfg(not(target_arch = "wasm32"))]
        return self.finish_over_ranks(comm, losses).await;
        #[cfg(target_arch = "wasm32")]
        unreachable!("refused above");
    }

    /// The last micro-batch of a rank in a job of several, its gradients summed over the ranks,
    /// then the optimizer: `losses` are this rank's earlier micro-batches'.
    #[cfg(not(target_arch = "wasm32"))]
    async fn finish_over_ranks(&mut self, comm: &dyn Comm, mut losses: Vec<f32>) -> Result<StepStats> {
        let mut comm_s = self.exchange_in_buckets(comm)?;
        losses.push(self.stats().await?.loss);
        losses = comm.all_gather(losses)?.concat();
        // The outlier guard looks at the job's last micro-batch, as one rank running them all would.
        self.step.write_f32_at(self.sec.scalars, super::optimizer::LOSS, &losses[losses.len() - 1..])?;
        if self.sharded() {
            let started = std::time::Instant::now();
            self.gather_norm_blocks(comm).await?;
            comm_s += started.elapsed().as_secs_f64();
            self.step.run_range(self.sec.norm_partials.end..self.sec.optimizer.end);
        } else {
            self.step.run_range(self.sec.optimizer.clone());
        }
        let mut st = self.finish_step().await?;
        if self.sharded() {
            // (finish_step waited for the update: the gather is timed alone.)
            let started = std::time::Instant::now();
            self.gather_params(comm).await?;
            comm_s += started.elapsed().as_secs_f64();
        }
        st.comm_s = comm_s;
        st.loss = mean(&losses);
        Ok(st)
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Runs the last micro-batch in its buckets and replaces this rank's gradient sums by the
    /// job's, added in rank order: every bucket's readback is queued behind its dispatches, so
    /// the ranks exchange one bucket while the device computes the next. Returns the seconds
    /// spent exchanging (not waiting for the device).
    fn exchange_in_buckets(&self, comm: &dyn Comm) -> Result<f64> {
        let mut pending = Vec::new();
        for b in &self.sec.exchange {
            self.step.run_ranges(&b.run);
            pending.push(self.step.start_read(&b.grads)?);
        }
        if !self.sec.exchange_tail.is_empty() {
            self.step.run_ranges(&self.sec.exchange_tail);
        }
        let mut comm_s = 0.0;
        // f16 gradients: each partial sum stored as f16, as the f16 folds of one process with
        // virtual_ranks store theirs.
        let f16 = self.cfg.precision == super::Precision::F16;
        let round = |x: f32| if f16 { half::f16::from_f32(x).to_f32() } else { x };
        for (b, p) in self.sec.exchange.iter().zip(pending) {
            let parts = self.step.finish_read(p)?;
            let started = std::time::Instant::now();
            if self.sharded() {
                self.reduce_owned(comm, b, &parts, round)?;
            } else {
                let mut flat = parts.concat();
                crate::dist::reduce::sum_in_rank_order_rounded(comm, &mut flat, round)?;
                let mut at = 0;
                for (&id, part) in b.grads.iter().zip(&parts) {
                    self.step.write_f32(id, &flat[at..at + part.len()])?;
                    at += part.len();
                }
            }
            comm_s += started.elapsed().as_secs_f64();
        }
        Ok(comm_s)
    }

    /// ZeRO-1's exchange of one bucket: each rank receives only the gradients of its shard (a
    /// reduce-scatter: no gather, the optimizer reads no other), sums them in rank order and
    /// writes them back; the rest of its gradient stays its own.
    #[cfg(not(target_arch = "wasm32"))]
    fn reduce_owned(&self, comm: &dyn Comm, b: &Bucket, parts: &[Vec<f32>], round: impl Fn(f32) -> f32) -> Result<()> {
        let layout = &self.sec.layout;
        // (param k of the bucket, rank, range within the parameter) in one agreed order.
        let mut runs = Vec::new();
        for (k, &pi) in b.params.iter().enumerate() {
            let p = &layout.params[pi];
            for r in 0..comm.size() {
                let s = layout.shard_of(p.group, r);
                let (lo, hi) = (s.start.max(p.offset), s.end.min(p.offset + p.spec.numel()));
                if lo < hi {
                    runs.push((k, r, lo - p.offset..hi - p.offset));
                }
            }
        }
        let mut send = vec![Vec::new(); comm.size()];
        for (k, r, w) in &runs {
            send[*r].extend_from_slice(&parts[*k][w.clone()]);
        }
        let mine = send[comm.rank()].len();
        let got = comm.all_to_all(send)?;
        crate::dist::reduce::shard_sizes_agree(&got, &vec![mine; comm.size()], "gradient reduce-scatter")?;
        let sum = crate::dist::reduce::fold_in_rank_order(got, round);
        let mut at = 0;
        for (k, _, w) in runs.iter().filter(|run| run.1 == comm.rank()) {
            let p = &layout.params[b.params[*k]];
            let mut values = sum[at..at + w.len()].to_vec();
            at += w.len();
            // An f16 write moves pairs: an odd run ends at its parameter's end, before padding
            // that stays zero.
            if values.len() % 2 == 1 {
                values.push(0.0);
            }
            self.step.write_f32_at(layout.groups[p.group].grad, p.offset + w.start, &values)?;
        }
        Ok(())
    }

    /// ZeRO-1: each rank's gradient is summed only on its shard, so each computes the norm's
    /// per-block sums of squares of its own blocks; the ranks gather them before the norm.
    #[cfg(not(target_arch = "wasm32"))]
    async fn gather_norm_blocks(&self, comm: &dyn Comm) -> Result<()> {
        let Some(partial) = self.sec.norm_partial else { return Ok(()) };
        self.step.run_range(self.sec.norm_partials.clone());
        let layout = &self.sec.layout;
        let owner: Vec<usize> = super::optimizer::norm_blocks(layout, self.sec.max_elems)
            .into_iter()
            .map(|(gi, at)| (0..comm.size()).find(|&r| layout.shard_of(gi, r).contains(&at)).unwrap_or(0))
            .collect();
        let slots = self.step.read_f32(partial).await?;
        let mine: Vec<f32> = owner.iter().zip(&slots).filter(|(&r, _)| r == comm.rank()).map(|(_, &x)| x).collect();
        let all = comm.all_gather(mine)?;
        let sizes: Vec<usize> = (0..comm.size()).map(|r| owner.iter().filter(|&&o| o == r).count()).collect();
        crate::dist::reduce::shard_sizes_agree(&all, &sizes, "gradient norm blocks")?;
        let mut next = vec![0; comm.size()];
        let mut full = slots;
        for (slot, &r) in full.iter_mut().zip(&owner) {
            *slot = all[r][next[r]];
            next[r] += 1;
        }
        self.step.write_f32(partial, &full)
    }
}

/// The step's loss: the mean of its micro-batches' (summed in f64).
fn mean(losses: &[f32]) -> f32 {
    (losses.iter().map(|&l| l as f64).sum::<f64>() / losses.len() as f64) as f32
}

/// One bucket of the gradient exchange: the dispatches to run before it (from the end of the
/// previous one), and the parameter gradients that are final once they have.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub run: Vec<Range<usize>>,
    pub grads: Vec<TensorId>,
    /// The parameters of `grads` (indices into `FlatLayout::params`).
    pub params: Vec<usize>,
}

/// Splits the last micro-batch's dispatches (`sequence`, in order) into buckets for the
/// exchange over ranks: each parameter's gradient joins the bucket after the last dispatch that
/// touches its window (read or write, so late folds count), and a bucket closes once it holds
/// `target` elements. The ranks exchange bucket k while the device runs bucket k + 1's dispatches
/// (backward runs from the head to the embedding, so buckets are about per layer). Returns the
/// buckets and the dispatches after the last one.
pub fn exchange_buckets(
    t: &Tensors,
    dispatches: &[Dispatch],
    sequence: &[Range<usize>],
    layout: &FlatLayout,
    target: usize,
) -> (Vec<Bucket>, Vec<Range<usize>>) {
    let order: Vec<usize> = sequence.iter().flat_map(|r| r.clone()).collect();
    let window = |id: TensorId| {
        let (root, start) = t.window(id);
        (root, start..start + t.get(id).numel())
    };
    // Position in `order` of the last dispatch touching each parameter's gradient.
    let mut last: Vec<(usize, usize)> = layout
        .params
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let (root, w) = window(p.grad);
            let touches = |d: &Dispatch| {
                d.args.iter().any(|&(_, a)| {
                    let (r, aw) = window(a);
                    r == root && aw.start < w.end && w.start < aw.end
                })
            };
            (order.iter().rposition(|&i| touches(&dispatches[i])).unwrap_or(0), pi)
        })
        .collect();
    last.sort();
    let ranges = |from: usize, to: usize| -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        for &i in &order[from..to] {
            match out.last_mut() {
                Some(r) if r.end == i => r.end += 1,
                _ => out.push(i..i + 1),
            }
        }
        out
    };
    let (mut buckets, mut from, mut grads, mut params, mut elems) = (Vec::new(), 0, Vec::new(), Vec::new(), 0);
    for (k, &(pos, pi)) in last.iter().enumerate() {
        grads.push(layout.params[pi].grad);
        params.push(pi);
        elems += layout.params[pi].spec.numel();
        // A bucket ends where the next parameter is final later (never inside one position).
        let closes = last.get(k + 1).is_none_or(|&(next, _)| next > pos);
        if closes && (elems >= target || k + 1 == last.len()) {
            let (grads, params) = (std::mem::take(&mut grads), std::mem::take(&mut params));
            buckets.push(Bucket { run: ranges(from, pos + 1), grads, params });
            (from, elems) = (pos + 1, 0);
        }
    }
    (buckets, ranges(from, order.len()))
}
