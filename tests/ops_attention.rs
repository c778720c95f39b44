//! Causal self-attention: the CPU reference backward against finite differences, every WGSL entry
//! point against the reference (odd shapes, overwrite and accumulate), causality, determinism.

mod common;
use common::*;
use wgpt::ops::attention::Attention;

fn att(b: usize, t: usize, nh: usize, hs: usize) -> Attention {
    Attention { b, t, nh, hs }
}

/// qkv (B, T, 3C) as input, out/lse as NaN-filled outputs, and the forward dispatch.
fn forward_kit(
    k: &mut Kit,
    a: &Attention,
    qkv: &[f64],
) -> (wgpt::graph::TensorId, wgpt::graph::TensorId, wgpt::graph::TensorId) {
    let qkvi = k.input("qkv", qkv);
    let out = k.output("out", a.b * a.t * a.c());
    let lse = k.output("lse", a.b * a.nh * a.t);
    k.push([a.forward(out, lse, qkvi)]);
    (qkvi, out, lse)
}

#[test]
fn attention_cpu_backward_matches_finite_differences() {
    for (s, a) in [att(1, 1, 1, 1), att(2, 4, 2, 3), att(1, 6, 1, 5)].iter().enumerate() {
        let mut r = rng(100 + s as u64);
        let qkv = randn(&mut r, a.b * a.t * 3 * a.c(), 1.0);
        let w = randn(&mut r, a.b * a.t * a.c(), 1.0);
        let num = numeric_grad(&qkv, 1e-5, |x| dot(&a.cpu_forward(x).0, &w));
        // f64 central differences with eps 1e-5: truncation ~eps^2 and cancellation ~1e-16/eps,
        // both far below 1e-8.
        assert_close("attention dqkv", &a.cpu_backward(&w, &qkv), &num, 1e-8, 1e-6);
    }
}

#[test]
fn attention_cpu_lse_is_log_sum_exp() {
    // lse[b, h, t] = log sum_{s <= t} exp(q_t . k_s / sqrt(HS)), computed directly here.
    let a = att(2, 5, 3, 4);
    let mut r = rng(110);
    let qkv = randn(&mut r, a.b * a.t * 3 * a.c(), 1.0);
    let (_, lse) = a.cpu_forward(&qkv);
    let c = a.c();
    let mut want = Vec::new();
    for b in 0..a.b {
        for h in 0..a.nh {
            for t in 0..a.t {
                let mut z = 0.0;
                for s in 0..=t {
                    let mut x = 0.0;
                    for d in 0..a.hs {
                        x += qkv[(b * a.t + t) * 3 * c + h * a.hs + d] * qkv[(b * a.t + s) * 3 * c + c + h * a.hs + d];
                    }
                    z += (x / (a.hs as f64).sqrt()).exp();
                }
                want.push(f64::ln(z));
            }
        }
    }
    // Both in f64, summed in different ways: only rounding differs.
    assert_close("attention lse", &lse, &want, 1e-12, 1e-12);
}

/// N(0, scale^2) values that f32 holds exactly, so the f64 reference sees the kernel's inputs
/// and comparisons measure only the kernels' f32 arithmetic.
fn randn32(r: &mut rand::rngs::StdRng, n: usize, scale: f64) -> Vec<f64> {
    to64(&to32(&randn(r, n, scale)))
}

// f32 kernels against f64 references on f32-exact inputs. With qkv ~ N(0, 1) the scores are O(1),
// out is a convex combination of v rows and lse the log of a sum of at most T = 70 terms; the f32
// rounding of HS-term dot products (partial sums up to ~sqrt(HS)) through exp and the online
// rescaling gives about 1e-6 absolute (observed on lavapipe: out 9.6e-7 at HS = 128, lse 7.4e-7),
// so atol 5e-6 + rtol 1e-5 leaves room for GPUs with less exact exp but not for a wrong key, scale
// or mask (errors of O(0.1)). Backward entries are sums over up to T keys or queries of products
// of O(1) factors (p, dp - D with dp and D sums of HS products, k or q, scale): observed max
// 2.9e-6 absolute (T = 65, HS = 33), hence atol 2e-5 + rtol 1e-4. The last shape has
// qkv ~ N(0, 9): scores of tens, the online max is rescaled often and the score's absolute f32
// error (~|score| * 6e-8) becomes a relative error of p; values are ~10x larger too (observed out
// 6.1e-6, dqkv 1.5e-5), so its tolerances are scaled by 10.
#[gpu_test]
async fn attention_kernels_match_reference() {
    let shapes = [
        (att(1, 1, 1, 1), 1.0),
        (att(2, 5, 3, 7), 1.0),
        (att(2, 70, 2, 16), 1.0),
        (att(1, 40, 2, 128), 1.0),
        (att(3, 65, 1, 33), 1.0),
        (att(2, 33, 2, 8), 3.0),
    ];
    for (s, (a, scale)) in shapes.iter().enumerate() {
        let mut r = rng(200 + s as u64);
        let n3 = a.b * a.t * 3 * a.c();
        let qkv = randn32(&mut r, n3, *scale);
        let dout = randn32(&mut r, a.b * a.t * a.c(), 1.0);
        let prior = randn32(&mut r, n3, 1.0);
        let tol = if *scale > 1.0 { 10.0 } else { 1.0 };

        let mut k = Kit::new();
        let (qkvi, out, lse) = forward_kit(&mut k, a, &qkv);
        let douti = k.input("dout", &dout);
        let scratch = k.scratch("D", a.scratch_len());
        let dqkv_acc = k.input("dqkv_acc", &prior);
        let dqkv = k.output("dqkv", n3);
        k.push(a.backward(dqkv_acc, true, scratch, douti, qkvi, out, lse));
        k.push(a.backward(dqkv, false, scratch, douti, qkvi, out, lse));
        let ran = k.run().await;

        let what = |name: &str| format!("{name} B={} T={} NH={} HS={} scale={scale}", a.b, a.t, a.nh, a.hs);
        let (want_out, want_lse) = a.cpu_forward(&qkv);
        assert_close(&what("attention_forward out"), &ran.get(out).await, &want_out, 5e-6 * tol, 1e-5 * tol);
        assert_close(&what("attention_forward lse"), &ran.get(lse).await, &want_lse, 5e-6 * tol, 1e-5 * tol);
        let want = a.cpu_backward(&dout, &qkv);
        assert_close(&what("attention_backward dqkv"), &ran.get(dqkv).await, &want, 2e-5 * tol, 1e-4 * tol);
        let want_acc: Vec<f64> = want.iter().zip(&prior).map(|(x, y)| x + y).collect();
        assert_close(
            &what("attention_backward dqkv (accumulate)"),
            &ran.get(dqkv_acc).await,
            &want_acc,
            2e-5 * tol,
            1e-4 * tol,
        );
    }
}

#[gpu_test]
async fn attention_is_causal() {
    // Changing k and v of position t0 must leave every earlier row of out, lse and dq
    // bit-identical (those rows never read position t0, even when they share a 4-row block with
    // later rows; exact equality, since the same instructions run on the same data), and change
    // the out rows at and after t0.
    let a = att(2, 9, 2, 4);
    let t0 = 5;
    let c = a.c();
    let mut r = rng(300);
    let qkv = randn(&mut r, a.b * a.t * 3 * c, 1.0);
    let dout = randn(&mut r, a.b * a.t * c, 1.0);
    let mut qkv2 = qkv.clone();
    let noise = randn(&mut r, 2 * c, 1.0);
    for b in 0..a.b {
        for j in 0..2 * c {
            qkv2[(b * a.t + t0) * 3 * c + c + j] += noise[j];
        }
    }
    let mut k = Kit::new();
    let douti = k.input("dout", &dout);
    let scratch = k.scratch("D", a.scratch_len());
    let run = |k: &mut Kit, x: &[f64]| {
        let (qkvi, out, lse) = forward_kit(k, &a, x);
        let dqkv = k.output("dqkv", x.len());
        k.push(a.backward(dqkv, false, scratch, douti, qkvi, out, lse));
        (out, lse, dqkv)
    };
    let (out1, lse1, dqkv1) = run(&mut k, &qkv);
    let (out2, lse2, dqkv2) = run(&mut k, &qkv2);
    let ran = k.run().await;
    let (o1, o2) = (ran.get_bits(out1).await, ran.get_bits(out2).await);
    let (l1, l2) = (ran.get_bits(lse1).await, ran.get_bits(lse2).await);
    let (g1, g2) = (ran.get_bits(dqkv1).await, ran.get_bits(dqkv2).await);
    for b in 0..a.b {
        for t in 0..a.t {
            let row = (b * a.t + t) * c..(b * a.t + t + 1) * c;
            let q_row = (b * a.t + t) * 3 * c..(b * a.t + t) * 3 * c + c;
            if t < t0 {
                assert_eq!(o1[row.clone()], o2[row], "out row b={b} t={t} saw a future token");
                assert_eq!(g1[q_row.clone()], g2[q_row], "dq row b={b} t={t} saw a future token");
                for h in 0..a.nh {
                    let i = (b * a.nh + h) * a.t + t;
                    assert_eq!(l1[i], l2[i], "lse b={b} h={h} t={t} saw a future token");
                }
            } else {
                assert_ne!(o1[row.clone()], o2[row], "out row b={b} t={t} ignored token {t0}");
            }
        }
    }
}

#[gpu_test]
async fn attention_is_deterministic() {
    // No atomics and fixed-order sums: rerunning the same dispatches gives identical bits.
    let a = att(2, 70, 2, 16);
    let mut r = rng(400);
    let qkv = randn(&mut r, a.b * a.t * 3 * a.c(), 1.0);
    let dout = randn(&mut r, a.b * a.t * a.c(), 1.0);
    let mut k = Kit::new();
    let (qkvi, out, lse) = forward_kit(&mut k, &a, &qkv);
    let douti = k.input("dout", &dout);
    let scratch = k.scratch("D", a.scratch_len());
    let dqkv = k.output("dqkv", qkv.len());
    k.push(a.backward(dqkv, false, scratch, douti, qkvi, out, lse));
    let ran = k.run().await;
    let first: Vec<Vec<u32>> = ran.bits_of(&[out, lse, dqkv]).await;
    ran.step.run();
    let second: Vec<Vec<u32>> = ran.bits_of(&[out, lse, dqkv]).await;
    assert!(first[2].iter().all(|b| !f32::from_bits(*b).is_nan()));
    assert_eq!(first, second, "attention results differ between two identical runs");
}

#[test]
#[should_panic(expected = "head size")]
fn attention_rejects_head_size_above_128() {
    let a = att(1, 4, 1, 129);
    let mut k = Kit::new();
    let qkv = vec![0.0; a.b * a.t * 3 * a.c()];
    forward_kit(&mut k, &a, &qkv);
}
