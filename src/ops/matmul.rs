//! Matrix products of linear layers in the Hugging Face Conv1D layout (W is (K, N)) and of the tied
//! lm_head (W = wte is (N, K)). Shader: `shaders/matmul.wgsl` (+ `matmul_subgroup.wgsl`,
//! `matmul_coop.wgsl`): one strided product C = A B in four variants (`Variant`), which the
//! compiled step picks per adapter (`gpu/tuning.rs`).

use super::reduce::COLSUM_CHUNK;
use super::{grid, Dispatch, Family, Tunable, Uniform, WG};
use crate::gpu::StorageType;
use crate::graph::TensorId;

/// Rows and columns of C one invocation computes (a 16 x 16 register tile in the shader).
pub const TILE: usize = 16;

/// Invocations per workgroup of the register and subgroup variants (the shaders' default `WG`);
/// a product uses `LANES_C * lanes_r` of them, the rest return at once.
const MAX_WG: usize = WG as usize;

/// Column lanes a register-variant workgroup may have. Each value is a pipeline of its own (an
/// override constant, which lavapipe needs to keep the B loads fast: as a uniform the products
/// ran 1.5x slower), and lavapipe compiles one for about 3.5 s: two values keep a step at four
/// matmul pipelines, where choosing from 1 ..= 16 made ten, for under 1% of padded work
/// (the 65-column lm_head, 0.4% of a shakespeare-char step, computes 128 columns instead of 80).
const LANE_CHOICES: [usize; 2] = [8, 16];

/// Workgroups a product should have at least, where its rows allow (see `Product::dispatch`).
const MIN_GROUPS: usize = 8;

/// out (M, N) = x (M, K) @ W + bias (N). W is (K, N) (Hugging Face Conv1D layout), or with
/// `trans_w` (N, K): the tied lm_head computes logits = x @ wte^T with wte (V, C).
///
/// Every entry point binds the operands of C = A B: 1 = C (written), 2 = A, 3 = B; for the
/// forward with a bias 4 = bias and 5 = the residual it adds; and 6 = the GELU tensor of a fused
/// epilogue (`Epilogue`, `backward_dx_gelu`). Bindings a dispatch does not read are spare (the
/// executor binds placeholders). The bias gradient is dout's column sums: `reduce::colsum`, or
/// (`backward_dw_bias`) the dW product's by-product, written through binding 4.
///
/// `out_stride` and `out_col` place out in a wider matrix: out[i, j] is element
/// `i * out_stride + out_col + j` of the bound out (and dout) tensor. They let a weight larger than
/// one binding (the lm_head's wte) run in shards of N rows, each writing its columns of the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matmul {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_w: bool,
    pub out_stride: usize,
    pub out_col: usize,
}

/// What a forward product adds on its way out: a bias, and where `graph::fuse` folded them in,
/// the residual stream (M, N) and GELU (the forward then also writes gelu(out) to that tensor).
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue {
    pub bias: Option<TensorId>,
    pub res: Option<TensorId>,
    pub gelu: Option<TensorId>,
}

/// The kernels of `shaders/matmul.wgsl`. Adding one: its entry points in the shader (one per form
/// of `Variant::entry`), a row in `entry` and `needs`, and its grid in `Product::dispatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// A 16 x 16 register tile per invocation, no workgroup memory: the fastest on CPU adapters.
    Register,
    /// 64 x 64 workgroup tiles staged through workgroup memory (8.5 KiB), 4 x 4 per invocation:
    /// for GPUs.
    Tiled,
    /// `Register` with A's rows shared across a subgroup of 8 (`shaders/matmul_subgroup.wgsl`):
    /// the same sums bit for bit, 2 storage loads of A per k instead of 16. Needs subgroups exactly
    /// 8 wide (lavapipe on AVX2, some Intel GPUs).
    Subgroup,
    /// Tensor cores through wgpu's cooperative matrices (`shaders/matmul_coop.wgsl`): 32 x 32 tiles
    /// of C per subgroup of 32, f16 x f16 -> f32, for f16 storage. Not yet run on a GPU, so it is
    /// used only when asked (`--set matmul=coop`), never by timing or the heuristic.
    Coop,
}

impl Variant {
    pub const ALL: [Variant; 4] = [Variant::Register, Variant::Tiled, Variant::Subgroup, Variant::Coop];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Register => "register",
            Variant::Tiled => "tiled",
            Variant::Subgroup => "subgroup",
            Variant::Coop => "coop",
        }
    }

    /// Whether it computes in this storage type (`coop` multiplies f16 operands only).
    pub fn allows(self, storage: StorageType) -> bool {
        self != Variant::Coop || storage == StorageType::F16
    }

    /// The shader module it lives in.
    pub fn family(self) -> Family {
        match self {
            Variant::Subgroup => Family::MatmulSubgroup,
            Variant::Coop => Family::MatmulCoop,
            _ => Family::Matmul,
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s)
    }

    /// The adapter limits it needs: (invocations per workgroup, bytes of workgroup memory).
    pub fn needs(self) -> (u32, u32) {
        match self {
            Variant::Register | Variant::Subgroup => (WG, 0),
            Variant::Tiled => (256, 2 * 272 * 16),
            Variant::Coop => (32, 2 * 512 * 2 + 1024 * 4),
        }
    }

    fn entry(self, pass: Pass) -> &'static str {
        // Plain, with a bias, fused forward (residual or GELU written), dx through GELU's
        // derivative, and dW with the bias gradient: the fused ones are entry points of their own,
        // so the plain ones keep short stores and loops (see `store_row` in the shader).
        let form = match pass {
            Pass::Forward { res: true, .. } | Pass::Forward { gelu: true, .. } => 2,
            Pass::Forward { bias: true, .. } => 1,
            Pass::Dx { gelu: true } => 3,
            Pass::Dw { bias: Some(_) } => 4,
            _ => 0,
        };
        let names = match self {
            Variant::Register => [
                "matmul_product",
                "matmul_forward",
                "matmul_forward_fused",
                "matmul_product_gelu",
                "matmul_product_colsum",
            ],
            Variant::Tiled => [
                "matmul_product_tiled",
                "matmul_forward_tiled",
                "matmul_forward_fused_tiled",
                "matmul_product_gelu_tiled",
                "matmul_product_colsum_tiled",
            ],
            Variant::Subgroup => [
                "matmul_product_subgroup",
                "matmul_forward_subgroup",
                "matmul_forward_fused_subgroup",
                "matmul_product_gelu_subgroup",
                "matmul_product_colsum_subgroup",
            ],
            Variant::Coop => [
                "matmul_product_coop",
                "matmul_forward_coop",
                "matmul_forward_fused_coop",
                "matmul_product_gelu_coop",
                "matmul_product_colsum_coop",
            ],
        };
        names[form]
    }
}

/// Which product of a linear layer a dispatch computes, with the epilogue `graph::fuse` folded
/// into it: a forward with a bias may add a residual (M, N) (`res`, for `x + linear(y)`); a
/// forward may also write GELU of its output (`gelu`, for `gelu(linear(x))`); and a dx product
/// may multiply by GELU's derivative (`gelu`, writing the gradient of that GELU's input); a dW
/// product may also write the bias gradient (`bias`: Some(whether it accumulates)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    Forward { bias: bool, res: bool, gelu: bool },
    Dx { gelu: bool },
    Dw { bias: Option<bool> },
}

impl Pass {
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward { .. } => "forward",
            Pass::Dx { .. } => "dx",
            Pass::Dw { .. } => "dW",
        }
    }
}

/// A product with everything but its variant: what choosing a variant for a dispatch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuned {
    pub product: Product,
    pub pass: Pass,
    pub acc: bool,
    /// The variant the dispatch is on now.
    pub variant: Variant,
}

impl Tuned {
    /// The dispatch of this product on `variant`, without its tensors.
    pub fn dispatch(&self, variant: Variant) -> Dispatch {
        self.product.dispatch(variant, self.pass, self.acc)
    }
}

/// C (rows, cols) = A (rows, inner) B (inner, cols) with A[i, k] = a[a_off + i * a_rs + k * a_cs],
/// B[k, j] = b[k * b_rs + j * b_cs] and C[i, j] = c[c_off + i * c_rs + j].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Product {
    pub rows: usize,
    pub cols: usize,
    pub inner: usize,
    pub a: (usize, usize),
    pub b: (usize, usize),
    pub a_off: usize,
    pub c_rs: usize,
    pub c_off: usize,
}

impl Product {
    /// Column lanes of a workgroup (`LANES_C` in the shader), 16 columns each: of `LANE_CHOICES`,
    /// the one that pads C's columns least (N = 128 gets 8, 512 gets 16, 65 gets 8: 128 columns),
    /// the widest on a tie.
    fn col_lanes(&self) -> usize {
        let padded = |lc: usize| self.cols.div_ceil(TILE * lc) * TILE * lc;
        LANE_CHOICES.into_iter().rev().min_by_key(|&lc| padded(lc)).unwrap()
    }

    /// The tile shape only changes which invocation computes an element, never its arithmetic
    /// (one f32 sum in k order), so results do not depend on it.
    fn dispatch(&self, variant: Variant, pass: Pass, acc: bool) -> Dispatch {
        let entry = variant.entry(pass);
        assert!(self.rows > 0 && self.cols > 0 && self.inner > 0, "{entry}: empty product");
        // The shader's p.res and p.gelu (1: forward writes gelu(C), 2: dx times gelu').
        let (res, gelu, colsum) = match pass {
            Pass::Forward { bias, res, gelu } => {
                assert!(bias || !(res || gelu), "{entry}: a fused epilogue needs the bias");
                (res, gelu as u32, None)
            }
            Pass::Dx { gelu } => (false, 2 * gelu as u32, None),
            Pass::Dw { bias } => (false, 0, bias),
        };
        // A multiply-add per (row, column, k), the adds of `acc` and the residual, and GELU (as
        // `ops::gelu` counts it: 9 forward, 16 backward); a column sum's add per (k, column).
        let per = 2 * self.inner + acc as usize + res as usize + [0, 9, 16][gelu as usize];
        let sums = colsum.map_or(0, |acc_b| self.cols as u64 * (self.inner + acc_b as usize) as u64);
        let flops = [self.rows, self.cols, per];
        // Bindings an entry point declares that this dispatch does not read: the residual of a
        // biased forward that adds none, and GELU's tensor where no GELU is folded in.
        let spare = [(matches!(pass, Pass::Forward { bias: true, res: false, .. }), 5), (gelu == 0, 6)];
        let spare = spare.into_iter().filter(|s| s.0).map(|s| s.1);
        let tuned = Tunable::Matmul(Tuned { product: *self, pass, acc, variant });
        if let Some(tile) = match variant {
            Variant::Tiled => Some(64),
            Variant::Coop => Some(32),
            _ => None,
        } {
            let col_groups = self.cols.div_ceil(tile);
            let groups = col_groups as u64 * self.rows.div_ceil(tile) as u64;
            let mut d = Dispatch::new(variant.family(), entry)
                .uniform(self.uniform(col_groups, acc, 0, res, gelu, colsum))
                .groups(grid(groups))
                .flops(&flops)
                .spare(spare)
                .tunable(tuned);
            d.flops += sums;
            return d;
        }
        let lc = self.col_lanes();
        let col_groups = self.cols.div_ceil(TILE * lc);
        // Row lanes: up to MAX_WG invocations, no more than the rows need, and fewer while that
        // leaves under MIN_GROUPS workgroups (lavapipe runs one workgroup per CPU thread; a GPU
        // wants many): a 128 x 128 dW would otherwise be one workgroup.
        let mut lr = (MAX_WG / lc).min(self.rows.div_ceil(TILE)).max(1);
        while lr > 1 && col_groups * self.rows.div_ceil(TILE * lr) < MIN_GROUPS {
            lr = lr.div_ceil(2);
        }
        let groups = col_groups as u64 * self.rows.div_ceil(TILE * lr) as u64;
        let mut d = Dispatch::new(variant.family(), entry)
            .constant("LANES_C", lc as f64)
            .uniform(self.uniform(col_groups, acc, lr, res, gelu, colsum))
            .groups(grid(groups))
            .flops(&flops)
            .spare(spare)
            .tunable(tuned);
        d.flops += sums;
        d
    }

    fn uniform(
        &self,
        col_groups: usize,
        acc: bool,
        lanes_r: usize,
        res: bool,
        gelu: u32,
        colsum: Option<bool>,
    ) -> Uniform {
        // The tiled and coop variants close a chunk of column sums at the end of a k stage.
        const _: () = assert!(COLSUM_CHUNK.is_multiple_of(32));
        Uniform::new()
            .u(self.rows)
            .u(self.cols)
            .u(self.inner)
            .u(self.a.0)
            .u(self.a.1)
            .u(self.b.0)
            .u(self.b.1)
            .u(col_groups)
            .u(acc as u32)
            .u(self.a_off)
            .u(self.c_rs)
            .u(self.c_off)
            .u(lanes_r)
            .u(res as u32)
            .u(gelu)
            .u(colsum == Some(true))
            .u(COLSUM_CHUNK)
    }
}

impl Matmul {
    /// A product whose out is a whole (M, N) tensor.
    pub fn new(m: usize, k: usize, n: usize, trans_w: bool) -> Self {
        Matmul { m, k, n, trans_w, out_stride: n, out_col: 0 }
    }

    /// Strides of W read as the (K, N) matrix of the forward product.
    fn w_as_kn(&self) -> (usize, usize) {
        if self.trans_w {
            (1, self.k)
        } else {
            (self.n, 1)
        }
    }

    /// out (M, N) = x (M, K) @ W + bias. Entry `matmul_forward` with a bias, `matmul_product`
    /// without one (an unused binding would change the bind group layout). Every product is built
    /// on the `register` variant; the compiled step moves it to the one the adapter runs best.
    pub fn forward(&self, out: TensorId, x: TensorId, w: TensorId, bias: Option<TensorId>) -> Dispatch {
        self.forward_with(out, x, w, Epilogue { bias, ..Epilogue::default() })
    }

    /// out (M, N) = x @ W + bias + res, and gelu(out) into `e.gelu`: the forward with whatever
    /// `graph::fuse` folded into it. A residual or GELU needs a bias (the fused entry points are
    /// biased forwards).
    pub fn forward_with(&self, out: TensorId, x: TensorId, w: TensorId, e: Epilogue) -> Dispatch {
        let pass = Pass::Forward { bias: e.bias.is_some(), res: e.res.is_some(), gelu: e.gelu.is_some() };
        if e.res.is_some() || e.gelu.is_some() {
            assert_eq!((self.out_stride, self.out_col), (self.n, 0), "an epilogue tensor matches a whole product");
        }
        let mut d = self.forward_pass(pass).arg(1, out).arg(2, x).arg(3, w);
        for (binding, t) in [(4, e.bias), (5, e.res), (6, e.gelu)] {
            if let Some(t) = t {
                d = d.arg(binding, t);
            }
        }
        d
    }

    fn forward_pass(&self, pass: Pass) -> Dispatch {
        Product {
            rows: self.m,
            cols: self.n,
            inner: self.k,
            a: (self.k, 1),
            b: self.w_as_kn(),
            a_off: 0,
            c_rs: self.out_stride,
            c_off: self.out_col,
        }
        .dispatch(Variant::Register, pass, false)
    }

    /// dx (M, K) (+)= dout (M, N) @ W^T, W^T read as (N, K) from either layout.
    pub fn backward_dx(&self, dx: TensorId, acc: bool, dout: TensorId, w: TensorId) -> Dispatch {
        self.dx_pass(false, acc).arg(1, dx).arg(2, dout).arg(3, w)
    }

    /// For x = gelu(pre): dpre (M, K) (+)= (dout @ W^T) * gelu'(pre), the dx product and GELU's
    /// backward in one pass (`graph::fuse`), so dL/dx is never stored.
    pub fn backward_dx_gelu(&self, dpre: TensorId, acc: bool, dout: TensorId, w: TensorId, pre: TensorId) -> Dispatch {
        self.dx_pass(true, acc).arg(1, dpre).arg(2, dout).arg(3, w).arg(6, pre)
    }

    fn dx_pass(&self, gelu: bool, acc: bool) -> Dispatch {
        let (rs, cs) = self.w_as_kn();
        Product {
            rows: self.m,
            cols: self.k,
            inner: self.n,
            a: (self.out_stride, 1),
            b: (cs, rs),
            a_off: self.out_col,
            c_rs: self.k,
            c_off: 0,
        }
        .dispatch(Variant::Register, Pass::Dx { gelu }, acc)
    }

    /// dW (K, N) (+)= x^T @ dout, or with `trans_w` dW (N, K) (+)= dout^T @ x.
    pub fn backward_dw(&self, dw: TensorId, acc: bool, dout: TensorId, x: TensorId) -> Dispatch {
        self.dw_pass(dw, acc, dout, x, None)
    }

    /// `backward_dw` and dbias (N) (+)= the column sums of dout (accumulating on `acc_b`) in one
    /// pass: the product loads dout as B, so the sums cost an add per element and no dispatch of
    /// their own. The same bits as `reduce::colsum` (the same chunked order). (K, N) weights only.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_dw_bias(
        &self,
        dw: TensorId,
        acc: bool,
        db: TensorId,
        acc_b: bool,
        dout: TensorId,
        x: TensorId,
    ) -> Dispatch {
        assert!(!self.trans_w, "the bias gradient comes with the (K, N) layout's dW product");
        self.dw_pass(dw, acc, dout, x, Some(acc_b)).arg(4, db)
    }

    fn dw_pass(&self, dw: TensorId, acc: bool, dout: TensorId, x: TensorId, bias: Option<bool>) -> Dispatch {
        let (prod, a, b) = if self.trans_w {
            let p = Product {
                rows: self.n,
                cols: self.k,
                inner: self.m,
                a: (1, self.out_stride),
                b: (self.k, 1),
                a_off: self.out_col,
                c_rs: self.k,
                c_off: 0,
            };
            (p, dout, x)
        } else {
            let p = Product {
                rows: self.k,
                cols: self.n,
                inner: self.m,
                a: (1, self.k),
                b: (self.out_stride, 1),
                a_off: 0,
                c_rs: self.n,
                c_off: 0,
            };
            assert_eq!(self.out_col, 0, "only (N, K) weights are sharded");
            (p, x, dout)
        };
        prod.dispatch(Variant::Register, Pass::Dw { bias }, acc).arg(1, dw).arg(2, a).arg(3, b)
    }

    /// W[k, j] of the forward product, from either layout.
    fn w_at(&self, w: &[f64], k: usize, j: usize) -> f64 {
        if self.trans_w {
            w[j * self.k + k]
        } else {
            w[k * self.n + j]
        }
    }

    pub fn cpu_forward(&self, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
        let (m, k, n) = (self.m, self.k, self.n);
        assert_eq!(x.len(), m * k);
        assert_eq!(w.len(), k * n);
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |b| b[j]);
                for kk in 0..k {
                    s += x[i * k + kk] * self.w_at(w, kk, j);
                }
                out[i * n + j] = s;
            }
        }
        out
    }

    /// (dx (M, K), dW in W's layout, dbias (N)) for the loss gradient dout (M, N).
    pub fn cpu_backward(&self, dout: &[f64], x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (m, k, n) = (self.m, self.k, self.n);
        assert_eq!(dout.len(), m * n);
        let mut dx = vec![0.0; m * k];
        let mut dw = vec![0.0; k * n];
        let mut db = vec![0.0; n];
        for i in 0..m {
            for j in 0..n {
                let g = dout[i * n + j];
                db[j] += g;
                for kk in 0..k {
                    dx[i * k + kk] += g * self.w_at(w, kk, j);
                    let wi = if self.trans_w { j * k + kk } else { kk * n + j };
                    dw[wi] += g * x[i * k + kk];
                }
            }
        }
        (dx, dw, db)
    }
}
