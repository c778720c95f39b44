//! Token + position embedding, and its backward without atomics (dwte through a host-built bucket
//! table of positions grouped by token). Shader: `shaders/embedding.wgsl`.

use super::{reduce, Dispatch, Family, Uniform, WG};
use crate::graph::TensorId;

/// Shapes: B batch, T sequence, C channels, V rows of the bound wte window; wpe has `block` rows
/// (block >= T). A token table larger than one binding is bound in shards: the window holds
/// tokens v0 .. v0 + V, and each dispatch handles only the positions whose token it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedding {
    pub b: usize,
    pub t: usize,
    pub c: usize,
    pub v: usize,
    pub block: usize,
    pub v0: usize,
}

impl Embedding {
    /// Positions in the batch (N = B * T).
    fn n(&self) -> usize {
        self.b * self.t
    }

    fn params(&self, acc_wpe: bool) -> Uniform {
        assert!(self.t <= self.block, "sequence length {} exceeds the {} rows of wpe", self.t, self.block);
        Uniform::new().u(self.b).u(self.t).u(self.c).u(self.v).u(self.block).u(acc_wpe as u32).u(self.v0)
    }

    /// out (B, T, C) = wte[ids] + wpe[t]; ids (B * T) u32.
    pub fn forward(&self, out: TensorId, ids: TensorId, wte: TensorId, wpe: TensorId) -> Dispatch {
        Dispatch::new(Family::Embedding, "embedding_forward")
            .uniform(self.params(false))
            .arg(1, out)
            .arg(2, ids)
            .arg(3, wte)
            .arg(4, wpe)
            .flops(&[self.n(), self.c])
            .threads((self.n() * self.c) as u64, WG)
    }

    /// u32 elements of the bucket table: 3 * B * T + 2, whatever the tokens.
    pub fn buckets_len(&self) -> usize {
        3 * self.n() + 2
    }

    /// The bucket table for `ids` (B * T): `[U, tokens (N), starts (N + 1), positions (N)]` with
    /// N = B * T, U distinct tokens ascending, `starts[U] = N`, positions (flat b * T + t) grouped
    /// by token and ascending within a token; unused slots are 0.
    pub fn buckets(&self, ids: &[u32]) -> Vec<u32> {
        let n = self.n();
        assert_eq!(ids.len(), n, "ids must hold B * T tokens");
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.v0 + self.v) {
            panic!("token id {bad} out of range for vocabulary {}", self.v0 + self.v);
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&i| (ids[i as usize], i)); // by token, then position
        let mut table = vec![0u32; self.buckets_len()];
        let mut u = 0usize;
        let mut prev = None;
        for (k, &pos) in order.iter().enumerate() {
            let tok = ids[pos as usize];
            if prev != Some(tok) {
                prev = Some(tok);
                table[1 + u] = tok;
                table[1 + n + u] = k as u32;
                u += 1;
            }
            table[2 + 2 * n + k] = pos;
        }
        table[0] = u as u32;
        table[1 + n + u] = n as u32;
        table
    }

    /// dwte (V, C) (+)= scatter of dout by token (tokens of this window only); with `dwpe` =
    /// Some((tensor, acc)), dwpe (block, C) (+)= sum over b of dout. `buckets` holds `buckets(ids)`.
    /// When `!acc_wte` dwte is zeroed first (rows of tokens absent from the batch get 0); when
    /// `acc_wte` those rows keep their value.
    pub fn backward(
        &self,
        dwte: TensorId,
        acc_wte: bool,
        dwpe: Option<(TensorId, bool)>,
        dout: TensorId,
        buckets: TensorId,
    ) -> Vec<Dispatch> {
        let mut d = Vec::with_capacity(3);
        if !acc_wte {
            d.push(reduce::zero(dwte, self.v * self.c));
        }
        d.push(
            Dispatch::new(Family::Embedding, "embedding_backward_wte")
                .uniform(self.params(false))
                .arg(5, dwte)
                .arg(7, dout)
                .arg(8, buckets)
                .flops(&[self.n(), self.c])
                .threads((self.n() * self.c) as u64, WG),
        );
        if let Some((dwpe, acc_wpe)) = dwpe {
            d.push(
                Dispatch::new(Family::Embedding, "embedding_backward_wpe")
                    .uniform(self.params(acc_wpe))
                    .arg(6, dwpe)
                    .arg(7, dout)
                    .flops(&[self.n(), self.c])
                    .threads((self.block * self.c) as u64, WG),
            );
        }
        d
    }

    /// out (B, T, C).
    pub fn cpu_forward(&self, ids: &[u32], wte: &[f64], wpe: &[f64]) -> Vec<f64> {
        let c = self.c;
        let mut out = vec![0.0; self.n() * c];
        for b in 0..self.b {
            for t in 0..self.t {
                let tok = ids[b * self.t + t] as usize;
                for j in 0..c {
                    out[(b * self.t + t) * c + j] = wte[tok * c + j] + wpe[t * c + j];
                }
            }
        }
        out
    }

    /// (dwte (V, C), dwpe (block, C)) given dout (B, T, C).
    pub fn cpu_backward(&self, dout: &[f64], ids: &[u32]) -> (Vec<f64>, Vec<f64>) {
        let c = self.c;
        let mut dwte = vec![0.0; self.v * c];
        let mut dwpe = vec![0.0; self.block * c];
        for b in 0..self.b {
            for t in 0..self.t {
                let tok = ids[b * self.t + t] as usize;
                for j in 0..c {
                    let g = dout[(b * self.t + t) * c + j];
                    dwte[tok * c + j] += g;
                    dwpe[t * c + j] += g;
                }
            }
        }
        (dwte, dwpe)
    }
}
