//! fp16 storage (that every family compiles with `st = f16` is in tests/shaders.rs): the f16
//! kernels match the f64 reference; a tiny model trained in f16 tracks the f32 loss curve; an
//! overflowed step is skipped without touching parameters or optimizer state, and the loss scale
//! follows GradScaler's rule.
//!
//! Tolerance of the f16 kernels: they read f16 inputs, compute in f32 and round the result once to
//! f16. The reference gets the same f16-rounded inputs, so |got - want| <= 2^-11 |want| (half an
//! f16 ulp, the final rounding) + the f32 arithmetic's error, bounded per op as in the f32 tests.

mod common;
use common::*;
use rand::Rng;
use wgpt::gpu::shader::StorageType;
use wgpt::ops::adamw::AdamW;
use wgpt::ops::attention::Attention;
use wgpt::ops::embedding::Embedding;
use wgpt::ops::layernorm::LayerNorm;
use wgpt::ops::matmul::Matmul;
use wgpt::ops::xent::CrossEntropy;
use wgpt::ops::{gelu, reduce, residual};
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::{load_corpus, Trainer};
use wgpt::train::{LossScale, Precision};

/// Half an f16 ulp, relative: the error of rounding an exact value to f16 (round to nearest).
const H: f64 = 1.0 / 2048.0;

/// Values as an f16 tensor holds them.
fn f16_rounded(v: Vec<f64>) -> Vec<f64> {
    v.iter().map(|&x| half::f16::from_f64(x).to_f64()).collect()
}

fn randn16(r: &mut rand::rngs::StdRng, n: usize, scale: f64) -> Vec<f64> {
    f16_rounded(randn(r, n, scale))
}

/// |got - want| <= H |want| + atol, atol being the f32 arithmetic's share.
#[track_caller]
fn check16(what: &str, got: &[f64], want: &[f64], atol: f64) {
    assert_close(what, got, want, atol, H * 1.001);
}

#[gpu_test]
async fn f16_matmul_matches_reference() {
    // Off the 16 x 16 and 64 x 64 tiles, both weight layouts, every variant the adapter runs.
    let shapes = [(33, 70, 65, false), (17, 40, 96, true), (5, 3, 7, false), (70, 21, 66, true)];
    for (s, &(m, k, n, trans_w)) in shapes.iter().enumerate() {
        for v in matmul_variants_for(StorageType::F16).await {
            let mut r = rng(900 + s as u64);
            let op = Matmul::new(m, k, n, trans_w);
            let (x, w, bias, dout) = (
                randn16(&mut r, m * k, 1.0),
                randn16(&mut r, k * n, 1.0),
                randn16(&mut r, n, 1.0),
                randn16(&mut r, m * n, 1.0),
            );
            let mut kit = Kit::f16().on(v);
            let (xi, wi, bi, di) =
                (kit.input("x", &x), kit.input("w", &w), kit.input("bias", &bias), kit.input("dout", &dout));
            let (out, dx, dw) = (kit.output("out", m * n), kit.output("dx", m * k), kit.output("dw", k * n));
            kit.push([
                op.forward(out, xi, wi, Some(bi)),
                op.backward_dx(dx, false, di, wi),
                op.backward_dw(dw, false, di, xi),
            ]);
            // The (K, N) layout's dW with the bias gradient, against the plain dW and colsum's bits.
            let (dw_b, db, db_colsum) = (kit.output("dw_b", k * n), kit.output("db", n), kit.output("db_colsum", n));
            if !trans_w {
                let sc = kit.scratch("colsum", reduce::colsum_scratch(m, n));
                kit.push([op.backward_dw_bias(dw_b, false, db, false, di, xi)]);
                kit.push(reduce::colsum(db_colsum, false, di, sc, m, n));
            }
            let ran = kit.run().await;
            let (wdx, wdw, wdb) = op.cpu_backward(&dout, &x, &w);
            if !trans_w {
                // f16 values read widened (exactly) to f32: equal bits there are equal f16 bits.
                let mut bits = Vec::new();
                for t in [dw_b, dw, db, db_colsum] {
                    bits.push(ran.get(t).await.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                }
                assert!(bits[0] == bits[1] && bits[2] == bits[3], "f16 {v:?} matmul_product_colsum differs");
                check16(&format!("f16 {v:?} matmul dbias"), &ran.get(db).await, &wdb, 1e-4);
            }
            // f32 sums of at most 70 products of magnitude ~1: gamma_70 * 70 * 3 < 1e-3 worst case;
            // 1e-4 is ample in practice and still far below the f16 rounding of O(1) results.
            check16(&format!("f16 {v:?} matmul out"), &ran.get(out).await, &op.cpu_forward(&x, &w, Some(&bias)), 1e-4);
            check16(&format!("f16 {v:?} matmul dx"), &ran.get(dx).await, &wdx, 1e-4);
            check16(&format!("f16 {v:?} matmul dw"), &ran.get(dw).await, &wdw, 1e-4);
        }
    }
}

#[gpu_test]
async fn f16_layernorm_matches_reference() {
    let (rows, c) = (65, 48);
    let mut r = rng(910);
    let op = LayerNorm { rows, c, eps: 1e-5 };
    let x = randn16(&mut r, rows * c, 1.0);
    let w = f16_rounded(randn(&mut r, c, 0.3).iter().map(|v| 1.0 + v).collect());
    let b = randn16(&mut r, c, 0.3);
    let dy = randn16(&mut r, rows * c, 1.0);
    let mut kit = Kit::f16();
    let (xi, wi, bi, dyi) = (kit.input("x", &x), kit.input("w", &w), kit.input("b", &b), kit.input("dy", &dy));
    let (out, mean, rstd) = (kit.output("out", rows * c), kit.output32("mean", rows), kit.output32("rstd", rows));
    let (dx, dw, db) = (kit.output("dx", rows * c), kit.output("dw", c), kit.output("db", c));
    let s = kit.scratch("s", op.scratch_len());
    kit.push([op.forward(out, mean, rstd, xi, wi, bi)]);
    kit.push(op.backward(dx, false, dw, false, db, false, s, dyi, xi, wi, mean, rstd));
    let ran = kit.run().await;
    let (wout, wmean, wrstd) = op.cpu_forward(&x, &w, &b);
    let (wdx, wdw, wdb) = op.cpu_backward(&dy, &x, &w);
    // Statistics stay f32: f32-level agreement.
    assert_close("f16 layernorm mean (f32)", &ran.get(mean).await, &wmean, 1e-6, 1e-5);
    assert_close("f16 layernorm rstd (f32)", &ran.get(rstd).await, &wrstd, 1e-6, 1e-5);
    check16("f16 layernorm out", &ran.get(out).await, &wout, 1e-5);
    check16("f16 layernorm dx", &ran.get(dx).await, &wdx, 1e-5);
    // Sums over 65 rows.
    check16("f16 layernorm dw", &ran.get(dw).await, &wdw, 1e-4);
    check16("f16 layernorm db", &ran.get(db).await, &wdb, 1e-4);
}

#[gpu_test]
async fn f16_attention_matches_reference() {
    // T = 13 is not a multiple of the 4-row blocks.
    let op = Attention { b: 2, t: 13, nh: 3, hs: 8 };
    let c = op.c();
    let mut r = rng(920);
    let qkv = randn16(&mut r, op.b * op.t * 3 * c, 1.0);
    let dout = randn16(&mut r, op.b * op.t * c, 1.0);
    let mut kit = Kit::f16();
    let (qi, di) = (kit.input("qkv", &qkv), kit.input("dout", &dout));
    let (out, lse) = (kit.output("out", op.b * op.t * c), kit.output32("lse", op.b * op.nh * op.t));
    let dqkv = kit.output("dqkv", qkv.len());
    let s = kit.scratch("s", op.scratch_len());
    kit.push([op.forward(out, lse, qi)]);
    // The backward reads `out` as the forward stored it (f16), like the reference below.
    kit.push(op.backward(dqkv, false, s, di, qi, out, lse));
    let ran = kit.run().await;
    let (wout, wlse) = op.cpu_forward(&qkv);
    check16("f16 attention out", &ran.get(out).await, &wout, 1e-5);
    assert_close("f16 attention lse (f32)", &ran.get(lse).await, &wlse, 1e-5, 1e-5);
    // The backward's D = rowsum(dout * out) uses the f16-rounded out: an O(2^-11) relative change
    // of a sum over HS = 8 terms, which then scales the gradients; 2e-3 absolute covers it.
    assert_close("f16 attention dqkv", &ran.get(dqkv).await, &op.cpu_backward(&dout, &qkv), 2e-3, 2.0 * H);
}

#[gpu_test]
async fn f16_elementwise_and_xent_match_reference() {
    let mut r = rng(930);
    for n in [1001usize, 1000] {
        // 1000 takes the vec4 entry points.
        let (x, y, g, prior) =
            (randn16(&mut r, n, 2.0), randn16(&mut r, n, 1.0), randn16(&mut r, n, 1.0), randn16(&mut r, n, 1.0));
        let mut kit = Kit::f16();
        let (xi, yi, gi) = (kit.input("x", &x), kit.input("y", &y), kit.input("g", &g));
        let (ge, gd, re) = (kit.output("gelu", n), kit.input("dgelu", &prior), kit.output("sum", n));
        let (da, db) = (kit.output("da", n), kit.input("db", &prior));
        kit.push([gelu::forward(ge, xi, n), gelu::backward(gd, true, gi, xi, n)]);
        kit.push([residual::forward(re, xi, yi, n), residual::backward(da, false, db, true, gi, n)]);
        let ran = kit.run().await;
        check16("f16 gelu", &ran.get(ge).await, &gelu::cpu_forward(&x), 1e-6);
        check16("f16 gelu backward (accumulated)", &ran.get(gd).await, &add(&prior, &gelu::cpu_backward(&g, &x)), 1e-6);
        check16("f16 residual", &ran.get(re).await, &residual::cpu_forward(&x, &y), 0.0);
        check16("f16 residual da", &ran.get(da).await, &g, 0.0);
        check16("f16 residual db (accumulated)", &ran.get(db).await, &add(&prior, &g), 0.0);
    }
    // Cross-entropy: logits f16, losses and log-sum-exp f32, dlogits written over the logits.
    let op = CrossEntropy { rows: 20, v: 65, row0: 0 };
    let logits = randn16(&mut r, op.rows * op.v, 3.0);
    let targets: Vec<u32> = (0..op.rows).map(|_| r.random_range(0..op.v as u32)).collect();
    let mut kit = Kit::f16();
    let (li, ti) = (kit.input("logits", &logits), kit.input_u32("targets", &targets));
    let (losses, lse) = (kit.output32("losses", op.rows), kit.output32("lse", op.rows));
    let scale = 1.0 / op.rows as f32;
    kit.push([op.forward(losses, lse, li, ti), op.backward(li, lse, ti, scale, None)]);
    let ran = kit.run().await;
    let (wl, wlse) = op.cpu_forward(&logits, &targets);
    assert_close("f16 xent losses (f32)", &ran.get(losses).await, &wl, 1e-5, 1e-5);
    assert_close("f16 xent lse (f32)", &ran.get(lse).await, &wlse, 1e-5, 1e-6);
    check16("f16 dlogits", &ran.get(li).await, &op.cpu_backward(&logits, &targets, scale as f64), 1e-7);
}

#[gpu_test]
async fn f16_embedding_and_adamw_copy_match_reference() {
    let mut r = rng(940);
    let op = Embedding { b: 2, t: 5, c: 12, v: 9, block: 8, v0: 0 };
    let ids: Vec<u32> = (0..10).map(|_| r.random_range(0..9)).collect();
    let (wte, wpe, dout) = (randn16(&mut r, 9 * 12, 1.0), randn16(&mut r, 8 * 12, 1.0), randn16(&mut r, 10 * 12, 1.0));
    let mut kit = Kit::f16();
    let (ii, bi) = (kit.input_u32("ids", &ids), kit.input_u32("buckets", &op.buckets(&ids)));
    let (ei, pi, di) = (kit.input("wte", &wte), kit.input("wpe", &wpe), kit.input("dout", &dout));
    let (out, dwte, dwpe) = (kit.output("out", 10 * 12), kit.output("dwte", 9 * 12), kit.output("dwpe", 8 * 12));
    kit.push([op.forward(out, ii, ei, pi)]);
    kit.push(op.backward(dwte, false, Some((dwpe, false)), di, bi));
    // AdamW on f32 master weights from f16 gradients, refreshing the f16 copy; n = 1000 takes
    // the vec4 entry point, 63 the scalar one.
    let opt = AdamW::default();
    let mut adam = Vec::new();
    for n in [63usize, 1000] {
        let (p, g) = (randn(&mut r, n, 1.0), randn16(&mut r, n, 0.5));
        let (pi, mi, vi, gi) = (
            kit.input32("p", &p),
            kit.input32("m", &vec![0.0; n]),
            kit.input32("v", &vec![0.0; n]),
            kit.input("g", &g),
        );
        let copy = kit.output("copy", n);
        // Loss scale 8: the gradients arrive multiplied by it and AdamW divides it out.
        let h = opt.hyper(1e-2, 1, 8.0).map(|x| x as f64);
        let (hi, ni) = (kit.input32("hyper", &h), kit.input32("norm", &[0.0, 0.5, 0.0]));
        kit.push([opt.update(pi, mi, vi, gi, Some(copy), hi, ni, 1, true, n)]);
        adam.push((p, g, pi, copy));
    }
    let ran = kit.run().await;
    check16("f16 embedding out", &ran.get(out).await, &op.cpu_forward(&ids, &wte, &wpe), 0.0);
    let (wdwte, wdwpe) = op.cpu_backward(&dout, &ids);
    check16("f16 dwte", &ran.get(dwte).await, &wdwte, 1e-6);
    check16("f16 dwpe", &ran.get(dwpe).await, &wdwpe, 1e-6);
    for (p, g, pi, copy) in adam {
        let n = p.len();
        let (want, _, _) = opt.cpu_update(&p, &vec![0.0; n], &vec![0.0; n], &g, 0.5 / 8.0, 1e-2, 1, true);
        assert_close("adamw master (f32)", &ran.get(pi).await, &want, 1e-6, 1e-5);
        check16("adamw f16 copy", &ran.get(copy).await, &want, 1e-6);
    }
}

#[test]
fn loss_scale_halves_on_overflow_and_grows_after_clean_steps() {
    let mut s = LossScale::new(Precision::F16);
    assert_eq!(s.scale, 65536.0);
    s.growth_interval = 3;
    s.update(true);
    assert_eq!((s.scale, s.skipped, s.clean), (32768.0, 1, 0));
    s.update(false);
    s.update(false);
    assert_eq!(s.scale, 32768.0, "grows only after growth_interval clean steps");
    s.update(false);
    assert_eq!((s.scale, s.clean), (65536.0, 0));
    let mut f = LossScale::new(Precision::F32);
    f.update(true);
    assert_eq!((f.scale, f.skipped), (1.0, 1), "f32 keeps scale 1 and still counts skips");
}

fn config(precision: Precision, steps: u64) -> RunConfig {
    let mut cfg = RunConfig::preset("tiny").unwrap();
    cfg.steps = steps;
    cfg.eval_every = 0;
    cfg.sample_tokens = 0;
    cfg.log_every = 1;
    cfg.precision = precision;
    cfg
}

/// Per-step training losses from metrics.jsonl.
fn losses(dir: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .collect()
}

#[test]
fn tiny_model_in_f16_tracks_the_f32_loss_curve() {
    let corpus = load_corpus(Some(&shared("data/tinyshakespeare.txt"))).unwrap();
    let mut curves = Vec::new();
    for p in [Precision::F32, Precision::F16] {
        let dir = std::env::temp_dir().join(format!("wgpt-prec-{}-{}", p.name(), std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = Trainer::new(gpu(), config(p, 50), &corpus).unwrap();
        assert_eq!(t.cfg.precision, p, "lavapipe has shader-f16");
        t.run(&dir, |_: &str| {}).unwrap();
        assert_eq!(t.ts.loss_scale.skipped, 0, "{p:?}: no step should overflow in this run");
        curves.push(losses(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let (a, b) = (&curves[0], &curves[1]);
    assert_eq!((a.len(), b.len()), (50, 50));
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let last = |c: &[f64]| c[40..].iter().sum::<f64>() / 10.0;
    println!(
        "f32 vs f16 over 50 steps: worst step difference {worst:.4}; last-10 mean {:.4} vs {:.4}",
        last(a),
        last(b)
    );
    // Same weights and batches; f16 rounding of activations and gradients perturbs each step by
    // ~1e-3 relative (measured on lavapipe: worst step 0.0021, last-10 means 3.3060 vs 3.3063).
    // Bound: every step's loss within 0.01 (0.3% of the loss, which falls by more than 0.5 over
    // these steps), and the last ten steps' mean within 0.005.
    assert!(a[0] - last(a) > 0.5, "the f32 run should learn: {} -> {}", a[0], last(a));
    assert!(worst < 0.01, "f16 departs from f32 by {worst} at some step (bound 0.01)");
    assert!((last(a) - last(b)).abs() < 0.005, "last-10 mean loss f32 {} vs f16 {}", last(a), last(b));
}

#[test]
fn overflow_skips_the_step_and_leaves_state_untouched() {
    let corpus = load_corpus(Some(&shared("data/tinyshakespeare.txt"))).unwrap();
    for p in [Precision::F16, Precision::F32] {
        let mut t = Trainer::new(gpu(), config(p, 1), &corpus).unwrap();
        let (ids, targets): (Vec<u32>, Vec<u32>) = (0..128).map(|i| (i % 50, (i + 1) % 50)).unzip();
        // One clean step so the moments are not zero.
        let s = pollster::block_on(t.ts.train_step(&ids, &targets, 1e-3)).unwrap();
        assert!(!s.skipped);
        let before = (
            pollster::block_on(t.ts.read_params()).unwrap(),
            pollster::block_on(t.ts.read_moments(&wgpt::dist::Solo)).unwrap(),
        );
        let copies: Vec<Vec<f32>> =
            t.ts.sec.layout.params.iter().map(|q| pollster::block_on(t.ts.step.read_f32(q.compute)).unwrap()).collect();
        // A loss scale of 2^100 overflows every gradient in f16 and f32 alike.
        let scale = 2f32.powi(100);
        t.ts.loss_scale.scale = scale;
        let t0 = t.ts.t;
        let s = pollster::block_on(t.ts.train_step(&ids, &targets, 1e-3)).unwrap();
        assert!(s.skipped && s.loss.is_finite(), "{p:?}: step not flagged as skipped: {s:?}");
        assert_eq!(t.ts.t, t0, "{p:?}: a skipped step must not advance AdamW's t");
        let want_scale = if p == Precision::F16 { scale / 2.0 } else { scale };
        assert_eq!(t.ts.loss_scale.scale, want_scale, "{p:?}: loss scale after an overflow");
        let after = (
            pollster::block_on(t.ts.read_params()).unwrap(),
            pollster::block_on(t.ts.read_moments(&wgpt::dist::Solo)).unwrap(),
        );
        for (name, v) in &before.0 {
            assert!(bits(v) == bits(&after.0[name]), "{p:?}: parameter {name} changed on a skipped step");
        }
        for (name, v) in &before.1 {
            assert!(bits(v) == bits(&after.1[name]), "{p:?}: optimizer state {name} changed on a skipped step");
        }
        for (q, v) in t.ts.sec.layout.params.iter().zip(&copies) {
            let now = pollster::block_on(t.ts.step.read_f32(q.compute)).unwrap();
            assert!(bits(v) == bits(&now), "{p:?}: compute copy of {} changed", q.spec.name);
        }
        // The next step at a sane scale trains again.
        t.ts.loss_scale.scale = 1024.0;
        let s = pollster::block_on(t.ts.train_step(&ids, &targets, 1e-3)).unwrap();
        assert!(!s.skipped && t.ts.t == t0 + 1, "{p:?}: training did not resume after the skipped step");
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
