//! A step's weights and optimizer state by parameter name (loading, checkpoints), and ZeRO-1: with `zero` in a
//! job of several ranks each keeps the AdamW moments of its shard of every flat group only
//! (`flat::moment_shard`), updates that shard, and the ranks gather each other's updated
//! parameters. The update is elementwise, so the bits are those of every rank updating it all.

use std::collections::HashMap;

use super::step::TrainStep;
use crate::dist::reduce::shard_sizes_agree;
use crate::dist::Comm;
use crate::error::{Error, Result};
use crate::graph::TensorId;

impl TrainStep {
    /// Whether this step keeps only its rank's shard of the moments.
    pub fn sharded(&self) -> bool {
        self.sec.layout.zero.is_some()
    }

    /// Whether it keeps only its rank's shard of the f32 masters too (ZeRO-1 under fp16).
    pub fn masters_sharded(&self) -> bool {
        self.sec.layout.groups.iter().any(|g| g.sharded_masters)
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// After a ZeRO-1 update: every rank sends the parameters of its shard and writes the others'.
    /// Under fp16 storage the masters stay sharded: the ranks gather the f16 copy the kernels
    /// read (AdamW refreshed it on each rank's shard).
    pub(super) async fn gather_params(&self, comm: &dyn Comm) -> Result<()> {
        let ranks = comm.size();
        for (gi, g) in self.sec.layout.groups.iter().enumerate() {
            let from = if g.sharded_masters { g.copy.unwrap_or(g.param) } else { g.param };
            let mine = match g.moments.is_empty() {
                true => Vec::new(),
                false => self.step.read_f32_at(from, g.moments.start, g.moments.len()).await?,
            };
            let all = comm.all_gather(mine)?;
            let sizes: Vec<usize> = (0..ranks).map(|r| self.sec.layout.shard_of(gi, r).len()).collect();
            shard_sizes_agree(&all, &sizes, "parameter gather")?;
            for (r, part) in all.iter().enumerate() {
                if r != comm.rank() && !part.is_empty() {
                    let at = self.sec.layout.shard_of(gi, r).start;
                    if !g.sharded_masters {
                        self.step.write_f32_at(g.param, at, part)?;
                    }
                    if let Some(copy) = g.copy {
                        self.step.write_f32_at(copy, at, part)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every parameter's f32 master, for checkpoints. Where the masters are sharded (ZeRO-1
    /// under fp16) every rank must call it at the same point: the shards are gathered.
    pub async fn read_masters(&self, comm: &dyn Comm) -> Result<HashMap<String, Vec<f32>>> {
        if !self.masters_sharded() {
            return self.read_params().await;
        }
        let mut out = HashMap::new();
        for gi in 0..self.sec.layout.groups.len() {
            let whole = self.gather_group(comm, gi, self.sec.layout.groups[gi].param, "parameter gather").await?;
            for p in self.sec.layout.params.iter().filter(|p| p.group == gi) {
                out.insert(p.spec.name.clone(), whole[p.offset..p.offset + p.spec.numel()].to_vec());
            }
        }
        Ok(out)
    }

    /// Group `gi`'s whole f32 vector from `id`, a tensor of this rank's shard of it (`moments`):
    /// every rank's shard, gathered in rank order.
    async fn gather_group(&self, comm: &dyn Comm, gi: usize, id: TensorId, what: &str) -> Result<Vec<f32>> {
        let g = &self.sec.layout.groups[gi];
        let mine = match g.moments.is_empty() {
            true => Vec::new(), // a ZeRO-1 rank that keeps none of this group
            false => self.step.read_f32_at(id, 0, g.moments.len()).await?,
        };
        let all = comm.all_gather(mine)?;
        let sizes: Vec<usize> = (0..comm.size()).map(|r| self.sec.layout.shard_of(gi, r).len()).collect();
        shard_sizes_agree(&all, &sizes, what)?;
        Ok(all.concat())
    }

    /// Writes every parameter from `get(name, shape)` (and its f16 copy; of sharded masters, the
    /// part in this rank's shard); moments are reset.
    pub fn load_params(&self, mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<()> {
        for p in &self.sec.layout.params {
            let data = get(&p.spec.name, &p.spec.shape)?;
            p.check_len(data.len())?;
            self.step.write_f32(p.param, &data)?;
            if p.compute != p.param {
                self.step.write_f32(p.compute, &data)?;
            }
            let g = &self.sec.layout.groups[p.group];
            if g.sharded_masters {
                let (start, end) = (p.offset.max(g.moments.start), (p.offset + data.len()).min(g.moments.end));
                if start < end {
                    self.step.write_f32_at(g.param, g.master_at(start), &data[start - p.offset..end - p.offset])?;
                }
            }
        }
        if !self.sec.backward.is_empty() {
            // (A ZeRO-1 rank may keep none of a small group.)
            for g in self.sec.layout.groups.iter().filter(|g| !g.moments.is_empty()) {
                let zeros = vec![0f32; g.moments.len()];
                self.step.write_f32(g.m, &zeros)?;
                self.step.write_f32(g.v, &zeros)?;
            }
        }
        Ok(())
    }

    /// Every parameter's values: the f32 masters, or where they are sharded (ZeRO-1 under fp16)
    /// the compute copy every rank holds (what the model computes with; `read_masters` gathers
    /// the masters).
    pub async fn read_params(&self) -> Result<HashMap<String, Vec<f32>>> {
        let mut out = HashMap::new();
        for p in &self.sec.layout.params {
            out.insert(p.spec.name.clone(), self.step.read_f32(p.param).await?);
        }
        Ok(out)
    }

    /// AdamW moments keyed "adam_m.<name>" / "adam_v.<name>", for checkpoints. Under ZeRO-1 every
    /// rank must call it at the same point: the shards are gathered (every rank gets them all).
    pub async fn read_moments(&self, comm: &dyn Comm) -> Result<HashMap<String, Vec<f32>>> {
        let sharded = self.sharded();
        let mut out = HashMap::new();
        for (gi, g) in self.sec.layout.groups.iter().enumerate() {
            for (prefix, id) in [("adam_m", g.m), ("adam_v", g.v)] {
                let whole = match sharded {
                    false => self.step.read_f32(id).await?,
                    true => self.gather_group(comm, gi, id, "optimizer state gather").await?,
                };
                for p in self.sec.layout.params.iter().filter(|p| p.group == gi) {
                    out.insert(
                        format!("{prefix}.{}", p.spec.name),
                        whole[p.offset..p.offset + p.spec.numel()].to_vec(),
                    );
                }
            }
        }
        Ok(out)
    }

    /// Restores the moments saved by `read_moments` (this rank's shard of them under ZeRO-1) and
    /// the optimizer step count.
    pub fn load_moments(&mut self, moments: &HashMap<String, Vec<f32>>, t: u64) -> Result<()> {
        for (gi, g) in self.sec.layout.groups.iter().enumerate() {
            for (prefix, id) in [("adam_m", g.m), ("adam_v", g.v)] {
                let mut whole = vec![0f32; g.len];
                for p in self.sec.layout.params.iter().filter(|p| p.group == gi) {
                    let key = format!("{prefix}.{}", p.spec.name);
                    let data =
                        moments.get(&key).ok_or_else(|| Error::Other(format!("optimizer state: {key} missing")))?;
                    if data.len() != p.spec.numel() {
                        return Err(Error::Other(format!(
                            "optimizer state: {key} has {} values, needs {}",
                            data.len(),
                            p.spec.numel()
                        )));
                    }
                    whole[p.offset..p.offset + data.len()].copy_from_slice(data);
                }
                if !g.moments.is_empty() {
                    self.step.write_f32(id, &whole[g.moments.clone()])?;
                }
            }
        }
        self.t = t;
        Ok(())
    }

    /// ZeRO-1's exchange of one bucket: each rank receives only the gradients of its shard (a
    /// reduce-scatter: no gather, the optimizer reads no other), sums them in rank order and
    /// writes them back; the rest of its gradient stays its own.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn reduce_owned(
        &self,
        comm: &dyn Comm,
        b: &super::exchange::Bucket,
        parts: &[Vec<f32>],
        round: impl Fn(f32) -> f32,
    ) -> Result<()> {
        let layout = &self.sec.layout;
        // (param k of the bucket, rank, range within the parameter) in one agreed order.
        let mut runs = Vec::new();
        for (k, &pi) in b.params.iter().enumerate() {
            let p = &layout.params[pi];
            for r in 0..comm.size() {
                let s = layout.shard_of(p.group, r);
                let (lo, hi) = (s.start.max(p.offset), s.end.min(p.offset + p.spec.numel()));
                if lo < hi {
                    runs.push((k, r, lo - p.offset..hi - p.offset));
                }
            }
        }
        let mut send = vec![Vec::new(); comm.size()];
        for (k, r, w) in &runs {
            send[*r].extend_from_slice(&parts[*k][w.clone()]);
        }
        let mine = send[comm.rank()].len();
        let got = comm.all_to_all(send)?;
        crate::dist::reduce::shard_sizes_agree(&got, &vec![mine; comm.size()], "gradient reduce-scatter")?;
        let sum = crate::dist::reduce::fold_in_rank_order(got, round);
        let mut at = 0;
        for (k, _, w) in runs.iter().filter(|run| run.1 == comm.rank()) {
            let p = &layout.params[b.params[*k]];
            let mut values = sum[at..at + w.len()].to_vec();
            at += w.len();
            // An f16 write moves pairs: an odd run ends at its parameter's end, before padding
            // that stays zero.
            if values.len() % 2 == 1 {
                values.push(0.0);
            }
            self.step.write_f32_at(layout.groups[p.group].grad, p.offset + w.start, &values)?;
        }
        Ok(())
    }

    /// ZeRO-1: each rank's gradient is summed only on its shard, so each computes the norm's
    /// per-block sums of squares of its own blocks; the ranks gather them before the norm.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) async fn gather_norm_blocks(&self, comm: &dyn Comm) -> Result<()> {
        let Some(partial) = self.sec.norm_partial else { return Ok(()) };
        self.step.run_range(self.sec.norm_partials.clone());
        let layout = &self.sec.layout;
        let owner: Vec<usize> = super::optimizer::norm_blocks(layout, self.sec.max_elems)
            .into_iter()
            .map(|(gi, at)| (0..comm.size()).find(|&r| layout.shard_of(gi, r).contains(&at)).unwrap_or(0))
            .collect();
        let slots = self.step.read_f32(partial).await?;
        let mine: Vec<f32> = owner.iter().zip(&slots).filter(|(&r, _)| r == comm.rank()).map(|(_, &x)| x).collect();
        let all = comm.all_gather(mine)?;
        let sizes: Vec<usize> = (0..comm.size()).map(|r| owner.iter().filter(|&&o| o == r).count()).collect();
        crate::dist::reduce::shard_sizes_agree(&all, &sizes, "gradient norm blocks")?;
        let mut next = vec![0; comm.size()];
        let mut full = slots;
        for (slot, &r) in full.iter_mut().zip(&owner) {
            *slot = all[r][next[r]];
            next[r] += 1;
        }
        self.step.write_f32(partial, &full)
    }
}
