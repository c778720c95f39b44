//! Autodiff: a reverse walk over the recorded nodes with one gradient rule per op, each naming the
//! WGSL entry points it dispatches. Every gradient write either starts its tensor (the first rule
//! to reach it) or accumulates into it, so a tensor used twice (the residual stream, the tied
//! wte/lm_head) sums its contributions without extra add kernels.

use std::collections::{HashMap, HashSet};

use super::recompute::{Recompute, Recomputer};
use super::recorder::{Graph, Node};
use super::tensor::{Class, TensorId};
use crate::ops::{gelu, reduce, residual, Dispatch};

pub struct Autodiff<'a> {
    g: &'a mut Graph,
    /// Gradient of each root tensor (a tensor that owns its bytes). The gradient of a window of a
    /// tensor is the same window of its root's gradient, so a parameter (a view into the flat
    /// parameter range) finds its gradient in the flat gradient range at the same offset.
    grad: HashMap<TensorId, TensorId>,
    /// Views already made, by (gradient root, element offset, length).
    views: HashMap<(TensorId, usize, usize), TensorId>,
    /// Windows already written, per gradient root, as (offset, length).
    written: HashMap<TensorId, Vec<(usize, usize)>>,
    /// Writes into each parameter-gradient window (root, offset, length) in one backward pass.
    param_writes: HashMap<(TensorId, usize, usize), usize>,
    /// Parameter gradients always accumulate (gradient accumulation across micro-batches).
    accumulate_params: bool,
    /// The host-written tensor whose slot 3 is the dynamic loss scale (training steps).
    loss_scale: Option<TensorId>,
    /// Saved forward tensors the rules read, recomputed where the policy dropped them.
    re: Recomputer,
    /// GELU outputs whose backward a linear's dx product does (`Node::Matmul::gelu_in`).
    gated: HashSet<TensorId>,
}

impl<'a> Autodiff<'a> {
    /// `root_grads` maps each flat parameter range to its flat gradient range.
    pub fn new(g: &'a mut Graph, root_grads: &HashMap<TensorId, TensorId>, accumulate_params: bool) -> Self {
        let gated = g
            .nodes
            .iter()
            .filter_map(|n| match *n {
                Node::Matmul { x, gelu_in: Some(_), .. } => Some(x),
                _ => None,
            })
            .collect();
        Autodiff {
            gated,
            g,
            grad: root_grads.clone(),
            views: HashMap::new(),
            written: HashMap::new(),
            param_writes: HashMap::new(),
            accumulate_params,
            loss_scale: None,
            re: Recomputer::default(),
        }
    }

    /// Multiplies dLoss/dlogits by `hyper[3]`, the loss scale the host sets before each step.
    pub fn with_loss_scale(mut self, hyper: TensorId) -> Self {
        self.loss_scale = Some(hyper);
        self
    }

    /// Drops the activations `policy` names after the forward pass; the backward pass recomputes
    /// them right before the first rule that reads them.
    pub fn with_recompute(mut self, policy: Recompute) -> Self {
        self.re = Recomputer::new(self.g, policy);
        self
    }

    /// `x` as saved for backward: itself, or a recomputed copy (its dispatches go to `d`).
    fn saved(&mut self, x: TensorId, d: &mut Vec<Dispatch>) -> TensorId {
        self.re.saved(self.g, x, d)
    }

    /// The gradient tensor of `x` (created on first use) and its window (root, offset, length).
    fn grad_tensor(&mut self, x: TensorId) -> (TensorId, (TensorId, usize, usize)) {
        let (root, off) = self.g.t.window(x);
        let len = self.g.t.get(x).numel();
        let groot = match self.grad.get(&root) {
            Some(&d) => d,
            None => {
                let t = self.g.t.get(root);
                let (name, shape, dtype) = (format!("d.{}", t.name), t.shape.clone(), t.dtype);
                let d = self.g.t.add(name, &shape, dtype, Class::Activation);
                self.grad.insert(root, d);
                d
            }
        };
        let whole = off == 0 && len == self.g.t.get(groot).numel() && self.g.t.get(groot).view.is_none();
        let id = if whole {
            groot
        } else {
            let (gr, goff) = self.g.t.window(groot);
            let key = (gr, goff + off, len);
            match self.views.get(&key) {
                Some(&v) => v,
                None => {
                    let v = self.g.t.view(groot, off, len);
                    let (name, shape) = (format!("d.{}", self.g.t.get(x).name), self.g.t.get(x).shape.clone());
                    let t = &mut self.g.t.list[v.index()];
                    t.name = name;
                    t.shape = shape;
                    self.views.insert(key, v);
                    v
                }
            }
        };
        let (gr, goff) = self.g.t.window(id);
        (id, (gr, goff, len))
    }

    /// The gradient tensor of `x` and whether this write must add to an earlier one: the first
    /// rule to write a window starts it, later ones accumulate.
    fn grad_for_write(&mut self, x: TensorId) -> (TensorId, bool) {
        let (id, (root, off, len)) = self.grad_tensor(x);
        let windows = self.written.entry(root).or_default();
        let seen = windows.contains(&(off, len));
        // Rules write whole windows; one that partly overlaps an earlier, different window would
        // need a finer accumulate rule than the kernels have.
        assert!(
            seen || windows.iter().all(|&(o, l)| o + l <= off || off + len <= o),
            "autodiff: gradient window {off}+{len} of {} partly overlaps an earlier write",
            self.g.t.get(root).name
        );
        if !seen {
            windows.push((off, len));
        }
        let param = self.g.t.get(root).class == Class::Grad;
        if param {
            *self.param_writes.entry((root, off, len)).or_default() += 1;
        }
        (id, seen || (self.accumulate_params && param))
    }

    /// The gradient of `x`, which earlier rules must have written in full (possibly as several
    /// windows, like logits taken in chunks of rows).
    fn grad_of(&mut self, x: TensorId) -> TensorId {
        let (id, (root, off, len)) = self.grad_tensor(x);
        let mut pieces: Vec<(usize, usize)> = self.written.get(&root).cloned().unwrap_or_default();
        pieces.sort();
        let mut covered = off;
        for (o, l) in pieces {
            if o <= covered && o + l > covered {
                covered = o + l;
            }
        }
        assert!(covered >= off + len, "autodiff: no gradient reached {}", self.g.t.get(x).name);
        id
    }

    /// Makes `x`'s gradient the gradient of `of`, already written in full: for `x + f(..)`, where
    /// d(x) = d(out) with nothing to add, no kernel runs.
    fn alias_grad(&mut self, x: TensorId, of: TensorId) {
        let (root, dout) = (self.g.t.root(x), self.grad_of(of));
        assert!(
            root == x && self.g.t.get(dout).view.is_none() && !self.grad.contains_key(&root),
            "autodiff: the gradient of {} cannot alias another (fused where it should not be)",
            self.g.t.get(x).name
        );
        self.grad.insert(root, dout);
    }

    fn scratch(&mut self, name: &str, n: usize) -> TensorId {
        self.g.t.f32(format!("scratch.{name}"), &[n.max(1)], Class::Scratch)
    }

    /// The backward dispatches. `scale` multiplies dLoss/dlogits (1 for a plain mean loss;
    /// 1/k when k micro-batches are accumulated). The rules of an eager group (a chunk of the
    /// lm_head and its loss, `Graph::eager`) go in `Backward::early`, to run right after the
    /// group's forward; the rest, in reverse order of the forward, in `Backward::late`.
    pub fn backward(mut self, scale: f32) -> Backward {
        // Eager groups run in forward order but are walked last first: a gradient they share
        // (dwte) must accumulate in every group, which only parameter accumulation guarantees.
        assert!(
            self.g.eager.is_empty() || self.accumulate_params,
            "autodiff: chunked logits need accumulate_params (their dwte writes run out of walk order)"
        );
        let mut out = Backward { early: vec![(0, Vec::new()); self.g.eager.len()], ..Default::default() };
        let nodes = self.g.nodes.clone();
        for i in 0..nodes.len() {
            if let Some(e) = self.g.eager_group(i) {
                out.early[e].0 = i;
            }
        }
        for (i, node) in nodes.iter().enumerate().rev() {
            let mut d = Vec::new();
            match *node {
                // xent_backward: dlogits = (softmax − onehot) · scale, in place over the logits.
                Node::CrossEntropy { op, lse, logits, targets, scale: row_scale, .. } => {
                    let (lse, targets) = (self.saved(lse, &mut d), self.saved(targets, &mut d));
                    let (root, _) = self.g.t.window(logits);
                    assert!(
                        !self.re.dropped().contains(&root),
                        "logits are overwritten in place and cannot be dropped"
                    );
                    if !self.grad.contains_key(&root) {
                        let n = self.g.t.get(root).numel();
                        let alias = self.g.t.view(root, 0, n);
                        self.g.t.list[alias.index()].name = format!("d.{}", self.g.t.get(root).name);
                        self.grad.insert(root, alias);
                    }
                    let (dlogits, acc) = self.grad_for_write(logits);
                    assert!(!acc, "logits feed one cross-entropy");
                    d.push(op.backward(dlogits, lse, targets, scale * row_scale, self.loss_scale));
                }
                // The mean is folded into each chunk's scale above.
                Node::Mean { .. } => {}
                // matmul_product (dx, dW) and the bias gradient: colsum_partial/colsum_final, or
                // with `bias_in_dw` out of the dW product (matmul_product_colsum).
                Node::Matmul { op, out, x, w, bias, res, gelu_in, bias_in_dw, .. } => {
                    let (xs, ws) = (self.saved(x, &mut d), self.saved(w, &mut d));
                    let dout = self.grad_of(out);
                    if let Some(pre) = gelu_in {
                        // x = gelu(pre): the dx product applies GELU's derivative and writes
                        // d(pre); the GELU's own rule then has nothing left to do.
                        let pre_s = self.saved(pre, &mut d);
                        let (dpre, acc) = self.grad_for_write(pre);
                        d.push(op.backward_dx_gelu(dpre, acc, dout, ws, pre_s));
                    } else {
                        let (dx, acc) = self.grad_for_write(x);
                        d.push(op.backward_dx(dx, acc, dout, ws));
                    }
                    let (dw, acc) = self.grad_for_write(w);
                    match bias {
                        Some(b) if bias_in_dw => {
                            let (db, acc_b) = self.grad_for_write(b);
                            d.push(op.backward_dw_bias(dw, acc, db, acc_b, dout, xs));
                        }
                        Some(b) => {
                            d.push(op.backward_dw(dw, acc, dout, xs));
                            let (db, acc) = self.grad_for_write(b);
                            let s = self.scratch("bias", reduce::colsum_scratch(op.m, op.n));
                            d.extend(reduce::colsum(db, acc, dout, s, op.m, op.n));
                        }
                        None => d.push(op.backward_dw(dw, acc, dout, xs)),
                    }
                    // A folded residual add: d(res) is dout, so res's gradient becomes dout's
                    // buffer and the rules after this one accumulate into it (`graph::fuse` only
                    // folds where this rule is the first to reach res).
                    if let Some(r) = res {
                        self.alias_grad(r, out);
                    }
                }
                // attention_backward_* : D = rowsum(dO·O), then dQ, then dK/dV from saved lse.
                Node::Attention { op, out, lse, qkv } => {
                    let saved = [qkv, out, lse].map(|t| self.saved(t, &mut d));
                    let dout = self.grad_of(out);
                    let (dqkv, acc) = self.grad_for_write(qkv);
                    let s = self.scratch("attn", op.scratch_len());
                    d.extend(op.backward(dqkv, acc, s, dout, saved[0], saved[1], saved[2]));
                }
                // layernorm_backward*: dx per row, dw/db through ordered partial sums.
                Node::LayerNorm { op, out, mean, rstd, x, w, b } => {
                    let [xs, ws, mean, rstd] = [x, w, mean, rstd].map(|t| self.saved(t, &mut d));
                    let dout = self.grad_of(out);
                    let (dx, ax) = self.grad_for_write(x);
                    let (dw, aw) = self.grad_for_write(w);
                    let (db, ab) = self.grad_for_write(b);
                    let s = self.scratch("ln", op.scratch_len());
                    d.extend(op.backward(dx, ax, dw, aw, db, ab, s, dout, xs, ws, mean, rstd));
                }
                // gelu_backward, unless the linear reading out applied it (`gelu_in`).
                Node::Gelu { out, .. } if self.gated.contains(&out) => {}
                Node::Gelu { n, out, x } => {
                    let xs = self.saved(x, &mut d);
                    let dout = self.grad_of(out);
                    let (dx, acc) = self.grad_for_write(x);
                    d.push(gelu::backward(dx, acc, dout, xs, n));
                }
                // residual_backward: both inputs receive dout; an aliased add (`graph::fuse`)
                // makes dout's buffer their gradients and runs nothing.
                Node::Residual { out, a, b, alias: true, .. } => {
                    self.alias_grad(b, out);
                    self.alias_grad(a, out);
                }
                Node::Residual { n, out, a, b, .. } => {
                    let dout = self.grad_of(out);
                    let (da, aa) = self.grad_for_write(a);
                    let (db, ab) = self.grad_for_write(b);
                    d.push(residual::backward(da, aa, db, ab, dout, n));
                }
                // embedding_backward_wte: dwte by host-built token buckets (this shard's tokens);
                // embedding_backward_wpe (first shard only): dwpe by summing over B.
                Node::Embedding { op, out, wte, wpe, buckets, first, .. } => {
                    let buckets = self.saved(buckets, &mut d);
                    let dout = self.grad_of(out);
                    let (dwte, at) = self.grad_for_write(wte);
                    let dwpe = first.then(|| self.grad_for_write(wpe));
                    d.extend(op.backward(dwte, at, dwpe, dout, buckets));
                }
            }
            match self.g.eager_group(i) {
                // Walking backwards, a group's first rule is its last node's: later rules go after.
                Some(e) => out.early[e].1.extend(d),
                None => out.late.extend(d),
            }
        }
        // Written twice, or overlapping another written window (an embedding shard of wte).
        let overlaps = |&(r, o, l): &(TensorId, usize, usize), &(r2, o2, l2): &(TensorId, usize, usize)| {
            r == r2 && (o, l) != (o2, l2) && o < o2 + l2 && o2 < o + l
        };
        let all: Vec<_> = self.param_writes.iter().map(|(&w, &n)| (w, n)).collect();
        out.multi_written =
            all.iter().filter(|(w, n)| *n > 1 || all.iter().any(|(w2, _)| overlaps(w, w2))).map(|&(w, _)| w).collect();
        out.multi_written.sort();
        out
    }
}

/// The backward pass as `Autodiff::backward` schedules it.
#[derive(Debug, Default)]
pub struct Backward {
    /// Per eager group: the index of its last forward node, and the dispatches that follow it.
    pub early: Vec<(usize, Vec<Dispatch>)>,
    /// Everything else, after the forward pass.
    pub late: Vec<Dispatch>,
    /// Parameter-gradient windows (root, offset, length) that more than one rule writes (the tied
    /// wte: lm_head and embedding). Accumulated in place over micro-batches, their sums would
    /// interleave the micro-batches' terms; the step folds them separately (`TrainStep`).
    pub multi_written: Vec<(TensorId, usize, usize)>,
}

impl Backward {
    /// The forward pass of `g` with each eager group's gradient after its last node, and the
    /// ranges those gradients take in it (a loss-only pass skips them).
    pub fn forward_with_early(&mut self, g: &Graph) -> (Vec<Dispatch>, Vec<std::ops::Range<usize>>) {
        let (mut list, mut ranges) = (Vec::new(), Vec::new());
        for (i, node) in g.nodes.iter().enumerate() {
            list.push(node.forward());
            for (last, d) in self.early.iter_mut() {
                if *last == i && !d.is_empty() {
                    let start = list.len();
                    list.append(d);
                    ranges.push(start..list.len());
                }
            }
        }
        (list, ranges)
    }
}
