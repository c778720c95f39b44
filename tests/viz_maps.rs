//! Attention maps: the `attention_probs` kernel against the f64 CPU softmax, and `AttentionProbe`
//! (a batch-1 forward plus one probs dispatch per layer) against a CPU forward of a small random
//! GPT: values within 1e-5, rows summing to 1, nothing above the diagonal.

mod common;
use std::collections::HashMap;

use common::*;
use wgpt::model::{param_table, GptConfig};
use wgpt::ops::attention::Attention;
use wgpt::ops::embedding::Embedding;
use wgpt::ops::gelu;
use wgpt::ops::layernorm::LayerNorm;
use wgpt::ops::matmul::Matmul;
use wgpt::viz::maps::AttentionProbe;

/// Every row of every (layer/batch, head) map sums to 1 and is 0 above the diagonal.
#[track_caller]
fn check_rows(what: &str, probs: &[f64], t: usize) {
    for (r, row) in probs.chunks_exact(t).enumerate() {
        let q = r % t;
        let sum: f64 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{what}: row {r} sums to {sum}");
        assert!(row[q + 1..].iter().all(|&p| p == 0.0), "{what}: row {r} (query {q}) has weight above the diagonal");
        assert!(row[..=q].iter().all(|&p| p > 0.0), "{what}: row {r} has a zero at or below the diagonal");
    }
}

#[gpu_test]
async fn probs_kernel_matches_cpu_softmax() {
    // T not a multiple of 4 (partial row blocks), several heads, batch 2.
    for (t, nh, hs) in [(7, 3, 5), (13, 2, 8), (1, 2, 4)] {
        let a = Attention { b: 2, t, nh, hs };
        let mut r = rng(7 + t as u64);
        let qkv = f32_rounded(randn(&mut r, a.b * t * 3 * a.c(), 1.0));
        let mut k = Kit::new();
        let qkvi = k.input("qkv", &qkv);
        let out = k.output("out", a.b * t * a.c());
        let lse = k.output32("lse", a.b * nh * t);
        let probs = k.output32("probs", a.probs_len());
        k.push([a.forward(out, lse, qkvi), a.probs(probs, lse, qkvi)]);
        let got = k.run().await.get(probs).await;
        let want = a.cpu_probs_all(&qkv);
        let err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
        println!("attention_probs T={t} NH={nh} HS={hs}: max abs err {err:.2e}");
        assert_close(&format!("probs T={t}"), &got, &want, 1e-6, 1e-5);
        check_rows(&format!("probs T={t}"), &got, t);
    }
}

fn model() -> GptConfig {
    GptConfig { vocab_size: 37, block_size: 11, n_layer: 2, n_head: 3, n_embd: 12 }
}

/// Weights large enough that the maps are far from uniform.
fn random_params(cfg: &GptConfig) -> HashMap<String, Vec<f32>> {
    let mut r = rng(3);
    param_table(cfg)
        .into_iter()
        .map(|s| {
            let v = randn(&mut r, s.numel(), 0.4);
            let v = if s.name.ends_with("ln_1.weight") || s.name.ends_with("ln_2.weight") {
                v.iter().map(|x| 1.0 + x).collect()
            } else {
                v
            };
            (s.name, to32(&v))
        })
        .collect()
}

/// Per layer, (NH, T, T) probabilities of a CPU forward in f64 (batch 1).
fn cpu_maps(cfg: &GptConfig, p: &HashMap<String, Vec<f32>>, ids: &[u32]) -> Vec<f64> {
    let (t, c) = (ids.len(), cfg.n_embd);
    let w = |n: &str| to64(&p[n]);
    let emb = Embedding { b: 1, t, c, v: cfg.vocab_size, block: cfg.block_size, v0: 0 };
    let mut x = emb.cpu_forward(ids, &w("transformer.wte.weight"), &w("transformer.wpe.weight"));
    let ln = LayerNorm { rows: t, c, eps: 1e-5 };
    let lin = |x: &[f64], k: usize, n: usize, name: &str| {
        let mm = Matmul { m: t, k, n, trans_w: false, out_stride: n, out_col: 0 };
        mm.cpu_forward(x, &w(&format!("{name}.weight")), Some(&w(&format!("{name}.bias"))))
    };
    let mut maps = Vec::new();
    for l in 0..cfg.n_layer {
        let h = |s: &str| format!("transformer.h.{l}.{s}");
        let (a, _, _) = ln.cpu_forward(&x, &w(&h("ln_1.weight")), &w(&h("ln_1.bias")));
        let qkv = lin(&a, c, 3 * c, &h("attn.c_attn"));
        let att = Attention { b: 1, t, nh: cfg.n_head, hs: c / cfg.n_head };
        maps.extend(att.cpu_probs_all(&qkv));
        let (y, _) = att.cpu_forward(&qkv);
        let y = lin(&y, c, c, &h("attn.c_proj"));
        x = add(&x, &y);
        let (m, _, _) = ln.cpu_forward(&x, &w(&h("ln_2.weight")), &w(&h("ln_2.bias")));
        let m = gelu::cpu_forward(&lin(&m, c, 4 * c, &h("mlp.c_fc")));
        let m = lin(&m, 4 * c, c, &h("mlp.c_proj"));
        x = add(&x, &m);
    }
    maps
}

#[gpu_test]
async fn probe_matches_cpu_forward() {
    let cfg = model();
    let params = random_params(&cfg);
    let probe = AttentionProbe::build(open_gpu().await, cfg, 9).await.unwrap();
    // Exactly T tokens, and fewer (padded on the GPU, cropped in the result).
    for ids in [vec![3u32, 1, 4, 1, 5, 9, 2, 6, 36], vec![7u32, 0, 30, 30, 12]] {
        let maps = probe.maps_async(&params, &ids).await.unwrap();
        assert_eq!((maps.n_layer, maps.n_head, maps.t()), (2, 3, ids.len()));
        let got = to64(&maps.probs);
        let want = cpu_maps(&cfg, &params, &ids);
        let err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
        let spread = want.iter().cloned().fold(0.0, f64::max);
        println!("probe T={}: max abs err {err:.2e} (largest probability {spread:.3})", ids.len());
        assert_close("probe maps", &got, &want, 1e-5, 0.0);
        check_rows("probe maps", &got, ids.len());
        assert_eq!(maps.head(1, 2).len(), ids.len() * ids.len());
    }
    assert!(probe.maps_async(&params, &[]).await.is_err());
    assert!(probe.maps_async(&params, &[1; 10]).await.is_err(), "more than T tokens");
    assert!(probe.maps_async(&params, &[37]).await.is_err(), "token outside the vocabulary");
}
