//! LayerNorm: the CPU reference backward against finite differences, every WGSL entry point
//! against the reference (row counts off the workgroup size and the partial-sum chunk, rows far
//! from zero mean, overwrite and accumulate), and bit-identical results across runs.

mod common;
use common::*;
use wgpt::graph::TensorId;
use wgpt::ops::layernorm::LayerNorm;

/// f32 unit roundoff.
const EPS: f32 = 1e-5;

#[test]
fn cpu_backward_matches_finite_differences() {
    for (s, &(rows, c)) in [(1, 1), (2, 5), (3, 8)].iter().enumerate() {
        let mut r = rng(500 + s as u64);
        let op = LayerNorm { rows, c, eps: EPS };
        let x = randn(&mut r, rows * c, 1.0);
        let w = randn(&mut r, c, 1.0);
        let b = randn(&mut r, c, 1.0);
        let lw = randn(&mut r, rows * c, 1.0);
        let (dx, dw, db) = op.cpu_backward(&lw, &x, &w);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&op.cpu_forward(x, w, b).0, &lw);
        // Central differences in f64 with step 1e-6: truncation ~1e-12 times the third
        // derivative, rounding ~1e-16 / 1e-6 = 1e-10 (rstd reaches 1 / sqrt(eps) ~ 300 at C = 1).
        let nx = numeric_grad(&x, 1e-6, |x| loss(x, &w, &b));
        let nw = numeric_grad(&w, 1e-6, |w| loss(&x, w, &b));
        let nb = numeric_grad(&b, 1e-6, |b| loss(&x, &w, b));
        assert_close("layernorm dx", &dx, &nx, 1e-7, 1e-6);
        assert_close("layernorm dw", &dw, &nw, 1e-7, 1e-6);
        assert_close("layernorm db", &db, &nb, 1e-7, 1e-6);
    }
}

/// (rows, C, mean offset of x): single row and column, sizes off the 64-row chunk and the
/// workgroup, GPT-2's C, and rows whose mean is large against their spread.
const SHAPES: [(usize, usize, f64); 7] =
    [(1, 1, 0.0), (1, 7, 0.0), (3, 64, 0.0), (65, 33, 0.0), (130, 100, 3.0), (64, 768, 0.0), (129, 768, -2.0)];

struct Case {
    op: LayerNorm,
    x: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    dy: Vec<f64>,
    prior_dx: Vec<f64>,
    prior_db: Vec<f64>,
    out: TensorId,
    mean: TensorId,
    rstd: TensorId,
    dx: TensorId,
    dw: TensorId,
    db: TensorId,
    dx2: TensorId,
    dw2: TensorId,
    db2: TensorId,
}

/// Adds one shape: the forward, a backward that overwrites (into NaN-filled outputs) and one with
/// mixed flags (dx and db accumulate onto random values, dw overwrites).
fn add_case(kit: &mut Kit, rows: usize, c: usize, offset: f64, seed: u64) -> Case {
    let op = LayerNorm { rows, c, eps: EPS };
    let mut r = rng(seed);
    let x: Vec<f64> = randn(&mut r, rows * c, 1.0).iter().map(|v| offset + 0.5 * v).collect();
    let x = f32_rounded(x);
    let w = f32_rounded(randn(&mut r, c, 1.0).iter().map(|v| 1.0 + 0.3 * v).collect());
    let b = f32_rounded(randn(&mut r, c, 0.3));
    let dy = f32_rounded(randn(&mut r, rows * c, 1.0));
    let prior_dx = f32_rounded(randn(&mut r, rows * c, 1.0));
    let prior_db = f32_rounded(randn(&mut r, c, 1.0));
    let (xi, wi, bi, dyi) = (kit.input("x", &x), kit.input("w", &w), kit.input("b", &b), kit.input("dy", &dy));
    let case = Case {
        op,
        out: kit.output("out", rows * c),
        mean: kit.output("mean", rows),
        rstd: kit.output("rstd", rows),
        dx: kit.output("dx", rows * c),
        dw: kit.output("dw", c),
        db: kit.output("db", c),
        dx2: kit.input("dx2", &prior_dx),
        dw2: kit.output("dw2", c),
        db2: kit.input("db2", &prior_db),
        x,
        w,
        b,
        dy,
        prior_dx,
        prior_db,
    };
    let s1 = kit.scratch("scratch1", op.scratch_len());
    let s2 = kit.scratch("scratch2", op.scratch_len());
    let c_ = &case;
    kit.push([op.forward(c_.out, c_.mean, c_.rstd, xi, wi, bi)]);
    kit.push(op.backward(c_.dx, false, c_.dw, false, c_.db, false, s1, dyi, xi, wi, c_.mean, c_.rstd));
    kit.push(op.backward(c_.dx2, true, c_.dw2, false, c_.db2, true, s2, dyi, xi, wi, c_.mean, c_.rstd));
    case
}

impl Case {
    async fn check(&self, ran: &Ran) {
        let (rows, c) = (self.op.rows, self.op.c);
        let what = |e: &str| format!("{e} rows={rows} C={c}");
        let (x, w, b, dy) = (&self.x, &self.w, &self.b, &self.dy);
        let (out, mean, rstd) = self.op.cpu_forward(x, w, b);
        let xh: Vec<f64> = (0..rows * c).map(|j| (x[j] - mean[j / c]) * rstd[j / c]).collect();

        // Error model (first order, worst case, then doubled): the f32 mean is off by at most
        // C u max|x| (each of C updates rounds at the scale of the mean), the variance by C u
        // relative, so xh = (x - mean) rstd is off by e_r (kappa_r + |xh|) with
        // e_r = (C + 4) u and kappa_r = max|x| rstd over the row (large when the mean is far
        // from zero against the spread: cancellation in x - mean is real, not a kernel error).
        let e = (c + 4) as f64 * U;
        let kappa: Vec<f64> =
            (0..rows).map(|r| x[r * c..(r + 1) * c].iter().fold(0.0f64, |m, v| m.max(v.abs())) * rstd[r]).collect();
        let dxh = |j: usize| e * (kappa[j / c] + xh[j].abs());

        // mean: C roundings at the scale of max|x|; rstd: relative (C + 4) u.
        let mean_tol: Vec<f64> = (0..rows).map(|r| 2.0 * e * kappa[r] / rstd[r]).collect();
        assert_within(&what("layernorm_forward mean"), &ran.get(self.mean).await, &mean, &mean_tol);
        let rstd_tol: Vec<f64> = rstd.iter().map(|s| 2.0 * e * s).collect();
        assert_within(&what("layernorm_forward rstd"), &ran.get(self.rstd).await, &rstd, &rstd_tol);
        // out = xh w + b: the xh error times |w|, plus the roundings of the last multiply-adds.
        let out_tol: Vec<f64> = (0..rows * c)
            .map(|j| {
                let i = j % c;
                2.0 * (dxh(j) * w[i].abs() + 4.0 * U * ((xh[j] * w[i]).abs() + b[i].abs()))
            })
            .collect();
        assert_within(&what("layernorm_forward out"), &ran.get(self.out).await, &out, &out_tol);

        // dx = rstd (g - mean(g) - xh mean(g xh)), g = dout w. The two row means are C-term
        // sums (error e times the row mean of |g|, of |g xh|), mean(g xh) also carries the xh
        // error, the subtractions round once each, and rstd carries its relative error e.
        let (want_dx, want_dw, want_db) = self.op.cpu_backward(dy, x, w);
        let g: Vec<f64> = (0..rows * c).map(|j| (dy[j] * w[j % c]).abs()).collect();
        let row_mean = |r: usize, f: &dyn Fn(usize) -> f64| (r * c..(r + 1) * c).map(f).sum::<f64>() / c as f64;
        let gm: Vec<f64> = (0..rows).map(|r| row_mean(r, &|j| g[j])).collect();
        let hm: Vec<f64> = (0..rows).map(|r| row_mean(r, &|j| g[j] * xh[j].abs())).collect();
        let dmax: Vec<f64> = (0..rows).map(|r| (r * c..(r + 1) * c).map(dxh).fold(0.0, f64::max)).collect();
        let dx_tol: Vec<f64> = (0..rows * c)
            .map(|j| {
                let r = j / c;
                let (a, h) = (xh[j].abs(), hm[r]);
                let inner =
                    4.0 * U * g[j] + e * gm[r] + dxh(j) * h + a * (e * h + gm[r] * dmax[r]) + 3.0 * U * (gm[r] + a * h);
                2.0 * (rstd[r] * inner + e * want_dx[j].abs())
            })
            .collect();
        assert_within(&what("layernorm_backward dx"), &ran.get(self.dx).await, &want_dx, &dx_tol);
        // Accumulating adds one rounding at the scale of the prior and of the sum.
        let acc_dx = add(&want_dx, &self.prior_dx);
        let acc_tol: Vec<f64> =
            (0..rows * c).map(|j| dx_tol[j] + 2.0 * U * (self.prior_dx[j].abs() + acc_dx[j].abs())).collect();
        assert_within(&what("layernorm_backward dx acc"), &ran.get(self.dx2).await, &acc_dx, &acc_tol);

        // dw = sum over rows of dout xh, db = sum of dout: row sums in chunks (at most rows
        // roundings at the scale of the sum of |terms|), plus the xh error of every term.
        let col = |i: usize, f: &dyn Fn(usize) -> f64| (0..rows).map(|r| f(r * c + i)).sum::<f64>();
        let dw_tol: Vec<f64> =
            (0..c).map(|i| 2.0 * col(i, &|j| dy[j].abs() * ((rows + 4) as f64 * U * xh[j].abs() + dxh(j)))).collect();
        assert_within(&what("layernorm_backward dw"), &ran.get(self.dw).await, &want_dw, &dw_tol);
        assert_within(&what("layernorm_backward dw (2nd)"), &ran.get(self.dw2).await, &want_dw, &dw_tol);
        let db_tol: Vec<f64> = (0..c).map(|i| 2.0 * (rows + 2) as f64 * U * col(i, &|j| dy[j].abs())).collect();
        assert_within(&what("layernorm_backward db"), &ran.get(self.db).await, &want_db, &db_tol);
        let acc_db = add(&want_db, &self.prior_db);
        let acc_tol: Vec<f64> =
            (0..c).map(|i| db_tol[i] + 2.0 * U * (self.prior_db[i].abs() + acc_db[i].abs())).collect();
        assert_within(&what("layernorm_backward db acc"), &ran.get(self.db2).await, &acc_db, &acc_tol);
    }
}

#[gpu_test]
async fn kernels_match_reference() {
    // One program for every shape: the pipelines compile once.
    let mut kit = Kit::new();
    let cases: Vec<Case> = SHAPES
        .iter()
        .enumerate()
        .map(|(s, &(rows, c, offset))| add_case(&mut kit, rows, c, offset, 600 + s as u64))
        .collect();
    let ran = kit.run().await;
    for case in &cases {
        case.check(&ran).await;
    }
}

async fn run_all_bits() -> Vec<Vec<u32>> {
    let mut kit = Kit::new();
    let cases: Vec<Case> = [(130, 100, 3.0), (129, 768, -2.0)]
        .iter()
        .enumerate()
        .map(|(s, &(rows, c, offset))| add_case(&mut kit, rows, c, offset, 700 + s as u64))
        .collect();
    let ran = kit.run().await;
    let ids: Vec<TensorId> =
        cases.iter().flat_map(|k| [k.out, k.mean, k.rstd, k.dx, k.dw, k.db, k.dx2, k.dw2, k.db2]).collect();
    ran.bits_of(&ids).await
}

#[gpu_test]
async fn kernels_are_deterministic() {
    let a = run_all_bits().await;
    let b = run_all_bits().await;
    // Fixed-order sums, no atomics: two runs must agree bit for bit, not just within rounding.
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "output {i} differs between runs");
    }
}
