//! The memory plan: persistent classes (params, grads, optimizer moments, inputs, outputs) get flat
//! arenas laid out in tensor order; activations and scratch share work arenas where tensors whose
//! lifetimes (first..last dispatch that binds them) do not overlap reuse the same bytes. An arena
//! never grows past the adapter's buffer limit: a class takes as many buffers as it needs, no
//! tensor straddling two.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::tensor::{Class, TensorId, Tensors};
use crate::error::Bytes;
use crate::ops::Dispatch;

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    pub arena: usize,
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Arena {
    pub name: &'static str,
    /// Which buffer of its class (0 for the first).
    pub part: usize,
    pub size: u64,
}

impl Arena {
    /// The name, with the part after the first ("work", "work.1", ...).
    pub fn label(&self) -> String {
        if self.part == 0 {
            self.name.to_string()
        } else {
            format!("{}.{}", self.name, self.part)
        }
    }
}

#[derive(Debug, Clone)]
pub struct MemoryPlan {
    pub arenas: Vec<Arena>,
    /// Indexed by tensor id; views resolve to their base plus offset.
    pub placement: Vec<Placement>,
    /// (first, last) dispatch index that touches a planned tensor; None for unused or persistent.
    pub lifetime: Vec<Option<(usize, usize)>>,
    /// Bytes by class as laid out (activations/scratch: peak of the shared arena split by class at peak).
    pub by_class: BTreeMap<Class, u64>,
    /// What the planned classes would take with one buffer each.
    pub naive_planned: u64,
    /// Size of the shared (lifetime-planned) arenas, all parts.
    pub peak_planned: u64,
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// The arena of a tensor that has no memory: gradients and optimizer state no dispatch binds (a
/// forward-only program's).
pub const UNPLACED: usize = usize::MAX;

/// Arena order: the persistent classes' (one or more each), then the shared work arenas.
const PERSISTENT: [Class; 5] = [Class::Param, Class::Grad, Class::Optim, Class::Input, Class::Output];

/// Places every tensor; no arena exceeds `max_buffer` bytes unless one tensor alone does (the
/// executor then names it).
pub fn plan(tensors: &Tensors, dispatches: &[Dispatch], align: u64, max_buffer: u64) -> MemoryPlan {
    let n = tensors.len();
    let mut placement = vec![Placement::default(); n];
    let mut arenas = Vec::new();
    let mut by_class = BTreeMap::new();
    let mut bound = vec![false; n];
    for d in dispatches {
        for t in d.tensors() {
            bound[tensors.root(t).index()] = true;
        }
    }

    for class in PERSISTENT {
        let mut arena = arenas.len();
        let mut off = 0;
        for (i, t) in tensors.list.iter().enumerate() {
            if t.class != class || t.view.is_some() {
                continue;
            }
            if matches!(class, Class::Grad | Class::Optim) && !bound[i] {
                placement[i] = Placement { arena: UNPLACED, offset: 0, size: 0 };
                continue;
            }
            if off > 0 && align_up(off + t.bytes(), align) > max_buffer {
                *by_class.entry(class).or_insert(0) += off;
                arenas.push(Arena { name: class.name(), part: arena - first_of(&arenas, class), size: off });
                (arena, off) = (arenas.len(), 0);
            }
            placement[i] = Placement { arena, offset: off, size: t.bytes() };
            off = align_up(off + t.bytes(), align);
        }
        *by_class.entry(class).or_insert(0) += off;
        arenas.push(Arena { name: class.name(), part: arena - first_of(&arenas, class), size: off });
    }

    // Lifetimes of planned tensors, counted on their roots.
    let mut lifetime: Vec<Option<(usize, usize)>> = vec![None; n];
    for (d, disp) in dispatches.iter().enumerate() {
        for t in disp.tensors() {
            let r = tensors.root(t).index();
            if tensors.list[r].class.persistent() {
                continue;
            }
            lifetime[r] = Some(match lifetime[r] {
                None => (d, d),
                Some((a, _)) => (a, d),
            });
        }
    }

    // Greedy: biggest first, at the lowest offset of the first work arena where it collides with
    // no placed tensor whose lifetime overlaps and stays within max_buffer; a new arena where none
    // has room.
    let work = arenas.len();
    let mut order: Vec<usize> = (0..n).filter(|&i| lifetime[i].is_some()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(tensors.list[i].bytes()), i));
    let mut placed: Vec<usize> = Vec::new();
    let mut peaks: Vec<u64> = vec![0];
    let mut naive = 0;
    for i in order {
        let (a0, a1) = lifetime[i].unwrap();
        let size = align_up(tensors.list[i].bytes().max(4), align);
        naive += size;
        let lowest = |w: usize| {
            let mut busy: Vec<(u64, u64)> = placed
                .iter()
                .filter(|&&j| {
                    let (b0, b1) = lifetime[j].unwrap();
                    placement[j].arena == work + w && a0 <= b1 && b0 <= a1
                })
                .map(|&j| (placement[j].offset, align_up(placement[j].offset + placement[j].size, align)))
                .collect();
            busy.sort();
            let mut off = 0;
            for (s, e) in busy {
                if off + size <= s {
                    break;
                }
                off = off.max(e);
            }
            off
        };
        let (w, off) =
            match (0..peaks.len()).map(|w| (w, lowest(w))).find(|&(_, off)| off == 0 || off + size <= max_buffer) {
                Some(found) => found,
                None => {
                    peaks.push(0);
                    (peaks.len() - 1, 0)
                }
            };
        placement[i] = Placement { arena: work + w, offset: off, size: tensors.list[i].bytes() };
        peaks[w] = peaks[w].max(off + size);
        placed.push(i);
    }
    let peak = peaks.iter().sum();
    arenas.extend(peaks.iter().enumerate().map(|(part, &size)| Arena { name: "work", part, size }));

    // Split the work arena's peak by class at the dispatch where the most bytes are live.
    let mut best = (0, BTreeMap::new());
    for d in 0..dispatches.len() {
        let mut live = BTreeMap::new();
        let mut total = 0;
        for &i in &placed {
            let (a, b) = lifetime[i].unwrap();
            if a <= d && d <= b {
                *live.entry(tensors.list[i].class).or_insert(0) += placement[i].size;
                total += placement[i].size;
            }
        }
        if total > best.0 {
            best = (total, live);
        }
    }
    for (c, b) in best.1 {
        *by_class.entry(c).or_insert(0) += b;
    }

    for (i, t) in tensors.list.iter().enumerate() {
        if let Some((base, off)) = t.view {
            let b = placement[base.index()];
            placement[i] = if b.arena == UNPLACED {
                b
            } else {
                Placement { arena: b.arena, offset: b.offset + off as u64 * t.dtype.size(), size: t.bytes() }
            };
        }
    }

    MemoryPlan { arenas, placement, lifetime, by_class, naive_planned: naive, peak_planned: peak }
}

/// The index of the first arena of `class` among those already pushed.
fn first_of(arenas: &[Arena], class: Class) -> usize {
    arenas.iter().position(|a| a.name == class.name()).unwrap_or(arenas.len())
}

impl MemoryPlan {
    /// The widest range any of `dispatches` binds, and its tensor: what must fit the adapter's
    /// storage binding limit.
    pub fn widest_binding(&self, dispatches: &[Dispatch]) -> Option<(TensorId, u64)> {
        dispatches
            .iter()
            .flat_map(|d| &d.args)
            .map(|&(_, t)| (t, self.placement[t.index()].size))
            .max_by_key(|&(_, s)| s)
    }

    pub fn total(&self) -> u64 {
        self.arenas.iter().map(|a| a.size).sum()
    }

    /// Bytes of one class (0 when it has none).
    pub fn class_bytes(&self, c: Class) -> u64 {
        self.by_class.get(&c).copied().unwrap_or(0)
    }

    /// One line: the total and its split by class, as a run prints it at the start.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self.by_class.iter().map(|(c, b)| format!("{} {:#}", c.name(), Bytes(*b))).collect();
        format!("memory plan: {:#} in all ({})", Bytes(self.total()), parts.join(", "))
    }

    pub fn report(&self, tensors: &Tensors) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "memory plan:");
        for a in &self.arenas {
            let _ = writeln!(s, "  arena {:<12} {}", a.label(), Bytes(a.size));
        }
        for (c, b) in &self.by_class {
            let _ = writeln!(s, "  class {:<12} {}", c.name(), Bytes(*b));
        }
        let _ = writeln!(
            s,
            "  lifetime-planned tensors: peak {} vs {} with one buffer each (saved {})",
            Bytes(self.peak_planned),
            Bytes(self.naive_planned),
            Bytes(self.naive_planned.saturating_sub(self.peak_planned))
        );
        for (i, t) in tensors.list.iter().enumerate() {
            let p = self.placement[i];
            if p.arena == UNPLACED {
                let _ = writeln!(s, "    {:<40} {:?} (no memory: unused)", t.name, t.shape);
                continue;
            }
            let life = self.lifetime[i].map(|(a, b)| format!("live {a}..={b}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "    {:<40} {:?} {:>12} +{:<10} {:>10}B {}",
                t.name,
                t.shape,
                self.arenas[p.arena].label(),
                p.offset,
                p.size,
                life
            );
        }
        s
    }

    /// True when `a` and `b` are both live at some dispatch (persistent tensors are always live).
    pub fn overlap_in_time(&self, tensors: &Tensors, a: TensorId, b: TensorId) -> bool {
        let la = self.lifetime[tensors.root(a).index()];
        let lb = self.lifetime[tensors.root(b).index()];
        match (la, lb) {
            (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
            _ => true,
        }
    }
}
