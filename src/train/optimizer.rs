//! The optimizer section of a step: global gradient norm (deterministic two-pass sum of squares
//! over the flat gradient ranges, unscaled by the loss scale), the clip factor and the overflow
//! flag, AdamW over the same ranges (skipped on overflow; refreshing the f16 weight copy under
//! fp16 storage), then zeroed gradients for the next step's accumulation.

use crate::graph::flat::{FlatLayout, PAD};
use crate::graph::{Class, TensorId, Tensors};
use crate::ops::adamw::AdamW;
use crate::ops::{reduce, Dispatch};

/// Slots of the `scalars` output tensor.
pub const LOSS: usize = 0;
pub const GRAD_NORM: usize = 1;
pub const CLIP: usize = 2;
/// Non-zero when AdamW left everything as it was: 1 when the gradients held inf or NaN, 2 when the
/// outlier guard's ceilings on the loss or the gradient norm (hyper[4], hyper[5]) were passed.
pub const SKIPPED: usize = 3;

/// The optimizer section: its dispatches, and where the gradient norm's per-block sums of squares
/// go (`partial`), written by the first `partials` dispatches.
pub struct OptimizerSection {
    pub dispatches: Vec<Dispatch>,
    pub partial: TensorId,
    pub partials: usize,
}

/// The unit ZeRO-1 cuts a group in so that every norm block lies in one shard: the block, where
/// the binding chunks are whole blocks, else a whole chunk.
pub fn norm_unit(max_elems: usize) -> usize {
    let step = (max_elems / PAD).max(1) * PAD;
    if step.is_multiple_of(reduce::SUMSQ_BLOCK) {
        reduce::SUMSQ_BLOCK
    } else {
        step
    }
}

/// The norm's blocks in slot order: (group, first element) of each.
pub fn norm_blocks(layout: &FlatLayout, max_elems: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (gi, off, len) in layout.chunks(max_elems) {
        out.extend((0..reduce::sumsq_slots(len)).map(|k| (gi, off + k * reduce::SUMSQ_BLOCK)));
    }
    out
}

/// Dispatches for norm + clip + AdamW. `max_elems` bounds each bound range (binding limit).
pub fn optimizer_dispatches(
    t: &mut Tensors,
    layout: &FlatLayout,
    opt: &AdamW,
    max_norm: f32,
    scalars: TensorId,
    hyper: TensorId,
    max_elems: usize,
) -> OptimizerSection {
    let chunks = layout.chunks(max_elems);
    let slots: usize = chunks.iter().map(|c| reduce::sumsq_slots(c.2)).sum();
    let partial = t.f32("scratch.gradnorm", &[slots.max(1)], Class::Scratch);
    let mut d = Vec::new();
    let mut slot = 0;
    // The norm always covers the whole gradient, in the same blocks, whatever the ranks keep.
    for &(gi, off, len) in &chunks {
        let grad = t.view(layout.groups[gi].grad, off, len);
        d.push(reduce::sumsq_partial(partial, slot, grad, len));
        slot += reduce::sumsq_slots(len);
    }
    let partials = d.len();
    d.push(reduce::norm_final_scaled(scalars, GRAD_NORM, LOSS, partial, slots, max_norm, hyper));
    for (gi, off, len) in layout.moment_chunks(max_elems) {
        let g = &layout.groups[gi];
        let p = t.view(g.param, g.master_at(off), len);
        let grad = t.view(g.grad, off, len);
        let [m, v] = [g.m, g.v].map(|base| t.view(base, off - g.moments.start, len));
        let copy = g.copy.map(|c| t.view(c, off, len));
        d.push(opt.update(p, m, v, grad, copy, hyper, scalars, CLIP, g.decay, len));
    }
    OptimizerSection { dispatches: d, partial, partials }
}

/// Zeroes the flat gradient ranges (after AdamW has used them), chunked like the optimizer.
pub fn zero_grads(t: &mut Tensors, layout: &FlatLayout, max_elems: usize) -> Vec<Dispatch> {
    layout
        .chunks(max_elems)
        .into_iter()
        .map(|(gi, off, len)| reduce::zero(t.view(layout.groups[gi].grad, off, len), len))
        .collect()
}
