//! The flat layout shared by parameters, gradients and both AdamW moments (and, with fp16
//! storage, the f16 compute copy of the parameters): contiguous groups (with weight decay,
//! without; each split where it would pass `GROUP_MAX` elements), each tensor a view at the same
//! offset in all of them, padded to 128 elements so every view starts on a 256-byte binding
//! boundary in f32 and f16. AdamW, the gradient norm and checkpointing are then each a pass over
//! a few ranges, and a group is one tensor in each class: the memory plan never cuts one.

use std::collections::HashMap;
use std::ops::Range;

use super::tensor::{Class, DType, TensorId, Tensors};
use crate::model::ParamSpec;

/// Elements a view offset is rounded to (256 bytes of f16, 512 of f32).
pub const PAD: usize = 128;

/// The most elements one group holds unless one parameter alone is larger: 256 MiB of f32,
/// WebGPU's default buffer limit. Fixed, not the adapter's, so the layout (and the gradient
/// norm's order of sums) is the same on every adapter.
pub const GROUP_MAX: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct Group {
    pub decay: bool,
    pub len: usize,
    pub param: TensorId,
    pub grad: TensorId,
    /// AdamW's moments of the elements in `moments` (element i of `m` is the group's
    /// `moments.start + i`): the whole group, or under ZeRO-1 this rank's shard of it.
    pub m: TensorId,
    pub v: TensorId,
    pub moments: Range<usize>,
    /// The f16 copy the kernels read (fp16 storage); None when they read `param` itself.
    pub copy: Option<TensorId>,
    /// Under ZeRO-1 with fp16 storage `param` holds the f32 masters of `moments` only (element i
    /// is the group's `moments.start + i`), as the moments do: the kernels read the whole copy.
    pub sharded_masters: bool,
}

impl Group {
    /// Where the group's element `at` (within `moments` when the masters are sharded) sits in
    /// `param`.
    pub fn master_at(&self, at: usize) -> usize {
        if self.sharded_masters {
            at - self.moments.start
        } else {
            at
        }
    }
}

/// Under ZeRO-1: which rank of how many this layout belongs to, and the unit its shards are
/// cut in (a multiple of PAD, so views stay 256-byte aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zero {
    pub rank: usize,
    pub ranks: usize,
    pub unit: usize,
}

/// The part of a group of `len` elements whose optimizer state rank `rank` of `ranks` keeps
/// under ZeRO-1: balanced in whole units from the group's start (a rank may get none of a small
/// group).
pub fn moment_shard(len: usize, rank: usize, ranks: usize, unit: usize) -> Range<usize> {
    let units = len.div_ceil(unit);
    let at = |r: usize| (r * units / ranks * unit).min(len);
    at(rank)..at(rank + 1)
}

#[derive(Debug, Clone)]
pub struct FlatParam {
    pub spec: ParamSpec,
    pub group: usize,
    pub offset: usize,
    /// The parameter's f32 master; where the group's masters are sharded (ZeRO-1 under fp16), its
    /// compute copy, which every rank holds whole (its values are the masters rounded to f16).
    pub param: TensorId,
    pub grad: TensorId,
    /// What the model's kernels read: the view of the f16 copy, or `param` itself.
    pub compute: TensorId,
}

impl FlatParam {
    /// Checks that `n` values fill this parameter (before writing them).
    pub fn check_len(&self, n: usize) -> crate::error::Result<()> {
        if n == self.spec.numel() {
            return Ok(());
        }
        Err(crate::error::Error::Other(format!(
            "parameter {}: {n} values given, shape {:?} needs {}",
            self.spec.name,
            self.spec.shape,
            self.spec.numel()
        )))
    }
}

#[derive(Debug, Clone, Default)]
pub struct FlatLayout {
    pub groups: Vec<Group>,
    pub params: Vec<FlatParam>,
    /// Set under ZeRO-1 (`Group::moments` is then this rank's shard).
    pub zero: Option<Zero>,
}

impl FlatLayout {
    /// `storage` is the type the kernels read weights and write gradients in: f32 masters and
    /// moments always, gradients and (when not f32) a compute copy of the weights in `storage`.
    pub fn new(t: &mut Tensors, specs: &[ParamSpec], storage: DType) -> Self {
        Self::with_group_max(t, specs, storage, GROUP_MAX, None)
    }

    /// `new` with groups of at most `group_max` elements (tests split small models with it) and,
    /// with `zero` = (rank, ranks), the moments of that rank's shard of each group only.
    pub fn with_group_max(
        t: &mut Tensors,
        specs: &[ParamSpec],
        storage: DType,
        group_max: usize,
        zero: Option<Zero>,
    ) -> Self {
        let mut layout = FlatLayout { zero, ..Default::default() };
        let padded = |s: &ParamSpec| s.numel().div_ceil(PAD) * PAD;
        for decay in [true, false] {
            // Runs of parameters in table order, each within group_max (or one larger parameter).
            let mut runs: Vec<Vec<&ParamSpec>> = Vec::new();
            let mut len = 0;
            for s in specs.iter().filter(|s| s.decay == decay) {
                if runs.is_empty() || (len > 0 && len + padded(s) > group_max) {
                    runs.push(Vec::new());
                    len = 0;
                }
                runs.last_mut().unwrap().push(s);
                len += padded(s);
            }
            for (part, members) in runs.iter().enumerate() {
                layout.add_group(t, members, decay, part, storage, zero);
            }
        }
        // Back to model order, so listings read like the model.
        let order: HashMap<&str, usize> = specs.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        layout.params.sort_by_key(|p| order[p.spec.name.as_str()]);
        layout
    }

    /// One group of `members` (in order), each a view at the same offset in params, grads and
    /// moments.
    fn add_group(
        &mut self,
        t: &mut Tensors,
        members: &[&ParamSpec],
        decay: bool,
        part: usize,
        storage: DType,
        zero: Option<Zero>,
    ) {
        let mut offsets = Vec::new();
        let mut len = 0;
        for s in members {
            offsets.push(len);
            len += s.numel().div_ceil(PAD) * PAD;
        }
        if len == 0 {
            return;
        }
        let kind = if decay { "decay" } else { "no_decay" };
        let tag = if part == 0 { kind.to_string() } else { format!("{kind}.{part}") };
        let moments = zero.map_or(0..len, |z| moment_shard(len, z.rank, z.ranks, z.unit));
        // (An empty shard keeps one element: a buffer of none cannot be bound.)
        let mlen = moments.len().max(1);
        let sharded_masters = zero.is_some() && storage != DType::F32;
        let group = Group {
            decay,
            len,
            param: t.f32(format!("params.{tag}"), &[if sharded_masters { mlen } else { len }], Class::Param),
            grad: t.add(format!("grads.{tag}"), &[len], storage, Class::Grad),
            m: t.f32(format!("adam_m.{tag}"), &[mlen], Class::Optim),
            v: t.f32(format!("adam_v.{tag}"), &[mlen], Class::Optim),
            moments,
            copy: (storage != DType::F32).then(|| t.add(format!("params16.{tag}"), &[len], storage, Class::Param)),
            sharded_masters,
        };
        for (s, &off) in members.iter().zip(&offsets) {
            let view = |t: &mut Tensors, base: TensorId, prefix: &str| {
                let id = t.view(base, off, s.numel());
                let tensor = &mut t.list[id.index()];
                tensor.name = format!("{prefix}{}", s.name);
                tensor.shape = s.shape.clone();
                id
            };
            let compute = group.copy.map(|c| view(t, c, "f16."));
            let param = match (sharded_masters, compute) {
                (true, Some(c)) => c,
                _ => view(t, group.param, ""),
            };
            self.params.push(FlatParam {
                spec: (*s).clone(),
                group: self.groups.len(),
                offset: off,
                compute: compute.unwrap_or(param),
                param,
                grad: view(t, group.grad, "grad."),
            });
        }
        self.groups.push(group);
    }

    pub fn by_name(&self) -> HashMap<String, &FlatParam> {
        self.params.iter().map(|p| (p.spec.name.clone(), p)).collect()
    }

    /// The tensors the model reads, by name (the f16 copies under fp16 storage).
    pub fn param_ids(&self) -> HashMap<String, TensorId> {
        self.params.iter().map(|p| (p.spec.name.clone(), p.compute)).collect()
    }

    /// Flat range the model reads → flat gradient range, for autodiff.
    pub fn root_grads(&self) -> HashMap<TensorId, TensorId> {
        self.groups.iter().map(|g| (g.copy.unwrap_or(g.param), g.grad)).collect()
    }

    /// Splits each group into chunks of at most `max_elems` (a multiple of PAD) for binding:
    /// (group, offset in it, length).
    pub fn chunks(&self, max_elems: usize) -> Vec<(usize, usize, usize)> {
        self.split(max_elems, |g| 0..g.len)
    }

    /// Rank `rank`'s shard of group `gi` under ZeRO-1 (the whole group without it).
    pub fn shard_of(&self, gi: usize, rank: usize) -> Range<usize> {
        let len = self.groups[gi].len;
        self.zero.map_or(0..len, |z| moment_shard(len, rank, z.ranks, z.unit))
    }

    /// `chunks` of the part of each group whose moments this layout keeps (all of it but under
    /// ZeRO-1): the elements this rank's AdamW updates.
    pub fn moment_chunks(&self, max_elems: usize) -> Vec<(usize, usize, usize)> {
        self.split(max_elems, |g| g.moments.clone())
    }

    fn split(&self, max_elems: usize, part: impl Fn(&Group) -> Range<usize>) -> Vec<(usize, usize, usize)> {
        let step = (max_elems / PAD).max(1) * PAD;
        let mut out = Vec::new();
        for (gi, g) in self.groups.iter().enumerate() {
            let r = part(g);
            let mut off = r.start;
            while off < r.end {
                let len = step.min(r.end - off);
                out.push((gi, off, len));
                off += len;
            }
        }
        out
    }
}
