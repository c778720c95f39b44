//! The flash attention kernels against the unfused O(T²) WGSL reference (`attention_unfused.wgsl`,
//! the textbook computation with the (B, NH, T, T) matrices in memory), that reference against the
//! f64 CPU reference, and the memory plan showing that the flash path keeps no T×T matrix.

mod common;
use std::collections::BTreeSet;

use common::*;
use wgpt::graph::memplan::plan;
use wgpt::graph::{Class, TensorId, Tensors};
use wgpt::model::GptConfig;
use wgpt::ops::attention::{Attention, Variant};
use wgpt::ops::{Dispatch, Family};
use wgpt::train::{StepConfig, TrainStep};

fn att(b: usize, t: usize, nh: usize, hs: usize) -> Attention {
    Attention { b, t, nh, hs }
}

/// N(0, scale^2) values that f32 holds exactly, so every computation sees the same inputs.
fn randn32(r: &mut rand::rngs::StdRng, n: usize, scale: f64) -> Vec<f64> {
    to64(&to32(&randn(r, n, scale)))
}

/// assert_close that also prints the max absolute error and the worst error as a fraction of the
/// allowance atol + rtol * |want| (run with --nocapture to see the measured figures).
#[track_caller]
fn check(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    let (mut max_abs, mut worst) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        let d = (g - w).abs();
        max_abs = max_abs.max(d);
        worst = worst.max(d / (atol + rtol * w.abs()));
    }
    println!(
        "{what}: max abs err {max_abs:.2e}, {:.0}% of the tolerance (atol {atol:e}, rtol {rtol:e})",
        worst * 100.0
    );
    assert_close(what, got, want, atol, rtol);
}

/// Results of one attention forward + backward (overwrite, and accumulate onto a prior).
struct Results {
    out: Vec<f64>,
    lse: Vec<f64>,
    dqkv: Vec<f64>,
    dqkv_acc: Vec<f64>,
}

/// Runs the flash kernels (on variant `v`) and the unfused kernels on the same qkv, dout and prior
/// dqkv in one program.
async fn run_both(v: Variant, a: &Attention, qkv: &[f64], dout: &[f64], prior: &[f64]) -> (Results, Results) {
    let n3 = qkv.len();
    let mut k = Kit::new().attention(v);
    let qkvi = k.input("qkv", qkv);
    let douti = k.input("dout", dout);

    let out = k.output("flash.out", a.b * a.t * a.c());
    let lse = k.output("flash.lse", a.b * a.nh * a.t);
    let d = k.scratch("flash.D", a.scratch_len());
    let dqkv_acc = k.input("flash.dqkv_acc", prior);
    let dqkv = k.output("flash.dqkv", n3);
    k.push([a.forward(out, lse, qkvi)]);
    k.push(a.backward(dqkv_acc, true, d, douti, qkvi, out, lse));
    k.push(a.backward(dqkv, false, d, douti, qkvi, out, lse));

    let uout = k.output("unfused.out", a.b * a.t * a.c());
    let ulse = k.output("unfused.lse", a.b * a.nh * a.t);
    let probs = k.scratch("unfused.probs", a.unfused_scratch_len());
    let dprobs = k.scratch("unfused.dprobs", a.unfused_scratch_len());
    let udqkv_acc = k.input("unfused.dqkv_acc", prior);
    let udqkv = k.output("unfused.dqkv", n3);
    k.push(a.unfused_forward(uout, ulse, probs, qkvi));
    k.push(a.unfused_backward(udqkv_acc, true, dprobs, douti, qkvi, probs));
    k.push(a.unfused_backward(udqkv, false, dprobs, douti, qkvi, probs));

    let ran = k.run().await;
    let get = async |o: TensorId, l: TensorId, g: TensorId, ga: TensorId| Results {
        out: ran.get(o).await,
        lse: ran.get(l).await,
        dqkv: ran.get(g).await,
        dqkv_acc: ran.get(ga).await,
    };
    (get(out, lse, dqkv, dqkv_acc).await, get(uout, ulse, udqkv, udqkv_acc).await)
}

fn inputs(a: &Attention, seed: u64, scale: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut r = rng(seed);
    let n3 = a.b * a.t * 3 * a.c();
    let qkv = randn32(&mut r, n3, scale);
    let dout = randn32(&mut r, a.b * a.t * a.c(), 1.0);
    let prior = randn32(&mut r, n3, 1.0);
    (qkv, dout, prior)
}

fn label(a: &Attention, scale: f64) -> String {
    format!("B={} T={} NH={} HS={} qkv~N(0,{scale}^2)", a.b, a.t, a.nh, a.hs)
}

// Tolerances. Inputs are f32-exact, so every difference below is f32 arithmetic. With qkv ~ N(0, 1)
// out is a convex combination of v rows (O(1)), lse the log of at most T = 70 terms, and each dqkv
// entry a sum over up to T keys or queries of O(1) products; the f32 rounding of these sums is
// ~1e-6 absolute (measured on lavapipe: unfused vs f64 out 9.0e-7, lse 6.8e-7, dqkv 1.8e-6;
// flash vs unfused out 6.0e-7, lse 4.8e-7, dqkv 1.9e-6). So out and lse get atol 5e-6 + rtol
// 1e-5 (the flash-vs-f64 tolerance of ops_attention.rs) and dqkv atol 1e-5 + rtol 1e-5: room
// for GPUs with a less exact exp, none for a wrong key, scale, mask or row block (errors of O(0.1)).
// The qkv ~ N(0, 9) shapes have scores of tens, so the score's absolute f32 error becomes a
// relative error of p and values are larger (measured: unfused vs f64 out 6.3e-6, dqkv 9.0e-6;
// flash vs unfused out 1.4e-6, dqkv 1.7e-5): tolerances x10.
const OUT_TOL: (f64, f64) = (5e-6, 1e-5);
const DQKV_TOL: (f64, f64) = (1e-5, 1e-5);

/// (atol, rtol) of `tol` scaled for the qkv scale.
fn tol(tol: (f64, f64), scale: f64) -> (f64, f64) {
    let k = if scale > 1.0 { 10.0 } else { 1.0 };
    (tol.0 * k, tol.1 * k)
}

// The unfused kernels in f32 against the f64 CPU reference: this anchors the WGSL reference.
#[gpu_test]
async fn unfused_kernels_match_cpu_reference() {
    let shapes = [
        (att(1, 1, 1, 1), 1.0),
        (att(2, 5, 3, 7), 1.0),
        (att(2, 70, 2, 16), 1.0),
        (att(1, 40, 2, 128), 1.0),
        (att(3, 33, 1, 33), 1.0),
        (att(2, 33, 2, 8), 3.0),
    ];
    for (s, (a, scale)) in shapes.iter().enumerate() {
        let (qkv, dout, prior) = inputs(a, 500 + s as u64, *scale);
        let (_, unfused) = run_both(Variant::Rows, a, &qkv, &dout, &prior).await;
        let what = |name: &str| format!("unfused {name} vs CPU f64, {}", label(a, *scale));
        let (want_out, want_lse) = a.cpu_forward(&qkv);
        let want = a.cpu_backward(&dout, &qkv);
        let want_acc = add(&want, &prior);
        let ((ao, ro), (ad, rd)) = (tol(OUT_TOL, *scale), tol(DQKV_TOL, *scale));
        check(&what("out"), &unfused.out, &want_out, ao, ro);
        check(&what("lse"), &unfused.lse, &want_lse, ao, ro);
        check(&what("dqkv"), &unfused.dqkv, &want, ad, rd);
        check(&what("dqkv (accumulate)"), &unfused.dqkv_acc, &want_acc, ad, rd);
    }
}

// Flash against unfused on the GPU, every variant the adapter runs: T in {1, 5, 7, 16, 33, 70}
// (off the `rows` kernels' 8-row blocks, the `tiled` kernels' 16-row tiles and, at 70, across
// their 64-row workgroups), 1 to 4 heads, head sizes off powers of two, B up to 3.
#[gpu_test]
async fn flash_kernels_match_unfused() {
    let shapes = [
        (att(1, 1, 1, 1), 1.0),
        (att(2, 5, 3, 7), 1.0),
        (att(3, 7, 2, 5), 1.0),
        (att(2, 16, 4, 6), 1.0),
        (att(2, 33, 3, 12), 1.0),
        (att(1, 33, 2, 128), 1.0),
        (att(2, 33, 2, 24), 3.0),
        (att(2, 70, 2, 16), 1.0),
    ];
    for (s, (a, scale)) in shapes.iter().enumerate() {
        for v in attention_variants(a.hs).await {
            let (qkv, dout, prior) = inputs(a, 600 + s as u64, *scale);
            let (flash, unfused) = run_both(v, a, &qkv, &dout, &prior).await;
            let what = |name: &str| format!("flash ({}) {name} vs unfused, {}", v.name(), label(a, *scale));
            let ((ao, ro), (ad, rd)) = (tol(OUT_TOL, *scale), tol(DQKV_TOL, *scale));
            check(&what("out"), &flash.out, &unfused.out, ao, ro);
            check(&what("lse"), &flash.lse, &unfused.lse, ao, ro);
            check(&what("dqkv"), &flash.dqkv, &unfused.dqkv, ad, rd);
            // Both add their gradient onto the same prior.
            check(&what("dqkv (accumulate)"), &flash.dqkv_acc, &unfused.dqkv_acc, ad, rd);
        }
    }
}

/// Runs the flash forward and both backward passes (overwrite, and accumulate onto a prior) on
/// variant `v` in `kit`'s storage type; returns out, lse, dqkv and the accumulated dqkv.
async fn run_flash(kit: Kit, v: Variant, a: &Attention, seed: u64) -> Vec<Vec<f64>> {
    let (qkv, dout, prior) = inputs(a, seed, 1.0);
    let mut k = kit.attention(v);
    let qkvi = k.input("qkv", &qkv);
    let douti = k.input("dout", &dout);
    let out = k.output("out", a.b * a.t * a.c());
    let lse = k.output32("lse", a.b * a.nh * a.t);
    let d = k.scratch("D", a.scratch_len());
    let acc = k.input("dqkv_acc", &prior);
    let dqkv = k.output("dqkv", qkv.len());
    k.push([a.forward(out, lse, qkvi)]);
    k.push(a.backward(acc, true, d, douti, qkvi, out, lse));
    k.push(a.backward(dqkv, false, d, douti, qkvi, out, lse));
    let ran = k.run().await;
    let mut got = Vec::new();
    for id in [out, lse, dqkv, acc] {
        got.push(ran.get(id).await);
    }
    got
}

// `shared` is `rows` with the loads shared across a subgroup and extra masked steps that add exact
// zeros: the same values, in f32 and f16 storage, on T off the 8-row blocks and across the 64-row
// groups of a subgroup (70, 130), and with head sizes that are not multiples of 8. (Head sizes
// up to 16 only: every other size is another pair of modules to compile; flash_kernels_match_unfused
// runs `shared` at 128.)
#[gpu_test]
async fn shared_gives_the_values_of_rows() {
    if !attention_variants(16).await.contains(&Variant::Shared) {
        eprintln!("skipped: this adapter's subgroups are not 8 consecutive invocations");
        return;
    }
    let shapes = [att(1, 1, 1, 1), att(2, 5, 3, 7), att(2, 70, 2, 16), att(3, 130, 1, 12)];
    for (s, a) in shapes.iter().enumerate() {
        for f16 in [false, true] {
            let kit = || if f16 { Kit::f16() } else { Kit::new() };
            let rows = run_flash(kit(), Variant::Rows, a, 900 + s as u64).await;
            let shared = run_flash(kit(), Variant::Shared, a, 900 + s as u64).await;
            for (name, (r, sh)) in ["out", "lse", "dqkv", "dqkv (accumulate)"].iter().zip(rows.iter().zip(&shared)) {
                assert!(r.iter().all(|x| x.is_finite()), "{name} of rows is not finite");
                let diff = r.iter().zip(sh).position(|(x, y)| x != y);
                assert!(diff.is_none(), "shared and rows differ in {name} at {diff:?}, {} f16={f16}", label(a, 1.0));
            }
        }
    }
}

#[gpu_test]
async fn unfused_is_deterministic() {
    // Fixed-order sums and no atomics: two runs of the same dispatches give identical bits.
    let a = att(2, 33, 3, 12);
    let (qkv, dout, _) = inputs(&a, 700, 1.0);
    let mut k = Kit::new();
    let qkvi = k.input("qkv", &qkv);
    let douti = k.input("dout", &dout);
    let out = k.output("out", a.b * a.t * a.c());
    let lse = k.output("lse", a.b * a.nh * a.t);
    let probs = k.scratch("probs", a.unfused_scratch_len());
    let dprobs = k.scratch("dprobs", a.unfused_scratch_len());
    let dqkv = k.output("dqkv", qkv.len());
    k.push(a.unfused_forward(out, lse, probs, qkvi));
    k.push(a.unfused_backward(dqkv, false, dprobs, douti, qkvi, probs));
    let ran = k.run().await;
    let first: Vec<Vec<u32>> = ran.bits_of(&[out, lse, dqkv]).await;
    ran.step.run();
    let second: Vec<Vec<u32>> = ran.bits_of(&[out, lse, dqkv]).await;
    assert!(first.iter().flatten().all(|b| !f32::from_bits(*b).is_nan()));
    assert_eq!(first, second, "unfused attention differs between two identical runs");
}

/// Bytes of the distinct non-persistent (activation and scratch) tensors that the dispatches of
/// `family` bind, as the memory plan lays them out.
fn planned_bytes(tensors: &Tensors, dispatches: &[Dispatch], family: Family) -> u64 {
    let p = plan(tensors, dispatches, 256, u64::MAX);
    let roots: BTreeSet<TensorId> = dispatches
        .iter()
        .filter(|d| d.family == family)
        .flat_map(|d| d.tensors())
        .map(|t| tensors.root(t))
        .filter(|t| !tensors.get(*t).class.persistent())
        .collect();
    roots.iter().map(|t| p.placement[t.index()].size).sum()
}

/// Attention's activation and scratch bytes, and the work arena's size, in the training step of a
/// one-layer model at sequence length `t` (plan only).
fn step_bytes(t: usize) -> (u64, u64) {
    let model = GptConfig { vocab_size: 64, block_size: t, n_layer: 1, n_head: 4, n_embd: 64 };
    let (program, _) = TrainStep::program(StepConfig::new(model, 2), 128 << 20).unwrap();
    let p = plan(&program.tensors, &program.dispatches, 256, u64::MAX);
    let work = p.arenas.last().unwrap().size;
    (planned_bytes(&program.tensors, &program.dispatches, Family::Attention), work)
}

/// The same bytes for attention alone, flash or unfused, forward and backward.
fn standalone_bytes(a: &Attention, unfused: bool) -> u64 {
    let mut t = Tensors::default();
    let mut f = |name: &str, n: usize, class: Class| t.f32(name, &[n], class);
    let (n, n3) = (a.b * a.t * a.c(), a.b * a.t * 3 * a.c());
    let (qkv, out, lse) =
        (f("qkv", n3, Class::Activation), f("out", n, Class::Activation), f("lse", n / a.hs, Class::Activation));
    let (dout, dqkv) = (f("dout", n, Class::Activation), f("dqkv", n3, Class::Activation));
    let mut d = Vec::new();
    let family = if unfused {
        let probs = f("probs", a.unfused_scratch_len(), Class::Scratch);
        let dprobs = f("dprobs", a.unfused_scratch_len(), Class::Scratch);
        d.extend(a.unfused_forward(out, lse, probs, qkv));
        d.extend(a.unfused_backward(dqkv, false, dprobs, dout, qkv, probs));
        Family::AttentionUnfused
    } else {
        let scratch = f("D", a.scratch_len(), Class::Scratch);
        d.push(a.forward(out, lse, qkv));
        d.extend(a.backward(dqkv, false, scratch, dout, qkv, out, lse));
        Family::Attention
    };
    planned_bytes(&t, &d, family)
}

// The flash path stores no T x T matrix: what attention keeps (activations and scratch of its
// forward and backward in a real training step's memory plan) doubles when T doubles, while the
// unfused reference, planned the same way, nearly quadruples (the check can see a T^2 term).
#[test]
fn flash_attention_memory_is_linear_in_t() {
    let (a1, w1) = step_bytes(1024);
    let (a2, w2) = step_bytes(2048);
    let (ra, rw) = (a2 as f64 / a1 as f64, w2 as f64 / w1 as f64);
    println!("training step, attention bytes T=1024 {a1}, T=2048 {a2}: ratio {ra:.4}");
    println!("training step, work arena T=1024 {w1}, T=2048 {w2}: ratio {rw:.4}");
    assert!((1.95..=2.05).contains(&ra), "attention bytes grow {ra:.3}x when T doubles");
    assert!((1.95..=2.05).contains(&rw), "the work arena grows {rw:.3}x when T doubles");

    for unfused in [false, true] {
        let (b1, b2) =
            (standalone_bytes(&att(2, 1024, 4, 16), unfused), standalone_bytes(&att(2, 2048, 4, 16), unfused));
        let r = b2 as f64 / b1 as f64;
        println!("standalone attention (unfused {unfused}) bytes T=1024 {b1}, T=2048 {b2}: ratio {r:.4}");
        if unfused {
            assert!(r > 3.5, "the unfused reference should grow ~4x, got {r:.3}x");
        } else {
            assert!((1.95..=2.05).contains(&r), "flash attention bytes grow {r:.3}x when T doubles");
        }
    }
}
