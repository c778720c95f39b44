//! Fusion: a pass over the recorded nodes, before autodiff, that folds ops into their neighbours'
//! kernels. Today one rule: a residual add `x + linear(y)` becomes the linear's epilogue
//! (`out = x + y W + bias`), and its backward hands dout to x by aliasing the two gradients.

use std::collections::HashSet;

use super::recorder::{Graph, Node};
use super::tensor::{Class, TensorId};

/// A residual add folded into the linear that makes one of its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fold {
    /// The add's index and the linear's.
    add: usize,
    linear: usize,
    /// The residual stream the linear adds, and the add's output.
    res: TensorId,
    out: TensorId,
}

impl Graph {
    /// Folds every residual add whose operand comes straight from a biased linear. Returns how
    /// many adds were folded (each is one forward and one backward dispatch less).
    pub fn fuse(&mut self) -> usize {
        let mut folded = 0;
        while let Some(f) = self.next_fold() {
            let Node::Matmul { out, res, .. } = &mut self.nodes[f.linear] else { unreachable!() };
            *out = f.out;
            *res = Some(f.res);
            self.nodes.remove(f.add);
            for s in &mut self.scopes {
                if s.0 > f.add {
                    s.0 -= 1;
                }
            }
            folded += 1;
        }
        folded
    }

    /// The first add that can be folded. The linear must be one whole product with a bias (the
    /// epilogue that reads a residual), the only writer of its output, which only the add reads; the
    /// stream x must be whole, written before the linear, and read by no node after it but the
    /// add. That last rule makes the fused node the first in the backward walk to write dx, so dx
    /// can simply be dout's buffer, which later rules accumulate into.
    fn next_fold(&self) -> Option<Fold> {
        let root = |t: TensorId| self.t.root(t);
        let readers = |r: TensorId| -> HashSet<usize> {
            (0..self.nodes.len()).filter(|&i| self.nodes[i].reads().iter().any(|&t| root(t) == r)).collect()
        };
        let writers = |r: TensorId| -> HashSet<usize> {
            (0..self.nodes.len()).filter(|&i| self.nodes[i].writes().iter().any(|&t| root(t) == r)).collect()
        };
        let whole = |t: TensorId| root(t) == t && self.t.get(t).class == Class::Activation;
        for (add, node) in self.nodes.iter().enumerate() {
            let Node::Residual { out, a, b, .. } = *node else { continue };
            for (x, y) in [(a, b), (b, a)] {
                if !whole(x) || !whole(y) || x == y {
                    continue;
                }
                let ws = writers(y);
                let Some(&linear) = ws.iter().next().filter(|_| ws.len() == 1) else { continue };
                let Node::Matmul { op, out: o, bias: Some(_), res: None, .. } = self.nodes[linear] else { continue };
                let fits = o == y && op.out_stride == op.n && op.out_col == 0 && readers(y) == HashSet::from([add]);
                let x_ready = writers(x).iter().all(|&w| w < linear);
                let x_last = readers(x).iter().all(|&r| r < linear || r == add);
                if fits && x_ready && x_last {
                    return Some(Fold { add, linear, res: x, out });
                }
            }
        }
        None
    }
}
