//! Cross-entropy and AdamW: the cross-entropy reference backward against finite differences, and
//! the WGSL entry points against their references (sizes off the workgroup multiple).

mod common;
use common::*;
use rand::Rng;
use wgpt::ops::adamw::AdamW;
use wgpt::ops::reduce;
use wgpt::ops::xent::CrossEntropy;

#[test]
fn xent_cpu_backward_matches_finite_differences() {
    let mut r = rng(3);
    let op = CrossEntropy { rows: 3, v: 7, row0: 0 };
    let logits = randn(&mut r, 21, 2.0);
    let targets = vec![0, 6, 3];
    let scale = 1.0 / 3.0;
    let num = numeric_grad(&logits, 1e-6, |l| scale * op.cpu_forward(l, &targets).0.iter().sum::<f64>());
    assert_close("xent dlogits", &op.cpu_backward(&logits, &targets, scale), &num, 1e-8, 1e-6);
}

#[gpu_test]
async fn xent_kernels_match_reference() {
    for (s, &(rows, v)) in [(1, 1), (5, 65), (70, 300)].iter().enumerate() {
        let mut r = rng(50 + s as u64);
        let op = CrossEntropy { rows, v, row0: 0 };
        let logits = randn(&mut r, rows * v, 4.0);
        let targets: Vec<u32> = (0..rows).map(|_| r.random_range(0..v as u32)).collect();
        let mut k = Kit::new();
        let li = k.input("logits", &logits);
        let ti = k.input_u32("targets", &targets);
        let losses = k.output("losses", rows);
        let lse = k.output("lse", rows);
        let mean = k.output("mean", 1);
        let scale = 1.0 / rows as f32;
        k.push([
            op.forward(losses, lse, li, ti),
            reduce::sum_final(mean, 0, losses, rows, scale),
            op.backward(li, lse, ti, scale, None),
        ]);
        let ran = k.run().await;
        let (wl, wlse) = op.cpu_forward(&logits, &targets);
        // Losses are differences of O(10) numbers in f32: 1e-5 absolute.
        assert_close("xent losses", &ran.get(losses).await, &wl, 1e-5, 1e-5);
        assert_close("xent lse", &ran.get(lse).await, &wlse, 1e-5, 1e-6);
        assert_close("mean loss", &ran.get(mean).await, &[wl.iter().sum::<f64>() / rows as f64], 1e-5, 1e-6);
        // Probabilities in [0, 1] times scale: f32 exp rounding, 1e-6 absolute.
        let want = op.cpu_backward(&logits, &targets, scale as f64);
        assert_close("xent dlogits (in place)", &ran.get(li).await, &want, 1e-6, 1e-4);
    }
}

/// The lm_head's chunks: each chunk binds its own logits and the whole per-row tensors at `row0`;
/// every row's loss, lse and dlogits are those of the whole-logits kernels, bit for bit.
#[gpu_test]
async fn xent_kernels_take_chunks_of_rows() {
    let (rows, v) = (70, 300);
    let mut r = rng(57);
    let logits = randn(&mut r, rows * v, 4.0);
    let targets: Vec<u32> = (0..rows).map(|_| r.random_range(0..v as u32)).collect();
    let scale = 1.0 / rows as f32;
    let whole = CrossEntropy { rows, v, row0: 0 };
    let mut k = Kit::new();
    let ti = k.input_u32("targets", &targets);
    let li = k.input("logits", &logits);
    let (losses, lse) = (k.output("losses", rows), k.output("lse", rows));
    k.push([whole.forward(losses, lse, li, ti), whole.backward(li, lse, ti, scale, None)]);
    let (closses, clse) = (k.output("chunk losses", rows), k.output("chunk lse", rows));
    let mut chunks = Vec::new();
    for (row0, n) in [(0, 32), (32, 33), (65, 5)] {
        let op = CrossEntropy { rows: n, v, row0 };
        let ci = k.input("chunk logits", &logits[row0 * v..(row0 + n) * v]);
        k.push([op.forward(closses, clse, ci, ti), op.backward(ci, clse, ti, scale, None)]);
        chunks.push(ci);
    }
    let ran = k.run().await;
    assert_eq!(ran.get_bits(closses).await, ran.get_bits(losses).await, "chunked losses");
    assert_eq!(ran.get_bits(clse).await, ran.get_bits(lse).await, "chunked lse");
    let mut d = Vec::new();
    for c in chunks {
        d.extend(ran.get_bits(c).await);
    }
    assert_eq!(d, ran.get_bits(li).await, "chunked dlogits");
}

#[gpu_test]
async fn adamw_kernel_matches_reference_over_three_steps() {
    let opt = AdamW::default();
    // 4 and 1000 take the vec4 entry point.
    for (s, &n) in [1usize, 63, 1001, 4, 1000].iter().enumerate() {
        let mut r = rng(60 + s as u64);
        let mut p = randn(&mut r, n, 1.0);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let grads: Vec<Vec<f64>> = (0..3).map(|_| randn(&mut r, n, 0.5)).collect();
        let decay = s % 2 == 0;
        let mut k = Kit::new();
        let pi = k.input("param", &p);
        let mi = k.input("m", &m);
        let vi = k.input("v", &v);
        let gis: Vec<_> = grads.iter().map(|g| k.input("grad", g)).collect();
        let his: Vec<_> = (1..=3u64)
            .map(|t| {
                let h = opt.hyper(1e-2 * t as f64, t, 1.0);
                k.input("hyper", &h.map(|x| x as f64))
            })
            .collect();
        let clip = 0.7;
        // [grad norm, clip factor, skip flag]
        let norm = k.input("norm", &[3.0, clip, 0.0]);
        for t in 0..3 {
            k.push([opt.update(pi, mi, vi, gis[t], None, his[t], norm, 1, decay, n)]);
        }
        let ran = k.run().await;
        for (t, g) in grads.iter().enumerate() {
            let lr = 1e-2 * (t + 1) as f64;
            let clip32 = clip as f32 as f64;
            (p, m, v) = opt.cpu_update(&p, &m, &v, g, clip32, lr, t as u64 + 1, decay);
        }
        // Three f32 steps of size ~lr: errors of a few ulp of the parameter.
        assert_close("adamw param", &ran.get(pi).await, &p, 1e-6, 1e-5);
        assert_close("adamw m", &ran.get(mi).await, &m, 1e-7, 1e-5);
        assert_close("adamw v", &ran.get(vi).await, &v, 1e-8, 1e-5);
    }
}
