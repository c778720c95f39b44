//! Fusion: a pass over the recorded nodes, before autodiff, that folds ops into the matmul
//! epilogues of their neighbours (`shaders/matmul.wgsl`: `epilogue`, `store_row`). Four rules:
//! - a residual add `x + linear(y)` becomes the linear's epilogue (`out = x + y W + bias`), and its
//!   backward hands dout to x by aliasing the two gradients (`Autodiff::alias_grad`);
//! - `gelu(linear(x))`: the linear's forward also writes the GELU of what it stores;
//! - a linear reading `gelu(h)`: its dx product multiplies by GELU's derivative and writes dh,
//!   so dL/d(gelu) is never stored and GELU's backward kernel does not run;
//! - a linear's bias gradient, the column sums of dout, comes out of its dW product, which loads
//!   dout anyway (`matmul_product_colsum`), instead of two reduction kernels.
//!
//! Each keeps the unfused arithmetic in the unfused order, so f32 results are the same bits.
//!
//! Epilogues pay where the matmul's stores are cheap (GPUs). On lavapipe every store of the tile
//! is a per-lane scatter, and the folded forwards ran slower than the vec4 kernels they replaced
//! (the dW product with the column sums, 275 ms against 245 + 9 ms of dW and colsum kernels on the
//! wide peer shape), so CPU adapters keep the adds, GELUs and bias gradients as kernels and take
//! only what is free: a residual add's backward is no kernel at all, both operands' gradients
//! being dout's buffer (`Fusion::Alias`).

use std::collections::HashSet;

use super::recompute::Recompute;
use super::recorder::{Graph, Node};
use super::tensor::{Class, TensorId};
use crate::error::{Error, Result};

/// How much `Graph::fuse` folds: `WGPT_FUSION` = auto (by adapter type: `Alias` on CPU adapters,
/// `Epilogues` elsewhere), off, alias or epilogues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fusion {
    #[default]
    Auto,
    Off,
    /// Residual adds stay forward kernels; their backward aliases both gradients to dout's.
    Alias,
    /// Every rule of the module.
    Epilogues,
}

impl Fusion {
    pub const NAMES: [&'static str; 4] = ["auto", "off", "alias", "epilogues"];

    pub fn parse(s: &str) -> Result<Fusion> {
        let all = [Fusion::Auto, Fusion::Off, Fusion::Alias, Fusion::Epilogues];
        Self::NAMES.iter().position(|&n| n == s).map(|i| all[i]).ok_or_else(|| {
            Error::Other(format!("WGPT_FUSION: unknown '{s}'; choose one of {}", Self::NAMES.join(", ")))
        })
    }

    /// `WGPT_FUSION`, or `Auto` when unset.
    pub fn from_env() -> Result<Fusion> {
        std::env::var("WGPT_FUSION").ok().filter(|v| !v.is_empty()).map_or(Ok(Fusion::Auto), |v| Fusion::parse(&v))
    }

    /// `Auto` made definite for an adapter (CPU or not).
    pub fn resolve(self, cpu: bool) -> Fusion {
        match self {
            Fusion::Auto if cpu => Fusion::Alias,
            Fusion::Auto => Fusion::Epilogues,
            f => f,
        }
    }
}

/// What `Graph::fuse` folded: each residual add and each GELU forward is one dispatch less in the
/// forward and (the add) one in the backward; each GELU backward one in the backward; each bias
/// gradient two in the backward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fused {
    pub residual: usize,
    /// Residual adds left as forward kernels whose backward is an alias (`Fusion::Alias`).
    pub aliased: usize,
    pub gelu: usize,
    pub gelu_backward: usize,
    pub bias_grads: usize,
}

impl Graph {
    /// Folds what `fusion` allows (see the module; `Auto` counts as `Epilogues`). With the `gelu`
    /// recomputation policy the GELU forwards stay nodes of their own: recomputing one inside a
    /// linear would re-run the product.
    pub fn fuse(&mut self, recompute: Recompute, fusion: Fusion) -> Fused {
        let mut f = Fused::default();
        match fusion {
            Fusion::Off => return f,
            Fusion::Alias => {
                while let Some((add, ..)) = self.next_residual() {
                    let Node::Residual { alias, .. } = &mut self.nodes[add] else { unreachable!() };
                    *alias = true;
                    f.aliased += 1;
                }
                return f;
            }
            Fusion::Auto | Fusion::Epilogues => {}
        }
        while let Some((add, linear, res, out)) = self.next_residual() {
            let Node::Matmul { out: o, res: r, .. } = &mut self.nodes[linear] else { unreachable!() };
            (*o, *r) = (out, Some(res));
            self.remove_node(add);
            f.residual += 1;
        }
        while let Some((node, linear, act)) = self.next_gelu().filter(|_| recompute != Recompute::Gelu) {
            let Node::Matmul { gelu, .. } = &mut self.nodes[linear] else { unreachable!() };
            *gelu = Some(act);
            self.remove_node(node);
            f.gelu += 1;
        }
        for (consumer, pre) in self.gelu_consumers() {
            let Node::Matmul { gelu_in, .. } = &mut self.nodes[consumer] else { unreachable!() };
            *gelu_in = Some(pre);
            f.gelu_backward += 1;
        }
        for node in &mut self.nodes {
            if let Node::Matmul { op, bias: Some(_), bias_in_dw, .. } = node {
                if !op.trans_w {
                    *bias_in_dw = true;
                    f.bias_grads += 1;
                }
            }
        }
        f
    }

    /// Removes node `i`, keeping the block scopes on the nodes they held.
    fn remove_node(&mut self, i: usize) {
        self.nodes.remove(i);
        for s in &mut self.scopes {
            if s.0 > i {
                s.0 -= 1;
            }
        }
    }

    fn readers(&self, r: TensorId) -> HashSet<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].reads().iter().any(|&t| self.t.root(t) == r)).collect()
    }

    fn writers(&self, r: TensorId) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(move |&i| self.nodes[i].writes().iter().any(|&t| self.t.root(t) == r))
    }

    /// The one node that writes root `r`, if exactly one does.
    fn writer(&self, r: TensorId) -> Option<usize> {
        let mut w = self.writers(r);
        w.next().filter(|_| w.next().is_none())
    }

    /// An activation that owns its bytes (not a window of another tensor).
    fn whole(&self, t: TensorId) -> bool {
        self.t.root(t) == t && self.t.get(t).class == Class::Activation
    }

    /// Node `i` when it is one whole linear writing `out`, with nothing folded into it yet.
    fn plain_linear(&self, i: usize, out: TensorId) -> bool {
        matches!(self.nodes[i], Node::Matmul { op, out: o, res: None, gelu: None, .. }
            if o == out && op.out_stride == op.n && op.out_col == 0)
    }

    /// (add, linear, x, out) for the first add `out = x + y` to fold into the linear making y. The
    /// linear must have a bias (the epilogue that reads a residual) and be y's only writer, y read
    /// only by the add; x must be written before the linear and read by no node after it but the
    /// add. That last rule makes the fused node the first in the backward walk to write dx, so dx
    /// can simply be dout's buffer, which later rules accumulate into; and y's gradient, read only
    /// by the linear's rule (the next to run), can be that buffer too. Adds already aliased are
    /// skipped.
    fn next_residual(&self) -> Option<(usize, usize, TensorId, TensorId)> {
        for (add, node) in self.nodes.iter().enumerate() {
            let Node::Residual { out, a, b, alias: false, .. } = *node else { continue };
            for (x, y) in [(a, b), (b, a)] {
                if !self.whole(x) || !self.whole(y) || x == y {
                    continue;
                }
                let Some(linear) = self.writer(y) else { continue };
                let biased = matches!(self.nodes[linear], Node::Matmul { bias: Some(_), .. });
                let fits = biased && self.plain_linear(linear, y) && self.readers(y) == HashSet::from([add]);
                let x_ready = self.writers(x).all(|w| w < linear);
                let x_last = self.readers(x).iter().all(|&r| r < linear || r == add);
                if fits && x_ready && x_last {
                    return Some((add, linear, x, out));
                }
            }
        }
        None
    }

    /// (gelu node, linear, its output) for the first GELU of a whole biased linear's output (the
    /// fused forward entry points are biased).
    fn next_gelu(&self) -> Option<(usize, usize, TensorId)> {
        self.nodes.iter().enumerate().find_map(|(i, node)| {
            let Node::Gelu { out, x, .. } = *node else { return None };
            let linear = self.writer(x)?;
            let biased = matches!(self.nodes[linear], Node::Matmul { bias: Some(_), .. });
            (self.whole(out) && self.whole(x) && biased && self.plain_linear(linear, x)).then_some((i, linear, out))
        })
    }

    /// (linear, h) for every linear whose input is gelu(h) and the GELU's only reader, read as
    /// its x and nothing else, without a backward GELU already folded in, and not adding h as its
    /// residual.
    fn gelu_consumers(&self) -> Vec<(usize, TensorId)> {
        let gelus = self.nodes.iter().filter_map(|n| match *n {
            Node::Gelu { out, x, .. } => Some((out, x)),
            Node::Matmul { out, gelu: Some(g), .. } => Some((g, out)),
            _ => None,
        });
        gelus
            .filter(|&(g, h)| self.whole(g) && self.whole(h))
            .filter_map(|(g, h)| {
                let readers = self.readers(g);
                let &k = readers.iter().next().filter(|_| readers.len() == 1)?;
                // A residual h would have its gradient aliased to dout by the same rule.
                let only_x = matches!(self.nodes[k], Node::Matmul { x, w, bias, res, gelu_in: None, .. }
                    if x == g && w != g && bias != Some(g) && res != Some(g) && res != Some(h));
                only_x.then_some((k, h))
            })
            .collect()
    }
}
