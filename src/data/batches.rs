//! Batches from a token stream: a train/validation split (the last `val_fraction` of tokens), and
//! B windows of T + 1 tokens per batch drawn with a seeded generator; targets are the inputs
//! shifted by one. The generator's state is plain data so a resumed run draws the same batches.

use crate::error::{Error, Result};

/// SplitMix64: small, fast, and its whole state is one u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The state after `n` more draws of `next_u64` (SplitMix64's state moves by a constant per
    /// draw): a rank skips the other ranks' micro-batches without drawing them.
    pub fn skip(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Any source of tokens with random access (a Vec or a memory-mapped shard).
pub trait Tokens {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> u32;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tokens for Vec<u32> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn get(&self, i: usize) -> u32 {
        self[i]
    }
}

impl Tokens for super::shard::Shard {
    fn len(&self) -> usize {
        super::shard::Shard::len(self)
    }
    fn get(&self, i: usize) -> u32 {
        super::shard::Shard::get(self, i)
    }
}

/// The first `n` held-out tokens (of the train split when there is no validation split): the
/// prompt attention maps are drawn on, the same in the trainer and in a window following a run.
pub fn held_out_head(
    tokens: &impl Tokens,
    train: &std::ops::Range<usize>,
    val: &std::ops::Range<usize>,
    n: usize,
) -> Vec<u32> {
    let r = if val.is_empty() { train } else { val };
    (r.start..r.end.min(r.start + n)).map(|i| tokens.get(i)).collect()
}

/// Token ranges of the split: train = [0, boundary), val = [boundary, len).
pub fn split(len: usize, val_fraction: f64, block: usize) -> Result<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let val = ((len as f64) * val_fraction).round() as usize;
    let boundary = len - val;
    if boundary < block + 1 || (val_fraction > 0.0 && val < block + 1) {
        return Err(Error::Other(format!(
            "corpus of {len} tokens is too short: train and validation parts each need more than one block of {block} tokens; use more text or a smaller block_size"
        )));
    }
    Ok((0..boundary, boundary..len))
}

/// Draws `b` windows from `range`: (ids, targets), each B·T, targets = ids shifted by one. Takes
/// exactly `b` draws of `rng` (`Rng::skip` relies on it).
pub fn sample(
    tokens: &impl Tokens,
    range: &std::ops::Range<usize>,
    b: usize,
    t: usize,
    rng: &mut Rng,
) -> (Vec<u32>, Vec<u32>) {
    let starts = (range.len() - t) as u64;
    let (mut ids, mut targets) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
    for _ in 0..b {
        let s = range.start + rng.below(starts) as usize;
        ids.extend((s..s + t).map(|i| tokens.get(i)));
        targets.extend((s + 1..s + t + 1).map(|i| tokens.get(i)));
    }
    (ids, targets)
}

/// Consecutive non-overlapping windows of `range` (for evaluation), batched by `b`; a final
/// partial window is dropped. Returns (ids, targets, windows in this batch) per batch; the last batch
/// is padded with copies of its first window, and `windows` says how many are real.
pub fn sequential(
    tokens: &impl Tokens,
    range: &std::ops::Range<usize>,
    b: usize,
    t: usize,
) -> Vec<(Vec<u32>, Vec<u32>, usize)> {
    let n = range.len().saturating_sub(1) / t;
    let mut out = Vec::new();
    let mut w = 0;
    while w < n {
        let real = b.min(n - w);
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        for k in 0..b {
            let s = range.start + (w + if k < real { k } else { 0 }) * t;
            ids.extend((s..s + t).map(|i| tokens.get(i)));
            targets.extend((s + 1..s + t + 1).map(|i| tokens.get(i)));
        }
        out.push((ids, targets, real));
        w += real;
    }
    out
}
