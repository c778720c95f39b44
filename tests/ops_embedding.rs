//! Token + position embedding: the bucket table, the CPU reference backward against finite
//! differences, every WGSL entry point against the reference (repeated tokens, odd sizes,
//! overwrite and accumulate), and determinism.

mod common;
use common::*;
use rand::Rng;
use wgpt::ops::embedding::Embedding;

fn emb(b: usize, t: usize, c: usize, v: usize, block: usize) -> Embedding {
    Embedding { b, t, c, v, block, v0: 0 }
}

/// Token ids with many repeats: drawn from a few distinct tokens spread over the vocabulary.
fn token_ids(r: &mut impl Rng, n: usize, v: usize) -> Vec<u32> {
    let pool: Vec<u32> = (0..(v / 3).max(1)).map(|_| r.random_range(0..v as u32)).collect();
    (0..n).map(|_| pool[r.random_range(0..pool.len())]).collect()
}

/// N(0, scale^2) values that f32 holds exactly, so the f64 reference sees the kernel's inputs.
fn randn32(r: &mut rand::rngs::StdRng, n: usize, scale: f64) -> Vec<f64> {
    to64(&to32(&randn(r, n, scale)))
}

#[test]
fn buckets_layout() {
    let e = emb(2, 3, 4, 10, 3);
    // positions:     0  1  2  3  4  5
    let ids = [7, 2, 7, 9, 2, 7];
    let n = 6;
    let mut want = vec![0u32; 3 * n + 2];
    want[0] = 3; // U
    want[1..4].copy_from_slice(&[2, 7, 9]); // tokens, ascending
    want[1 + n..1 + n + 4].copy_from_slice(&[0, 2, 5, 6]); // starts, starts[U] = N
    want[2 + 2 * n..].copy_from_slice(&[1, 4, 0, 2, 5, 3]); // positions by token
    assert_eq!(e.buckets_len(), 3 * n + 2);
    assert_eq!(e.buckets(&ids), want);
}

#[test]
#[should_panic(expected = "out of range")]
fn buckets_reject_token_outside_vocabulary() {
    emb(1, 2, 4, 10, 2).buckets(&[3, 10]);
}

#[test]
fn embedding_cpu_backward_matches_finite_differences() {
    let e = emb(2, 4, 3, 7, 6);
    let mut r = rng(1);
    let ids = token_ids(&mut r, e.b * e.t, e.v);
    let wte = randn(&mut r, e.v * e.c, 1.0);
    let wpe = randn(&mut r, e.block * e.c, 1.0);
    let w = randn(&mut r, e.b * e.t * e.c, 1.0);
    let (dwte, dwpe) = e.cpu_backward(&w, &ids);
    // The loss is linear in wte and wpe, so central differences are exact up to f64 rounding.
    assert_close(
        "embedding dwte",
        &dwte,
        &numeric_grad(&wte, 1e-6, |x| dot(&e.cpu_forward(&ids, x, &wpe), &w)),
        1e-8,
        1e-6,
    );
    assert_close(
        "embedding dwpe",
        &dwpe,
        &numeric_grad(&wpe, 1e-6, |x| dot(&e.cpu_forward(&ids, &wte, x), &w)),
        1e-8,
        1e-6,
    );
}

// f32 kernels against f64 references on f32-exact inputs. The forward is one f32 add: correctly
// rounded, so within half an ulp; atol 0, rtol 2^-23 (one ulp). dwte sums up to B*T = 160
// N(0, 1) terms per entry (the last shape has a single token everywhere), dwpe up to B = 4, in
// f32 in order: rounding of partial sums up to ~sqrt(160) ~ 13 over 160 adds gives a few 1e-6
// (observed max 1.5e-6), so atol 1e-5 + rtol 1e-5; a missed or doubled position is O(1) off.
#[gpu_test]
async fn embedding_kernels_match_reference() {
    let shapes = [
        emb(1, 1, 1, 1, 1),
        emb(2, 5, 3, 70, 8),
        emb(3, 50, 65, 100, 64),
        emb(1, 200, 7, 1000, 256),
        emb(4, 40, 5, 3, 40),
    ];
    for (s, e) in shapes.iter().enumerate() {
        let mut r = rng(10 + s as u64);
        let n = e.b * e.t;
        let ids = token_ids(&mut r, n, e.v);
        let wte = randn32(&mut r, e.v * e.c, 1.0);
        let wpe = randn32(&mut r, e.block * e.c, 1.0);
        let dout = randn32(&mut r, n * e.c, 1.0);
        let prior_wte = randn32(&mut r, e.v * e.c, 1.0);
        let prior_wpe = randn32(&mut r, e.block * e.c, 1.0);

        let mut k = Kit::new();
        let idsi = k.input_u32("ids", &ids);
        let (wtei, wpei) = (k.input("wte", &wte), k.input("wpe", &wpe));
        let douti = k.input("dout", &dout);
        let bk = k.input_u32("buckets", &e.buckets(&ids));
        let out = k.output("out", n * e.c);
        let dwte_acc = k.input("dwte_acc", &prior_wte);
        let dwpe_acc = k.input("dwpe_acc", &prior_wpe);
        let dwte = k.output("dwte", e.v * e.c);
        let dwpe = k.output("dwpe", e.block * e.c);
        k.push([e.forward(out, idsi, wtei, wpei)]);
        k.push(e.backward(dwte_acc, true, Some((dwpe_acc, true)), douti, bk));
        k.push(e.backward(dwte, false, Some((dwpe, false)), douti, bk));
        let ran = k.run().await;

        let what = |name: &str| format!("{name} B={} T={} C={} V={} block={}", e.b, e.t, e.c, e.v, e.block);
        assert_close(
            &what("embedding_forward"),
            &ran.get(out).await,
            &e.cpu_forward(&ids, &wte, &wpe),
            0.0,
            f32::EPSILON as f64,
        );
        let (want_wte, want_wpe) = e.cpu_backward(&dout, &ids);
        assert_close(&what("embedding_backward_wte"), &ran.get(dwte).await, &want_wte, 1e-5, 1e-5);
        assert_close(&what("embedding_backward_wpe"), &ran.get(dwpe).await, &want_wpe, 1e-5, 1e-5);
        let add = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x + y).collect() };
        assert_close(
            &what("embedding_backward_wte (accumulate)"),
            &ran.get(dwte_acc).await,
            &add(&want_wte, &prior_wte),
            1e-5,
            1e-5,
        );
        assert_close(
            &what("embedding_backward_wpe (accumulate)"),
            &ran.get(dwpe_acc).await,
            &add(&want_wpe, &prior_wpe),
            1e-5,
            1e-5,
        );
        // Rows of tokens absent from the batch, and wpe rows t >= T, keep the prior value
        // bit for bit when accumulating (never rewritten, or + 0.0).
        let got_wte = ran.get(dwte_acc).await;
        let prior32 = to64(&to32(&prior_wte));
        for tok in 0..e.v {
            if !ids.contains(&(tok as u32)) {
                let row = tok * e.c..(tok + 1) * e.c;
                assert_eq!(got_wte[row.clone()], prior32[row], "dwte row {tok} changed");
            }
        }
        let got_wpe = ran.get(dwpe_acc).await;
        let prior32 = to64(&to32(&prior_wpe));
        assert_eq!(got_wpe[e.t * e.c..], prior32[e.t * e.c..], "dwpe rows >= T changed");
    }
}

#[gpu_test]
async fn embedding_is_deterministic() {
    // No atomics and fixed-order sums: rerunning the same dispatches gives identical bits.
    let e = emb(3, 50, 65, 100, 64);
    let mut r = rng(40);
    let n = e.b * e.t;
    let ids = token_ids(&mut r, n, e.v);
    let mut k = Kit::new();
    let idsi = k.input_u32("ids", &ids);
    let wtei = k.input("wte", &randn(&mut r, e.v * e.c, 1.0));
    let wpei = k.input("wpe", &randn(&mut r, e.block * e.c, 1.0));
    let douti = k.input("dout", &randn(&mut r, n * e.c, 1.0));
    let bk = k.input_u32("buckets", &e.buckets(&ids));
    let out = k.output("out", n * e.c);
    let dwte = k.output("dwte", e.v * e.c);
    let dwpe = k.output("dwpe", e.block * e.c);
    k.push([e.forward(out, idsi, wtei, wpei)]);
    k.push(e.backward(dwte, false, Some((dwpe, false)), douti, bk));
    let ran = k.run().await;
    let first: Vec<Vec<u32>> = ran.bits_of(&[out, dwte, dwpe]).await;
    ran.step.run();
    let second: Vec<Vec<u32>> = ran.bits_of(&[out, dwte, dwpe]).await;
    assert_eq!(first, second, "embedding results differ between two identical runs");
}

/// A token table bound in two shards (as for a wte larger than one binding) gives the same
/// forward and gradients as the whole table: each position is written by exactly one shard.
#[gpu_test]
async fn sharded_token_table_matches_whole() {
    let mut r = rng(77);
    let (b, t, c, v) = (2, 9, 5, 150);
    let whole = emb(b, t, c, v, t);
    let ids: Vec<u32> =
        (0..b * t).map(|i| if i % 2 == 0 { r.random_range(0..64) } else { r.random_range(64..v as u32) }).collect();
    let wte = randn32(&mut r, v * c, 1.0);
    let wpe = randn32(&mut r, t * c, 1.0);
    let dout = randn32(&mut r, b * t * c, 1.0);
    let mut k = Kit::new();
    let (idsi, wtei, wpei, douti) =
        (k.input_u32("ids", &ids), k.input("wte", &wte), k.input("wpe", &wpe), k.input("dout", &dout));
    let bk = k.input_u32("buckets", &whole.buckets(&ids));
    let out = k.output("out", b * t * c);
    let dwte = k.output("dwte", v * c);
    let dwpe = k.output("dwpe", t * c);
    // Shards of 64 and 86 rows; 64 rows of 5 floats start on a 256-byte boundary.
    for (i, (v0, vn)) in [(0usize, 64usize), (64, v - 64)].into_iter().enumerate() {
        let e = Embedding { v: vn, v0, ..whole };
        let w = k.t.view(wtei, v0 * c, vn * c);
        let dw = k.t.view(dwte, v0 * c, vn * c);
        k.push([e.forward(out, idsi, w, wpei)]);
        k.push(e.backward(dw, false, (i == 0).then_some((dwpe, false)), douti, bk));
    }
    let ran = k.run().await;
    // One f32 add per element: exact against the reference rounded to f32.
    assert_close("sharded forward", &ran.get(out).await, &to64(&to32(&whole.cpu_forward(&ids, &wte, &wpe))), 0.0, 0.0);
    let (gw, gp) = whole.cpu_backward(&dout, &ids);
    // Sums of at most B*T f32 values of size ~1.
    assert_close("sharded dwte", &ran.get(dwte).await, &gw, 1e-5, 1e-5);
    assert_close("sharded dwpe", &ran.get(dwpe).await, &gp, 1e-5, 1e-5);
}
