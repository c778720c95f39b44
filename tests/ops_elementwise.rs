//! GELU, residual add and the reductions: CPU references against finite differences, and every
//! WGSL entry point against its reference on sizes that are not multiples of the workgroup size;
//! the gradient norm's overflow and outlier flags.

mod common;
use common::*;
use wgpt::ops::{gelu, reduce, residual};

// 1000 and 2052 take the vec4 entry points (one workgroup, then several), 1 and 63 the scalar ones.
const SIZES: [usize; 4] = [1, 63, 1000, 2052];

#[test]
fn gelu_cpu_backward_matches_finite_differences() {
    let mut r = rng(1);
    let x = randn(&mut r, 50, 2.0);
    let w = randn(&mut r, 50, 1.0);
    let num = numeric_grad(&x, 1e-6, |x| dot(&gelu::cpu_forward(x), &w));
    assert_close("gelu dx", &gelu::cpu_backward(&w, &x), &num, 1e-7, 1e-6);
}

#[test]
fn residual_cpu_backward_matches_finite_differences() {
    let mut r = rng(2);
    let (a, b, w) = (randn(&mut r, 20, 1.0), randn(&mut r, 20, 1.0), randn(&mut r, 20, 1.0));
    let (da, db) = residual::cpu_backward(&w);
    assert_close("residual da", &da, &numeric_grad(&a, 1e-6, |a| dot(&residual::cpu_forward(a, &b), &w)), 1e-7, 1e-6);
    assert_close("residual db", &db, &numeric_grad(&b, 1e-6, |b| dot(&residual::cpu_forward(&a, b), &w)), 1e-7, 1e-6);
}

// f32 kernels against f64 references: 1e-6 relative covers the rounding of a few f32 operations
// (tanh included); atol 1e-6 covers values near zero.
#[gpu_test]
async fn gelu_kernels_match_reference() {
    for (s, &n) in SIZES.iter().enumerate() {
        let mut r = rng(10 + s as u64);
        let x = randn(&mut r, n, 3.0);
        let dy = randn(&mut r, n, 1.0);
        let prior = randn(&mut r, n, 1.0);
        let mut k = Kit::new();
        let (xi, dyi) = (k.input("x", &x), k.input("dy", &dy));
        let out = k.output("out", n);
        let dx = k.input("dx", &prior);
        let dx2 = k.output("dx2", n);
        k.push([
            gelu::forward(out, xi, n),
            gelu::backward(dx, true, dyi, xi, n),
            gelu::backward(dx2, false, dyi, xi, n),
        ]);
        let ran = k.run().await;
        assert_close("gelu_forward", &ran.get(out).await, &gelu::cpu_forward(&x), 1e-6, 1e-5);
        let want = gelu::cpu_backward(&dy, &x);
        assert_close("gelu_backward", &ran.get(dx2).await, &want, 1e-6, 1e-5);
        let acc: Vec<f64> = want.iter().zip(&prior).map(|(a, b)| a + b).collect();
        assert_close("gelu_backward accumulate", &ran.get(dx).await, &acc, 1e-6, 1e-5);
    }
}

#[gpu_test]
async fn residual_kernels_match_reference() {
    for (s, &n) in SIZES.iter().enumerate() {
        let mut r = rng(20 + s as u64);
        let (a, b, dy, prior) =
            (randn(&mut r, n, 1.0), randn(&mut r, n, 1.0), randn(&mut r, n, 1.0), randn(&mut r, n, 1.0));
        let mut k = Kit::new();
        let (ai, bi, dyi) = (k.input("a", &a), k.input("b", &b), k.input("dy", &dy));
        let out = k.output("out", n);
        let da = k.input("da", &prior);
        let db = k.output("db", n);
        k.push([residual::forward(out, ai, bi, n), residual::backward(da, true, db, false, dyi, n)]);
        let ran = k.run().await;
        assert_close("residual_forward", &ran.get(out).await, &residual::cpu_forward(&a, &b), 1e-6, 1e-6);
        let (wa, wb) = residual::cpu_backward(&dy);
        let wa: Vec<f64> = wa.iter().zip(&prior).map(|(x, y)| x + y).collect();
        assert_close("residual_backward da (accumulate)", &ran.get(da).await, &wa, 1e-6, 1e-6);
        // A copy: exact once the reference is rounded to f32.
        assert_close("residual_backward db", &ran.get(db).await, &to64(&to32(&wb)), 0.0, 0.0);
    }
}

#[gpu_test]
async fn colsum_and_norm_kernels_match_reference() {
    for (s, &(rows, cols)) in [(1, 1), (65, 3), (200, 70)].iter().enumerate() {
        let mut r = rng(30 + s as u64);
        let x = randn(&mut r, rows * cols, 1.0);
        let prior = randn(&mut r, cols, 1.0);
        let mut k = Kit::new();
        let xi = k.input("x", &x);
        let dst = k.input("dst", &prior);
        let part = k.scratch("partial", reduce::colsum_scratch(rows, cols));
        k.push(reduce::colsum(dst, true, xi, part, rows, cols));
        let ran = k.run().await;
        let want: Vec<f64> = reduce::cpu_colsum(&x, rows, cols).iter().zip(&prior).map(|(a, b)| a + b).collect();
        assert_close("colsum", &ran.get(dst).await, &want, 1e-5, 1e-5);
    }
    for (s, &n) in [1usize, 2047, 2049, 10_000].iter().enumerate() {
        let mut r = rng(40 + s as u64);
        let x = randn(&mut r, n, 0.1);
        let mut k = Kit::new();
        let xi = k.input("x", &x);
        let slots = reduce::sumsq_slots(n);
        let part = k.scratch("partial", slots);
        let out = k.output("out", 3);
        k.push([
            reduce::sumsq_partial(part, 0, xi, n),
            reduce::norm_final(out, 0, part, slots, 1.0),
            reduce::sum_final(out, 2, part, slots, 0.5),
        ]);
        let ran = k.run().await;
        let got = ran.get(out).await;
        let (norm, clip) = reduce::cpu_norm(&x, 1.0);
        let ss: f64 = x.iter().map(|v| v * v).sum();
        assert_close("norm, clip, half sum of squares", &got, &[norm, clip, 0.5 * ss], 1e-6, 1e-5);
    }
}

/// The norm's overflow flag (1: inf or NaN in the gradients, the clip factor 0) and the unscaling by
/// the loss scale, as f16 training uses them.
#[gpu_test]
async fn norm_flags_overflow_and_unscales() {
    let slots = 3;
    for (partial, skip) in
        [(vec![4.0, 9.0, 3.0], 0.0), (vec![4.0, f64::INFINITY, 3.0], 1.0), (vec![f64::NAN, 1.0, 1.0], 1.0)]
    {
        let mut kit = Kit::new();
        let pi = kit.input32("partial", &partial);
        let hi = kit.input32("hyper", &[0.0, 0.0, 0.0, 2.0, f32::MAX as f64, f32::MAX as f64]);
        let out = kit.output32("out", 4);
        kit.push([reduce::norm_final_scaled(out, 1, 0, pi, slots, 1.0, hi)]);
        let got = kit.run().await.get(out).await;
        assert_eq!(got[3], skip, "skip flag for partial sums {partial:?}");
        if skip == 0.0 {
            // sqrt(16) / loss scale 2 = 2: the clip factor is 1 / (2 + 1e-6).
            assert_close("unscaled norm and clip", &got[1..3], &[2.0, 1.0 / (2.0 + 1e-6)], 1e-6, 1e-6);
        } else {
            assert_eq!(got[2], 0.0, "clip factor of an overflowed step");
        }
    }
}

/// The outlier guard's ceilings: flag 2 when the norm (2 here) or the loss (0.5, in slot 0) is
/// above its ceiling; inf/NaN still flag 1 whatever the ceilings.
#[gpu_test]
async fn norm_flags_outliers_above_the_ceilings() {
    let max = f32::MAX as f64;
    for (partial, norm_ceiling, loss_ceiling, flag) in [
        (vec![4.0, 9.0, 3.0], 2.5, max, 0.0),
        (vec![4.0, 9.0, 3.0], 1.5, max, 2.0),
        (vec![4.0, 9.0, 3.0], max, 0.75, 0.0),
        (vec![4.0, 9.0, 3.0], max, 0.25, 2.0),
        (vec![4.0, f64::INFINITY, 3.0], 1.5, 0.25, 1.0),
    ] {
        let mut kit = Kit::new();
        let pi = kit.input32("partial", &partial);
        let hi = kit.input32("hyper", &[0.0, 0.0, 0.0, 2.0, norm_ceiling, loss_ceiling]);
        // The loss is already in slot 0 when the norm is taken.
        let out = kit.input32("out", &[0.5, f64::NAN, f64::NAN, f64::NAN]);
        kit.push([reduce::norm_final_scaled(out, 1, 0, pi, 3, 1.0, hi)]);
        let got = kit.run().await.get(out).await;
        assert_eq!(got[3], flag, "ceilings ({norm_ceiling}, {loss_ceiling}) for partial sums {partial:?}");
    }
}
