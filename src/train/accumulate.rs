//! Gradient accumulation over micro-batches, grouped so that the sum is a left fold of whole
//! micro-batch gradients: G_0 + G_1 + … in micro-batch order. That is what N ranks produce when
//! each forms its micro-batch's gradient from zero and `dist::sum_in_rank_order` adds them, so one
//! rank with grad_accum = N and N ranks with grad_accum = 1 reach the same bits.
//!
//! Most parameter gradients get one write per backward pass, which adds the micro-batch's whole
//! gradient to the running sum in place: already that fold. The windows more than one rule writes
//! (the tied wte: lm_head and embedding) would interleave the micro-batches' terms, so their rules
//! write into a cleared window and `fold` moves each micro-batch's sum into an accumulator.

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
}

/// The step's loss: the mean of its micro-batches' (summed in f64).
pub(super) fn mean(losses: &[f32]) -> f32 {
    (losses.iter().map(|&l| l as f64).sum::<f64>() / losses.len() as f64) as f32
}
