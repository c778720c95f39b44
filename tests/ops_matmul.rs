//! Matmul (Conv1D layout and the tied lm_head layout): the CPU reference backward against finite
//! differences, every WGSL entry point of every variant the adapter runs against the reference on
//! shapes off the tile sizes, and bit-identical results across runs.

mod common;
use common::*;
use wgpt::graph::TensorId;
use wgpt::ops::matmul::{Epilogue, Matmul, Variant};
use wgpt::ops::{gelu, reduce, Tunable};

/// The worst-case bound on an f32 sum of `terms` products plus `extra` roundings (the bias add,
/// the accumulate add), given the sums of absolute values: (terms + extra) * u * sum|.|
/// (Higham's gamma_n, with a 1% margin for the u^2 term). It scales with the summed dimension
/// and holds for any summation order, with or without fused multiply-adds.
fn bound(abs_sums: &[f64], terms: usize, extra: usize) -> Vec<f64> {
    let g = (terms + extra) as f64 * U * 1.01;
    abs_sums.iter().map(|s| g * s).collect()
}

#[test]
fn cpu_backward_matches_finite_differences() {
    for trans_w in [false, true] {
        let mut r = rng(100 + trans_w as u64);
        let op = Matmul::new(3, 4, 5, trans_w);
        let x = randn(&mut r, 12, 1.0);
        let w = randn(&mut r, 20, 1.0);
        let bias = randn(&mut r, 5, 1.0);
        let lw = randn(&mut r, 15, 1.0);
        let (dx, dw, db) = op.cpu_backward(&lw, &x, &w);
        // The loss is linear in each argument, so central differences are exact up to the f64
        // rounding of the loss (about 1e-16 / 1e-6).
        let nx = numeric_grad(&x, 1e-6, |x| dot(&op.cpu_forward(x, &w, Some(&bias)), &lw));
        let nw = numeric_grad(&w, 1e-6, |w| dot(&op.cpu_forward(&x, w, Some(&bias)), &lw));
        let nb = numeric_grad(&bias, 1e-6, |b| dot(&op.cpu_forward(&x, &w, Some(b)), &lw));
        assert_close("matmul dx", &dx, &nx, 1e-8, 1e-7);
        assert_close("matmul dw", &dw, &nw, 1e-8, 1e-7);
        assert_close("matmul dbias", &db, &nb, 1e-8, 1e-7);
    }
}

/// (M, K, N): single elements, K = 1, N = 1, and sizes that are not multiples of the 16 x 16
/// invocation tile, of the register variant's workgroup tiles (N = 65 and 300 get 5 and 19 column
/// lanes) or of the tiled variant's 64 x 64 tiles and k steps of 16.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 5, 3),
    (9, 1, 300),
    (300, 2, 1),
    (7, 13, 5),
    (33, 70, 65),
    (17, 3, 257),
    (128, 96, 200),
    (65, 17, 129),
];

/// The step compiled every matmul on `v`.
fn assert_ran_on(ran: &Ran, v: Variant) {
    assert!(ran.step.choices.iter().all(|c| c.variant == v), "{:?}", ran.step.choices);
    for d in &ran.step.dispatches {
        if let Some(Tunable::Matmul(t)) = d.tunable {
            assert_eq!(t.variant, v, "{} runs on {:?}", d.entry, t.variant);
        }
    }
}

#[gpu_test]
async fn kernels_match_reference() {
    for v in matmul_variants().await {
        // One program for every shape and layout: the pipelines compile once per variant.
        let mut kit = Kit::new().on(v);
        let mut checks = Vec::new();
        for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
            for trans_w in [false, true] {
                let op = Matmul::new(m, k, n, trans_w);
                checks.push(add_shape(&mut kit, op, 200 + 2 * s as u64 + trans_w as u64));
            }
        }
        let ran = kit.run().await;
        assert_ran_on(&ran, v);
        for c in &checks {
            c.check(&ran).await;
        }
    }
}

/// Moves the kit's matmuls to `v` before compiling (to change their grids by hand).
fn move_to(kit: &mut Kit, v: Variant) {
    for d in &mut kit.d {
        if let Some(Tunable::Matmul(t)) = d.tunable {
            let args = std::mem::take(&mut d.args);
            *d = t.dispatch(v);
            d.args = args;
        }
    }
}

/// One shape's inputs and outputs inside a shared Kit, checked after the run.
struct ShapeCheck {
    op: Matmul,
    x: Vec<f64>,
    w: Vec<f64>,
    bias: Vec<f64>,
    dy: Vec<f64>,
    prior_dx: Vec<f64>,
    prior_dw: Vec<f64>,
    /// The residual stream the fused forward adds, and its output.
    res: Vec<f64>,
    /// A GELU input for the fused dx product (`backward_dx_gelu`).
    pre: Vec<f64>,
    out: TensorId,
    out_res: TensorId,
    /// The fused forward's GELU of `out_res`, and the fused dx product.
    act: TensorId,
    dpre: TensorId,
    out_nb: TensorId,
    dx: TensorId,
    dx_acc: TensorId,
    dw: TensorId,
    dw_acc: TensorId,
    /// (K, N) layout only: the dW product that also writes the bias gradient.
    bias_grad: Option<BiasGrad>,
}

/// `backward_dw_bias` overwriting and accumulating, and `reduce::colsum` of the same dout, whose
/// bits the fused column sums must reproduce.
struct BiasGrad {
    prior_db: Vec<f64>,
    dw: TensorId,
    db: TensorId,
    dw_acc: TensorId,
    db_acc: TensorId,
    db_colsum: TensorId,
    db_colsum_acc: TensorId,
}

fn add_shape(kit: &mut Kit, op: Matmul, seed: u64) -> ShapeCheck {
    let (m, k, n) = (op.m, op.k, op.n);
    let mut r = rng(seed);
    let x = f32_rounded(randn(&mut r, m * k, 1.0));
    let w = f32_rounded(randn(&mut r, k * n, 1.0));
    let bias = f32_rounded(randn(&mut r, n, 1.0));
    let dy = f32_rounded(randn(&mut r, m * n, 1.0));
    let prior_dx = f32_rounded(randn(&mut r, m * k, 1.0));
    let prior_dw = f32_rounded(randn(&mut r, k * n, 1.0));
    let res = f32_rounded(randn(&mut r, m * n, 1.0));
    let (xi, wi, bi, dyi) = (kit.input("x", &x), kit.input("w", &w), kit.input("bias", &bias), kit.input("dy", &dy));
    let resi = kit.input("res", &res);
    let pre = f32_rounded(randn(&mut r, m * k, 2.0));
    let prei = kit.input("pre", &pre);
    let mut c = ShapeCheck {
        op,
        out: kit.output("out", m * n),
        out_res: kit.output("out_res", m * n),
        act: kit.output("act", m * n),
        dpre: kit.output("dpre", m * k),
        out_nb: kit.output("out_nobias", m * n),
        dx: kit.output("dx", m * k),
        dx_acc: kit.input("dx_acc", &prior_dx),
        dw: kit.output("dw", k * n),
        dw_acc: kit.input("dw_acc", &prior_dw),
        x,
        w,
        bias,
        dy,
        prior_dx,
        prior_dw,
        res,
        pre,
        bias_grad: None,
    };
    if !op.trans_w {
        let prior_db = f32_rounded(randn(&mut r, n, 1.0));
        let g = BiasGrad {
            dw: kit.output("dw_b", k * n),
            db: kit.output("db", n),
            dw_acc: kit.input("dw_b_acc", &c.prior_dw),
            db_acc: kit.input("db_acc", &prior_db),
            db_colsum: kit.output("db_colsum", n),
            db_colsum_acc: kit.input("db_colsum_acc", &prior_db),
            prior_db,
        };
        let s = kit.scratch("colsum", reduce::colsum_scratch(m, n));
        kit.push([
            op.backward_dw_bias(g.dw, false, g.db, false, dyi, xi),
            op.backward_dw_bias(g.dw_acc, true, g.db_acc, true, dyi, xi),
        ]);
        kit.push(reduce::colsum(g.db_colsum, false, dyi, s, m, n));
        kit.push(reduce::colsum(g.db_colsum_acc, true, dyi, s, m, n));
        c.bias_grad = Some(g);
    }
    kit.push([
        op.forward(c.out, xi, wi, Some(bi)),
        op.forward_with(c.out_res, xi, wi, Epilogue { bias: Some(bi), res: Some(resi), gelu: Some(c.act) }),
        op.backward_dx_gelu(c.dpre, false, dyi, wi, prei),
        op.forward(c.out_nb, xi, wi, None),
        op.backward_dx(c.dx, false, dyi, wi),
        op.backward_dx(c.dx_acc, true, dyi, wi),
        op.backward_dw(c.dw, false, dyi, xi),
        op.backward_dw(c.dw_acc, true, dyi, xi),
    ]);
    c
}

impl ShapeCheck {
    async fn check(&self, ran: &Ran) {
        let op = self.op;
        let (m, k, n) = (op.m, op.k, op.n);
        let (x, w, bias, dy) = (&self.x, &self.w, &self.bias, &self.dy);
        let what = |e: &str| format!("{e} M={m} K={k} N={n} trans_w={}", op.trans_w);
        // Each bound is the worst-case f32 rounding of the summed dimension (K for the forward,
        // N for dx, M for dW), plus one rounding for the bias or accumulate add; see `bound`.
        let fwd = op.cpu_forward(x, w, Some(bias));
        let fwd_abs = op.cpu_forward(&abs(x), &abs(w), Some(&abs(bias)));
        assert_within(&what("matmul_forward"), &ran.get(self.out).await, &fwd, &bound(&fwd_abs, k, 1));
        // The residual add is one more rounding.
        assert_within(
            &what("matmul_forward residual"),
            &ran.get(self.out_res).await,
            &add(&fwd, &self.res),
            &bound(&add(&fwd_abs, &abs(&self.res)), k, 2),
        );
        let fwd = op.cpu_forward(x, w, None);
        let fwd_abs = op.cpu_forward(&abs(x), &abs(w), None);
        assert_within(&what("matmul_forward_nobias"), &ran.get(self.out_nb).await, &fwd, &bound(&fwd_abs, k, 0));
        let (want_dx, want_dw, _) = op.cpu_backward(dy, x, w);
        let (abs_dx, abs_dw, _) = op.cpu_backward(&abs(dy), &abs(x), &abs(w));
        let dx = ran.get(self.dx).await;
        assert_within(&what("matmul_backward_dx"), &dx, &want_dx, &bound(&abs_dx, n, 0));
        // The GELU epilogues against GELU (f64) of the products this run computed (checked above
        // and below), with the tolerance of the GELU kernels' own tests.
        let act = gelu::cpu_forward(&ran.get(self.out_res).await);
        assert_close(&what("matmul_forward gelu"), &ran.get(self.act).await, &act, 1e-6, 1e-5);
        let dpre = gelu::cpu_backward(&dx, &self.pre);
        assert_close(&what("matmul_backward_dx gelu"), &ran.get(self.dpre).await, &dpre, 1e-6, 1e-5);
        assert_within(
            &what("matmul_backward_dx acc"),
            &ran.get(self.dx_acc).await,
            &add(&want_dx, &self.prior_dx),
            &bound(&add(&abs_dx, &abs(&self.prior_dx)), n, 1),
        );
        assert_within(&what("matmul_backward_dw"), &ran.get(self.dw).await, &want_dw, &bound(&abs_dw, m, 0));
        assert_within(
            &what("matmul_backward_dw acc"),
            &ran.get(self.dw_acc).await,
            &add(&want_dw, &self.prior_dw),
            &bound(&add(&abs_dw, &abs(&self.prior_dw)), m, 1),
        );
        if let Some(g) = &self.bias_grad {
            // dW as the plain product computes it, bit for bit; the bias gradient as the two
            // colsum kernels compute it, bit for bit (the same chunked order), and within the
            // bound of an M-term sum of the reference.
            let bits = ran.bits_of(&[g.dw, self.dw, g.dw_acc, self.dw_acc, g.db, g.db_colsum]).await;
            assert!(bits[0] == bits[1], "{}", what("matmul_product_colsum dW != matmul_product dW"));
            assert!(bits[2] == bits[3], "{}", what("matmul_product_colsum dW acc != matmul_product dW acc"));
            assert!(bits[4] == bits[5], "{}", what("matmul_product_colsum dbias != colsum"));
            let acc_bits = ran.bits_of(&[g.db_acc, g.db_colsum_acc]).await;
            assert!(acc_bits[0] == acc_bits[1], "{}", what("matmul_product_colsum dbias acc != colsum acc"));
            let (_, _, want_db) = op.cpu_backward(dy, x, w);
            let (_, _, abs_db) = op.cpu_backward(&abs(dy), &abs(x), &abs(w));
            assert_within(&what("matmul_product_colsum dbias"), &ran.get(g.db).await, &want_db, &bound(&abs_db, m, 0));
            assert_within(
                &what("matmul_product_colsum dbias acc"),
                &ran.get(g.db_acc).await,
                &add(&want_db, &g.prior_db),
                &bound(&add(&abs_db, &abs(&g.prior_db)), m, 1),
            );
        }
    }
}

/// Past 65535 workgroups `grid` folds a dispatch into 2-D (the lm_head of a large batch gets
/// there). The kernels recover the flat group index and skip the groups past the last tile; the
/// same kind of fold is forced here on small shapes, with spare groups at the end.
#[gpu_test]
async fn kernels_accept_a_folded_grid() {
    // Rows enough to fold whatever the tile: at most 1024 rows per workgroup.
    let big = Matmul::new(65536 * 1024, 768, 100, true);
    let d = big.forward(TensorId(0), TensorId(0), TensorId(0), None);
    assert!(d.groups[1] > 1, "expected a 2-D grid, got {:?}", d.groups);

    for v in matmul_variants().await {
        let mut kit = Kit::new().on(v);
        let checks = [
            add_shape(&mut kit, Matmul::new(100, 7, 600, false), 310),
            add_shape(&mut kit, Matmul::new(130, 300, 5, true), 311),
        ];
        move_to(&mut kit, v);
        for d in &mut kit.d {
            let n = d.groups[0] * d.groups[1];
            d.groups = [n.div_ceil(3) + 1, 3, 1];
        }
        let ran = kit.run().await;
        assert_ran_on(&ran, v);
        for c in &checks {
            c.check(&ran).await;
        }
    }
}

/// Runs every entry point of `v` on both layouts and returns the bits of every output.
async fn run_all_bits(v: Variant) -> Vec<Vec<u32>> {
    let mut kit = Kit::new().on(v);
    let mut outs = Vec::new();
    for (s, trans_w) in [false, true].into_iter().enumerate() {
        let c = add_shape(&mut kit, Matmul::new(130, 97, 203, trans_w), 400 + s as u64);
        outs.extend([c.out, c.out_nb, c.dx, c.dx_acc, c.dw, c.dw_acc]);
        if let Some(g) = &c.bias_grad {
            outs.extend([g.dw, g.db, g.dw_acc, g.db_acc]);
        }
    }
    let ran = kit.run().await;
    ran.bits_of(&outs).await
}

#[gpu_test]
async fn kernels_are_deterministic() {
    for v in matmul_variants().await {
        let a = run_all_bits(v).await;
        let b = run_all_bits(v).await;
        // Fixed-order sums: two runs must agree bit for bit, not just within rounding.
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(x == y, "{v:?}: output {i} differs between runs");
        }
    }
}

/// `subgroup` shares A's values across lanes but computes every sum as `register` does: the two
/// agree bit for bit (where the adapter has subgroups 8 wide; lavapipe does).
#[gpu_test]
async fn subgroup_variant_equals_register_bit_for_bit() {
    if !matmul_variants().await.contains(&Variant::Subgroup) {
        eprintln!("skipped: this adapter has no subgroups 8 wide");
        return;
    }
    let (a, b) = (run_all_bits(Variant::Register).await, run_all_bits(Variant::Subgroup).await);
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "output {i}: subgroup differs from register");
    }
}

/// The tied lm_head with a weight too large for one binding runs as shards of N rows, each writing
/// its columns of the wider output (`out_stride`, `out_col`): out, dx (accumulated over shards) and
/// each shard's dW equal the whole product.
#[gpu_test]
async fn sharded_transposed_weight_matches_whole() {
    for v in matmul_variants().await {
        sharded_on(v).await;
    }
}

async fn sharded_on(v: Variant) {
    let (m, k, n) = (37, 9, 150);
    let whole = Matmul::new(m, k, n, true);
    let mut r = rng(91);
    let x = f32_rounded(randn(&mut r, m * k, 1.0));
    let w = f32_rounded(randn(&mut r, n * k, 1.0));
    let dout = f32_rounded(randn(&mut r, m * n, 1.0));
    let mut kit = Kit::new().on(v);
    let (xi, wi, di) = (kit.input("x", &x), kit.input("w", &w), kit.input("dout", &dout));
    let out = kit.output("out", m * n);
    let dx = kit.output("dx", m * k);
    let dw = kit.output("dw", n * k);
    // Shards of 64 and 86 rows of W: 64 rows of 9 floats start on a 256-byte boundary.
    for (s, (n0, nn)) in [(0usize, 64usize), (64, n - 64)].into_iter().enumerate() {
        let op = Matmul { n: nn, out_stride: n, out_col: n0, ..whole };
        let wv = kit.t.view(wi, n0 * k, nn * k);
        let dwv = kit.t.view(dw, n0 * k, nn * k);
        kit.push([
            op.forward(out, xi, wv, None),
            op.backward_dx(dx, s > 0, di, wv),
            op.backward_dw(dwv, false, di, xi),
        ]);
    }
    let ran = kit.run().await;
    let (gdx, gdw, _) = whole.cpu_backward(&dout, &x, &w);
    let wout = whole.cpu_forward(&x, &w, None);
    let bx = abs(&x);
    let bw = abs(&w);
    let bd = abs(&dout);
    // Bounds as in kernels_match_reference, from the products of absolute values.
    let out_b = bound(&whole.cpu_forward(&bx, &bw, None), k, 0);
    let (dx_b, dw_b, _) = whole.cpu_backward(&bd, &bx, &bw);
    assert_within(&format!("{v:?} sharded out"), &ran.get(out).await, &wout, &out_b);
    // dx sums the shards' partial products: one more rounding per extra shard.
    assert_within(&format!("{v:?} sharded dx"), &ran.get(dx).await, &gdx, &bound(&dx_b, n, 1));
    assert_within(&format!("{v:?} sharded dw"), &ran.get(dw).await, &gdw, &bound(&dw_b, m, 0));
}

/// The tile shape is picked per product (fewer row lanes for fewer rows, column lanes fitted to
/// N), but each element is the same f32 sum in k order: a product split into row chunks, as the
/// trainer splits large batches, gives the whole product's bits.
#[gpu_test]
async fn row_chunks_match_whole_bit_for_bit() {
    for v in matmul_variants().await {
        row_chunks_on(v).await;
    }
}

async fn row_chunks_on(v: Variant) {
    let (m, k, n) = (100, 16, 65);
    let mut r = rng(92);
    let x = f32_rounded(randn(&mut r, m * k, 1.0));
    let w = f32_rounded(randn(&mut r, k * n, 1.0));
    let bias = f32_rounded(randn(&mut r, n, 1.0));
    let dout = f32_rounded(randn(&mut r, m * n, 1.0));
    let mut kit = Kit::new().on(v);
    let (xi, wi, bi, di) = (kit.input("x", &x), kit.input("w", &w), kit.input("bias", &bias), kit.input("dout", &dout));
    let (out, dx) = (kit.output("out", m * n), kit.output("dx", m * k));
    let (out_c, dx_c) = (kit.output("out_chunks", m * n), kit.output("dx_chunks", m * k));
    let whole = Matmul::new(m, k, n, false);
    kit.push([whole.forward(out, xi, wi, Some(bi)), whole.backward_dx(dx, false, di, wi)]);
    // Chunks of 64 and 36 rows: 64 rows of x (16 floats) and of out (65 floats) start on
    // 256-byte boundaries.
    for (m0, mm) in [(0usize, 64usize), (64, m - 64)] {
        let op = Matmul::new(mm, k, n, false);
        let (xv, dv) = (kit.t.view(xi, m0 * k, mm * k), kit.t.view(di, m0 * n, mm * n));
        let (ov, dxv) = (kit.t.view(out_c, m0 * n, mm * n), kit.t.view(dx_c, m0 * k, mm * k));
        kit.push([op.forward(ov, xv, wi, Some(bi)), op.backward_dx(dxv, false, dv, wi)]);
    }
    let ran = kit.run().await;
    assert!(
        ran.get_bits(out).await == ran.get_bits(out_c).await,
        "{v:?} forward: row chunks differ from the whole product"
    );
    assert!(ran.get_bits(dx).await == ran.get_bits(dx_c).await, "{v:?} dx: row chunks differ from the whole product");
}

/// The LayerNorm prologue of the few-row products (`gemv::forward_normed`, which a decoding step
/// uses for ln_1, ln_2 and ln_f) gives the bits of `LayerNorm::forward` followed by the plain
/// product, for both weight layouts, 1 to 11 rows and K off multiples of 4, with the epilogue.
#[gpu_test]
async fn gemv_layernorm_prologue_matches_separate_norm() {
    use wgpt::ops::gemv::{self, Norm};
    use wgpt::ops::layernorm::LayerNorm;
    for (s, &(m, k, n)) in [(1, 37, 53), (2, 64, 130), (11, 129, 40)].iter().enumerate() {
        for trans_w in [false, true] {
            let op = Matmul { m, k, n, trans_w, out_stride: n, out_col: 0 };
            let mut r = rng(950 + s as u64);
            // An offset and a scale away from 0 and 1, so a norm left out shows.
            let x: Vec<f64> = f32_rounded(randn(&mut r, m * k, 3.0).iter().map(|v| v + 2.0).collect());
            let w = f32_rounded(randn(&mut r, k * n, 1.0));
            let bias = f32_rounded(randn(&mut r, n, 1.0));
            let (g, b) = (f32_rounded(randn(&mut r, k, 1.0)), f32_rounded(randn(&mut r, k, 1.0)));
            let mut kit = Kit::new();
            let [xi, wi, bi, gi, be] =
                [("x", &x), ("w", &w), ("bias", &bias), ("g", &g), ("b", &b)].map(|(n, v)| kit.input(n, v));
            let [normed, mean, rstd] = [("normed", m * k), ("mean", m), ("rstd", m)].map(|(n, len)| kit.output(n, len));
            let [fused, apart, act_f, act_a] = ["fused", "apart", "act_f", "act_a"].map(|o| kit.output(o, m * n));
            let norm = Norm { w: gi, b: be, eps: 1e-5 };
            let e = |act| Epilogue { bias: Some(bi), gelu: Some(act), ..Epilogue::default() };
            kit.push([
                gemv::forward_normed(&op, fused, xi, Some(norm), wi, e(act_f)),
                LayerNorm { rows: m, c: k, eps: 1e-5 }.forward(normed, mean, rstd, xi, gi, be),
                gemv::forward(&op, apart, normed, wi, e(act_a)),
            ]);
            let ran = kit.run().await;
            let what = format!("M={m} K={k} N={n} trans_w={trans_w}");
            assert!(
                ran.get_bits(fused).await == ran.get_bits(apart).await,
                "normed product != norm then product, {what}"
            );
            assert!(ran.get_bits(act_f).await == ran.get_bits(act_a).await, "normed product's GELU differs, {what}");
            let plain = op.cpu_forward(&x, &w, Some(&bias));
            let got = ran.get(fused).await;
            assert!(got.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-3), "the norm changed nothing, {what}");
        }
    }
}

/// Generation's few-row products (`ops::gemv`), f32 storage as the decode program uses: both weight
/// layouts, 1 to 11 rows (one and two blocks of 8), K and N off multiples of 4, and the epilogues,
/// against the f64 reference within the bound of a K-term f32 sum (see `bound`); the lm_head in two
/// shards of columns gives the unsharded bits.
#[gpu_test]
async fn gemv_matches_reference() {
    use wgpt::ops::gemv;
    for (s, &(m, k, n)) in [(1, 37, 53), (3, 64, 130), (8, 30, 7), (11, 129, 40)].iter().enumerate() {
        for trans_w in [false, true] {
            let op = Matmul { m, k, n, trans_w, out_stride: n, out_col: 0 };
            let mut r = rng(900 + s as u64);
            let x = f32_rounded(randn(&mut r, m * k, 1.0));
            let w = f32_rounded(randn(&mut r, k * n, 1.0));
            let bias = f32_rounded(randn(&mut r, n, 1.0));
            let res = f32_rounded(randn(&mut r, m * n, 1.0));
            let mut kit = Kit::new();
            let (xi, wi, bi, ri) =
                (kit.input("x", &x), kit.input("w", &w), kit.input("bias", &bias), kit.input("res", &res));
            let [out, out_nb, out_res, act, sharded] =
                ["out", "out_nb", "out_res", "act", "sharded"].map(|o| kit.output(o, m * n));
            kit.push([
                gemv::forward(&op, out, xi, wi, Epilogue { bias: Some(bi), ..Epilogue::default() }),
                gemv::forward(&op, out_nb, xi, wi, Epilogue::default()),
                gemv::forward(&op, out_res, xi, wi, Epilogue { bias: Some(bi), res: Some(ri), gelu: Some(act) }),
            ]);
            if trans_w {
                let split = n / 2;
                let (w0, w1) = (kit.input("w0", &w[..split * k]), kit.input("w1", &w[split * k..]));
                kit.push([
                    gemv::forward(&Matmul { n: split, ..op }, sharded, xi, w0, Epilogue::default()),
                    gemv::forward(&Matmul { n: n - split, out_col: split, ..op }, sharded, xi, w1, Epilogue::default()),
                ]);
            }
            let ran = kit.run().await;
            let what = |e: &str| format!("{e} M={m} K={k} N={n} trans_w={trans_w}");
            let fwd = op.cpu_forward(&x, &w, Some(&bias));
            let fwd_abs = op.cpu_forward(&abs(&x), &abs(&w), Some(&abs(&bias)));
            assert_within(&what("gemv"), &ran.get(out).await, &fwd, &bound(&fwd_abs, k, 1));
            let plain = op.cpu_forward(&x, &w, None);
            let plain_abs = op.cpu_forward(&abs(&x), &abs(&w), None);
            assert_within(&what("gemv no bias"), &ran.get(out_nb).await, &plain, &bound(&plain_abs, k, 0));
            let with_res = add(&fwd, &res);
            let res_bound = bound(&add(&fwd_abs, &abs(&res)), k, 2);
            assert_within(&what("gemv residual"), &ran.get(out_res).await, &with_res, &res_bound);
            let act_want = gelu::cpu_forward(&ran.get(out_res).await);
            assert_close(&what("gemv gelu"), &ran.get(act).await, &act_want, 1e-6, 1e-5);
            if trans_w {
                let [a, b] = [sharded, out_nb].map(|t| ran.get_bits(t));
                assert!(a.await == b.await, "{}", what("gemv sharded lm_head != whole"));
            }
        }
    }
}
