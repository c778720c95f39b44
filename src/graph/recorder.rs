//! The recorder: the model calls `embedding`, `layernorm`, `linear`, `attention`, `gelu`, `add`,
//! `cross_entropy` on tensor ids; each call checks shapes, creates the output tensors and records
//! one `Node`. The forward dispatch list is one `forward_dispatches` away.

use super::tensor::{Class, DType, TensorId, Tensors};
use crate::error::{Error, Result};
use crate::ops::attention::Attention;
use crate::ops::embedding::Embedding;
use crate::ops::layernorm::LayerNorm;
use crate::ops::matmul::{Epilogue, Matmul};
use crate::ops::xent::CrossEntropy;
use crate::ops::{gelu, reduce, residual, Dispatch};

/// One recorded forward op with every tensor it reads, writes and saves for backward.
#[derive(Debug, Clone)]
pub enum Node {
    /// One shard of the token table (all of it unless it exceeds a binding); `first` also owns wpe.
    Embedding {
        op: Embedding,
        out: TensorId,
        ids: TensorId,
        wte: TensorId,
        wpe: TensorId,
        buckets: TensorId,
        first: bool,
    },
    LayerNorm {
        op: LayerNorm,
        out: TensorId,
        mean: TensorId,
        rstd: TensorId,
        x: TensorId,
        w: TensorId,
        b: TensorId,
    },
    /// out = x @ W (+ bias). Set by `Graph::fuse`: `res`, a residual stream added to out; `gelu`,
    /// where the forward also writes gelu(out); `gelu_in`, where x = gelu(gelu_in) and the backward
    /// writes d(gelu_in) straight from the dx product (a backward-only input, not in `slots`);
    /// `bias_in_dw`, where the dW product also writes the bias gradient.
    Matmul {
        op: Matmul,
        out: TensorId,
        x: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        res: Option<TensorId>,
        gelu: Option<TensorId>,
        gelu_in: Option<TensorId>,
        bias_in_dw: bool,
    },
    Attention {
        op: Attention,
        out: TensorId,
        lse: TensorId,
        qkv: TensorId,
    },
    Gelu {
        n: usize,
        out: TensorId,
        x: TensorId,
    },
    /// out = a + b. With `alias` (set by `Graph::fuse`) its backward runs nothing: a's and b's
    /// gradients are dout's buffer.
    Residual {
        n: usize,
        out: TensorId,
        a: TensorId,
        b: TensorId,
        alias: bool,
    },
    /// Per-row cross-entropy of one chunk of rows; `scale` is d(mean loss)/d(row loss).
    CrossEntropy {
        op: CrossEntropy,
        losses: TensorId,
        lse: TensorId,
        logits: TensorId,
        targets: TensorId,
        scale: f32,
    },
    /// `out[index]` (an Output tensor) = mean of `losses` (rows).
    Mean {
        rows: usize,
        out: TensorId,
        index: usize,
        losses: TensorId,
    },
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub t: Tensors,
    pub nodes: Vec<Node>,
    /// Bytes one storage binding may cover; bigger tensors are split into windows.
    pub max_binding: u64,
    /// Storage type of activations (and so of their gradients); statistics stay f32.
    pub act: DType,
    /// Transformer block scopes as (first node index, block): nodes from that index on belong to
    /// the block (None: outside every block) until the next marker. Recomputation reads them.
    pub scopes: Vec<(usize, Option<usize>)>,
    /// Logits chunks whose gradient the step takes right after their forward (`lm_head_loss`):
    /// the nodes that write or read one form a group, see `eager_group`.
    pub eager: Vec<TensorId>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph {
            t: Tensors::default(),
            nodes: Vec::new(),
            max_binding: u64::MAX,
            act: DType::F32,
            scopes: Vec::new(),
            eager: Vec::new(),
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The fewest rows whose windows of every tensor in `widths` ((row width, element type) pairs)
/// span whole 256-byte units, so chunks of a multiple of it start where a binding may.
fn row_step(widths: &[(usize, DType)]) -> usize {
    let unit = |w: usize, d: DType| {
        let e = (256 / d.size()) as usize;
        e / gcd(w.max(1), e)
    };
    widths.iter().map(|&(w, d)| unit(w, d)).fold(1, |a, b| a * b / gcd(a, b))
}

fn shape_err(what: &str, got: &[usize], want: &str) -> Error {
    Error::Graph(format!("{what}: got shape {got:?}, expected {want}"))
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn shape(&self, id: TensorId) -> &[usize] {
        &self.t.get(id).shape
    }

    fn name(&self, id: TensorId) -> &str {
        &self.t.get(id).name
    }

    /// Nodes recorded from here on belong to transformer block `l` (until the next `begin_block`
    /// or `end_block`). The model always marks its blocks; only scheduling policies read this.
    pub fn begin_block(&mut self, l: usize) {
        self.scopes.push((self.nodes.len(), Some(l)));
    }

    /// Nodes recorded from here on belong to no block.
    pub fn end_block(&mut self) {
        self.scopes.push((self.nodes.len(), None));
    }

    /// The eager group (an index into `eager`) node `i` belongs to, if any.
    pub fn eager_group(&self, i: usize) -> Option<usize> {
        let node = &self.nodes[i];
        let touched: Vec<TensorId> = node.writes().into_iter().chain(node.reads()).map(|t| self.t.root(t)).collect();
        self.eager.iter().position(|e| touched.contains(e))
    }

    /// The block node `i` was recorded in, if any.
    pub fn block_of(&self, i: usize) -> Option<usize> {
        self.scopes.iter().take_while(|&&(start, _)| start <= i).last().and_then(|&(_, b)| b)
    }

    fn act(&mut self, name: String, shape: &[usize]) -> TensorId {
        self.t.add(name, shape, self.act, Class::Activation)
    }

    /// Statistics saved for backward (LayerNorm mean/rstd, attention log-sum-exp): always f32.
    fn stat(&mut self, name: String, shape: &[usize]) -> TensorId {
        self.t.f32(name, shape, Class::Activation)
    }

    /// ids (B, T) u32 → wte[ids] + wpe[0..T]: (B, T, C).
    pub fn embedding(&mut self, ids: TensorId, wte: TensorId, wpe: TensorId) -> Result<TensorId> {
        let (bt, e, p) = (self.shape(ids).to_vec(), self.shape(wte).to_vec(), self.shape(wpe).to_vec());
        let [b, t] = bt[..] else {
            return Err(shape_err("embedding ids", &bt, "(B, T)"));
        };
        let [v, c] = e[..] else {
            return Err(shape_err("wte", &e, "(V, C)"));
        };
        if p.len() != 2 || p[1] != c || p[0] < t {
            return Err(shape_err("wpe", &p, &format!("(block >= {t}, {c})")));
        }
        let out = self.act("embed".into(), &[b, t, c]);
        let whole = Embedding { b, t, c, v, block: p[0], v0: 0 };
        let buckets = self.t.u32("embed.buckets", &[whole.buckets_len()], Class::Input);
        // A token table larger than one binding is taken in shards of rows; each shard writes the
        // positions whose token it holds. The tied lm_head shards wte the same way.
        for (i, (v0, vn)) in self.row_chunks(v, &[(c, self.act)]).into_iter().enumerate() {
            let op = Embedding { v: vn, v0, ..whole };
            let wte = self.window(wte, v0 * c, vn * c);
            self.nodes.push(Node::Embedding { op, out, ids, wte, wpe, buckets, first: i == 0 });
        }
        Ok(out)
    }

    /// `x` itself when the window is all of it, else a view.
    fn window(&mut self, x: TensorId, offset: usize, len: usize) -> TensorId {
        if offset == 0 && len == self.t.get(x).numel() {
            x
        } else {
            self.t.view(x, offset, len)
        }
    }

    /// LayerNorm over the last dimension with weight w (C) and bias b (C).
    pub fn layernorm(&mut self, name: &str, x: TensorId, w: TensorId, b: TensorId) -> Result<TensorId> {
        let xs = self.shape(x).to_vec();
        let c = *xs.last().unwrap();
        if self.shape(w) != [c] || self.shape(b) != [c] {
            return Err(shape_err(&format!("{name} weight/bias"), self.shape(w), &format!("({c})")));
        }
        let rows = xs.iter().product::<usize>() / c;
        let op = LayerNorm { rows, c, eps: 1e-5 };
        let out = self.act(name.to_string(), &xs);
        let mean = self.stat(format!("{name}.mean"), &[rows]);
        let rstd = self.stat(format!("{name}.rstd"), &[rows]);
        self.nodes.push(Node::LayerNorm { op, out, mean, rstd, x, w, b });
        Ok(out)
    }

    /// x (.., K) @ W (K, N) + bias (N); with `trans_w`, W is (N, K) (the tied lm_head).
    pub fn linear(
        &mut self,
        name: &str,
        x: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        trans_w: bool,
    ) -> Result<TensorId> {
        let xs = self.shape(x).to_vec();
        let ws = self.shape(w).to_vec();
        let k = *xs.last().unwrap();
        let [w0, w1] = ws[..] else {
            return Err(shape_err(self.name(w), &ws, "2-D"));
        };
        let (wk, n) = if trans_w { (w1, w0) } else { (w0, w1) };
        if wk != k {
            return Err(shape_err(&format!("{name}: weight {}", self.name(w)), &ws, &format!("inner dimension {k}")));
        }
        if let Some(bi) = bias {
            if self.shape(bi) != [n] {
                return Err(shape_err(&format!("{name} bias"), self.shape(bi), &format!("({n})")));
            }
        }
        let m = xs.iter().product::<usize>() / k;
        let mut os = xs.clone();
        *os.last_mut().unwrap() = n;
        let out = self.act(name.to_string(), &os);
        // Operands larger than one binding: rows of x/out in chunks, and an (N, K) weight (the
        // tied lm_head's wte) in shards of N rows; each (chunk, shard) pair is one product.
        let fits = |elems: usize| elems as u64 * self.act.size() <= self.max_binding;
        if !trans_w && !fits(k * n) {
            return Err(Error::Graph(format!(
                "{name}: weight {} ({k} x {n} {:?}) exceeds one storage binding ({} bytes); only (N, K) weights are split",
                self.name(w),
                self.act,
                self.max_binding
            )));
        }
        let shards = if trans_w { self.row_chunks(n, &[(k, self.act)]) } else { vec![(0, n)] };
        if shards.len() > 1 && bias.is_some() {
            return Err(Error::Graph(format!("{name}: a weight split across bindings cannot take a bias")));
        }
        for (r0, rm) in self.row_chunks(m, &[(k, self.act), (n, self.act)]) {
            let xv = self.window(x, r0 * k, rm * k);
            let ov = self.window(out, r0 * n, rm * n);
            for &(n0, nn) in &shards {
                let wv = self.window(w, n0 * k, nn * k);
                let bv = bias.map(|b| self.window(b, n0, nn));
                let op = Matmul { m: rm, k, n: nn, trans_w, out_stride: n, out_col: n0 };
                self.nodes.push(Node::Matmul {
                    op,
                    out: ov,
                    x: xv,
                    w: wv,
                    bias: bv,
                    res: None,
                    gelu: None,
                    gelu_in: None,
                    bias_in_dw: false,
                });
            }
        }
        Ok(out)
    }

    /// Causal self-attention over qkv (B, T, 3C) with `nh` heads → (B, T, C).
    pub fn attention(&mut self, name: &str, qkv: TensorId, nh: usize) -> Result<TensorId> {
        let s = self.shape(qkv).to_vec();
        let [b, t, c3] = s[..] else {
            return Err(shape_err(name, &s, "(B, T, 3C)"));
        };
        if c3 % 3 != 0 || (c3 / 3) % nh != 0 {
            return Err(shape_err(name, &s, &format!("3C with C divisible by {nh} heads")));
        }
        let c = c3 / 3;
        let out = self.act(name.to_string(), &[b, t, c]);
        let lse = self.stat(format!("{name}.lse"), &[b, nh, t]);
        // Sequences are independent: more than one binding holds takes several dispatches.
        for (n, [out, lse, qkv]) in self.windows(b, [(out, t * c), (lse, nh * t), (qkv, t * c3)]) {
            let op = Attention { b: n, t, nh, hs: c / nh };
            self.nodes.push(Node::Attention { op, out, lse, qkv });
        }
        Ok(out)
    }

    /// GELU, in windows of rows where the MLP's 4C-wide rows exceed one binding. (The residual
    /// stream, B·T·C, is bound whole by the embedding, LayerNorms and adds.)
    pub fn gelu(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let s = self.shape(x).to_vec();
        let out = self.act(name.to_string(), &s);
        let (width, rows) = (*s.last().unwrap(), s.iter().product::<usize>() / s.last().unwrap());
        for (n, [out, x]) in self.windows(rows, [(out, width), (x, width)]) {
            self.nodes.push(Node::Gelu { n: n * width, out, x });
        }
        Ok(out)
    }

    pub fn add(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        let s = self.shape(a).to_vec();
        if self.shape(b) != s {
            return Err(shape_err(name, self.shape(b), &format!("{s:?}")));
        }
        let out = self.act(name.to_string(), &s);
        self.nodes.push(Node::Residual { n: s.iter().product(), out, a, b, alias: false });
        Ok(out)
    }

    /// The tensors' windows over chunks of `rows` rows (each given with its row width in
    /// elements) that fit one binding: `(rows in the chunk, windows)`, the tensors themselves
    /// when one chunk holds every row.
    fn windows<const N: usize>(&mut self, rows: usize, tensors: [(TensorId, usize); N]) -> Vec<(usize, [TensorId; N])> {
        let widths: Vec<(usize, DType)> = tensors.iter().map(|&(t, w)| (w, self.t.get(t).dtype)).collect();
        self.row_chunks(rows, &widths)
            .into_iter()
            .map(|(r0, n)| (n, tensors.map(|(t, w)| self.window(t, r0 * w, n * w))))
            .collect()
    }

    /// Mean cross-entropy of logits (.., V) against targets (..) u32, written to `loss[index]`.
    pub fn cross_entropy(&mut self, logits: TensorId, targets: TensorId, loss: TensorId, index: usize) -> Result<()> {
        let s = self.shape(logits).to_vec();
        let v = *s.last().unwrap();
        let rows = s.iter().product::<usize>() / v;
        let (losses, lse) = self.xent_outputs(targets, rows)?;
        self.xent_rows(logits, 0, targets, losses, lse, rows);
        self.nodes.push(Node::Mean { rows, out: loss, index, losses });
        Ok(())
    }

    /// The tied lm_head (x (.., C) @ wte (V, C)^T) and the mean cross-entropy against targets,
    /// `chunk` rows at a time, written to `loss[index]`. With several chunks each has its own
    /// logits tensor, and the step takes a chunk's gradient (dlogits, its rows of dx, its share of
    /// dwte) right after its loss (`eager`), so only one chunk of logits is ever held. Returns the
    /// logits when one chunk holds them all.
    pub fn lm_head_loss(
        &mut self,
        x: TensorId,
        wte: TensorId,
        targets: TensorId,
        loss: TensorId,
        index: usize,
        chunk: usize,
    ) -> Result<Option<TensorId>> {
        let c = *self.shape(x).last().unwrap();
        let rows = self.t.get(x).numel() / c;
        let (losses, lse) = self.xent_outputs(targets, rows)?;
        // A chunk's rows of x must start on a binding offset boundary.
        let step = row_step(&[(c, self.act)]);
        let per = if rows <= chunk { rows } else { (chunk / step).max(1) * step };
        let chunks: Vec<(usize, usize)> = (0..rows).step_by(per.max(1)).map(|r0| (r0, per.min(rows - r0))).collect();
        let mut whole = None;
        for (i, &(r0, n)) in chunks.iter().enumerate() {
            let name = if chunks.len() == 1 { "logits".to_string() } else { format!("logits.{i}") };
            let xv = self.window(x, r0 * c, n * c);
            if xv != x {
                self.t.list[xv.index()].shape = vec![n, c];
            }
            let logits = self.linear(&name, xv, wte, None, true)?; // (n, V)
            self.xent_rows(logits, r0, targets, losses, lse, rows);
            if chunks.len() == 1 {
                whole = Some(logits);
            } else {
                self.eager.push(logits);
            }
        }
        self.nodes.push(Node::Mean { rows, out: loss, index, losses });
        Ok(whole)
    }

    /// The per-row losses (kept readable after the step: evaluation counts rows) and log-sum-exps.
    fn xent_outputs(&mut self, targets: TensorId, rows: usize) -> Result<(TensorId, TensorId)> {
        if self.t.get(targets).numel() != rows {
            return Err(shape_err("targets", self.shape(targets), &format!("{rows} positions")));
        }
        Ok((self.t.f32("xent.losses", &[rows], Class::Output), self.t.f32("xent.lse", &[rows], Class::Activation)))
    }

    /// Cross-entropy nodes for `logits` (n, V), rows row0.. of the `rows`-row loss; logits larger
    /// than one binding are taken in windows of rows.
    fn xent_rows(
        &mut self,
        logits: TensorId,
        row0: usize,
        targets: TensorId,
        losses: TensorId,
        lse: TensorId,
        rows: usize,
    ) {
        let s = self.shape(logits).to_vec();
        let v = *s.last().unwrap();
        let n = s.iter().product::<usize>() / v;
        for (r0, m) in self.row_chunks(n, &[(v, self.act)]) {
            let lg = if m == n { logits } else { self.t.view(logits, r0 * v, m * v) };
            let op = CrossEntropy { rows: m, v, row0: row0 + r0 };
            self.nodes.push(Node::CrossEntropy { op, losses, lse, logits: lg, targets, scale: 1.0 / rows as f32 });
        }
    }

    /// Splits `rows` rows into chunks whose windows of every tensor (one per (row width, element
    /// type) in `widths`) fit one binding and start on a 256-byte boundary, as binding offsets
    /// must: with e elements per 256 bytes, chunk starts are multiples of e / gcd(width, e) rows.
    pub fn row_chunks(&self, rows: usize, widths: &[(usize, DType)]) -> Vec<(usize, usize)> {
        let widest = widths.iter().map(|&(w, d)| w as u64 * d.size()).max().unwrap_or(4).max(1);
        let fit = (self.max_binding / widest).max(1) as usize;
        let per = if fit >= rows {
            rows
        } else {
            let step = row_step(widths);
            (fit / step).max(1) * step
        };
        (0..rows).step_by(per).map(|r0| (r0, per.min(rows - r0))).collect()
    }

    /// The forward dispatch list, one dispatch per node in recording order.
    pub fn forward_dispatches(&self) -> Vec<Dispatch> {
        self.nodes.iter().map(Node::forward).collect()
    }
}

impl Node {
    /// The node's forward dispatch.
    pub fn forward(&self) -> Dispatch {
        match *self {
            Node::Embedding { op, out, ids, wte, wpe, .. } => op.forward(out, ids, wte, wpe),
            Node::LayerNorm { op, out, mean, rstd, x, w, b } => op.forward(out, mean, rstd, x, w, b),
            Node::Matmul { op, out, x, w, bias, res, gelu, .. } => {
                op.forward_with(out, x, w, Epilogue { bias, res, gelu })
            }
            Node::Attention { op, out, lse, qkv } => op.forward(out, lse, qkv),
            Node::Gelu { n, out, x } => gelu::forward(out, x, n),
            Node::Residual { n, out, a, b, .. } => residual::forward(out, a, b, n),
            Node::CrossEntropy { op, losses, lse, logits, targets, .. } => op.forward(losses, lse, logits, targets),
            Node::Mean { rows, out, index, losses } => reduce::sum_final(out, index, losses, rows, 1.0 / rows as f32),
        }
    }

    /// The tensors the forward dispatch writes and those it reads, as slots that can be rebound.
    pub fn slots(&mut self) -> (Vec<&mut TensorId>, Vec<&mut TensorId>) {
        match self {
            Node::Embedding { out, ids, wte, wpe, buckets, .. } => (vec![out], vec![ids, wte, wpe, buckets]),
            Node::LayerNorm { out, mean, rstd, x, w, b, .. } => (vec![out, mean, rstd], vec![x, w, b]),
            Node::Matmul { out, x, w, bias, res, gelu, .. } => (
                [out].into_iter().chain(gelu.as_mut()).collect(),
                [x, w].into_iter().chain(bias.as_mut()).chain(res.as_mut()).collect(),
            ),
            Node::Attention { out, lse, qkv, .. } => (vec![out, lse], vec![qkv]),
            Node::Gelu { out, x, .. } => (vec![out], vec![x]),
            Node::Residual { out, a, b, .. } => (vec![out], vec![a, b]),
            Node::CrossEntropy { losses, lse, logits, targets, .. } => (vec![losses, lse], vec![logits, targets]),
            Node::Mean { out, losses, .. } => (vec![out], vec![losses]),
        }
    }

    /// The tensors the forward dispatch writes.
    pub fn writes(&self) -> Vec<TensorId> {
        self.clone().slots().0.into_iter().map(|t| *t).collect()
    }

    /// The tensors the forward dispatch reads.
    pub fn reads(&self) -> Vec<TensorId> {
        self.clone().slots().1.into_iter().map(|t| *t).collect()
    }
}
