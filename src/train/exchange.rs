//! The exchange of gradients over the ranks of a job, overlapping the backward pass: the last
//! micro-batch runs in buckets, each read back behind its dispatches and summed in rank order
//! (`dist::sum_in_rank_order`; under ZeRO-1 a reduce-scatter onto the shards, `zero`) while the
//! device computes the next; then the optimizer.

use std::ops::Range;

#[cfg(not(target_arch = "wasm32"))]
use super::step::{StepStats, TrainStep};
#[cfg(not(target_arch = "wasm32"))]
use crate::dist::Comm;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
use crate::graph::flat::FlatLayout;
use crate::graph::{TensorId, Tensors};
use crate::ops::Dispatch;

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

#[cfg(not(target_arch = "wasm32"))]
impl TrainStep {
    /// The last micro-batch of a rank in a job of several, its gradients summed over the ranks,
    /// then the optimizer: `losses` are this rank's earlier micro-batches'.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) async fn finish_over_ranks(&mut self, comm: &dyn Comm, mut losses: Vec<f32>) -> Result<StepStats> {
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
        st.loss = super::accumulate::mean(&losses);
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
}
