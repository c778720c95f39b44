//! The whole tiny GPT built through the graph against the PyTorch / Hugging Face reference state in
//! `../shared/fixtures/gpt2_tiny_reference.safetensors`: logits, loss, every parameter gradient,
//! and three AdamW steps with clipping (losses, gradient norms, parameters after the third).
//! Also: two identical steps are bit-identical.

mod common;
use std::collections::HashMap;

use common::fixture::{load, Fixture};
use common::*;
use wgpt::gpu::PipelineCache;
use wgpt::graph::fuse::Fusion;
use wgpt::model::GptConfig;
use wgpt::ops::matmul::Pass;
use wgpt::ops::Tunable;
use wgpt::train::{StepConfig, TrainStep};

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}

async fn build(fx: &Fixture) -> TrainStep {
    build_fused(fx, Fusion::Auto).await
}

async fn build_fused(fx: &Fixture, fusion: Fusion) -> TrainStep {
    build_with(fx, StepConfig { fusion, ..StepConfig::new(GptConfig::tiny(), 2) }).await
}

async fn build_with(fx: &Fixture, cfg: StepConfig) -> TrainStep {
    let mut cache = PipelineCache::new();
    let ts = TrainStep::build(open_gpu().await, &mut cache, cfg).await.unwrap();
    ts.load_params(|name, _| Ok(fx.f32s[&format!("param.{name}")].clone())).unwrap();
    let ids: Vec<u32> = fx.i32s["input_ids"].iter().map(|&x| x as u32).collect();
    let targets: Vec<u32> = fx.i32s["targets"].iter().map(|&x| x as u32).collect();
    ts.set_batch(&ids, &targets).unwrap();
    ts
}

#[gpu_test]
async fn tiny_gpt_matches_pytorch_reference() {
    let fx = load();
    matches_reference(&fx, build(&fx).await).await;
}

/// The flat parameter groups split into many (at most 2048 elements each, as GPT-2 124M's are at
/// `GROUP_MAX` for a 256 MiB buffer): the same reference, to the same bounds.
#[gpu_test]
async fn tiny_gpt_matches_pytorch_reference_with_split_parameter_groups() {
    let fx = load();
    let ts = build_with(&fx, StepConfig { group_max: 2048, ..StepConfig::new(GptConfig::tiny(), 2) }).await;
    assert!(ts.sec.layout.groups.len() >= 8, "{} groups", ts.sec.layout.groups.len());
    matches_reference(&fx, ts).await;
}

/// The lm_head and the loss in chunks of 8 rows (4 chunks, each chunk's gradient taken inside the
/// forward section, its logits gone after it): the same reference, to the same bounds.
#[gpu_test]
async fn tiny_gpt_matches_pytorch_reference_with_chunked_logits() {
    let fx = load();
    let ts = build_with(&fx, StepConfig { logits_chunk: Some(8), ..StepConfig::new(GptConfig::tiny(), 2) }).await;
    assert_eq!(ts.sec.head_grads.len(), 4, "4 chunks, each with its gradient");
    assert!(ts.sec.logits.is_none(), "no whole logits");
    matches_reference(&fx, ts).await;
}

/// Chunked logits against whole ones. Every row's logits, loss and dlogits come from the same
/// kernels, so the loss and every gradient but wte's are the same bits. wte's gradient adds each
/// chunk's product (in chunk order) instead of one product over all R rows: the same f32 terms
/// dlogits[r, v]·x[r, c] grouped differently, so the two differ by rounding only. Any summation of
/// n terms is within (n−1)·u·Σ|terms| of the exact sum (u = 2⁻²⁴); with ln_f's output bounded by
/// |x[r, c]| ≤ √C·|w_c| + |b_c| (a normalized row has norm √C), the two are within
/// 2·(R+1)·u·(2·S + |g|) of each other, S = Σ_r |dlogits[r, v]|·(√C·|w_c| + |b_c|) from the
/// reference logits, |g| the whole path's entry (bounding the embedding's share). A chunk dropped,
/// doubled or misplaced is off by whole terms, far above that. The loss-only pass (`run_loss`)
/// gives the same loss and writes no gradient.
#[gpu_test]
async fn chunked_logits_give_the_whole_logits_bits_but_for_wte_within_rounding() {
    let fx = load();
    let whole = step_bits(&build(&fx).await).await;
    let ts = build_with(&fx, StepConfig { logits_chunk: Some(8), ..StepConfig::new(GptConfig::tiny(), 2) }).await;
    let chunked = step_bits(&ts).await;
    assert_eq!(chunked.0, whole.0, "loss bits differ");
    let wte = "transformer.wte.weight";
    for (name, bits) in &whole.1 {
        if name != wte {
            assert!(bits == &chunked.1[name], "gradient {name} differs with chunked logits");
        }
    }
    let m = GptConfig::tiny();
    let (v, c, rows) = (m.vocab_size, m.n_embd, fx.i32s["targets"].len());
    let (w, b) = (&fx.f32s["param.transformer.ln_f.weight"], &fx.f32s["param.transformer.ln_f.bias"]);
    let logits = &fx.f32s["logits"];
    let mut dl_abs = vec![0.0f64; v];
    for r in 0..rows {
        let row: Vec<f64> = logits[r * v..(r + 1) * v].iter().map(|&x| x as f64).collect();
        let mx = row.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|x| (x - mx).exp()).sum();
        for (j, x) in row.iter().enumerate() {
            let onehot = if j == fx.i32s["targets"][r] as usize { 1.0 } else { 0.0 };
            dl_abs[j] += ((x - mx).exp() / z - onehot).abs() / rows as f64;
        }
    }
    let u = f32::EPSILON as f64 / 2.0;
    let (mut worst, mut differ) = (0.0f64, 0);
    for (i, (&gw, &gc)) in whole.1[wte].iter().zip(&chunked.1[wte]).enumerate() {
        let (gw, gc) = (f32::from_bits(gw) as f64, f32::from_bits(gc) as f64);
        let (tok, ch) = (i / c, i % c);
        let s = 1.01 * dl_abs[tok] * ((c as f64).sqrt() * (w[ch] as f64).abs() + (b[ch] as f64).abs());
        let bound = 2.0 * (rows + 1) as f64 * u * (2.0 * s + gw.abs());
        assert!((gw - gc).abs() <= bound, "dwte[{tok}, {ch}]: {gc} chunked vs {gw} whole, bound {bound:e}");
        worst = worst.max((gw - gc).abs() / bound.max(f64::MIN_POSITIVE));
        differ += (gw != gc) as usize;
    }
    println!(
        "dwte: {differ} of {} entries differ in rounding; the largest difference is {worst:.3} of its bound",
        v * c
    );

    ts.run_zero_grads();
    ts.run_loss();
    assert_eq!(ts.stats().await.unwrap().loss.to_bits(), whole.0, "the loss-only pass gives another loss");
    let grads = ts.read_grads().await.unwrap();
    assert!(grads.values().flatten().all(|&g| g == 0.0), "the loss-only pass wrote a gradient");
}

/// Activations wider than the residual stream that exceed one binding (a 32 KiB limit, forced, on
/// a model of small weights and long rows: B=8, T=64, C=16, where the stream takes 32 KiB): the
/// GELUs run in windows of rows and attention in windows of sequences, as the matmuls already did.
/// Every row's values come from the same kernels, so the loss is the same bits; parameter
/// gradients add the windows' partial sums in another grouping, within f32 rounding of the
/// unsplit ones.
#[gpu_test]
async fn activations_larger_than_a_binding_run_in_windows() {
    let model = GptConfig { vocab_size: 64, block_size: 64, n_layer: 2, n_head: 2, n_embd: 16 };
    let batch = 8;
    let mut r = rng(9);
    let init: HashMap<String, Vec<f32>> = wgpt::model::param_table(&model)
        .iter()
        .map(|s| (s.name.clone(), to32(&randn(&mut r, s.numel(), 0.3))))
        .collect();
    let ids: Vec<u32> = (0..batch * 64).map(|i| ((i * 37 + 11) % 64) as u32).collect();
    let targets: Vec<u32> = (0..batch * 64).map(|i| ((i * 91 + 5) % 64) as u32).collect();
    let run = async |max_binding: Option<u64>| {
        let cfg = StepConfig { max_binding, ..StepConfig::new(model, batch) };
        let ts = TrainStep::build(open_gpu().await, &mut PipelineCache::new(), cfg).await.unwrap();
        let count = |prefix: &str| ts.step.dispatches.iter().filter(|d| d.entry.starts_with(prefix)).count();
        let counts = ["attention_forward", "gelu_forward"].map(count);
        ts.load_params(|name, _| Ok(init[name].clone())).unwrap();
        ts.set_batch(&ids, &targets).unwrap();
        ts.run_forward();
        ts.run_backward();
        (counts, ts.stats().await.unwrap().loss, ts.read_grads().await.unwrap())
    };
    let (whole, loss1, g1) = run(None).await;
    // qkv (8 sequences of 12 KiB, 96 KiB) in 4 windows of 2 sequences; the MLP's 128 KiB in 4.
    let (split, loss2, g2) = run(Some(32 << 10)).await;
    assert_eq!(whole, [2, 2], "unsplit: one dispatch per op and layer");
    assert_eq!(split, [8, 8], "split: attention by sequences, GELU by rows");
    assert_eq!(loss2.to_bits(), loss1.to_bits(), "the loss must be the same bits");
    for (name, a) in &g1 {
        let a = to64(a);
        assert_close(&format!("grad {name}"), &to64(&g2[name]), &a, 1e-5 * max_abs(&a), 1e-4);
    }
}

async fn matches_reference(fx: &Fixture, mut ts: TrainStep) {
    ts.run_forward();
    if let Some(logits) = ts.sec.logits {
        let logits = to64(&ts.step.read_f32(logits).await.unwrap());
        // Logits are O(1) sums of 32-term f32 dot products through 2 blocks; PyTorch sums in another order.
        assert_close("logits", &logits, &to64(&fx.f32s["logits"]), 2e-5, 1e-4);
    }
    let loss = ts.stats().await.unwrap().loss as f64;
    assert_close("loss", &[loss], &[fx.f32s["loss"][0] as f64], 1e-5, 1e-5);

    ts.run_backward();
    let grads = ts.read_grads().await.unwrap();
    assert_eq!(grads.len(), 2 + 12 * 2 + 2, "every parameter has a gradient");
    for (name, got) in &grads {
        let want = to64(&fx.f32s[&format!("grad.{name}")]);
        // f32 against f32 with different summation orders: errors scale with the tensor's largest entry.
        assert_close(&format!("grad {name}"), &to64(got), &want, 2e-4 * max_abs(&want), 1e-3);
    }

    let (losses, norms) = (&fx.f32s["adamw.losses"], &fx.f32s["adamw.grad_norms"]);
    for i in 0..3 {
        if i > 0 {
            ts.run_forward();
            ts.run_backward();
        }
        let s = ts.stats().await.unwrap();
        assert_close(&format!("loss before AdamW step {i}"), &[s.loss as f64], &[losses[i] as f64], 1e-5, 1e-5);
        let s = ts.run_optimizer(1e-3).await.unwrap();
        assert!(!s.skipped, "step {i} skipped");
        assert_close(&format!("grad norm at step {i}"), &[s.grad_norm as f64], &[norms[i] as f64], 1e-5, 1e-4);
    }
    let params = ts.read_params().await.unwrap();
    for (name, got) in &params {
        let want = to64(&fx.f32s[&format!("after3.{name}")]);
        // Each step moves a weight by about lr = 1e-3; 1e-5 absolute is 1% of one step.
        assert_close(&format!("{name} after 3 AdamW steps"), &to64(got), &want, 1e-5, 1e-5);
    }
}

/// The loss and every gradient of one forward + backward, as bits.
async fn step_bits(ts: &TrainStep) -> (u32, HashMap<String, Vec<u32>>) {
    ts.run_zero_grads();
    ts.run_forward();
    ts.run_backward();
    let s = ts.stats().await.unwrap();
    let g = ts.read_grads().await.unwrap();
    (s.loss.to_bits(), g.into_iter().map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect())).collect())
}

#[gpu_test]
async fn identical_steps_are_bit_identical() {
    let fx = load();
    let ts = build(&fx).await;
    let runs = [step_bits(&ts).await, step_bits(&ts).await];
    assert_eq!(runs[0].0, runs[1].0, "loss bits differ between identical steps");
    for (name, bits) in &runs[0].1 {
        assert!(bits == &runs[1].1[name], "gradient {name} differs between identical steps");
    }
}

/// Whatever the fusion pass folds (the residual adds and GELUs into the matmuls' epilogues on
/// GPUs, only the residual backward on CPU adapters), the whole model's f32 loss and gradients
/// are the unfused ones bit for bit.
#[gpu_test]
async fn every_fusion_gives_the_unfused_bits() {
    let fx = load();
    let plain = step_bits(&build_fused(&fx, Fusion::Off).await).await;
    for fusion in [Fusion::Alias, Fusion::Epilogues] {
        let fused = step_bits(&build_fused(&fx, fusion).await).await;
        assert_eq!(fused.0, plain.0, "{fusion:?}: loss bits differ from the unfused step");
        for (name, bits) in &plain.1 {
            assert!(bits == &fused.1[name], "{fusion:?}: gradient {name} differs from the unfused step");
        }
    }
}

/// A vocabulary whose token table and logits exceed one storage binding (forced small here) runs
/// as shards of wte and chunks of logits; loss and gradients equal the unsplit model's.
#[gpu_test]
async fn split_token_table_and_logits_match_unsplit() {
    let model = GptConfig { vocab_size: 1200, block_size: 16, n_layer: 1, n_head: 2, n_embd: 128 };
    let batch = 8;
    let mut r = rng(5);
    let specs = wgpt::model::param_table(&model);
    let init: HashMap<String, Vec<f32>> = specs
        .iter()
        .map(|s| {
            let v = match s.init {
                wgpt::model::Init::Normal(std) => to32(&randn(&mut r, s.numel(), std as f64 * 5.0)),
                wgpt::model::Init::Zeros => to32(&randn(&mut r, s.numel(), 0.02)),
                wgpt::model::Init::Ones => to32(&randn(&mut r, s.numel(), 0.1)).iter().map(|x| 1.0 + x).collect(),
            };
            (s.name.clone(), v)
        })
        .collect();
    let ids: Vec<u32> = (0..batch * 16).map(|i| ((i * 37 + 11) % 1200) as u32).collect();
    let targets: Vec<u32> = (0..batch * 16).map(|i| ((i * 91 + 5) % 1200) as u32).collect();
    let run = async |max_binding: Option<u64>| {
        let mut cfg = StepConfig::new(model, batch);
        cfg.max_binding = max_binding;
        let ts = TrainStep::build(open_gpu().await, &mut PipelineCache::new(), cfg).await.unwrap();
        // The bias-free forward products: the lm_head's shards.
        let heads = ts
            .step
            .dispatches
            .iter()
            .filter(|d| matches!(d.tunable, Some(Tunable::Matmul(t)) if matches!(t.pass, Pass::Forward { bias: false, .. })))
            .count();
        ts.load_params(|name, _| Ok(init[name].clone())).unwrap();
        ts.set_batch(&ids, &targets).unwrap();
        ts.run_forward();
        ts.run_backward();
        let loss = ts.stats().await.unwrap().loss;
        (heads, loss, ts.read_grads().await.unwrap())
    };
    let (heads1, loss1, g1) = run(None).await;
    // A 400 kB binding limit (enforced by the executor too): wte (614 kB) splits into shards of
    // 781 and 419 rows, logits (128 x 1200, 614 kB) into two chunks of 64 rows.
    let (heads2, loss2, g2) = run(Some(400_000)).await;
    assert_eq!(heads1, 1, "unsplit lm_head is one product");
    assert_eq!(heads2, 4, "the split run must make 2 row chunks x 2 shards of the lm_head");
    // Per-row losses are identical; only dx sums shard contributions in another order.
    assert_close("loss", &[loss2 as f64], &[loss1 as f64], 1e-6, 1e-6);
    for (name, a) in &g1 {
        let a = to64(a);
        assert_close(&format!("grad {name}"), &to64(&g2[name]), &a, 1e-5 * max_abs(&a), 1e-4);
    }
}

/// Gradient accumulation: the reference batch as two micro-batches of one sequence each gives the
/// reference gradients (each micro-batch's loss is scaled by 1/2, so the sum is the full mean).
#[gpu_test]
async fn two_micro_batches_accumulate_to_the_reference_gradients() {
    let fx = load();
    let mut cfg = StepConfig::new(GptConfig::tiny(), 1);
    cfg.grad_accum = 2;
    let ts = TrainStep::build(open_gpu().await, &mut PipelineCache::new(), cfg).await.unwrap();
    ts.load_params(|name, _| Ok(fx.f32s[&format!("param.{name}")].clone())).unwrap();
    let ids: Vec<u32> = fx.i32s["input_ids"].iter().map(|&x| x as u32).collect();
    let targets: Vec<u32> = fx.i32s["targets"].iter().map(|&x| x as u32).collect();
    let mut loss = 0.0;
    for row in 0..2 {
        ts.set_batch(&ids[row * 16..(row + 1) * 16], &targets[row * 16..(row + 1) * 16]).unwrap();
        ts.run_forward();
        ts.run_backward();
        loss += ts.stats().await.unwrap().loss as f64 / 2.0;
    }
    assert_close("mean loss over micro-batches", &[loss], &[fx.f32s["loss"][0] as f64], 1e-5, 1e-5);
    for (name, got) in ts.read_grads().await.unwrap() {
        let want = to64(&fx.f32s[&format!("grad.{name}")]);
        assert_close(&format!("accumulated grad {name}"), &to64(&got), &want, 2e-4 * max_abs(&want), 1e-3);
    }
}

/// A memory plan split across many buffers (a low buffer limit, like `WGPT_MAX_BUFFER_SIZE`)
/// places the same tensors in other buffers only: the loss, every gradient and the parameters
/// after two AdamW steps are the one-buffer-per-class plan's, bit for bit.
#[gpu_test]
async fn a_plan_split_across_buffers_gives_the_same_bits() {
    let model = GptConfig { vocab_size: 1200, block_size: 16, n_layer: 2, n_head: 2, n_embd: 128 };
    let batch = 8;
    let mut r = rng(8);
    let init: HashMap<String, Vec<f32>> = wgpt::model::param_table(&model)
        .iter()
        .map(|s| (s.name.clone(), to32(&randn(&mut r, s.numel(), 0.05))))
        .collect();
    let ids: Vec<u32> = (0..batch * 16).map(|i| ((i * 37 + 11) % 1200) as u32).collect();
    let targets: Vec<u32> = (0..batch * 16).map(|i| ((i * 91 + 5) % 1200) as u32).collect();
    let bits = |v: &HashMap<String, Vec<f32>>| -> HashMap<String, Vec<u32>> {
        v.iter().map(|(k, x)| (k.clone(), x.iter().map(|f| f.to_bits()).collect())).collect()
    };
    let run = async |max_buffer: Option<u64>| {
        let mut cfg = StepConfig::new(model, batch);
        cfg.max_buffer = max_buffer;
        let mut ts = TrainStep::build(open_gpu().await, &mut PipelineCache::new(), cfg).await.unwrap();
        let parts = |name: &str| ts.step.plan.arenas.iter().filter(|a| a.name == name && a.size > 0).count();
        let counts = (parts("work"), parts("params"), parts("optimizer"));
        ts.load_params(|name, _| Ok(init[name].clone())).unwrap();
        let mut losses = Vec::new();
        let mut grads = HashMap::new();
        for _ in 0..2 {
            ts.set_batch(&ids, &targets).unwrap();
            ts.run_forward();
            ts.run_backward();
            grads = bits(&ts.read_grads().await.unwrap());
            losses.push(ts.run_optimizer(1e-3).await.unwrap().loss.to_bits());
            ts.run_zero_grads();
        }
        (counts, losses, grads, bits(&ts.read_params().await.unwrap()))
    };
    let one = run(None).await;
    // The largest tensors are the flat decay groups of params, grads and both moments (550k
    // elements, 2.2 MB); 2.5 MiB buffers split the moments and the activations.
    let split = run(Some(5 << 19)).await;
    assert_eq!(one.0, (1, 1, 1), "without a limit each class takes one buffer");
    assert!(split.0 .0 >= 2 && split.0 .2 >= 2, "the limit should split the work and optimizer arenas: {:?}", split.0);
    assert_eq!(one.1, split.1, "losses differ");
    for (name, g) in &one.2 {
        assert!(g == &split.2[name], "gradient {name} differs");
    }
    for (name, p) in &one.3 {
        assert!(p == &split.3[name], "parameter {name} differs after two steps");
    }
}
