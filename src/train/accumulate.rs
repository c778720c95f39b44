//! Gradient accumulation over micro-batches, grouped so that the sum is a left fold of whole
//! micro-batch gradients: G_0 + G_1 + … in micro-batch order. That is what N ranks produce when
//! each forms its micro-batch's gradient from zero and `dist::sum_in_rank_order` adds them, so one
//! rank with grad_accum = N and N ranks with grad_accum = 1 reach the same bits.
//!
//! Most parameter gradients get one write per backward pass, which adds the micro-batch's whole
//! gradient to the running sum in place: already that fold. The windows more than one rule writes
//! (the tied wte: lm_head and embedding) would interleave the micro-batches' terms, so their rules
//! write into a cleared window and `fold` moves each micro-batch's sum into an accumulator.

use crate::graph::flat::PAD;
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
