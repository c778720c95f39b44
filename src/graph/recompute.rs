//! Recomputation (activation checkpointing) as a scheduling policy: `Recompute` picks forward
//! activations to drop after the forward pass, and the autodiff walk reads each of them through
//! `Recomputer`, which re-runs their producers into fresh tensors just before the rule that needs them.

use std::collections::{HashMap, HashSet};

use super::memplan::{plan, MemoryPlan};
use super::recorder::{Graph, Node};
use super::tensor::{Class, TensorId, Tensors};
use crate::error::{Bytes, Error, Result};
use crate::ops::Dispatch;

/// Appended to the names of recomputed tensors (`h0.gelu@re`), so `WGPT_DEBUG=1` shows them.
pub const MARK: &str = "@re";

/// Which activations the backward pass recomputes instead of keeping from the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Recompute {
    /// Keep every activation.
    #[default]
    None,
    /// GELU outputs.
    Gelu,
    /// LayerNorm outputs, means and reciprocal deviations.
    Norm,
    /// Attention outputs and their saved log-sum-exp (recomputed from qkv).
    Attn,
    /// Everything inside each transformer block; only the residual stream entering it is kept.
    Block,
}

impl Recompute {
    pub const ALL: [Recompute; 5] =
        [Recompute::None, Recompute::Gelu, Recompute::Norm, Recompute::Attn, Recompute::Block];
    /// The names `parse` takes, in the order of `ALL`.
    pub const NAMES: [&'static str; 5] = ["none", "gelu", "norm", "attn", "block"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            Error::Other(format!("recompute: unknown policy '{s}'; choose one of {}", Self::NAMES.join(", ")))
        })
    }

    /// The activation roots this policy drops after the forward pass.
    pub fn dropped(self, g: &Graph) -> HashSet<TensorId> {
        let root = |t: TensorId| g.t.root(t);
        let mut drop: HashSet<TensorId> = HashSet::new();
        match self {
            Recompute::None => {}
            Recompute::Gelu | Recompute::Norm | Recompute::Attn => {
                for node in &g.nodes {
                    let hit = matches!(
                        (self, node),
                        (Recompute::Gelu, Node::Gelu { .. })
                            | (Recompute::Norm, Node::LayerNorm { .. })
                            | (Recompute::Attn, Node::Attention { .. })
                    );
                    if hit {
                        drop.extend(node.writes().into_iter().map(root));
                    }
                }
            }
            Recompute::Block => {
                // A root qualifies when every node that writes it and every node that reads it
                // lies in one block: the block's output (read by the next block) stays.
                let mut scope: HashMap<TensorId, (Option<usize>, bool)> = HashMap::new();
                let mut touch = |t: TensorId, b: Option<usize>| {
                    let e = scope.entry(root(t)).or_insert((b, true));
                    e.1 &= e.0 == b;
                };
                for (i, node) in g.nodes.iter().enumerate() {
                    let b = g.block_of(i);
                    for t in node.writes().into_iter().chain(node.reads()) {
                        touch(t, b);
                    }
                }
                drop.extend(scope.into_iter().filter(|&(_, (b, one))| b.is_some() && one).map(|(r, _)| r));
            }
        }
        // The cross-entropy backward writes dlogits over the logits in place: they stay.
        for node in &g.nodes {
            if let Node::CrossEntropy { logits, .. } = *node {
                drop.remove(&root(logits));
            }
        }
        // An eager group's gradient runs inside the forward pass, while what it reads still lives.
        for (i, node) in g.nodes.iter().enumerate() {
            if g.eager_group(i).is_some() {
                for t in node.writes().into_iter().chain(node.reads()) {
                    drop.remove(&root(t));
                }
            }
        }
        drop.retain(|&r| g.t.get(r).class == Class::Activation);
        drop
    }
}

/// Serves the saved forward tensors a backward rule reads: the tensor itself, or, when its root
/// was dropped, the same window of a recomputed copy. Recomputing a root re-runs every node that
/// writes it (in forward order), after recomputing their own dropped inputs; each node re-runs at
/// most once, and its outputs go to fresh tensors named `<name>@re`. Backward rules then never
/// bind a dropped root, so its lifetime (and memory) ends with the forward pass.
#[derive(Debug, Default)]
pub struct Recomputer {
    dropped: HashSet<TensorId>,
    /// Nodes that write each dropped root, in forward order.
    producers: HashMap<TensorId, Vec<usize>>,
    /// The recomputed root of each original root whose producers re-ran.
    copies: HashMap<TensorId, TensorId>,
    /// Windows of copies already made, by (copy root, element offset, length).
    views: HashMap<(TensorId, usize, usize), TensorId>,
    rerun: HashSet<usize>,
    /// Forward dispatches emitted again.
    pub dispatches: usize,
}

impl Recomputer {
    pub fn new(g: &Graph, policy: Recompute) -> Self {
        let dropped = policy.dropped(g);
        let mut producers: HashMap<TensorId, Vec<usize>> = HashMap::new();
        for (i, node) in g.nodes.iter().enumerate() {
            for t in node.writes() {
                let r = g.t.root(t);
                if dropped.contains(&r) {
                    producers.entry(r).or_default().push(i);
                }
            }
        }
        Recomputer { dropped, producers, ..Default::default() }
    }

    /// Dropped roots.
    pub fn dropped(&self) -> &HashSet<TensorId> {
        &self.dropped
    }

    /// `t` as a backward rule must read it; dispatches that recompute it are appended to `d`.
    pub fn saved(&mut self, g: &mut Graph, t: TensorId, d: &mut Vec<Dispatch>) -> TensorId {
        let root = g.t.root(t);
        if !self.dropped.contains(&root) {
            return t;
        }
        for i in self.producers[&root].clone() {
            self.rerun(g, i, d);
        }
        self.map(g, t)
    }

    fn rerun(&mut self, g: &mut Graph, i: usize, d: &mut Vec<Dispatch>) {
        if !self.rerun.insert(i) {
            return;
        }
        let mut node = g.nodes[i].clone();
        let (writes, reads) = node.slots();
        for slot in reads {
            *slot = self.saved(g, *slot, d);
        }
        for slot in writes {
            let r = g.t.root(*slot);
            let orig = g.t.get(r).clone();
            assert!(orig.class == Class::Activation, "recompute would rewrite {} ({:?})", orig.name, orig.class);
            self.copies
                .entry(r)
                .or_insert_with(|| g.t.add(format!("{}{MARK}", orig.name), &orig.shape, orig.dtype, orig.class));
            *slot = self.map(g, *slot);
        }
        d.push(node.forward());
        self.dispatches += 1;
    }

    /// The window of the copy that `t` is of its original root.
    fn map(&mut self, g: &mut Graph, t: TensorId) -> TensorId {
        let (root, off) = g.t.window(t);
        let copy = self.copies[&root];
        if t == root {
            return copy;
        }
        let len = g.t.get(t).numel();
        *self.views.entry((copy, off, len)).or_insert_with(|| {
            let v = g.t.view(copy, off, len);
            g.t.list[v.index()].shape = g.t.get(t).shape.clone();
            v
        })
    }
}

/// One line for `WGPT_DEBUG=1`: activation bytes and the whole plan of `with` (a step recorded with
/// `policy`) against `without` (the same step without recomputation), and the dispatches re-run.
pub fn saving(
    policy: Recompute,
    with: (&Tensors, &[Dispatch]),
    without: (&Tensors, &[Dispatch]),
    align: u64,
) -> String {
    let (a, b) = (plan(with.0, with.1, align, u64::MAX), plan(without.0, without.1, align, u64::MAX));
    let act = |p: &MemoryPlan| p.class_bytes(Class::Activation);
    format!(
        "recompute {}: activations {:#} vs {:#} without (saved {:#}); plan {:#} vs {:#}; {} forward dispatches re-run",
        policy.name(),
        Bytes(act(&a)),
        Bytes(act(&b)),
        Bytes(act(&b).saturating_sub(act(&a))),
        Bytes(a.total()),
        Bytes(b.total()),
        with.1.len().saturating_sub(without.1.len()),
    )
}
