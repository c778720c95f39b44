//! Autodiff: a reverse walk over the recorded nodes with one gradient rule per op, each naming the
//! WGSL entry points it dispatches. Every gradient write either starts its tensor (the first rule
//! to reach it) or accumulates into it, so a tensor used twice (the residual stream, the tied
//! wte/lm_head) sums its contributions without extra add kernels.

use std::collections::{HashMap, HashSet};

use super::recorder::{Graph, Node};
use super::tensor::{Class, TensorId};
use crate::ops::{gelu, reduce, residual, Dispatch};

pub struct Autodiff<'a> {
    g: &'a mut Graph,
    /// Gradient tensor of each tensor that has one so far.
    grad: HashMap<TensorId, TensorId>,
    written: HashSet<TensorId>,
    /// Parameter gradients always accumulate (gradient accumulation across micro-batches).
    accumulate_params: bool,
    params: HashSet<TensorId>,
}

impl<'a> Autodiff<'a> {
    /// `param_grads` maps each parameter to its (pre-allocated, flat-layout) gradient tensor.
    pub fn new(
        g: &'a mut Graph,
        param_grads: &HashMap<TensorId, TensorId>,
        accumulate_params: bool,
    ) -> Self {
        Autodiff {
            g,
            grad: param_grads.clone(),
            written: HashSet::new(),
            accumulate_params,
            params: param_grads.keys().copied().collect(),
        }
    }

    /// The gradient tensor of `x` and whether this write must add to an earlier one.
    fn grad_for_write(&mut self, x: TensorId) -> (TensorId, bool) {
        let id = match self.grad.get(&x) {
            Some(&d) => d,
            None => {
                let t = self.g.t.get(x);
                let (name, shape) = (format!("d.{}", t.name), t.shape.clone());
                let d = self.g.t.f32(name, &shape, Class::Activation);
                self.grad.insert(x, d);
                d
            }
        };
        let acc = !self.written.insert(id) || (self.accumulate_params && self.params.contains(&x));
        (id, acc)
    }

    fn grad_of(&self, x: TensorId) -> TensorId {
        *self
            .grad
            .get(&x)
            .unwrap_or_else(|| panic!("autodiff: no gradient reached {}", self.g.t.get(x).name))
    }

    fn scratch(&mut self, name: &str, n: usize) -> TensorId {
        self.g
            .t
            .f32(format!("scratch.{name}"), &[n.max(1)], Class::Scratch)
    }

    /// The backward dispatch list. `loss_scale` multiplies dLoss/dlogits (1 for a plain mean loss;
    /// 1/k when k micro-batches are accumulated).
    pub fn backward(mut self, loss_scale: f32) -> Vec<Dispatch> {
        let mut d = Vec::new();
        let nodes = self.g.nodes.clone();
        for node in nodes.iter().rev() {
            match *node {
                // xent_backward: dlogits = (softmax − onehot) / rows, in place over the logits.
                Node::CrossEntropy {
                    op,
                    lse,
                    logits,
                    targets,
                    ..
                } => {
                    let n = self.g.t.get(logits).numel();
                    let dlogits = self.g.t.view(logits, 0, n);
                    self.g.t.list[dlogits.index()].name =
                        format!("d.{}", self.g.t.get(logits).name);
                    self.grad.insert(logits, dlogits);
                    self.written.insert(dlogits);
                    d.push(op.backward(dlogits, lse, targets, loss_scale / op.rows as f32));
                }
                // matmul_backward_dx, matmul_backward_dw, colsum_partial/colsum_final (bias).
                Node::Matmul {
                    op,
                    out,
                    x,
                    w,
                    bias,
                } => {
                    let dout = self.grad_of(out);
                    let (dx, acc) = self.grad_for_write(x);
                    d.push(op.backward_dx(dx, acc, dout, w));
                    let (dw, acc) = self.grad_for_write(w);
                    d.push(op.backward_dw(dw, acc, dout, x));
                    if let Some(b) = bias {
                        let (db, acc) = self.grad_for_write(b);
                        let s = self.scratch("bias", reduce::colsum_scratch(op.m, op.n));
                        d.extend(reduce::colsum(db, acc, dout, s, op.m, op.n));
                    }
                }
                // attention_backward_* : D = rowsum(dO·O), then dQ, then dK/dV from saved lse.
                Node::Attention { op, out, lse, qkv } => {
                    let dout = self.grad_of(out);
                    let (dqkv, acc) = self.grad_for_write(qkv);
                    let s = self.scratch("attn", op.scratch_len());
                    d.extend(op.backward(dqkv, acc, s, dout, qkv, out, lse));
                }
                // layernorm_backward*: dx per row, dw/db through ordered partial sums.
                Node::LayerNorm {
                    op,
                    out,
                    mean,
                    rstd,
                    x,
                    w,
                    b,
                } => {
                    let dout = self.grad_of(out);
                    let (dx, ax) = self.grad_for_write(x);
                    let (dw, aw) = self.grad_for_write(w);
                    let (db, ab) = self.grad_for_write(b);
                    let s = self.scratch("ln", op.scratch_len());
                    d.extend(op.backward(dx, ax, dw, aw, db, ab, s, dout, x, w, mean, rstd));
                }
                // gelu_backward
                Node::Gelu { n, out, x } => {
                    let dout = self.grad_of(out);
                    let (dx, acc) = self.grad_for_write(x);
                    d.push(gelu::backward(dx, acc, dout, x, n));
                }
                // residual_backward: both inputs receive dout.
                Node::Residual { n, out, a, b } => {
                    let dout = self.grad_of(out);
                    let (da, aa) = self.grad_for_write(a);
                    let (db, ab) = self.grad_for_write(b);
                    d.push(residual::backward(da, aa, db, ab, dout, n));
                }
                // embedding_backward_*: dwte by host-built token buckets, dwpe by summing over B.
                Node::Embedding {
                    op,
                    out,
                    wte,
                    wpe,
                    buckets,
                    ..
                } => {
                    let dout = self.grad_of(out);
                    let (dwte, at) = self.grad_for_write(wte);
                    let (dwpe, ap) = self.grad_for_write(wpe);
                    d.extend(op.backward(dwte, at, dwpe, ap, dout, buckets));
                }
            }
        }
        d
    }
}
